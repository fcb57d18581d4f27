import Crypto
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

        /// Someone who can write the index (not the segments) tries to make queries lie: hide
        /// a record by deleting its row, pass a record off as another sandbox's by editing a
        /// row, point a row outside the log at a forged file, and plant a symlink as one of
        /// SQLite's side files. Queries still answer from the log, and nothing outside changes.
        @Test func anAlteredIndexCannotMakeQueriesLie() throws {
            try Fixture.with { f in
                let dir = f.path(".audit-index")
                for code in [0, 3] {
                    let r = try f.run(["run", "--audit-dir", dir, "--session", "s-\(code)", "--", "/bin/sh", "-c", "exit \(code)"])
                    #expect(r.status == Int32(code), "\(r.stderr)")
                }
                let exited = try f.run(["audit", "query", dir, "--type", "process.exited"])
                #expect(exited.stdout.split(separator: "\n").count == 2, "\(exited.stdout)")
                let outside = f.path("outside")
                try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
                try Data(#"{"seq":4,"prev":"00","hash":"00","event":{"type":"process.exited","process.command_line":"FORGED"}}"#.utf8 + [10])
                    .write(to: URL(fileURLWithPath: outside + "/fake.log"))
                let script = """
                    import sqlite3, sys
                    db = sqlite3.connect(sys.argv[1] + "/index.sqlite")
                    rows = db.execute("SELECT seq FROM records WHERE type = 'process.exited' ORDER BY seq").fetchall()
                    db.execute("DELETE FROM records WHERE seq = ?", (rows[0][0],))
                    db.execute("UPDATE records SET instance = 'sbx-FORGED', segment = '../outside/fake.log' WHERE type = 'sandbox.created'")
                    db.commit()
                    """
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
                p.arguments = ["-c", script, dir]
                try p.run()
                p.waitUntilExit()
                #expect(p.terminationStatus == 0)
                try FileManager.default.createSymbolicLink(atPath: dir + "/index.sqlite-journal", withDestinationPath: outside + "/planted")

                let again = try f.run(["audit", "query", dir, "--type", "process.exited"])
                #expect(again.stdout == exited.stdout, "a deleted row hid a record: \(again.stdout)\(again.stderr)")
                let forged = try f.run(["audit", "query", dir, "--instance", "sbx-FORGED"])
                #expect(forged.stdout.isEmpty, "an edited row answered for another sandbox: \(forged.stdout)")
                let created = try f.run(["audit", "query", dir, "--type", "sandbox.created"])
                #expect(created.stdout.split(separator: "\n").count == 2 && !created.stdout.contains("FORGED"), "\(created.stdout)\(created.stderr)")
                #expect(!FileManager.default.fileExists(atPath: outside + "/planted"), "the index followed a planted symlink")
                #expect(try f.run(["audit", "verify", dir]).status == 0)
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

        /// Issue 13's second attack through the real CLI: a forged run appended after the
        /// last signature, then the next `airlock run`. It cuts the forgery instead of
        /// signing it, and `verify --key --anchor WITNESS` reports the cut range; cutting the
        /// log back below a witnessed head fails.
        @Test func aForgedRunIsCutByTheNextRunAndAWitnessCatchesARollback() throws {
            try Fixture.with { f in
                let dir = f.path(".audit-forged")
                let heads = f.path("witness-heads")
                #expect(try f.run(["run", "--audit-dir", dir, "--audit-witness", "file:" + heads, "--", "/bin/true"]).status == 0)
                let firstRun = try String(contentsOfFile: heads, encoding: .utf8).split(separator: "\n").count
                #expect(try f.run(["run", "--audit-dir", dir, "--", "/bin/true"], environment: ["AIRLOCK_AUDIT_WITNESS": "file:" + heads]).status == 0)
                let key = try f.run(["audit", "key", dir]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                let ok = try f.run(["audit", "verify", dir, "--key", key, "--anchor", heads])
                #expect(ok.status == 0 && ok.stdout.contains("recoveries: 0"), "\(ok.stdout)\(ok.stderr)")
                let witnessed = try String(contentsOfFile: heads, encoding: .utf8).split(separator: "\n").count
                #expect(witnessed > firstRun && ok.stdout.contains("\(witnessed) witnessed head(s) found unchanged"), "\(ok.stdout)")

                // The attacker appends a run of their own, correctly chained; no key, so no signature.
                let seg = dir + "/" + (try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("seg-") }.sorted().last ?? "")
                var text = try String(contentsOfFile: seg, encoding: .utf8)
                let last = try #require(text.split(separator: "\n").last)
                var seq = try #require(UInt64(last.dropFirst(7).prefix { $0 != "," }))
                var prev = String(try #require(last.firstRange(of: "\"hash\":\"").map { last[$0.upperBound...].prefix(64) }))
                let forgedFirst = seq + 1
                for i in 0..<3 {
                    seq += 1
                    let event = #"{"time":"2026-12-07T10:00:0\#(i).000000000Z","type":"process.started","airlock.sandbox.id":"sbx-forged"}"#
                    let hash = SHA256.hash(data: Data("airlock-audit/1\n\(seq)\n\(prev)\n\(event)".utf8)).map { String(format: "%02x", $0) }.joined()
                    text += #"{"seq":\#(seq),"prev":"\#(prev)","hash":"\#(hash)","event":\#(event)}"# + "\n"
                    prev = hash
                }
                try text.write(toFile: seg, atomically: false, encoding: .utf8)
                let tampered = try f.run(["audit", "verify", dir, "--key", key])
                #expect(tampered.status == 1 && tampered.stderr.contains("not covered by a signature"), "\(tampered.stderr)")
                #expect(!tampered.stderr.contains("airlock run"))

                // The next run cuts them (never signs them) and says so.
                let next = try f.run(["run", "--audit-dir", dir, "--audit-witness", "file:" + heads, "--", "/bin/true"])
                #expect(next.status == 0 && next.stderr.contains("cut what followed the last signature"), "\(next.stderr)")
                let after = try f.run(["audit", "verify", dir, "--key", key, "--anchor", heads])
                #expect(after.status == 0, "\(after.stdout)\(after.stderr)")
                #expect(after.stdout.contains("recoveries: 1") && after.stdout.contains("cut records \(forgedFirst)–\(seq) (3 records)"), "\(after.stdout)")
                let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("cut-") }
                #expect(files.count == 1 && files[0].hasPrefix("cut-\(forgedFirst)-\(seq)-"), "\(files)")
                let segText = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("seg-") }
                    .map { (try? String(contentsOfFile: dir + "/" + $0, encoding: .utf8)) ?? "" }.joined()
                #expect(!segText.contains("sbx-forged"))

                // Rolled back to the end of the first run: locally fine, below the witness.
                let lines = try String(contentsOfFile: seg, encoding: .utf8).split(separator: "\n")
                let firstHead = try #require(try String(contentsOfFile: heads, encoding: .utf8).split(separator: "\n").dropFirst(firstRun - 1).first)
                let cutSeq = try #require(UInt64(firstHead.dropFirst(7).prefix { $0 != "," }))
                let kept = lines.filter { UInt64($0.dropFirst(7).prefix { $0 != "," }).map { $0 <= cutSeq + 1 } ?? false }
                try (kept.joined(separator: "\n") + "\n").write(toFile: seg, atomically: false, encoding: .utf8)
                #expect(try f.run(["audit", "verify", dir, "--key", key]).status == 0)
                let rolled = try f.run(["audit", "verify", dir, "--key", key, "--anchor", heads])
                #expect(rolled.status == 1 && rolled.stderr.contains("rolled back below a witnessed head"), "\(rolled.stderr)")
            }
        }

        /// W3: an attacker who can write the directory replaces audit.pub with their own
        /// key; `audit key` must print the key that signs the log (derived from audit.key),
        /// and say audit.pub disagrees; without audit.key it prints audit.pub with a warning.
        @Test func auditKeyDoesNotTrustAReplacedPublicKeyFile() throws {
            try Fixture.with { f in
                let dir = f.path(".audit-key")
                #expect(try f.run(["run", "--audit-dir", dir, "--", "/bin/true"]).status == 0)
                let real = try f.run(["audit", "key", dir])
                #expect(real.status == 0 && real.stderr.isEmpty, "\(real.stderr)")
                let attacker = "ed25519:" + Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.map { String(format: "%02x", $0) }.joined()
                try (attacker + "\n").write(toFile: dir + "/audit.pub", atomically: true, encoding: .utf8)
                let r = try f.run(["audit", "key", dir])
                #expect(r.status == 0 && r.stdout == real.stdout, "\(r.stdout)")
                #expect(r.stderr.contains("replaced it"), "\(r.stderr)")
                #expect(try f.run(["audit", "verify", dir, "--key", real.stdout.trimmingCharacters(in: .whitespacesAndNewlines)]).status == 0)
                // Without the signing key, audit.pub is all there is: printed, with a warning.
                #expect(rename(dir + "/audit.key", f.path("audit.key.aside")) == 0)
                let pub = try f.run(["audit", "key", dir])
                #expect(pub.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == attacker)
                #expect(pub.stderr.contains("only as trustworthy as the directory"), "\(pub.stderr)")
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
