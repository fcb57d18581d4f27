import AirlockCore
import Foundation
import Synchronization
import Testing

@testable import AirlockAudit

/// Signed heads published off the log: to a file, over HTTP, to a command. Every head
/// reaches the witness, and a rollback below a witnessed head fails verification.
@Suite struct WitnessTests {
    /// Opens a log that publishes to `witness`, appends `n` events one by one, closes
    /// both; returns the heads the log produced, in order.
    func run(_ dir: String, _ witness: AuditWitness, events n: Int) throws -> [SignedHead] {
        let produced = Mutex<[SignedHead]>([])
        let log = try openLog(dir) { o in
            o.onHead = { h in
                produced.withLock { $0.append(h) }
                witness.publish(h)
            }
        }
        for i in 0..<n { try log.appendAndWait(event(i)) }
        try log.close()
        #expect(witness.close(timeout: .seconds(20)))
        return produced.withLock { $0 }
    }

    func heads(_ bytes: [UInt8]) -> [SignedHead] {
        bytes.split(separator: 0x0A).compactMap { SignedHead(line: $0) }
    }

    func witnessed(_ heads: [SignedHead], _ source: String) -> [(source: String, head: SignedHead)] {
        heads.enumerated().map { ("\(source), line \($0.offset + 1)", $0.element) }
    }

    @Test func aFileWitnessReceivesEveryHeadAndCatchesARollback() throws {
        let t = TempDir("witness-file")
        defer { t.cleanup() }
        let file = t.path + "/elsewhere/heads"
        mkdir(t.path + "/elsewhere", 0o700)
        let w = AuditWitness(target: try AuditWitness.Target.parse("file:" + file)) { Issue.record("witness: \($0)") }
        let produced = try run(t.log, w, events: 20)
        let got = heads(readFile(file))
        #expect(produced.count == 21)  // the new segment's header, then one per append
        #expect(got == produced)
        let key = try verify(t.log).chains[0].key
        #expect(got.allSatisfy { $0.isSigned(by: key) })
        #expect(zip(got, got.dropFirst()).allSatisfy { $0.seq < $1.seq })
        // Every witnessed head is in the log.
        let ok = try verify(t.log, keys: [key], witnessed: witnessed(got, file))
        #expect(ok.ok && ok.witnessedChecked == 21, "\(ok.problem.map(\.description) ?? "")")

        // Cut the log back to the signature after the 10th append: consistent, sealed, signed…
        let target = got[10]
        let seg = t.log + "/" + segments(t.log).last!
        let keep = lines(seg).prefix { (try? LogRecord.parse($0[...]).get())?.seq ?? 0 <= target.seq + 1 }
        writeLines(seg, Array(keep))
        #expect(try verify(t.log, keys: [key]).ok)
        // …but below what the witness holds.
        let p = try verify(t.log, keys: [key], witnessed: witnessed(got, file)).problem
        #expect(p?.message.contains("rolled back below a witnessed head") == true, "\(p.map(\.description) ?? "ok")")
        #expect(p?.message.contains(file + ", line 12") == true)
    }

    @Test func aRewrittenRecordAtAWitnessedSeqAndAForgedHeadFail() throws {
        let t = TempDir("witness-rewrite")
        defer { t.cleanup() }
        let file = t.path + "/heads"
        let w = AuditWitness(target: .file(file)) { Issue.record("witness: \($0)") }
        _ = try run(t.log, w, events: 5)
        let all = heads(readFile(file))
        #expect(all.count == 6)
        // A head whose hash differs from the log's record at that seq.
        var changed = all[3]
        changed.hash = all[2].hash
        let p = try verify(t.log, witnessed: [("x", changed)]).problem
        #expect(p?.message.contains("differs from the witnessed head") == true)
        // A head with the log's seq and hash but a signature the key did not make.
        var forged = all[3]
        forged.signature[0] ^= 1
        let q = try verify(t.log, witnessed: [("y", forged)]).problem
        #expect(q?.message.contains("signature does not verify") == true)
    }

    @Test func anHTTPWitnessReceivesEveryHead() throws {
        let server = try TinyHTTPServer()
        defer { server.stop() }
        let t = TempDir("witness-http")
        defer { t.cleanup() }
        let w = AuditWitness(target: try AuditWitness.Target.parse("http://127.0.0.1:\(server.port)/heads")) { Issue.record("witness: \($0)") }
        let produced = try run(t.log, w, events: 10)
        let requests = server.requests()
        #expect(!requests.isEmpty && requests.allSatisfy { $0.head.hasPrefix("POST /heads HTTP/1.1\r\n") })
        #expect(requests.allSatisfy { $0.head.lowercased().contains("content-type: application/x-ndjson") })
        #expect(requests.flatMap { heads($0.body) } == produced)
    }

    @Test func anExecWitnessReceivesEveryHeadOnStdin() throws {
        let t = TempDir("witness-exec")
        defer { t.cleanup() }
        let out = t.path + "/from-stdin"
        let w = AuditWitness(target: try AuditWitness.Target.parse("exec:cat >> '\(out)'")) { Issue.record("witness: \($0)") }
        let produced = try run(t.log, w, events: 10)
        #expect(heads(readFile(out)) == produced)
    }

    @Test func aFailingWitnessIsReportedOnceAndNeverCostsARecord() throws {
        let t = TempDir("witness-fail")
        defer { t.cleanup() }
        let reports = Mutex<[String]>([])
        let w = AuditWitness(target: .file(t.path + "/missing-dir/heads")) { m in reports.withLock { $0.append(m) } }
        let log = try openLog(t.log) { $0.onHead = { w.publish($0) } }
        for i in 0..<10 { try log.appendAndWait(event(i)) }
        try log.close()
        #expect(!w.close(timeout: .seconds(5)))
        #expect(try verify(t.log).ok)
        #expect(records(t.log).filter { eventJSON($0)["n"] != nil }.count == 10)
        let r = reports.withLock { $0 }
        #expect(r.count == 1 && r[0].contains("cannot publish") && r[0].contains("missing-dir"), "\(r)")
        // Once it works again, the newest head gets through and that is reported too.
        mkdir(t.path + "/missing-dir", 0o700)
        w.publish(try #require(try openLog(t.log).head))
        #expect(w.close(timeout: .seconds(5)))
        #expect(reports.withLock { $0 }.last?.contains("publishing again") == true)
        #expect(heads(readFile(t.path + "/missing-dir/heads")).count >= 1)
    }

    @Test func targetsParseAndRefuseWhatTheyCannotDo() throws {
        #expect(try AuditWitness.Target.parse("file:/mnt/w/heads") == .file("/mnt/w/heads"))
        #expect(try AuditWitness.Target.parse("http://witness.example:8080/v1/heads") == .http(host: "witness.example", port: 8080, path: "/v1/heads"))
        #expect(try AuditWitness.Target.parse("http://[::1]/h") == .http(host: "::1", port: 80, path: "/h"))
        #expect(try AuditWitness.Target.parse("exec:logger -t audit") == .exec("logger -t audit"))
        for bad in ["file:relative", "exec:", "ftp://x", "http://h:99999/"] {
            #expect(throws: AirlockError.self) { try AuditWitness.Target.parse(bad) }
        }
        do { _ = try AuditWitness.Target.parse("https://w.example/h") } catch { #expect(error.message.contains("exec:curl")) }
    }
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 that answers 204 and keeps every request.
final class TinyHTTPServer: @unchecked Sendable {
    struct Request: Sendable {
        var head: String
        var body: [UInt8]
    }
    let fd: Int32
    let port: Int
    final class Store: Sendable {
        let requests = Mutex<[Request]>([])
    }
    private let stored = Store()
    private let thread: Thread?

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
        guard bound == 0, listen(s, 16) == 0 else { throw AirlockError(.system, "test server: bind/listen failed") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        fd = s
        port = Int(UInt16(bigEndian: addr.sin_port))
        let store = stored
        thread = Thread {
            while true {
                let c = accept(s, nil, nil)
                if c < 0 { return }
                var data: [UInt8] = []
                var buf = [UInt8](repeating: 0, count: 65536)
                var need: Int?
                var headEnd = 0
                while need == nil || data.count < headEnd + (need ?? 0) {
                    let n = read(c, &buf, buf.count)
                    if n <= 0 { break }
                    data += buf[0..<n]
                    if need == nil, let r = data.firstRange(of: Array("\r\n\r\n".utf8)) {
                        headEnd = r.upperBound
                        let head = String(decoding: data[..<headEnd], as: UTF8.self).lowercased()
                        let cl = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                        need = cl.flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) } ?? 0
                    }
                }
                store.requests.withLock { $0.append(Request(head: String(decoding: data[..<headEnd], as: UTF8.self), body: Array(data[headEnd...]))) }
                let reply = Array("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".utf8)
                _ = reply.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
                close(c)
            }
        }
        thread?.start()
    }

    func requests() -> [Request] { stored.requests.withLock { $0 } }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
