/// An IP address, v4 or v6, in canonical form: two spellings of one address are equal.
///
/// A zone identifier (`fe80::1%eth0`) is not part of the value: it names an interface of
/// the host, not a destination, and every zoned address is link-local anyway.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// The 32 bits in host byte order: 127.0.0.1 is `0x7f00_0001`.
    case v4(UInt32)
    /// The 128 bits as two halves, most significant first: `::1` is `.v6(0, 1)`.
    case v6(UInt64, UInt64)

    /// The address from its bytes in network order: 4 for IPv4, 16 for IPv6.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4: self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16: self.init(v6Bytes: bytes)
        default: return nil
        }
    }

    /// An IPv6 address from its 16 bytes in network order (`in6_addr`); nil for any other count.
    public init?(v6Bytes bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { high = high << 8 | UInt64(b) } else { low = low << 8 | UInt64(b) }
        }
        self = .v6(high, low)
    }

    /// The bytes in network order: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): return (0..<4).map { UInt8(truncatingIfNeeded: a >> (24 - 8 * $0)) }
        case .v6(let h, let l):
            return (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? h : l) >> (56 - 8 * (i % 8))) }
        }
    }

    public var isIPv4: Bool {
        if case .v4 = self { return true }
        return false
    }

    /// The eight 16-bit groups of an IPv6 address (nil for IPv4).
    var groups: [UInt16]? {
        guard case .v6(let h, let l) = self else { return nil }
        return (0..<8).map { i in UInt16(truncatingIfNeeded: (i < 4 ? h : l) >> (48 - 16 * (i % 4))) }
    }

    /// Canonical text: dotted decimal for IPv4; RFC 5952 for IPv6 (lower-case hex, no
    /// leading zeros, the first longest run of two or more zero groups as `::`), with an
    /// IPv4-mapped address written `::ffff:a.b.c.d`.
    public var description: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xff).\(a >> 8 & 0xff).\(a & 0xff)"
        case .v6(let h, let l):
            if h == 0, l >> 32 == 0xffff {
                return "::ffff:" + IPAddress.v4(UInt32(truncatingIfNeeded: l)).description
            }
            let g = groups ?? []
            var bestStart = -1
            var bestLength = 1
            var i = 0
            while i < 8 {
                guard g[i] == 0 else {
                    i += 1
                    continue
                }
                var j = i
                while j < 8, g[j] == 0 { j += 1 }
                if j - i > bestLength {
                    bestStart = i
                    bestLength = j - i
                }
                i = j
            }
            func hex(_ range: Range<Int>) -> String {
                g[range].map { String($0, radix: 16) }.joined(separator: ":")
            }
            guard bestStart >= 0 else { return hex(0..<8) }
            return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
        }
    }
}
