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
        try Connection(self, keepAlive: false).request(method, path, body: body, contentType: contentType, headers: extra, timeout: timeout)
    }

    /// A keep-alive connection: requests one after another on one socket, as an HTTP
    /// client library does. Used by one thread at a time.
    public func connection() -> Connection { Connection(self, keepAlive: true) }

    public final class Connection {
        let client: ControlClient
        let keepAlive: Bool
        private var fd: Int32 = -1

        init(_ client: ControlClient, keepAlive: Bool) {
            self.client = client
            self.keepAlive = keepAlive
        }
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
            let out = client.message(method, path, body: body, contentType: contentType, headers: extra, keepAlive: keepAlive)
            let werr = POSIXIO.sendAll(fd, out)
            var data: [UInt8] = []
            var closed = false
            if werr == 0 { (data, closed) = try readReply() }
            if data.isEmpty {
                drop()
                guard reused else {
                    throw werr != 0 ? systemError("write", werr, "cannot send the request to the airlock daemon (is it shutting down?)")
                        : AirlockError(.system, "the airlock daemon closed the connection without answering; see its log")
                }
                return try request(method, path, body: body, contentType: contentType, headers: extra, timeout: timeout)
            }
            let reply = try ControlClient.parse(data)
            if closed || !keepAlive || reply.headers["connection"]?.lowercased() == "close" { drop() }
            return reply
        }

        private func drop() {
            close(fd)
            fd = -1
        }

        /// Reads exactly one reply: framed by Content-Length or chunks, or — neither — up to
        /// the end of the connection (`closed`). Empty if the daemon closed the connection
        /// before answering.
        private func readReply() throws(AirlockError) -> (data: [UInt8], closed: Bool) {
            var data: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                if let end = ControlClient.messageEnd(data) {
                    guard end == data.count else { throw AirlockError(.system, "the airlock daemon sent more than it announced in its reply; is another server listening on its socket?") }
                    return (data, false)
                }
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                // A closed idle connection reads as EOF, or as a reset when the request was
                // still unread in the daemon's socket.
                if n < 0, errno == ECONNRESET, data.isEmpty { return ([], true) }
                if n < 0 { throw systemError("read", errno, "no reply from the airlock daemon") }
                if n == 0 {
                    if data.isEmpty { return ([], true) }
                    guard ControlClient.headerEnd(data) != nil, ControlClient.framing(data).unframed else {
                        throw AirlockError(.system, "the airlock daemon closed the connection in the middle of its reply; see its log")
                    }
                    return (data, true)
                }
                data += buf[0..<n]
            }
        }
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

    /// How a reply's body is delimited: its length, chunks, or — unframed — the end of the
    /// connection. 1xx, 204 and 304 replies have no body at all.
    static func framing(_ data: [UInt8]) -> (length: Int?, chunked: Bool, unframed: Bool) {
        guard let end = headerEnd(data) else { return (nil, false, false) }
        let lines = String(decoding: data[..<end], as: UTF8.self).lowercased().split(separator: "\r\n")
        let status = lines.first.flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } } ?? 0
        var length: Int?
        var chunked = false
        for line in lines.dropFirst() {
            if line.hasPrefix("content-length:") { length = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) }
            if line.hasPrefix("transfer-encoding:"), line.contains("chunked") { chunked = true }
        }
        if status / 100 == 1 || status == 204 || status == 304 { length = 0 }
        return (length, chunked, length == nil && !chunked)
    }

    /// Where the first complete HTTP reply in `data` ends, if it is complete (an unframed one
    /// is complete only when the connection ends).
    static func messageEnd(_ data: [UInt8]) -> Int? {
        guard let end = headerEnd(data) else { return nil }
        let start = end + 4
        let f = framing(data)
        if let length = f.length { return data.count >= start + length ? start + length : nil }
        guard f.chunked else { return nil }
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
