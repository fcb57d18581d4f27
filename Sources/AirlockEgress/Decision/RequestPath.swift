/// A request path reduced to the one form path rules are matched against, or refused
/// because servers could read it in more than one way.
///
/// Normalisation, in order:
/// 1. The query (from the first `?`) and a fragment (`#`) are not part of the path.
/// 2. The path must start with `/` and be at most 8 KiB.
/// 3. Only RFC 3986 path characters may appear unencoded: letters, digits, `-._~`,
///    `!$&'()*+,;=:@`, `/` and `%`. Anything else (space, `\`, `"`, `{`, control or
///    non-ASCII bytes) is refused.
/// 4. Percent-escapes must be `%` and two hex digits. Unreserved characters
///    (letters, digits, `-._~`) are decoded (`/%61dmin` is `/admin`); other escapes stay
///    encoded with upper-case hex (`%3b` is `%3B`). Refused: an encoded `/` or `\` (`%2F`,
///    `%5C`: servers disagree on whether it separates segments), `%00`, double encoding
///    (after decoding, `%25` followed by two hex digits, which a second decoding would turn
///    into another character), and escapes that do not decode to valid UTF-8 (overlong
///    forms such as `%C0%AE`).
/// 5. Refused: an empty segment (`//`, except a trailing `/`), and a segment made only of
///    dots, before any `;` parameters (`.`, `..`, `...`, `..;x`), written plainly or
///    encoded (`%2e%2e`). Dot segments are not resolved: a client never needs to send one,
///    and resolving them the way every server would is not possible.
struct RequestPath: Sendable, Equatable {
    /// The normalised path after its leading `/`. It holds no `/` other than the separators.
    var bytes: [UInt8]
    /// The segments between the slashes, as ranges of `bytes` (the path `/` has one empty
    /// segment; a trailing slash gives a last empty segment).
    var segments: [Range<Int>]

    static let maximumLength = 8192

    /// The path as text, in its normalised form.
    var text: String { "/" + String(decoding: bytes, as: UTF8.self) }

    @inline(__always) func segment(_ k: Int) -> ArraySlice<UInt8> { bytes[segments[k]] }

    /// Normalises `raw`; returns why it is refused when it is ambiguous or malformed.
    static func normalize(_ raw: some StringProtocol) -> Result<RequestPath, PathProblem> {
        if let r = raw.utf8.withContiguousStorageIfAvailable(normalize) { return r }
        return Array(raw.utf8).withUnsafeBufferPointer(normalize)
    }

    static func normalize(_ input: UnsafeBufferPointer<UInt8>) -> Result<RequestPath, PathProblem> {
        let end = input.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? input.count
        let b = UnsafeBufferPointer(rebasing: input[..<end])
        guard b.first == UInt8(ascii: "/") else { return .failure(PathProblem("the path must start with '/'")) }
        guard b.count <= maximumLength else { return .failure(PathProblem("the path is longer than \(maximumLength) bytes")) }
        var out: [UInt8] = []
        out.reserveCapacity(b.count - 1)
        var segments: [Range<Int>] = []
        segments.reserveCapacity(b.count { $0 == UInt8(ascii: "/") })
        var segmentStart = 0
        var highEscapes = false
        var i = 1
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "/") {
                segments.append(segmentStart..<out.count)
                out.append(c)
                segmentStart = out.count
                i += 1
                continue
            }
            if c == UInt8(ascii: "%") {
                guard i + 2 < b.count, let hi = IPAddress.hexValue(b[i + 1]), let lo = IPAddress.hexValue(b[i + 2]) else {
                    return .failure(PathProblem("a '%' is not followed by two hex digits"))
                }
                let v = hi << 4 | lo
                if v == UInt8(ascii: "/") || v == UInt8(ascii: "\\") {
                    return .failure(
                        PathProblem("the path contains an encoded '/' or '\\' (%2F, %5C), which servers read differently"))
                }
                if v == 0 { return .failure(PathProblem("the path contains an encoded NUL (%00)")) }
                if isUnreserved(v) {
                    out.append(v)
                } else {
                    highEscapes = highEscapes || v >= 0x80
                    out.append(UInt8(ascii: "%"))
                    out.append(upperHex(hi))
                    out.append(upperHex(lo))
                }
                i += 3
                continue
            }
            guard isPathCharacter(c) else {
                let what = c < 0x20 || c >= 0x7f ? "a control or non-ASCII byte" : "'\(Character(Unicode.Scalar(c)))'"
                return .failure(PathProblem("the path contains \(what) that must be percent-encoded"))
            }
            out.append(c)
            i += 1
        }
        segments.append(segmentStart..<out.count)
        if highEscapes, !escapesAreUTF8(b) {
            return .failure(PathProblem("the path's percent-escapes are not valid UTF-8 (overlong or broken sequences)"))
        }
        for (k, range) in segments.enumerated() {
            let segment = out[range]
            if isEncodedTwice(segment) {
                return .failure(PathProblem("the path is percent-encoded twice (%25 followed by hex digits)"))
            }
            if segment.isEmpty, k != segments.count - 1 {
                return .failure(PathProblem("the path has an empty segment ('//'), which servers read differently"))
            }
            let base = withoutParameters(segment)
            if !base.isEmpty, base.allSatisfy({ $0 == UInt8(ascii: ".") }) {
                return .failure(PathProblem("the path has a dot segment ('.' or '..'), which could leave the allowed tree"))
            }
        }
        return .success(RequestPath(bytes: out, segments: segments))
    }

    /// Whether the escapes of `b` (already checked to be well-formed) decode to valid
    /// UTF-8: overlong forms such as `%C0%AE` for `.` are refused, since some servers decode them.
    static func escapesAreUTF8(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let hi = IPAddress.hexValue(b[i + 1]),
                let lo = IPAddress.hexValue(b[i + 2])
            {
                decoded.append(hi << 4 | lo)
                i += 3
            } else {
                decoded.append(b[i])
                i += 1
            }
        }
        return String(validating: decoded, as: UTF8.self) != nil
    }

    /// Whether a normalised segment holds `%25` followed by two hex digits, which a second
    /// decoding would turn into another character.
    static func isEncodedTwice(_ s: ArraySlice<UInt8>) -> Bool {
        var i = s.startIndex
        while i + 4 < s.endIndex {
            if s[i] == UInt8(ascii: "%"), s[i + 1] == UInt8(ascii: "2"), s[i + 2] == UInt8(ascii: "5"),
                IPAddress.hexValue(s[i + 3]) != nil, IPAddress.hexValue(s[i + 4]) != nil
            {
                return true
            }
            i += 1
        }
        return false
    }

    /// Variants a server might treat as this path, lower-cased, for deny rules: as it is,
    /// with `;` parameters dropped from each segment, and each without a trailing slash.
    var denyVariants: [RequestPath] {
        var variants = [self]
        let stripped = RequestPath(segments.map { RequestPath.withoutParameters(bytes[$0]) })
        if stripped != self { variants.append(stripped) }
        for v in variants where v.segments.count > 1 && v.segments.last?.isEmpty == true {
            variants.append(RequestPath((0..<(v.segments.count - 1)).map { v.segment($0) }))
        }
        return variants.map { RequestPath(bytes: $0.bytes.map(RequestPath.lowercased), segments: $0.segments) }
    }

    /// A path made of these segments.
    init(_ parts: [ArraySlice<UInt8>]) {
        var out: [UInt8] = []
        var ranges: [Range<Int>] = []
        for (k, p) in parts.enumerated() {
            if k > 0 { out.append(UInt8(ascii: "/")) }
            ranges.append(out.count..<(out.count + p.count))
            out += p
        }
        self.init(bytes: out, segments: ranges)
    }

    init(bytes: [UInt8], segments: [Range<Int>]) {
        self.bytes = bytes
        self.segments = segments
    }

    /// The segment before its `;` parameters (`;` or `%3B`), as servers that support
    /// path parameters (Tomcat, Jetty, Spring) route it.
    static func withoutParameters(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == UInt8(ascii: ";") { break }
            if s[i] == UInt8(ascii: "%"), i + 2 < s.endIndex, s[i + 1] == UInt8(ascii: "3"), s[i + 2] | 0x20 == UInt8(ascii: "b") {
                break
            }
            i += 1
        }
        return s[..<i]
    }

    @inline(__always) static func lowercased(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c | 0x20 : c
    }

    @inline(__always) static func upperHex(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
    }

    static func isUnreserved(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || IPAddress.isDigit(c) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
            || c == UInt8(ascii: "~")
    }

    /// RFC 3986 `pchar` without `%` (handled apart): unreserved, sub-delims, `:` and `@`.
    static func isPathCharacter(_ c: UInt8) -> Bool {
        if isUnreserved(c) { return true }
        switch c {
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
            UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"),
            UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }
}

/// Why a request path was refused (a sentence for the refusal message).
struct PathProblem: Error, Sendable, Equatable {
    var message: String
    init(_ message: String) { self.message = message }
}
