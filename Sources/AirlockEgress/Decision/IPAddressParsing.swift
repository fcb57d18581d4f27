/// Reading IP literals the way the C library does, so that no spelling of an address a
/// client could connect to is mistaken for a host name.
extension IPAddress {
    /// Parses every spelling of an address that `inet_aton` or `inet_pton` accepts, and
    /// nothing else (nil for a host name or anything that is neither).
    ///
    /// - IPv4 as `inet_aton` reads it: one to four parts separated by dots, each decimal,
    ///   octal (a leading `0`) or hexadecimal (`0x`); the last part fills the remaining
    ///   bytes: `127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1`, `0x7f000001`. A part too
    ///   large for its place (`256.1.1.1`, `1.16777216`) is refused. Unlike `inet_aton`,
    ///   trailing white space (and what follows it) is refused.
    /// - IPv6 as `inet_pton(AF_INET6)` reads it (groups of one to four hex digits, one `::`,
    ///   a dotted quad of four decimal parts at the end), optionally in brackets, optionally
    ///   with a zone (`fe80::1%eth0`, or `%25eth0` as written in a URL), which is dropped.
    public init?(literal: String) {
        var text = literal
        guard let parsed = text.withUTF8({ IPAddress.parse($0) }) else { return nil }
        self = parsed
    }

    static func parse(_ s: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        guard !s.isEmpty else { return nil }
        var lower = 0
        var upper = s.count
        if s[0] == UInt8(ascii: "[") {
            guard s[upper - 1] == UInt8(ascii: "]"), upper >= 2 else { return nil }
            lower = 1
            upper -= 1
            return parseIPv6WithZone(UnsafeBufferPointer(rebasing: s[lower..<upper]))
        }
        if s.contains(UInt8(ascii: ":")) { return parseIPv6WithZone(s) }
        return parseInetAton(s).map(IPAddress.v4)
    }

    /// An IPv6 literal with an optional zone (`%eth0`, `%25eth0`); the zone must be non-empty
    /// and made of letters, digits, `-`, `.`, `_` or `~`.
    static func parseIPv6WithZone(_ s: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        guard let percent = s.firstIndex(of: UInt8(ascii: "%")) else { return parseIPv6(s) }
        var zone = s[(percent + 1)...]
        if zone.count > 2, zone.starts(with: "25".utf8) { zone = zone.dropFirst(2) }
        guard !zone.isEmpty, zone.allSatisfy(isZoneByte) else { return nil }
        return parseIPv6(UnsafeBufferPointer(rebasing: s[..<percent]))
    }

    private static func isZoneByte(_ c: UInt8) -> Bool {
        hexValue(c) != nil || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z"))
            || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
            || c == UInt8(ascii: "_") || c == UInt8(ascii: "~")
    }

    /// `inet_aton`: `a.b.c.d`, `a.b.c` (c 16 bits), `a.b` (b 24 bits), `a` (32 bits); each part
    /// as C's `strtoul` with base 0 reads it, starting with a digit.
    static func parseInetAton(_ s: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var i = 0
        var result: UInt32 = 0
        var parts = 0
        var value: UInt64 = 0
        while true {
            guard i < s.count, isDigit(s[i]) else { return nil }
            var base: UInt64 = 10
            if s[i] == UInt8(ascii: "0") {
                if i + 2 < s.count, s[i + 1] | 0x20 == UInt8(ascii: "x"), hexValue(s[i + 2]) != nil {
                    base = 16
                    i += 2
                } else {
                    base = 8
                }
            }
            value = 0
            while i < s.count, let d = hexValue(s[i]), UInt64(d) < base {
                // Saturate: anything above 32 bits is refused, however many digits follow.
                value = min(value * base + UInt64(d), 1 << 33)
                i += 1
            }
            guard value <= 0xffff_ffff else { return nil }
            guard i < s.count, s[i] == UInt8(ascii: ".") else { break }
            guard parts < 3, value <= 0xff else { return nil }
            result |= UInt32(value) << (24 - 8 * parts)
            parts += 1
            i += 1
        }
        guard i == s.count else { return nil }
        let maximum: [UInt64] = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff]
        guard value <= maximum[parts] else { return nil }
        return result | UInt32(value)
    }

    /// `inet_pton(AF_INET6)` (glibc's reading, without zone or brackets).
    static func parseIPv6(_ s: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        var out = [UInt8](repeating: 0, count: 16)
        var t = 0
        var compressAt: Int? = nil
        var i = 0
        let n = s.count
        guard n > 0 else { return nil }
        if s[0] == UInt8(ascii: ":") {
            guard n > 1, s[1] == UInt8(ascii: ":") else { return nil }
            i = 1
        }
        var tokenStart = i
        var digits = 0
        var value: UInt32 = 0
        var sawIPv4 = false
        while i < n {
            let c = s[i]
            i += 1
            if let d = hexValue(c) {
                guard digits < 4 else { return nil }
                value = value << 4 | UInt32(d)
                digits += 1
                continue
            }
            if c == UInt8(ascii: ":") {
                tokenStart = i
                if digits == 0 {
                    guard compressAt == nil else { return nil }
                    compressAt = t
                    continue
                }
                guard i < n, t + 2 <= 16 else { return nil }
                out[t] = UInt8(value >> 8)
                out[t + 1] = UInt8(value & 0xff)
                t += 2
                digits = 0
                value = 0
                continue
            }
            if c == UInt8(ascii: "."), t + 4 <= 16,
                let quad = parseDottedQuad(UnsafeBufferPointer(rebasing: s[tokenStart..<n]))
            {
                for k in 0..<4 { out[t + k] = UInt8(truncatingIfNeeded: quad >> (24 - 8 * k)) }
                t += 4
                digits = 0
                sawIPv4 = true
                break
            }
            return nil
        }
        if digits > 0, !sawIPv4 {
            guard t + 2 <= 16 else { return nil }
            out[t] = UInt8(value >> 8)
            out[t + 1] = UInt8(value & 0xff)
            t += 2
        }
        if let at = compressAt {
            guard t < 16 else { return nil }
            let tail = Array(out[at..<t])
            for k in at..<16 { out[k] = 0 }
            for (k, b) in tail.enumerated() { out[16 - tail.count + k] = b }
            t = 16
        }
        guard t == 16 else { return nil }
        return IPAddress(v6Bytes: out)
    }

    /// `inet_pton(AF_INET)`: exactly four decimal parts of at most 255, no leading zeros.
    static func parseDottedQuad(_ s: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var result: UInt32 = 0
        var octet: UInt32 = 0
        var octets = 0
        var sawDigit = false
        for c in s {
            if isDigit(c) {
                if sawDigit, octet == 0 { return nil }
                octet = octet * 10 + UInt32(c - UInt8(ascii: "0"))
                guard octet <= 255 else { return nil }
                if !sawDigit {
                    octets += 1
                    sawDigit = true
                }
            } else if c == UInt8(ascii: "."), sawDigit, octets < 4 {
                result = result << 8 | octet
                octet = 0
                sawDigit = false
            } else {
                return nil
            }
        }
        guard octets == 4, sawDigit else { return nil }
        return result << 8 | octet
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
