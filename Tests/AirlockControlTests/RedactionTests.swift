import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ControlSuite {
    /// `airlock serve` records what `airlock run` records, redacted the same way: a declared
    /// secret (raw, base64, hex) and a credential shape never reach any file the daemon writes.
    @Suite("redaction in serve") struct RedactionTests {
        /// The daemon harness puts this in the daemon's environment (DaemonHarness.swift).
        static let secret = "s3cr3t-value-for-injection-0123456789"
        static let token = "ghp_" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LmNbVc"
        /// Also searched for: the lower-case token (a label key may only be lower case).

        static var forms: [(String, String)] {
            let bytes = Array(secret.utf8)
            return [
                ("the secret", secret),
                ("the secret in base64", Data(bytes).base64EncodedString()),
                ("the secret in hex", bytes.map { String(format: "%02x", $0) }.joined()),
                ("a GitHub token", token),
                ("a lower-case GitHub token", token.lowercased()),
            ]
        }

        @Test("exec args, env, file paths and error messages: nothing under the state directory holds a secret or a token")
        func nothingOnDisk() throws {
            let policyDir = "/var/tmp/airlock-redaction-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: policyDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: policyDir) }
            let policy = policyDir + "/policy.yaml"
            try """
                profiles:
                  leaky:
                    extends: default
                    filesystem: { workspace: rw }
                    secrets:
                      - { name: API_KEY, from: "env:AIRLOCK_TEST_SECRET" }
                    environment:
                      pass: [EXTRA]
                """.write(toFile: policy, atomically: true, encoding: .utf8)
            let d = try TestDaemon(["--policy", policy])
            defer { d.finish() }
            let forms = Self.forms

            // A secret without `inject` reaches the sandbox's environment, as under `airlock run`.
            let id = try d.create(["profile": "leaky", "env": ["EXTRA": Self.token], "labels": ["session": "s-" + Self.token]])
            let seen = try d.exec(id, ["/bin/sh", "-c", "printf %s \"$API_KEY\""])
            #expect(seen["stdout"] as? String == Self.secret, "the profile's secret must be in the sandbox's environment: \(seen)")

            // Exec arguments and an exec environment holding every form.
            _ = try d.exec(id, ["/bin/echo"] + forms.map(\.1), extra: ["env": ["EXTRA": Self.token]])
            // A command that cannot be run: its name is in the error.
            let missing = try d.json("POST", "/v1/sandboxes/\(id)/exec", ["command": ["/nonexistent/" + Self.token]])
            #expect(missing.status < 500, "\(missing.status) \(missing.text)")
            // A file path.
            let put = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=" + Self.token + ".txt", body: Array("x".utf8), contentType: "application/octet-stream")
            #expect(put.status == 200 || put.status == 201, "\(put.status) \(put.text)")
            // A create that fails with the token in its input.
            let bad = try d.json("POST", "/v1/sandboxes", ["profile": "leaky", "env": ["NOT_ALLOWED_" + Self.token: "x"]])
            #expect(bad.status == 403, "\(bad.status) \(bad.text)")
            // Free text that reaches the store and the log: a containment reason (kept in the
            // snapshot's record), a kill reason and scope, token names (API and CLI), a label key.
            let everything = forms.map(\.1).joined(separator: " ")
            let contained = try d.json("POST", "/v1/sandboxes/\(id)/contain", ["reason": "suspected " + everything])
            #expect(contained.status == 200, "\(contained.text)")
            let killed = try d.json("POST", "/v1/kill", ["instance": id, "reason": "stop " + everything])
            #expect(killed.status == 200, "\(killed.text)")
            let other = try d.create(["profile": "leaky", "labels": [Self.token.lowercased(): "v", "workflow": Self.secret]])
            let bySession = try d.json("POST", "/v1/kill", ["workflow": Self.secret, "reason": "again " + everything])
            #expect(bySession.status == 200, "\(bySession.text)")
            _ = other
            let named = try d.json("POST", "/v1/tokens", ["role": "viewer", "ttl": "1h", "name": Self.token + " " + Self.secret])
            #expect(named.status == 201, "\(named.text)")
            let cli = try TestDaemon.cli(["token", "create", "--role", "viewer", "--ttl", "1h", "--name", "c " + Self.token, "--state-dir", d.state])
            #expect(cli.status == 0, "\(cli.stderr)")
            d.stop()

            // Every file under the state directory, the audit log, the store and its WAL included.
            var checked = 0
            var auditBytes = Data()
            let files = FileManager.default.enumerator(atPath: d.state)?.allObjects as? [String] ?? []
            for rel in files {
                let path = d.state + "/" + rel
                var st = stat()
                guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, let data = FileManager.default.contents(atPath: path) else { continue }
                checked += 1
                if rel.hasPrefix("audit/seg-") { auditBytes.append(data) }
                for (what, form) in forms {
                    #expect(data.range(of: Data(form.utf8)) == nil, "\(what) is written in \(rel)")
                }
            }
            #expect(checked >= 3, "expected the audit log and the store under \(d.state), found \(files)")
            // The events were recorded, redacted (not dropped).
            let audit = String(decoding: auditBytes, as: UTF8.self)
            #expect(audit.contains("\"control.exec\"") && audit.contains("[REDACTED:"), "the exec events must be in the log, redacted")
        }
    }
}
