import AirlockCore

/// A destination host as a client wrote it, canonicalised: lower case, without a trailing
/// dot, an IP literal parsed to its address (so `0x7f.1` and `[::ffff:127.0.0.1]` are
/// addresses, never names).
public enum HostName: Sendable, Hashable, CustomStringConvertible {
    /// A DNS name: labels of 1 to 63 characters `a-z 0-9 - _`, at most 253 characters in
    /// all, its last label not starting with a digit.
    case name(String)
    case address(IPAddress)

    /// The longest host name DNS can carry (without the trailing dot).
    public static let maximumLength = 253

    /// Parses a host as written in a URL, a `Host` header, a CONNECT target (without its
    /// port) or a TLS server name.
    ///
    /// - An IP literal in any spelling `IPAddress(literal:)` accepts, IPv6 with or without
    ///   brackets, becomes `.address`.
    /// - Anything else must be an ASCII DNS name (IDNA names in their `xn--` form); it is
    ///   lower-cased and one trailing dot is removed.
    /// - A name whose last label starts with a digit (`1.2.3.4.5`, `0x1g`, `127.0.0.256`)
    ///   is refused: it is no top-level domain, and a client library might read it as an
    ///   address some other way.
    public static func parse(_ raw: String) throws(AirlockError) -> HostName {
        var bytes = raw
        switch bytes.withUTF8(classify) {
        case .address(let a): return .address(a)
        case .name(let canonical): return .name(canonical ?? raw)
        case .problem(let problem): throw refusal(raw, problem)
        }
    }

    private enum Outcome {
        case address(IPAddress)
        /// nil: the input is already canonical.
        case name(String?)
        case problem(String)
    }

    private static func classify(_ b: UnsafeBufferPointer<UInt8>) -> Outcome {
        guard !b.isEmpty else { return .problem("the host is empty") }
        var upper = false
        var ipv6 = false
        for c in b {
            if c >= 0x80 {
                return .problem("host names must be ASCII; write an international name in its IDNA form (xn--…)")
            }
            if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") {
                upper = true
            } else if c == UInt8(ascii: "[") || c == UInt8(ascii: ":") || c == UInt8(ascii: "%") {
                ipv6 = true
            }
        }
        if ipv6 {
            guard let address = IPAddress.parse(b), !address.isIPv4 else {
                return .problem("it is not a valid IPv6 address (write a host without its port)")
            }
            return .address(address)
        }
        let end = b[b.count - 1] == UInt8(ascii: ".") ? b.count - 1 : b.count
        let text = UnsafeBufferPointer(rebasing: b[..<end])
        var lastLabel = end
        while lastLabel > 0, text[lastLabel - 1] != UInt8(ascii: ".") { lastLabel -= 1 }
        if lastLabel < end, IPAddress.isDigit(text[lastLabel]), let v4 = IPAddress.parseInetAton(text) {
            return .address(.v4(v4))
        }
        if let problem = nameProblem(text) { return .problem(problem) }
        if !upper, end == b.count { return .name(nil) }
        return .name(String(decoding: text.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 | 0x20 : $0 }, as: UTF8.self))
    }

    /// Why `text` is not an acceptable DNS name, or nil.
    static func nameProblem(_ text: UnsafeBufferPointer<UInt8>) -> String? {
        guard !text.isEmpty else { return "the host is empty" }
        guard text.count <= maximumLength else { return "host names are at most \(maximumLength) characters" }
        var labelStart = 0
        var lastLabelStart = 0
        for i in 0...text.count {
            guard i < text.count, text[i] != UInt8(ascii: ".") else {
                let length = i - labelStart
                if length == 0 { return "it has an empty label (two dots in a row, or a leading dot)" }
                if length > 63 { return "a label is longer than 63 characters" }
                lastLabelStart = labelStart
                labelStart = i + 1
                continue
            }
            let c = text[i] | 0x20
            let ok =
                (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || IPAddress.isDigit(text[i]) || text[i] == UInt8(ascii: "-")
                || text[i] == UInt8(ascii: "_")
            if !ok {
                let shown = printable(String(Character(Unicode.Scalar(text[i]))))
                return "'\(shown)' may not appear in a host name (letters, digits, '-', '_' and '.' only)"
            }
        }
        if IPAddress.isDigit(text[lastLabelStart]) {
            return "it looks like an IP address but is not a valid one, and a name's last label cannot start with a digit"
        }
        return nil
    }

    private static func refusal(_ raw: String, _ problem: String) -> AirlockError {
        AirlockError(.denied, "invalid host '\(printable(raw))': \(problem)")
    }

    /// `raw` safe to print in a message: at most 100 characters, control and non-ASCII
    /// characters escaped.
    static func printable(_ raw: String) -> String {
        var out = ""
        for scalar in raw.unicodeScalars.prefix(100) {
            if scalar.value >= 0x20, scalar.value < 0x7f { out.unicodeScalars.append(scalar) } else { out += scalar.escaped(asASCII: true) }
        }
        return raw.unicodeScalars.count > 100 ? out + "…" : out
    }

    /// The host without brackets: the name, or the address's canonical text (`::1`).
    public var description: String {
        switch self {
        case .name(let n): n
        case .address(let a): a.description
        }
    }

    /// The host as written in a URL authority or a `Host` header: IPv6 in brackets.
    public var uriHost: String {
        switch self {
        case .address(let a) where !a.isIPv4: "[\(a)]"
        default: description
        }
    }
}
