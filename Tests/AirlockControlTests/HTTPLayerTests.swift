import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ControlSuite {
    @Suite("the HTTP layer: methods, framing, timeouts, limits") struct HTTPLayerTests {
        @Test("more concurrent execs than a sandbox runs at once is 429 with a message, not 409 errno 11")
        func execCap() throws {
            let d = try TestDaemon(["--warm", "default=0"])
            defer { d.finish() }
            let id = try d.create(["profile": "default"])
            var threads: [Thread] = []
            for _ in 0..<256 {
                let t = Thread {
                    _ = try? d.client().request(
                        "POST", "/v1/sandboxes/\(id)/exec/stream", body: Array(#"{"command":["sleep","120"]}"#.utf8), timeout: 180)
                }
                t.stackSize = 256 << 10
                t.start()
                threads.append(t)
            }
            var running = 0
            for _ in 0..<600 where running < 256 {
                running = (try? d.sandbox(id))?["running_execs"] as? Int ?? 0
                if running < 256 { usleep(50_000) }
            }
            #expect(running == 256)
            let one = try d.json("POST", "/v1/sandboxes/\(id)/exec", ["command": ["true"]])
            #expect(one.status == 429 && problemSlug(one) == "too-many-requests", "\(one.status) \(one.text)")
            #expect(detail(one).contains("256") && !detail(one).contains("errno"), "\(detail(one))")
            _ = try d.json("DELETE", "/v1/sandboxes/\(id)")
            for t in threads { while t.isExecuting { usleep(10_000) } }
        }

        @Test("role errors read 'an admin token', 'an operator token'")
        func articles() throws {
            let d = try TestDaemon(["--warm", "default=0"])
            defer { d.finish() }
            let viewer = try d.token("viewer")
            let op = try d.json("POST", "/v1/sandboxes", [:], token: viewer)
            #expect(detail(op).contains("an operator token"), "\(detail(op))")
            let admin = try d.json("GET", "/v1/tokens", token: viewer)
            #expect(detail(admin).contains("an admin token") && !detail(admin).contains("a admin"), "\(detail(admin))")
        }
    }
}
