import NIOHTTP1

/// Where a request goes, read from its request line (RFC 9112 §3.2): absolute-form
/// `http://host[:port]/path?query` at the proxy, origin-form `/path?query` inside an
/// inspected tunnel (whose `Host` header must name the tunnel's host).
struct RequestTarget {
    var host: HostName
    var port: Int
    /// The path, without query or fragment, as the rules see it.
    var path: String
    /// What is sent upstream: path and query.
    var originForm: String
    /// The `Host` header sent upstream.
    var authority: String

    init(_ head: HTTPRequestHead, origin: TunnelOrigin?) throws(Refusal) {
        let uri = head.uri
        if let origin {
            var rest = Substring(uri)
            if let scheme = Self.scheme(uri) {
                guard scheme == "https" else { throw Refusal(status: .badRequest, reason: "a request inside a TLS tunnel must be https") }
                rest = rest.dropFirst(scheme.count + 3)
                let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
                let (h, p) = try Self.authority(String(rest[..<end]), defaultPort: 443)
                guard h == origin.host, p == origin.port else {
                    throw Refusal(status: .forbidden, reason: "request for \(h) inside a tunnel to \(origin.host)", rule: nil)
                }
                rest = rest[end...]
            }
            guard rest.first == "/" else { throw Refusal(status: .badRequest, reason: "malformed request target \(Self.printable(uri))") }
            if let hostHeader = head.headers.first(name: "Host") {
                let (h, p) = try Self.authority(hostHeader, defaultPort: origin.port)
                guard h == origin.host, p == origin.port else {
                    throw Refusal(
                        status: .forbidden,
                        reason: "Host header \(Self.printable(hostHeader)) does not match the tunnel's host \(origin.host):\(origin.port)")
                }
            }
            host = origin.host
            port = origin.port
            (path, originForm) = Self.split(rest)
            authority = Self.hostHeader(host, port: port, defaultPort: 443)
            return
        }
        guard let scheme = Self.scheme(uri) else {
            throw Refusal(
                status: .badRequest,
                reason: "this is the egress proxy: requests must be absolute-form (GET http://host/path) or CONNECT host:port",
                hint: "set HTTP_PROXY/HTTPS_PROXY to this address rather than sending requests to it directly")
        }
        guard scheme == "http" else {
            throw Refusal(status: .badRequest, reason: "\(scheme):// through a plain proxy request; use CONNECT for https")
        }
        var rest = Substring(uri).dropFirst(scheme.count + 3)
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let auth = String(rest[..<end])
        (host, port) = try Self.authority(auth, defaultPort: 80)
        rest = rest[end...]
        if rest.first == "#" { rest = rest[rest.endIndex...] }
        if rest.isEmpty { rest = "/" } else if rest.first == "?" { rest = "/" + rest }
        (path, originForm) = Self.split(rest)
        authority = Self.hostHeader(host, port: port, defaultPort: 80)
    }

    /// `host:port` (CONNECT) or `host[:port]` (URLs and Host headers). User info is refused
    /// (it hides the real host from a naive reader: `http://good.com@evil.com/`).
    static func authority(_ raw: String, defaultPort: Int?) throws(Refusal) -> (HostName, Int) {
        guard !raw.isEmpty else { throw Refusal(status: .badRequest, reason: "no host in the request target") }
        guard !raw.contains("@") else {
            throw Refusal(status: .badRequest, reason: "user info in \(printable(raw)) is refused: it hides the real destination")
        }
        var hostPart: Substring
        var portPart: Substring?
        if raw.hasPrefix("[") {
            guard let close = raw.firstIndex(of: "]") else { throw Refusal(status: .badRequest, reason: "unclosed [ in \(printable(raw))") }
            hostPart = raw[raw.startIndex...close]
            let after = raw[raw.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw Refusal(status: .badRequest, reason: "malformed authority \(printable(raw))") }
                portPart = after.dropFirst()
            }
        } else if let colon = raw.lastIndex(of: ":") {
            hostPart = raw[..<colon]
            portPart = raw[raw.index(after: colon)...]
        } else {
            hostPart = Substring(raw)
        }
        let port: Int
        if let portPart {
            guard !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy({ $0.isASCII && $0.isNumber }), let p = Int(portPart),
                (1...65535).contains(p)
            else { throw Refusal(status: .badRequest, reason: "invalid port in \(printable(raw))") }
            port = p
        } else if let defaultPort {
            port = defaultPort
        } else {
            throw Refusal(status: .badRequest, reason: "CONNECT needs host:port, got \(printable(raw))")
        }
        let host: HostName
        do { host = try HostName.parse(String(hostPart)) } catch {
            throw Refusal(status: .badRequest, reason: "invalid host \(printable(String(hostPart))): \(error.message)")
        }
        return (host, port)
    }

    private static func scheme(_ uri: String) -> String? {
        guard let r = uri.range(of: "://") else { return nil }
        let s = uri[..<r.lowerBound]
        guard !s.isEmpty, s.count <= 10, s.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "+") }) else { return nil }
        return s.lowercased()
    }

    private static func split(_ rest: Substring) -> (path: String, originForm: String) {
        var r = rest
        if let hash = r.firstIndex(of: "#") { r = r[..<hash] }
        let path = r.firstIndex(of: "?").map { String(r[..<$0]) } ?? String(r)
        return (path, String(r))
    }

    private static func hostHeader(_ host: HostName, port: Int, defaultPort: Int) -> String {
        port == defaultPort ? host.uriHost : "\(host.uriHost):\(port)"
    }

    /// For messages: printable ASCII only, at most 200 characters.
    static func printable(_ s: String) -> String {
        let clean = String(String.UnicodeScalarView(s.unicodeScalars.prefix(200).map { $0.value >= 0x20 && $0.value < 0x7f ? $0 : "?" }))
        return s.unicodeScalars.count > 200 ? clean + "…" : clean
    }
}
