#if canImport(Glibc)
import AirlockTestSupport
import Glibc
import Testing

@testable import AirlockEgress

/// `IPAddress(literal:)` against the C library: where `inet_aton` or `inet_pton(AF_INET6)`
/// accepts a string (without white space or a zone), the parse must agree, and it must
/// accept nothing they refuse.
@Suite struct SystemParserTests {
    static func systemParse(_ s: String) -> IPAddress? {
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 {
            return withUnsafeBytes(of: v6) { IPAddress(v6Bytes: $0) }
        }
        var v4 = in_addr()
        if inet_aton(s, &v4) != 0 { return .v4(UInt32(bigEndian: v4.s_addr)) }
        return nil
    }

    static func systemText(_ a: IPAddress) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        switch a {
        case .v4(let x):
            var addr = in_addr(s_addr: x.bigEndian)
            _ = inet_ntop(AF_INET, &addr, &buffer, 64)
        case .v6:
            var addr = in6_addr()
            withUnsafeMutableBytes(of: &addr) { raw in
                for (i, b) in a.bytes.enumerated() { raw[i] = b }
            }
            _ = inet_ntop(AF_INET6, &addr, &buffer, 64)
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func check(_ s: String, _ accepted: inout Int) {
        let mine = IPAddress(literal: s)
        let system = systemParse(s)
        #expect(mine == system, "\(s.debugDescription): mine \(String(describing: mine)), system \(String(describing: system))")
        guard let mine else { return }
        accepted += 1
        // Canonical text: as inet_ntop writes it, except that ::a.b.c.d (IPv4-compatible,
        // deprecated) stays in hex.
        if case .v6(0, let low) = mine, low >> 32 == 0 {
        } else {
            #expect(mine.description == systemText(mine), "\(s)")
        }
        #expect(IPAddress(literal: mine.description) == mine)
    }

    static func pick<T>(_ items: [T], _ rng: inout SeededGenerator) -> T { items[Int(rng.next() % UInt64(items.count))] }

    /// A part of an inet_aton address in decimal, octal or hex, of a random size.
    static func part(_ rng: inout SeededGenerator) -> String {
        let value: UInt64 =
            switch rng.next() % 5 {
            case 0: rng.next() % 256
            case 1: rng.next() % 300
            case 2: rng.next() % 70_000
            case 3: rng.next() % 0x1_0000_0001
            default: rng.next() % 0x2_0000_0000
            }
        switch rng.next() % 4 {
        case 0: return "0" + String(value, radix: 8)
        case 1: return (rng.next() % 2 == 0 ? "0x" : "0X") + String(value, radix: 16, uppercase: rng.next() % 2 == 0)
        default: return String(value)
        }
    }

    static func mutate(_ s: String, _ rng: inout SeededGenerator, alphabet: [Character]) -> String {
        var chars = Array(s)
        for _ in 0..<Int(rng.next() % 3) {
            switch rng.next() % 3 {
            case 0 where !chars.isEmpty: chars.remove(at: Int(rng.next() % UInt64(chars.count)))
            case 1: chars.insert(pick(alphabet, &rng), at: Int(rng.next() % UInt64(chars.count + 1)))
            default: if !chars.isEmpty { chars[Int(rng.next() % UInt64(chars.count))] = pick(alphabet, &rng) }
            }
        }
        return String(chars)
    }

    @Test func ipv4AgreesWithInetAton() {
        var rng = SeededGenerator(seed: 4)
        let alphabet = Array("0123456789.xXabcdefABCDEFg")
        var accepted = 0
        for _ in 0..<20_000 {
            let parts = (0..<(1 + Int(rng.next() % 5))).map { _ in Self.part(&rng) }
            var s = parts.joined(separator: ".")
            if rng.next() % 3 == 0 { s = Self.mutate(s, &rng, alphabet: alphabet) }
            Self.check(s, &accepted)
        }
        #expect(accepted > 2000)
    }

    @Test func ipv6AgreesWithInetPton() {
        var rng = SeededGenerator(seed: 6)
        let alphabet = Array("0123456789abcdefABCDEF:.g")
        var accepted = 0
        for _ in 0..<20_000 {
            let count = Int(rng.next() % 10)
            var groups = (0..<count).map { _ -> String in
                let digits = 1 + Int(rng.next() % 5)
                return String((0..<digits).map { _ in Self.pick(Array("0123456789abcdefABCDEF"), &rng) })
            }
            if rng.next() % 4 == 0 {
                groups.append((0..<(3 + Int(rng.next() % 3))).map { _ in String(rng.next() % 300) }.joined(separator: "."))
            }
            var s = groups.joined(separator: ":")
            if rng.next() % 2 == 0 {
                let at = Int(rng.next() % UInt64(s.count + 1))
                s.insert(contentsOf: "::", at: s.index(s.startIndex, offsetBy: at))
            }
            if rng.next() % 3 == 0 { s = Self.mutate(s, &rng, alphabet: alphabet) }
            Self.check(s, &accepted)
        }
        #expect(accepted > 2000)
    }

    @Test(arguments: [
        "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "::", "::0", "0::0", "::ffff:1.2.3.4", "::1.2.3.4", "1::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4", "::ffff:01.2.3.4", "::ffff:1.2.3.04", "::ffff:256.1.1.1", "::ffff:1.2.3.4.5", "1.2.3.4",
        "::ffff:1.2.3.", "ffff::1.2.3.4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:", ":1:2:3:4:5:6:7", "1::2:3::", "0000:0000::",
        "00000::", "::12345", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "::1:2:3:4:5:6:1.2.3.4", "::0.0.0.0", "::255.255.255.255",
        "0", "00", "0.0", "0x0", "0x", "00x1", "0x0x1", "0xffffffff", "0x0ffffffff", "037777777777", "040000000000",
        "4294967295", "255.16777215", "255.255.65535", "255.255.255.255", "1.2.3.4.", "00000000000000000000000000001",
        "0x00000000000000000000000000001", "09", "0.09", "1e1", "1.2e3", "0xg", "0x1.0x2.0x3.0x4", "0x100.1", "0377.0377.0377.0377",
        "0400.1.1.1",
    ])
    func edgeCases(_ s: String) {
        var accepted = 0
        Self.check(s, &accepted)
    }
}
#endif
