import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct ClientError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A blocking HTTP/1.1 client on the gateway's Unix socket, the way the sandbox's relay
/// reaches it: raw bytes in, parsed responses out (status, headers, body).
struct UnixClient {
    struct Response: CustomStringConvertible {
        var status = 0
        var headers: [(String, String)] = []
        var body = ""
        var bodyCount = 0
        var description: String { "\(status) \(headers) \(body.prefix(300))" }
    }

    let fd: Int32
    private var buffer: [UInt8] = []

    init(_ path: String, timeout: Int = 30) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError("socket: \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw ClientError("connect \(path): \(errno)") }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    @discardableResult
    func sendRaw(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Sends `text` and reads one response. A connection closed before any response
    /// gives status 0.
    mutating func request(_ text: String, headOnly: Bool = false, countOnly: Bool = false) throws -> Response {
        guard sendRaw(Array(text.utf8)) else { return Response() }
        return try readResponse(headOnly: headOnly, countOnly: countOnly)
    }

    mutating func readResponse(headOnly: Bool = false, countOnly: Bool = false) throws -> Response {
        var r = Response()
        guard let headEnd = try fill(until: { b in b.firstRange(of: [13, 10, 13, 10]) }) else { return r }
        let head = String(decoding: buffer[..<headEnd.lowerBound], as: UTF8.self)
        buffer.removeFirst(headEnd.upperBound)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        r.status = statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0
        for l in lines {
            guard let c = l.firstIndex(of: ":") else { continue }
            r.headers.append((l[..<c].lowercased(), l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)))
        }
        if headOnly { return r }
        let header = { (n: String) in r.headers.first { $0.0 == n }?.1 }
        var body: [UInt8] = []
        if let cl = header("content-length").flatMap({ Int($0) }) {
            var remaining = cl
            while remaining > 0 {
                if buffer.isEmpty, try readMore() == 0 { break }
                let k = min(remaining, buffer.count)
                if !countOnly { body.append(contentsOf: buffer[..<k]) }
                r.bodyCount += k
                buffer.removeFirst(k)
                remaining -= k
            }
        } else if header("transfer-encoding")?.lowercased() == "chunked" {
            while true {
                guard let lineEnd = try fill(until: { $0.firstRange(of: [13, 10]) }) else { break }
                let size = Int(String(decoding: buffer[..<lineEnd.lowerBound], as: UTF8.self), radix: 16) ?? 0
                buffer.removeFirst(lineEnd.upperBound)
                if size == 0 {
                    _ = try fill(until: { $0.firstRange(of: [13, 10]) }).map { buffer.removeFirst($0.upperBound) }
                    break
                }
                while buffer.count < size + 2, try readMore() > 0 {}
                body.append(contentsOf: buffer[..<min(size, buffer.count)])
                r.bodyCount += min(size, buffer.count)
                buffer.removeFirst(min(size + 2, buffer.count))
            }
        }
        r.body = String(decoding: body, as: UTF8.self)
        return r
    }

    private mutating func fill(until find: ([UInt8]) -> Range<Int>?) throws -> Range<Int>? {
        while true {
            if let r = find(buffer) { return r }
            if try readMore() == 0 { return nil }
        }
    }

    private mutating func readMore() throws -> Int {
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { throw ClientError("timed out waiting for the gateway") }
            return 0
        }
        buffer.append(contentsOf: chunk[..<n])
        return n
    }

    /// True once the gateway has closed the connection (reads return end of file).
    mutating func waitClosed(timeout: Int) -> Bool {
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        while true {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

/// A TCP listener on 127.0.0.1 that accepts and counts connections (and says nothing).
final class TCPListener: @unchecked Sendable {
    private let fd: Int32
    private let count = Atomic<Int>(0)
    /// The port listened on (the one asked for, or the one the kernel chose for 0).
    let port: Int

    init(port: Int = 0) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 16) == 0 else { throw ClientError("bind 127.0.0.1:\(port): \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = Int(UInt16(bigEndian: addr.sin_port))
        self.fd = fd
        let t = Thread { [self] in
            while true {
                let c = accept(self.fd, nil, nil)
                if c < 0 { return }
                self.count.wrappingAdd(1, ordering: .relaxed)
                Glibc.close(c)
            }
        }
        t.start()
    }

    func accepted() -> Int { count.load(ordering: .relaxed) }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}

/// A TCP server on 127.0.0.1 that reads each connection to its end of file, then writes
/// everything back and closes: only a relay that forwards half-closes gets an answer.
final class EchoAfterEOFServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 16) == 0 else { throw ClientError("bind: \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in
            while true {
                let c = accept(self.fd, nil, nil)
                if c < 0 { return }
                var data: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = chunk.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    data.append(contentsOf: chunk[..<n])
                }
                var off = 0
                while off < data.count {
                    let n = data[off...].withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break }
                    off += n
                }
                Glibc.close(c)
            }
        }
        t.start()
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}

extension UnixClient {
    /// Sends `bytes`, half-closes, and reads until the other side closes.
    func sendAndReadToEOF(_ bytes: [UInt8]) -> [UInt8] {
        guard sendRaw(bytes) else { return [] }
        shutdown(fd, Int32(SHUT_WR))
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: chunk[..<n])
        }
        return out
    }
}
