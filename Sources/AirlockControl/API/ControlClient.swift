import AirlockCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 client for the control API over its Unix socket or plain TCP (loopback):
/// what `airlock kill` and the tests use. One request per connection.
public struct ControlClient: Sendable {
    public enum Endpoint: Sendable {
        case unix(String)
        case tcp(host: String, port: Int)
    }

    public let endpoint: Endpoint
    public let token: String?

    public init(socket: String, token: String? = nil) {
        endpoint = .unix(socket)
        self.token = token
    }

    public init(host: String, port: Int, token: String? = nil) {
        endpoint = .tcp(host: host, port: port)
        self.token = token
    }

    public struct Reply: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        public var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] }
    }

    /// Sends one request on a connection of its own and reads the whole reply (chunked
    /// bodies are decoded).
    public func request(
        _ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json",
        headers extra: [(String, String)] = [], timeout: Double = 60
    ) throws(AirlockError) -> Reply {
        let fd = try connect()
        defer { close(fd) }
        Self.setTimeout(fd, timeout)
        let werr = Self.send(fd, message(method, path, body: body, contentType: contentType, headers: extra, keepAlive: false))
        guard werr == 0 else { throw systemError("write", werr, "cannot send the request to the airlock daemon") }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { throw systemError("read", errno, "no reply from the airlock daemon") }
            if n == 0 { break }
            data += buf[0..<n]
        }
        return try Self.parse(data)
    }

    /// A keep-alive connection: requests one after another on one socket, as an HTTP
    /// client library does. Used by one thread at a time.
    public func connection() -> Connection { Connection(self) }

    public final class Connection {
        let client: ControlClient
        private var fd: Int32 = -1

        init(_ client: ControlClient) { self.client = client }
        deinit { if fd >= 0 { close(fd) } }

        /// Sends one request; a connection the daemon closed while idle is replaced once,
        /// and only when not a byte of the reply had arrived (so nothing is sent twice that
        /// the daemon had started to answer). A daemon closes an idle connection without
        /// reading what raced the close, so the one request sent twice would be one the
        /// daemon read and then died on before answering.
        public func request(
            _ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json",
            headers extra: [(String, String)] = [], timeout: Double = 60
        ) throws(AirlockError) -> Reply {
            let reused = fd >= 0
            if !reused { fd = try client.connect() }
            ControlClient.setTimeout(fd, timeout)
            let out = client.message(method, path, body: body, contentType: contentType, headers: extra, keepAlive: true)
            let werr = ControlClient.send(fd, out)
            var data: [UInt8] = []
            if werr == 0 { data = try readReply() }
            if data.isEmpty {
                close(fd)
                fd = -1
                guard reused else {
                    throw werr != 0 ? systemError("write", werr, "cannot send the request to the airlock daemon")
                        : AirlockError(.system, "the airlock daemon closed the connection without answering")
                }
                return try request(method, path, body: body, contentType: contentType, headers: extra, timeout: timeout)
            }
            let reply = try ControlClient.parse(data)
            if reply.headers["connection"]?.lowercased() == "close" {
                close(fd)
                fd = -1
            }
            return reply
        }

        /// Reads exactly one reply (Content-Length or chunked); empty if the daemon closed
        /// the connection before answering.
        private func readReply() throws(AirlockError) -> [UInt8] {
            var data: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                if let end = ControlClient.messageEnd(data) {
                    guard end == data.count else { throw AirlockError(.system, "the airlock daemon sent more than one reply") }
                    return data
                }
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                // A closed idle connection reads as EOF, or as a reset when the request was
                // still unread in the daemon's socket.
                if n < 0, errno == ECONNRESET, data.isEmpty { return [] }
                if n < 0 { throw systemError("read", errno, "no reply from the airlock daemon") }
                if n == 0 {
                    guard data.isEmpty else { throw AirlockError(.system, "the airlock daemon closed the connection in the middle of its reply") }
                    return []
                }
                data += buf[0..<n]
            }
        }
    }

    /// Writes all of `bytes`; a daemon that went away is EPIPE, never SIGPIPE. Returns 0 or
    /// an errno.
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return n < 0 ? errno : EIO }
            off += n
        }
        return 0
    }

    static func setTimeout(_ fd: Int32, _ timeout: Double) {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func message(_ method: String, _ path: String, body: [UInt8]?, contentType: String, headers extra: [(String, String)], keepAlive: Bool) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: airlock\r\n"
        if !keepAlive { head += "Connection: close\r\n" }
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        for (k, v) in extra { head += "\(k): \(v)\r\n" }
        if let body {
            head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        var out = Array(head.utf8)
        if let body { out += body }
        return out
    }

    /// Where the first complete HTTP reply in `data` ends, if it is complete.
    static func messageEnd(_ data: [UInt8]) -> Int? {
        guard let end = headerEnd(data) else { return nil }
        let head = String(decoding: data[..<end], as: UTF8.self).lowercased()
        let start = end + 4
        var length: Int?
        var chunked = false
        for line in head.split(separator: "\r\n") {
            if line.hasPrefix("content-length:") { length = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) }
            if line.hasPrefix("transfer-encoding:"), line.contains("chunked") { chunked = true }
        }
        if let length { return data.count >= start + length ? start + length : nil }
        guard chunked else { return data.count }  // no framing: the body ends with the connection
        var i = start
        while true {
            guard let crlf = (i..<max(i, data.count - 1)).first(where: { data[$0] == 13 && data[$0 + 1] == 10 }) else { return nil }
            let sizeText = String(decoding: data[i..<crlf], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return data.count }
            let next = crlf + 2 + size + 2
            if size == 0 { return data.count >= crlf + 4 ? crlf + 4 : nil }
            guard next <= data.count else { return nil }
            i = next
        }
    }

    static func headerEnd(_ data: [UInt8]) -> Int? {
        let sep: [UInt8] = [13, 10, 13, 10]
        return data.indices.dropLast(3).first(where: { data[$0..<($0 + 4)].elementsEqual(sep) })
    }

    static func parse(_ data: [UInt8]) throws(AirlockError) -> Reply {
        guard let end = headerEnd(data) else {
            throw AirlockError(.system, "the airlock daemon's reply is not HTTP")
        }
        let lines = String(decoding: data[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw AirlockError(.system, "the airlock daemon's reply has no status") }
        var headers: [String: String] = [:]
        for l in lines.dropFirst() {
            guard let c = l.firstIndex(of: ":") else { continue }
            headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(data[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" { body = dechunk(body) }
        return Reply(status: status, headers: headers, body: body)
    }

    static func dechunk(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            guard let crlf = (i..<(b.count - 1)).first(where: { b[$0] == 13 && b[$0 + 1] == 10 }) else { break }
            let sizeText = String(decoding: b[i..<crlf], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { break }
            if size == 0 { break }
            let start = crlf + 2
            guard start + size <= b.count else { out += b[start...]; break }
            out += b[start..<(start + size)]
            i = start + size + 2
        }
        return out
    }

    func connect() throws(AirlockError) -> Int32 {
        switch endpoint {
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw systemError("socket", errno, "cannot create a socket") }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); throw AirlockError(.usage, "socket path too long: \(path)") }
            withUnsafeMutableBytes(of: &addr.sun_path) { p in
                for (i, b) in bytes.enumerated() { p[i] = b }
                p[bytes.count] = 0
            }
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard rc == 0 else {
                let e = errno
                close(fd)
                throw AirlockError(.system, "cannot reach the airlock daemon on \(path) (is `airlock serve` running?)", cause: errnoDescription(e))
            }
            return fd
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else {
                throw AirlockError(.system, "cannot resolve \(host)")
            }
            defer { freeaddrinfo(res) }
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw systemError("socket", errno, "cannot create a socket") }
            guard Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
                let e = errno
                close(fd)
                throw AirlockError(.system, "cannot reach the airlock daemon at \(host):\(port)", cause: errnoDescription(e))
            }
            return fd
        }
    }
}
