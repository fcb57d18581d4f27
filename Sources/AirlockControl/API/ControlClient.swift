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

    /// Sends one request and reads the whole reply (chunked bodies are decoded).
    public func request(
        _ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json",
        headers extra: [(String, String)] = [], timeout: Double = 60
    ) throws(AirlockError) -> Reply {
        let fd = try connect()
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var head = "\(method) \(path) HTTP/1.1\r\nHost: airlock\r\nConnection: close\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        for (k, v) in extra { head += "\(k): \(v)\r\n" }
        if let body {
            head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        var out = Array(head.utf8)
        if let body { out += body }
        let werr = POSIXIO.writeAll(fd, out)
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

    static func parse(_ data: [UInt8]) throws(AirlockError) -> Reply {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let end = data.indices.dropLast(3).first(where: { data[$0..<($0 + 4)].elementsEqual(sep) }) else {
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

    private func connect() throws(AirlockError) -> Int32 {
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
