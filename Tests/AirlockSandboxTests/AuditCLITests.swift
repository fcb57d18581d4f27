import Foundation
import Testing

extension SandboxSuite {
    /// The audit log through the real CLI: runs recorded, secrets redacted in every
    /// encoding, queries through the index (also after losing it), tampering reported.
    @Suite("audit cli")
    struct AuditCLITests {
        /// Every file under `dir`, concatenated (segments, index, key files).
        func allBytes(_ dir: String) -> Data {
            var all = Data()
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                all.append((try? Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))) ?? Data())
            }
            return all
        }

        @Test func secretsNeverReachTheLogInAnyEncoding() throws {
            try Fixture.with { f in
                let dir = f.path(".audit-redaction")
                let secret = "s3cr3t/" + String(UInt64.random(in: 1...UInt64.max), radix: 36) + "+Zq9="
                let raw = Data(secret.utf8)
                let forms = [
                    secret, raw.base64EncodedString(), raw.map { String(format: "%02x", $0) }.joined(),
                    // RFC 3986: everything but the unreserved characters is escaped.
                    secret.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "-._~").union(.alphanumerics))!,
                ]
                let token = "ghp_" + String(repeating: "aB3", count: 12)  // a GitHub token shape, not a declared secret
                // The secret reaches the sandbox; its encodings and the token appear in argv (recorded).
                let r = try f.run(
                    ["run", "--audit-dir", dir, "--events", "events.jsonl", "--secret", "MY_TOKEN", "--agent", "agent-7", "--",
                     "/bin/sh", "-c", "test \"$MY_TOKEN\" = \"\(secret)\" && echo GOT", "x"] + forms + [token],
                    environment: ["MY_TOKEN": secret])
                #expect(r.status == 0, "\(r.stderr)")
                #expect(r.stdout.contains("GOT"))
                // Build the index too, so it is searched as well.
                let q = try f.run(["audit", "query", dir, "--agent", "agent-7", "--type", "process.*"])
                #expect(q.status == 0, "\(q.stderr)")
                #expect(q.stdout.contains("[REDACTED:secret:MY_TOKEN]"))
                #expect(q.stdout.contains("[REDACTED:github-token]"), "\(q.stdout)")
                var haystacks = [allBytes(dir), try Data(contentsOf: URL(fileURLWithPath: f.path("events.jsonl")))]
                haystacks.append(Data(q.stdout.utf8))
                for h in haystacks {
                    for needle in forms + [token] { #expect(h.range(of: Data(needle.utf8)) == nil, "\(needle) leaked") }
                }
                #expect(try f.run(["audit", "verify", dir]).status == 0)
            }
        }

        @Test func queryFiltersAndSurvivesLosingTheIndex() throws {
            try Fixture.with { f in
                let dir = f.path(".audit-query")
                for code in [0, 3, 0] {
                    let r = try f.run(["run", "--audit-dir", dir, "--session", "s-\(code)", "--", "/bin/sh", "-c", "exit \(code)"])
                    #expect(r.status == Int32(code), "\(r.stderr)")
                }
                let exited = try f.run(["audit", "query", dir, "--type", "process.exited"])
                let lines = exited.stdout.split(separator: "\n")
                #expect(lines.count == 3, "\(exited.stdout)\(exited.stderr)")
                let three = try f.run(["audit", "query", dir, "--session", "s-3", "--type", "process.exited"])
                #expect(three.stdout.contains("\"process.exit.code\":3") && three.stdout.split(separator: "\n").count == 1)
                // One instance: its whole life, in order.
                let instance = try #require(three.stdout.firstRange(of: "sbx-").map { String(three.stdout[$0.lowerBound...].prefix(20)) })
                let life = try f.run(["audit", "query", dir, "--instance", instance])
                let types = life.stdout.split(separator: "\n").compactMap { l in
                    l.firstRange(of: "\"type\":\"").map { String(l[$0.upperBound...].prefix { $0 != "\"" }) }
                }
                #expect(types == ["sandbox.created", "process.started", "process.exited", "sandbox.destroyed"], "\(types)")
                #expect(try f.run(["audit", "query", dir, "--since", "1h"]).stdout.split(separator: "\n").count >= 12)
                #expect(try f.run(["audit", "query", dir, "--until", "1h"]).stdout.isEmpty)
                #expect(try f.run(["audit", "query", dir, "--decision", "deny"]).stdout.isEmpty)
                #expect(try f.run(["audit", "query", dir, "--since", "yesterday-ish"]).status == 64)
                // Lose the index (or corrupt it): the same answers, rebuilt from the log.
                try FileManager.default.removeItem(atPath: dir + "/index.sqlite")
                #expect(try f.run(["audit", "query", dir, "--type", "process.exited"]).stdout == exited.stdout)
                try Data("not a database".utf8).write(to: URL(fileURLWithPath: dir + "/index.sqlite"))
                #expect(try f.run(["audit", "query", dir, "--type", "process.exited"]).stdout == exited.stdout)
                // tail: the newest records, the shutdown checkpoint last.
                let tail = try f.run(["audit", "tail", dir, "-n", "2"])
                #expect(tail.stdout.split(separator: "\n").count == 2)
                #expect(tail.stdout.split(separator: "\n").last?.contains("\"audit.checkpoint\"") == true)
            }
        }

        @Test func verifyReportsTamperingWithItsLocation() throws {
            try Fixture.with { f in
                let dir = f.path(".audit-tamper")
                #expect(try f.run(["run", "--audit-dir", dir, "--", "/bin/true"]).status == 0)
                let key = try f.run(["audit", "key", dir])
                #expect(key.stdout.hasPrefix("ed25519:"))
                let ok = try f.run(["audit", "verify", dir, "--key", key.stdout.trimmingCharacters(in: .whitespacesAndNewlines)])
                #expect(ok.status == 0 && ok.stdout.contains("sealed"), "\(ok.stdout)\(ok.stderr)")
                let seg = dir + "/seg-00000000000000000001.log"
                var text = try String(contentsOfFile: seg, encoding: .utf8)
                text = text.replacingOccurrences(of: "\"process.exit.code\":0", with: "\"process.exit.code\":1")
                try text.write(toFile: seg, atomically: false, encoding: .utf8)
                let bad = try f.run(["audit", "verify", dir])
                #expect(bad.status == 1)
                let edited = try #require(text.split(separator: "\n").first { $0.contains("\"process.exit.code\":1") })
                let seq = try #require(edited.dropFirst(7).split(separator: ",").first)
                #expect(bad.stderr.contains("seg-00000000000000000001.log, seq \(seq)") && bad.stderr.contains("hash mismatch"), "\(bad.stderr)")
                // tail and query check each record's own hash and mark the one that fails.
                for args in [["audit", "tail", dir, "-n", "100"], ["audit", "query", dir, "--type", "process.exited"]] {
                    let out = try f.run(args)
                    let marked = out.stdout.split(separator: "\n").filter { $0.contains("\"audit.integrity\":\"hash mismatch\"") }
                    #expect(marked.count == 1 && marked[0].contains("\"seq\":\(seq)"), "\(args): \(out.stdout)")
                    #expect(out.stderr.contains("seq \(seq) does not match its own hash"))
                }
                // A bad key argument is a usage error that says what to pass.
                let usage = try f.run(["audit", "verify", dir, "--key", "nonsense"])
                #expect(usage.status == 64 && usage.stderr.contains("ed25519:"))
            }
        }

        @Test func aRunWhoseEventsCannotBeRecordedDoesNotStart() throws {
            try Fixture.with { f in
                try f.write("not-a-dir", "x")
                let r = try f.run(["run", "--audit-dir", f.path("not-a-dir/log"), "--", "/bin/sh", "-c", "echo RAN > ran.txt"])
                #expect(r.status == 125)
                #expect(r.stderr.contains("--no-audit"), "\(r.stderr)")
                #expect(!f.exists("ran.txt"))
                let unaudited = try f.run(["run", "--no-audit", "--", "/bin/true"])
                #expect(unaudited.status == 0 && unaudited.stderr.contains("NOT recorded"))
            }
        }
    }
}
