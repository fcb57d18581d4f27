import AirlockCore

/// The rules for what a policy (or `--allow-host`) may say about the egress gateway: host
/// patterns, ports, methods, paths, pinned addresses, and the credentials it injects.
///
/// As in ``PathRules``, each `…Problem` function returns nil when the value is acceptable,
/// and otherwise one sentence that says what is wrong and what is allowed. The checks are
/// syntactic: the gateway canonicalises hosts and addresses again and decides every
/// connection itself (docs/egress.md).
public enum EgressRules {
    /// What a host pattern is: the four forms an ``EgressRule`` host may take.
    public enum HostPattern: Sendable, Equatable {
        /// `example.com`: exactly that host (lower-cased, without a trailing dot).
        case name(String)
        /// `*.example.com`: any subdomain of the name (lower-cased), never the name itself.
        case subdomains(of: String)
        /// `10.0.0.5`, `::1`: one address (4 or 16 bytes; an IPv4-mapped IPv6 address such as
        /// `::ffff:10.0.0.5` is its IPv4 address, as for the gateway).
        case address([UInt8])
        /// `10.0.0.0/8`: the addresses whose first `prefix` bits are those of `network`.
        case network([UInt8], prefix: Int)
    }

    public static let minimumPort = 1
    public static let maximumPort = 65535
    /// The most requests per minute a budget may name (a larger one is no budget at all).
    public static let maximumRequestsPerMinute = 1_000_000
    /// Headers a secret may not be injected into: hop-by-hop headers (RFC 9110, 7.6.1), the
    /// proxy's own, and those that frame the request.
    public static let refusedInjectionHeaders = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length",
    ]

    static let hostForms =
        "a host is a DNS name (example.com), '*.' and a DNS name for its subdomains (*.example.com), an IP address (10.0.0.5, ::1) or a CIDR block (10.0.0.0/8)"

    // MARK: Hosts

    /// The pattern `text` stands for, or why it is not one.
    public static func parseHostPattern(_ text: String) -> Result<HostPattern, HostPatternProblem> {
        func fail(_ s: String) -> Result<HostPattern, HostPatternProblem> { .failure(HostPatternProblem(message: s)) }
        let shown = text.escapedForMessage
        if text.isEmpty { return fail("host is empty; \(hostForms)") }
        if text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            return fail("'\(shown)' is not a host: it contains a space or a control character; \(hostForms)")
        }
        if text == "*" || text == "*." {
            return fail("'\(shown)' would allow every host; name the hosts or domains, e.g. *.example.com")
        }
        if text.hasPrefix("["), text.hasSuffix("]") {
            return fail("'\(shown)': write an IPv6 address without brackets, e.g. \(text.dropFirst().dropLast()) (quoted in YAML)")
        }
        if let slash = text.firstIndex(of: "/") {
            return parseNetwork(address: text[..<slash], prefix: text[text.index(after: slash)...], text: text)
        }
        if let bytes = ipv4(Substring(text)) ?? ipv6(Substring(text)) { return .success(.address(unmapped(bytes))) }
        if text.contains(":") {
            if text.filter({ $0 == ":" }).count == 1 {
                return fail(
                    "'\(shown)' contains ':'; give ports separately, e.g. {host: \(text.prefix { $0 != ":" }), ports: [\(text.drop { $0 != ":" }.dropFirst())]}"
                )
            }
            return fail("'\(shown)' is not a valid IPv6 address; \(hostForms)")
        }
        if let star = text.firstIndex(of: "*") {
            guard star == text.startIndex, text.hasPrefix("*."), !text.dropFirst().contains("*") else {
                return fail("'\(shown)': a '*' may only stand for the whole first label, as in *.example.com; \(hostForms)")
            }
            let rest = String(text.dropFirst(2))
            if let problem = dnsNameProblem(rest, whole: text) { return fail(problem) }
            return .success(.subdomains(of: canonicalName(rest)))
        }
        if let problem = dnsNameProblem(text, whole: text) { return fail(problem) }
        return .success(.name(canonicalName(text)))
    }

    public struct HostPatternProblem: Error, Sendable, Equatable {
        public var message: String
    }

    /// Why `text` is not a host pattern (``parseHostPattern(_:)``), or nil.
    public static func hostPatternProblem(_ text: String) -> String? {
        if case .failure(let p) = parseHostPattern(text) { return p.message }
        return nil
    }

    /// A host pinned in `network.hosts`: a DNS name, not a pattern or an address.
    public static func pinnedNameProblem(_ text: String) -> String? {
        switch parseHostPattern(text) {
        case .failure(let p): return p.message
        case .success(.name): return nil
        case .success:
            return "'\(text.escapedForMessage)' cannot be pinned: network.hosts maps DNS names (such as upstream.example.com) to addresses"
        }
    }

    /// An address a pinned name resolves to: an IP address, no pattern or block.
    public static func pinnedAddressProblem(_ text: String) -> String? {
        if ipv4(Substring(text)) != nil || ipv6(Substring(text)) != nil { return nil }
        return "'\(text.escapedForMessage)' is not an IP address; network.hosts maps names to IP addresses such as 127.0.0.1 or ::1"
    }

    /// A host a secret is injected into: a DNS name, `*.` pattern or IP address (not a block).
    public static func injectionHostProblem(_ text: String) -> String? {
        switch parseHostPattern(text) {
        case .failure(let p): return p.message
        case .success(.network):
            return "'\(text.escapedForMessage)' is an address block; a secret is injected into named hosts (api.example.com, *.example.com) or one IP address"
        case .success: return nil
        }
    }

    static func canonicalName(_ s: String) -> String {
        var lower = s.lowercased()
        if lower.hasSuffix(".") { lower.removeLast() }
        return lower
    }

    /// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63 characters that do not
    /// start or end with `-`; at most 253 characters; an optional trailing dot; the last label
    /// not starting with a digit (that would be a mistyped address, or one in a spelling such
    /// as `127.1` that programs read differently).
    static func dnsNameProblem(_ name: String, whole: String) -> String? {
        let shown = whole.escapedForMessage
        let rule = "a host name is made of labels of letters, digits and '-' separated by dots, such as api.example.com"
        if name.unicodeScalars.contains(where: { !$0.isASCII }) {
            return "'\(shown)' is not ASCII; write an internationalized name in its ASCII (punycode) form, e.g. xn--bcher-kva.example"
        }
        var body = Substring(name)
        if body.hasSuffix(".") { body = body.dropLast() }
        let labels = body.split(separator: ".", omittingEmptySubsequences: false)
        if body.isEmpty || labels.contains(where: \.isEmpty) { return "'\(shown)' has an empty label; \(rule)" }
        if body.utf8.count > 253 { return "'\(shown)' is longer than 253 characters, the longest a host name can be" }
        for label in labels {
            if label.utf8.count > 63 { return "'\(shown)' has a label longer than 63 characters; \(rule)" }
            let ok = label.unicodeScalars.allSatisfy { c in
                (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "-" || c == "_"
            }
            if !ok { return "'\(shown)' is not a valid host name; \(rule)" }
            if label.hasPrefix("-") || label.hasSuffix("-") {
                return "'\(shown)' has a label that starts or ends with '-'; \(rule)"
            }
        }
        if let first = labels.last?.unicodeScalars.first, first >= "0" && first <= "9" {
            return
                "'\(shown)' is not a valid IP address (write IPv4 addresses as four numbers, e.g. 10.0.0.5), and a host name's last label cannot start with a digit; \(hostForms)"
        }
        return nil
    }

    static func parseNetwork(address: Substring, prefix: Substring, text: String) -> Result<HostPattern, HostPatternProblem> {
        func fail(_ s: String) -> Result<HostPattern, HostPatternProblem> { .failure(HostPatternProblem(message: s)) }
        let shown = text.escapedForMessage
        guard let bytes = ipv4(address) ?? ipv6(address) else {
            return fail("'\(shown)' is not a CIDR block: '\(address)' is not an IP address; write e.g. 10.0.0.0/8 or fd00::/8")
        }
        let bits = bytes.count * 8
        guard !prefix.isEmpty, prefix.utf8.count <= 3, prefix.allSatisfy(\.isASCII), prefix.allSatisfy(\.isNumber),
            let n = Int(prefix), n <= bits
        else {
            return fail("'\(shown)' is not a CIDR block: the prefix length must be a number from 1 to \(bits)")
        }
        if n == 0 { return fail("'\(shown)' would allow every address; name the networks, e.g. 10.0.0.0/8") }
        let masked = mask(bytes, prefix: n)
        if masked != bytes {
            return fail("'\(shown)' has address bits set after the /\(n) prefix; write \(format(masked))/\(n)")
        }
        if bytes.count == 16, n >= 96, unmapped(bytes).count == 4 { return .success(.network(unmapped(bytes), prefix: n - 96)) }
        return .success(.network(bytes, prefix: n))
    }

    /// The IPv4 address of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`); other addresses unchanged.
    static func unmapped(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF else { return bytes }
        return Array(bytes[12...])
    }

    static func mask(_ bytes: [UInt8], prefix: Int) -> [UInt8] {
        bytes.enumerated().map { i, b in
            let keep = max(0, min(8, prefix - i * 8))
            return keep == 8 ? b : b & ~(UInt8(0xFF) >> keep)
        }
    }

    /// An address in its usual text form (IPv6 without zero compression; used in messages only).
    static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        var groups: [String] = []
        for i in stride(from: 0, to: bytes.count, by: 2) { groups.append(String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16)) }
        return groups.joined(separator: ":")
    }

    /// Strict dotted-decimal IPv4: four numbers 0–255 without leading zeros.
    static func ipv4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard (1...3).contains(p.utf8.count), p.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                p.utf8.count == 1 || p.utf8.first != 48, let v = UInt8(p)
            else { return nil }
            out.append(v)
        }
        return out
    }

    /// RFC 4291 text form: eight groups of 1–4 hex digits, one `::` for a run of zero groups,
    /// an optional dotted IPv4 address as the last 32 bits. No zone (`%eth0`).
    static func ipv6(_ s: Substring) -> [UInt8]? {
        guard s.contains(":"), s.utf8.count <= 45 else { return nil }
        func groups(_ part: Substring, allowIPv4: Bool) -> [UInt8]? {
            if part.isEmpty { return [] }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var out: [UInt8] = []
            for (i, f) in fields.enumerated() {
                if allowIPv4, i == fields.count - 1, f.contains(".") {
                    guard let v4 = ipv4(f) else { return nil }
                    out += v4
                    continue
                }
                guard (1...4).contains(f.utf8.count), let v = UInt16(f, radix: 16), f.allSatisfy(\.isHexDigit) else { return nil }
                out += [UInt8(v >> 8), UInt8(v & 0xFF)]
            }
            return out
        }
        let halves = split(s, on: "::")
        switch halves.count {
        case 1:
            guard let all = groups(s, allowIPv4: true), all.count == 16 else { return nil }
            return all
        case 2:
            guard let head = groups(halves[0], allowIPv4: false), let tail = groups(halves[1], allowIPv4: true),
                head.count + tail.count <= 14
            else { return nil }
            return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
        default:
            return nil
        }
    }

    /// `s` cut at each (non-overlapping, leftmost-first) occurrence of `separator`.
    static func split(_ s: Substring, on separator: String) -> [Substring] {
        let sep = Array(separator.utf8)
        let bytes = Array(s.utf8)
        var parts: [Substring] = []
        var start = 0
        var i = 0
        while i + sep.count <= bytes.count {
            if Array(bytes[i..<(i + sep.count)]) == sep {
                parts.append(Substring(String(decoding: bytes[start..<i], as: UTF8.self)))
                i += sep.count
                start = i
            } else {
                i += 1
            }
        }
        parts.append(Substring(String(decoding: bytes[start...], as: UTF8.self)))
        return parts
    }

    // MARK: Coverage

    /// Whether every host `inner` matches is matched by `outer` too: `*.example.com` covers
    /// `api.example.com` and `*.eu.example.com` (never `example.com`); a block covers the
    /// addresses and smaller blocks inside it. Names and addresses never cover each other.
    public static func covers(_ outer: HostPattern, _ inner: HostPattern) -> Bool {
        switch (outer, inner) {
        case (.name(let a), .name(let b)): return a == b
        case (.subdomains(let d), .name(let n)), (.subdomains(let d), .subdomains(let n)):
            if case .subdomains = inner, n == d { return true }
            return n.hasSuffix("." + d)
        case (.address(let a), .address(let b)): return a == b
        case (.network(let net, let p), .address(let b)):
            return net.count == b.count && mask(b, prefix: p) == net
        case (.network(let net, let p), .network(let other, let q)):
            return net.count == other.count && q >= p && mask(other, prefix: p) == net
        default: return false
        }
    }

    /// ``covers(_:_:)`` for patterns as written; false when either is not a pattern.
    public static func covers(_ outer: String, _ inner: String) -> Bool {
        guard case .success(let o) = parseHostPattern(outer), case .success(let i) = parseHostPattern(inner) else { return false }
        return covers(o, i)
    }

    // MARK: Ports, methods, paths

    public static func portProblem(_ port: Int) -> String? {
        (minimumPort...maximumPort).contains(port) ? nil : "port \(port) is out of range; ports are \(minimumPort) to \(maximumPort)"
    }

    /// HTTP methods are tokens (RFC 9110, 5.6.2); rules hold them upper-cased.
    public static func methodProblem(_ method: String) -> String? {
        if !method.isEmpty, method.unicodeScalars.allSatisfy(isTokenCharacter) { return nil }
        return "'\(method.escapedForMessage)' is not an HTTP method; write methods such as GET, POST, PUT, PATCH, DELETE"
    }

    /// A path pattern: starts with `/`, no spaces, control characters, query or fragment.
    public static func pathProblem(_ path: String) -> String? {
        let rule = "paths are URL paths starting with '/', such as /repos/acme/* ('*' within a segment, '**' across segments)"
        if !path.hasPrefix("/") { return "path '\(path.escapedForMessage)' does not start with '/'; \(rule)" }
        if path.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            return "path '\(path.escapedForMessage)' contains a space or a control character; \(rule)"
        }
        if path.contains("?") || path.contains("#") {
            return "path '\(path.escapedForMessage)' contains '?' or '#'; rules match the path alone, without query or fragment; \(rule)"
        }
        return nil
    }

    static func isTokenCharacter(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || "!#$%&'*+-.^_`|~".unicodeScalars.contains(c)
    }

    /// Whether a rule on these ports can carry HTTPS (and so needs `inspect_tls` for its
    /// methods and paths to be seen): port 443, or no ports given (80 and 443 for an allow
    /// rule, every port for a deny rule).
    static func carriesHTTPS(_ ports: [Int]?) -> Bool {
        ports?.contains(443) ?? true
    }

    /// Every problem of a rule (``EgressRule/methods`` are expected upper-cased).
    public static func ruleProblems(_ rule: EgressRule) -> [String] {
        var out: [String] = []
        if let p = hostPatternProblem(rule.host) { out.append(p) }
        if let ports = rule.ports {
            if ports.isEmpty { out.append("\(rule.host): ports is empty; leave it out for ports 80 and 443") }
            out += ports.compactMap(portProblem)
        }
        if let methods = rule.methods {
            if methods.isEmpty { out.append("\(rule.host): methods is empty; leave it out for any method") }
            out += methods.compactMap(methodProblem)
            if methods.contains(where: { $0 != $0.uppercased() }) { out.append("\(rule.host): methods must be upper case") }
        }
        if let paths = rule.paths {
            if paths.isEmpty { out.append("\(rule.host): paths is empty; leave it out for any path") }
            out += paths.compactMap(pathProblem)
        }
        return out
    }

    // MARK: Secrets

    /// Variables Airlock sets in a proxied sandbox (``EgressEnvironment``) or in every sandbox:
    /// a secret may not take their name.
    static var airlockVariables: [String] {
        PathRules.sandboxOwnedVariables + EgressEnvironment.proxyVariableNames + EgressEnvironment.caVariableNames
    }

    public static func secretNameProblem(_ name: String) -> String? {
        if !PathRules.isValidEnvironmentName(name) {
            return
                "secret name '\(name.escapedForMessage)' is not a valid environment variable name; names use ASCII letters, digits and '_' and do not start with a digit"
        }
        if airlockVariables.contains(name) {
            return "secret name '\(name)' is a variable Airlock sets inside the sandbox; choose another name"
        }
        return nil
    }

    /// `env:NAME` (a variable of airlock's own environment) or `file:/absolute/path`.
    public static func secretSourceProblem(_ source: String) -> String? {
        let rule = "'from' is env:NAME (a variable of airlock's environment) or file:/absolute/path (its first line)"
        if source.hasPrefix("env:") {
            let name = String(source.dropFirst(4))
            if PathRules.isValidEnvironmentName(name) { return nil }
            return "from '\(source.escapedForMessage)': '\(name.escapedForMessage)' is not a valid environment variable name; \(rule)"
        }
        if source.hasPrefix("file:") {
            let path = source.dropFirst(5)
            if !path.hasPrefix("/") { return "from '\(source.escapedForMessage)': the path is not absolute; \(rule)" }
            if PathRules.hasControlCharacter(String(path)) {
                return "from '\(source.escapedForMessage)': the path contains a control character; \(rule)"
            }
            return nil
        }
        return "from '\(source.escapedForMessage)' names no source; \(rule)"
    }

    /// A header name: an HTTP token that is not hop-by-hop, `Host` or `Content-Length`.
    public static func injectionHeaderProblem(_ header: String) -> String? {
        if header.isEmpty || !header.unicodeScalars.allSatisfy(isTokenCharacter) {
            return "header '\(header.escapedForMessage)' is not an HTTP header name; write a name such as Authorization or X-Api-Key"
        }
        if refusedInjectionHeaders.contains(header.lowercased()) {
            return
                "header '\(header)' cannot carry a secret: it is hop-by-hop or frames the request; refused headers: \(refusedInjectionHeaders.joined(separator: ", "))"
        }
        return nil
    }

    /// The header value: exactly one `{}` (the secret), no control characters.
    public static func injectionFormatProblem(_ format: String) -> String? {
        if format.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "format '\(format.escapedForMessage)' contains a control character, which no header value may hold"
        }
        let count = split(Substring(format), on: "{}").count - 1
        if count != 1 {
            return
                "format '\(format.escapedForMessage)' has \(count == 0 ? "no" : "\(count)") '{}'; it needs exactly one, where the secret goes, e.g. \"Bearer {}\""
        }
        return nil
    }

    public static func bindingProblems(_ b: SecretBinding) -> [String] {
        var out: [String] = []
        if let p = secretNameProblem(b.name) { out.append(p) }
        if let p = secretSourceProblem(b.source) { out.append("secret '\(b.name)': \(p)") }
        if let inject = b.inject {
            if let p = injectionHostProblem(inject.host) { out.append("secret '\(b.name)': inject.host: \(p)") }
            if let p = injectionHeaderProblem(inject.header) { out.append("secret '\(b.name)': inject.header: \(p)") }
            if let p = injectionFormatProblem(inject.format) { out.append("secret '\(b.name)': inject.format: \(p)") }
        }
        return out
    }
}

/// What a secret bound with `inject` looks like inside the sandbox: the gateway replaces
/// this value (in the bound header) with the real one, on requests to the bound host.
public enum Placeholder {
    public static let prefix = "airlock-placeholder-"

    /// `airlock-placeholder-<NAME>`: deterministic, so the gateway and the sandbox agree
    /// without sharing anything, and recognisable in a log.
    public static func value(for name: String) -> String { prefix + name }
}

/// The environment a proxied sandbox gets, so that ordinary tools use the egress gateway
/// and trust its CA (docs/policy.md, "Network").
public enum EgressEnvironment {
    /// The CA certificate of the sandbox (PEM), written by the gateway at run time.
    public static let caCertificatePath = "/run/airlock/ca.pem"
    /// The system's trusted roots plus the sandbox CA (PEM), written by the gateway at run time.
    public static let caBundlePath = "/run/airlock/ca-bundle.pem"
    /// Hosts the sandbox reaches without the proxy: its own loopback.
    public static let noProxy = "localhost,127.0.0.1,::1"

    public static let proxyVariableNames = [
        "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
    ]
    public static let caVariableNames = [
        "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS", "AIRLOCK_CA_CERT",
    ]

    /// The proxy variables for a gateway on `127.0.0.1:<port>`.
    public static func proxyVariables(port: Int) -> [EnvironmentVariable] {
        let url = "http://127.0.0.1:\(port)"
        return ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"].map { EnvironmentVariable($0, url) }
            + [EnvironmentVariable("NO_PROXY", noProxy), EnvironmentVariable("no_proxy", noProxy)]
    }

    /// The trust variables for a sandbox whose HTTPS the gateway inspects.
    public static let caVariables: [EnvironmentVariable] =
        ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"].map { EnvironmentVariable($0, caBundlePath) }
        + [EnvironmentVariable("NODE_EXTRA_CA_CERTS", caCertificatePath), EnvironmentVariable("AIRLOCK_CA_CERT", caCertificatePath)]
}
