import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ControlSuite {
    /// The daemon's audit log off the host: `GET /v1/audit/head` and `--audit-witness`.
    @Suite("audit head and witness") struct AuditHeadTests {
        @Test("GET /v1/audit/head serves the newest signed head, the witness receives it, and verify --anchor checks the witness file")
        func headAndWitness() throws {
            let witness = "/var/tmp/airlock-witness-\(UInt32.random(in: 0...UInt32.max))"
            defer { unlink(witness) }
            let d = try TestDaemon(["--audit-witness", "file:" + witness])
            defer { d.finish() }
            let viewer = try d.token("viewer")
            // A change the daemon records (so there is a head after start-up's).
            _ = try d.json("POST", "/v1/tokens", ["role": "viewer", "ttl": "1h"])
            let r = try d.json("GET", "/v1/audit/head", token: viewer)
            #expect(r.status == 200 && r.headers["content-type"]?.hasPrefix("application/json") == true, "\(r.text)")
            let head = try #require(r.json)
            let seq = try #require(head["seq"] as? Int)
            let hash = try #require(head["hash"] as? String)
            #expect(seq > 1 && hash.count == 64 && (head["signature"] as? String)?.count == 128)
            #expect((head["key"] as? String)?.hasPrefix("ed25519:") == true)
            // The served head reaches the witness file (published off the writer's path).
            let deadline = Date().addingTimeInterval(10)
            var lines: [Substring] = []
            while Date() < deadline {
                lines = ((try? String(contentsOfFile: witness, encoding: .utf8)) ?? "").split(separator: "\n")
                if lines.contains(where: { $0.contains("\"seq\":\(seq),") && $0.contains(hash) }) { break }
                usleep(20_000)
            }
            #expect(lines.contains { $0.contains("\"seq\":\(seq),") && $0.contains(hash) }, "\(lines)")
            let v = try TestDaemon.cli(["audit", "verify", d.state + "/audit", "--anchor", witness])
            #expect(v.status == 0 && v.stdout.contains("witnessed head(s) found unchanged"), "\(v.stdout)\(v.stderr)")
        }
    }
}
