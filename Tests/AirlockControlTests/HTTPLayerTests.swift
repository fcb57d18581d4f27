import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A raw connection to a daemon's Unix socket: bytes in, bytes out, and whether the server
/// closed it. For what a well-behaved client (ControlClient) never sends.
final class RawConnection {
    let fd: Int32

    init(socket path: String) throws {
        fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.prefix(buf.count - 1).enumerated() { buf[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else {
            close(fd)
            throw TestFailure("connect \(path): \(errno)")
        }
    }

    deinit { close(fd) }

    /// False once the peer stopped taking bytes (it closed the connection).
    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Whether the server closed its end (nothing more will come).
    func peerClosed() -> Bool {
        var b: UInt8 = 0
        let n = recv(fd, &b, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Whether the server closed the connection entirely (not only its sending side): bytes
    /// sent now are refused (EPIPE) rather than left unread in the socket's buffer.
    func peerGone() -> Bool {
        let chunk = [UInt8](repeating: 120, count: 65536)
        for _ in 0..<128 {
            let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n < 0 { return errno == EPIPE || errno == ECONNRESET }
        }
        return false
    }

    /// Reads until the server closes the connection or `seconds` pass: the bytes, and whether
    /// it was closed.
    func readUntilClosed(seconds: Double) -> (text: String, closed: Bool) {
        var out: [UInt8] = []
        let deadline = Date().addingTimeInterval(seconds)
        var buf = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
            guard poll(&p, 1, ms) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return (String(decoding: out, as: UTF8.self), true) }
            out += buf[0..<n]
        }
        return (String(decoding: out, as: UTF8.self), false)
    }
}

extension ControlSuite {
    @Suite("the HTTP layer: methods, framing, timeouts, limits") struct HTTPLayerTests {
        @Test("a method a path does not allow is 405 with Allow; a path nothing serves is 404")
        func methodNotAllowed() throws {
            let d = try TestDaemon(["--warm", "default=0"])
            defer { d.finish() }
            let patch = try d.client().request("PATCH", "/v1/sandboxes")
            #expect(patch.status == 405 && problemSlug(patch) == "method-not-allowed", "\(patch.status) \(patch.text)")
            #expect(patch.headers["allow"].map { Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) } == ["GET", "POST"])
            let health = try d.client().request("DELETE", "/v1/health")
            #expect(health.status == 405 && health.headers["allow"] == "GET")
            let byID = try d.client().request("POST", "/v1/sandboxes/sbx-0000000000000000")
            #expect(byID.status == 405 && detail(byID).contains("GET, DELETE"), "\(byID.text)")
            #expect(try d.client().request("GET", "/v1/nothing-here").status == 404)
            #expect(try d.client().request("PATCH", "/v1/nothing-here").status == 404)
        }

        @Test("a malformed chunk size is 400, not 413")
        func badChunkSize() throws {
            let d = try TestDaemon(["--warm", "default=0"])
            defer { d.finish() }
            let c = try RawConnection(socket: d.socket)
            c.send("PUT /v1/policy HTTP/1.1\r\nHost: airlock\r\nContent-Type: application/yaml\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nprofiles: {}\r\n0\r\n\r\n")
            let r = c.readUntilClosed(seconds: 5)
            #expect(r.text.hasPrefix("HTTP/1.1 400"), "\(r.text)")
            #expect(!r.text.contains("413"))
        }

        @Test("an early 401 or 413 on a request whose body is still coming ends the connection")
        func earlyErrorCloses() throws {
            let d = try TestDaemon(["--warm", "default=0", "--max-file-size", "4K"])
            defer { d.finish() }
            // 401 on Connection: close, the body announced and not sent.
            let a = try RawConnection(socket: d.socket)
            a.send("PUT /v1/policy HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer alk_bad\r\nContent-Type: application/yaml\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\nprofiles:")
            let ra = a.readUntilClosed(seconds: 5)
            #expect(ra.text.hasPrefix("HTTP/1.1 401"), "\(ra.text)")
            #expect(ra.closed && a.peerGone(), "the server answered 401 and kept the connection open")
            // 413 on a keep-alive request: the rest of the body is not read.
            let id = try d.create(["profile": "default"])
            let b = try RawConnection(socket: d.socket)
            b.send("PUT /v1/sandboxes/\(id)/files?path=big HTTP/1.1\r\nHost: airlock\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n")
            b.send([UInt8](repeating: 65, count: 8192))
            let rb = b.readUntilClosed(seconds: 5)
            #expect(rb.text.hasPrefix("HTTP/1.1 413"), "\(rb.text)")
            #expect(rb.closed && rb.text.lowercased().contains("connection: close") && b.peerGone(), "\(rb.text)")
            // A complete request with Connection: close is answered, then closed.
            let c = try RawConnection(socket: d.socket)
            c.send("GET /v1/health HTTP/1.1\r\nHost: airlock\r\nConnection: close\r\n\r\n")
            let rc = c.readUntilClosed(seconds: 5)
            #expect(rc.text.hasPrefix("HTTP/1.1 200") && rc.closed, "\(rc.text)")
            // Keep-alive still works.
            let k = d.client().connection()
            #expect(try k.request("GET", "/v1/health").status == 200)
            #expect(try k.request("GET", "/v1/health").status == 200)
        }

        @Test("a request head trickled byte by byte, and a body that stalls, are cut off at --request-timeout")
        func readTimeouts() throws {
            let d = try TestDaemon(["--warm", "default=0", "--request-timeout", "1"])
            defer { d.finish() }
            // A head that never ends, a byte every 200 ms (each byte resets an idle timer).
            let head = try RawConnection(socket: d.socket)
            let start = Date()
            var open = true
            for byte in Array("GET /v1/health HTTP/1.1\r\nX-Slow: ".utf8) + [UInt8](repeating: 97, count: 100) {
                guard Date().timeIntervalSince(start) < 8, head.send([byte]) else { break }
                usleep(200_000)
                if head.peerClosed() {
                    open = false
                    break
                }
            }
            let headSeconds = Date().timeIntervalSince(start)
            #expect(!open && headSeconds < 4, "a trickled head held the connection for \(String(format: "%.1f", headSeconds)) s")
            // A body that stops arriving.
            let body = try RawConnection(socket: d.socket)
            body.send("PUT /v1/policy HTTP/1.1\r\nHost: airlock\r\nContent-Type: application/yaml\r\nContent-Length: 100\r\n\r\nprofiles:")
            let stalled = Date()
            let r = body.readUntilClosed(seconds: 6)
            #expect(r.closed && Date().timeIntervalSince(stalled) < 4, "a stalled body held the connection: \(r.text)")
            // An idle keep-alive connection between requests is closed too; a new one works.
            #expect(try d.client().request("GET", "/v1/health").status == 200)
        }

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

        @Test("docs/openapi.yaml: command items are strings (no null), the archive path is optional, no --max-upload")
        func schema() throws {
            let root = ContractTests.root
            let script = """
                import sys, yaml, jsonschema
                doc = yaml.safe_load(open(sys.argv[1] + "/docs/openapi.yaml"))
                def valid(name, value):
                    schema = {"$ref": "#/components/schemas/" + name, "components": doc["components"]}
                    return jsonschema.Draft202012Validator(schema).is_valid(value)
                assert valid("ExecRequest", {"command": ["ls", "-l"]}), "a plain command is valid"
                for bad in ([None], ["ls", None], [""], [1]):
                    assert not valid("ExecRequest", {"command": bad}), "command %r passes the schema" % (bad,)
                assert doc["components"]["parameters"]["ArchivePathQuery"].get("required") is False, "the archive path is optional (the server defaults it to .)"
                for f in ("/docs/openapi.yaml", "/docs/api.md"):
                    assert "--max-upload" not in open(sys.argv[1] + f).read(), f + " names --max-upload, which airlock serve does not have"
                print("ok")
                """
            // The python3 of the test run (CI installs schemathesis, and with it jsonschema and PyYAML).
            let (status, text) = try ContractTests.python(["python3", "-c", script, root], environment: [:], cwd: root, timeout: 60)
            #expect(status == 0 && text.contains("ok"), "\(text)")
            // The server agrees: a null in command is refused, and no path archives the workspace.
            let d = try TestDaemon(["--warm", "default=0"])
            defer { d.finish() }
            let id = try d.create(["profile": "default"])
            let null = try d.client().request("POST", "/v1/sandboxes/\(id)/exec", body: Array(#"{"command":[null]}"#.utf8))
            #expect(null.status == 422, "\(null.text)")
            let whole = try d.client().request("GET", "/v1/sandboxes/\(id)/archive")
            #expect(whole.status == 200 && whole.headers["content-type"] == "application/x-tar", "\(whole.status)")
        }
    }
}
