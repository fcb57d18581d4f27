@testable import AirlockControl
import Foundation
import GRDB
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What goes over the wire and into the store, without a daemon: the API's JSON writer, the
/// store's column mapping, and the client's keep-alive connection against a scripted server.
@Suite("wire formats and the keep-alive client") struct WireTests {
    @Test("JSON responses: sorted keys, integral numbers without a fraction, escapes, nulls")
    func jsonResponse() throws {
        let value: [String: Any] = [
            "b": [true, NSNull(), "a \"q\" / \\ \n\u{1}", 2.5, 3.0, -7, Int64(1) << 40] as [Any],
            "a": ["z": "last", "y": ["nested": false]] as [String: Any],
            "é": 1e-7, "count": UInt64.max, "labels": ["workflow": "wf"],
        ]
        let text = String(decoding: JSONResponse.encode(value), as: UTF8.self)
        #expect(text == #"{"a":{"y":{"nested":false},"z":"last"},"b":[true,null,"a \"q\" / \\ \n\u0001",2.5,3,-7,1099511627776],"count":18446744073709551615,"labels":{"workflow":"wf"},"é":1e-07}"#)
        // Whatever it writes, a strict parser reads back to the same values.
        let back = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect((back["b"] as? [Any])?.count == 7)
        #expect(back["é"] as? Double == 1e-7)

        // Stored JSON comes back as parsed values (no NSNumber): booleans stay booleans.
        let stored = JSONResponse.object(#"{"process_count":3,"frozen":true,"links":["a"],"cpu_seconds":0.25}"#)
        #expect(String(decoding: JSONResponse.encode(stored), as: UTF8.self) == #"{"cpu_seconds":0.25,"frozen":true,"links":["a"],"process_count":3}"#)
        #expect(JSONResponse.object("not json").isEmpty)
    }

    @Test("the sandbox record's columns round-trip, and rows written by the Codable mapping still read")
    func storeColumns() throws {
        let dir = "/tmp/airlock-wire-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(dir, 0o700)
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let store = try SQLiteStore(path: dir + "/store.sqlite")
        // GRDB keeps milliseconds; a quarter second is exact in binary too.
        let t = Date(timeIntervalSince1970: 1_795_168_800.25)
        var r = SandboxRecord(
            id: "sbx-0123456789abcdef", host: "h", profile: "default", labels: ["workflow": "w/\"x\"", "ünï": "c\u{1}"],
            state: .running, createdAt: t, ttlSeconds: 300.5, idleTimeoutSeconds: 60, maxExecs: 5, execCount: 2, lastActivityAt: t,
            spec: #"{"k":1}"#, workspacePath: "/ws", workspaceMounted: true, cgroupDirectories: ["/sys/fs/cgroup/a", "/b c"],
            helperPID: 42, persist: true, workspaceID: "wsp-1", principal: "local", usage: #"{"pids":1}"#)
        try store.insertSandbox(r)
        #expect(try store.sandbox(id: r.id) == r)
        r.state = .stopped
        r.stopReason = "deleted"
        r.stoppedAt = t.addingTimeInterval(1)
        r.helperPID = nil
        try store.updateSandbox(r)
        #expect(try store.sandbox(id: r.id) == r)

        // A row as the Codable mapping wrote it: JSONEncoder escapes slashes.
        let db = try DatabaseQueue(path: dir + "/store.sqlite")
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO sandbox (id, host, profile, labels, state, createdAt, ttlSeconds, execCount, lastActivityAt, spec,
                  workspaceMounted, cgroupDirectories, persist, principal)
                VALUES ('sbx-old', 'h', 'default', '{"path":"a\\/b"}', 'stopped', '2026-11-20 10:00:00.250', 60, 0,
                  '2026-11-20 10:00:00.250', '{}', 0, '["\\/sys\\/fs\\/cgroup\\/x"]', 0, 'local')
                """)
        }
        let old = try #require(try store.sandbox(id: "sbx-old"))
        #expect(old.labels == ["path": "a/b"])
        #expect(old.cgroupDirectories == ["/sys/fs/cgroup/x"])
        #expect(old.createdAt == Date(timeIntervalSince1970: 1_795_168_800.25))
        try db.write { try $0.execute(sql: "UPDATE sandbox SET state = 'melted' WHERE id = 'sbx-old'") }
        #expect(throws: DatabaseError.self) { try store.sandbox(id: "sbx-old") }
    }

    @Test("a keep-alive connection reuses its socket, replaces one the server closed while idle, and never resends a request it got part of an answer to")
    func keepAlive() throws {
        let server = try ScriptedServer(replies: [
            // Connection 1: one framed reply, one chunked reply, then the server closes it.
            ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n", nil],
            // Connection 2: the request connection 1 could not carry, sent again; then closed.
            ["HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nthird", nil],
            // Connection 3: half an answer, then gone.
            ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf!", nil],
        ])
        defer { server.stop() }
        let connection = ControlClient(socket: server.path).connection()
        let a = try connection.request("GET", "/one")
        #expect(a.status == 200 && a.text == "first")
        let b = try connection.request("GET", "/two")
        #expect(b.text == "second")
        #expect(server.accepted == 1, "two requests, one connection")
        // The server closed connection 1 after two answers: the third request goes out again on
        // a new connection, once.
        let c = try connection.request("POST", "/three", body: Array("{}".utf8))
        #expect(c.status == 201 && c.text == "third")
        #expect(server.accepted == 2)
        #expect(server.requests == ["GET /one", "GET /two", "POST /three"])
        // Connection 2 is closed too, so the fourth goes out on connection 3, which answers half
        // and closes: an error, and no further attempt.
        do {
            _ = try connection.request("POST", "/four", body: Array("{}".utf8))
            Issue.record("a reply cut in the middle must be an error")
        } catch {
            #expect("\(error)".contains("in the middle of its reply"), "\(error)")
        }
        #expect(server.accepted == 3)
        #expect(server.requests == ["GET /one", "GET /two", "POST /three", "POST /four"])
    }

    @Test("replies without a body need no framing; an unframed reply ends with its connection")
    func framing() throws {
        let server = try ScriptedServer(replies: [
            ["HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\nuntil\0 the end", nil],
            ["HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", nil],
        ])
        defer { server.stop() }
        let connection = ControlClient(socket: server.path).connection()
        #expect(try connection.request("DELETE", "/token").status == 204)
        let unframed = try connection.request("GET", "/unframed")
        #expect(unframed.text == "until the end")
        // That connection ended with the reply: the next request opens a new one.
        #expect(try connection.request("GET", "/next").text == "next")
        #expect(server.accepted == 2)
        #expect(server.requests == ["DELETE /token", "GET /unframed", "GET /next"])
    }
}

/// A Unix-socket server that answers by script: one list of replies per connection, in order;
/// a nil reply closes the connection instead of answering.
final class ScriptedServer: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var seen: [String] = []
    private var connections = 0
    private var thread: Thread?

    var requests: [String] { lock.lock(); defer { lock.unlock() }; return seen }
    var accepted: Int { lock.lock(); defer { lock.unlock() }; return connections }

    init(replies: [[String?]]) throws {
        path = "/tmp/airlock-scripted-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in path.utf8.enumerated() { p[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0, listen(fd, 4) == 0 else { throw TestFailure("cannot listen on \(path)") }
        let t = Thread { [self] in
            for script in replies {
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }
                lock.lock(); connections += 1; lock.unlock()
                for reply in script {
                    guard let reply else { break }
                    guard let request = readRequest(c) else { break }
                    lock.lock(); seen.append(request); lock.unlock()
                    // A NUL splits a reply into parts sent 50 ms apart.
                    for (i, part) in reply.split(separator: "\0", omittingEmptySubsequences: false).enumerated() {
                        if i > 0 { usleep(50_000) }
                        _ = Array(part.utf8).withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    }
                }
                close(c)
            }
        }
        thread = t
        t.start()
    }

    /// The request line of one request (headers and a Content-Length body consumed).
    private func readRequest(_ c: Int32) -> String? {
        var data: [UInt8] = []
        var byte: UInt8 = 0
        while !(data.count >= 4 && data.suffix(4).elementsEqual([13, 10, 13, 10])) {
            guard read(c, &byte, 1) == 1 else { return nil }
            data.append(byte)
        }
        let head = String(decoding: data, as: UTF8.self)
        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        for _ in 0..<length { guard read(c, &byte, 1) == 1 else { return nil } }
        let line = head.split(separator: "\r\n").first ?? ""
        return line.split(separator: " ").prefix(2).joined(separator: " ")
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }
}
