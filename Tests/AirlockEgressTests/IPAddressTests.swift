import AirlockCore
import Testing

@testable import AirlockEgress

/// One spelling of an address: what it must parse to and how it must be classified.
struct Spelling: Sendable, CustomTestStringConvertible {
    var text: String
    var canonical: String
    var addressClass: AddressClass
    init(_ text: String, _ canonical: String, _ addressClass: AddressClass) {
        self.text = text
        self.canonical = canonical
        self.addressClass = addressClass
    }
    var testDescription: String { text }
}

@Suite struct IPAddressTests {
    static let special: [Spelling] = [
        Spelling("127.1", "127.0.0.1", .loopback),
        Spelling("0x7f.0.0.1", "127.0.0.1", .loopback),
        Spelling("2130706433", "127.0.0.1", .loopback),
        Spelling("0177.0.0.1", "127.0.0.1", .loopback),
        Spelling("0x7f000001", "127.0.0.1", .loopback),
        Spelling("0X7F.000000.0x0.01", "127.0.0.1", .loopback),
        Spelling("127.0.0.01", "127.0.0.1", .loopback),
        Spelling("127.65535", "127.0.255.255", .loopback),
        Spelling("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", .loopback),
        Spelling("::ffff:7f00:1", "::ffff:127.0.0.1", .loopback),
        Spelling("::FFFF:7F00:0001", "::ffff:127.0.0.1", .loopback),
        Spelling("fe80::1%eth0", "fe80::1", .linkLocal),
        Spelling("[fe80::1%25eth0]", "fe80::1", .linkLocal),
        Spelling("[fe80::1%eth0]", "fe80::1", .linkLocal),
        Spelling("::1", "::1", .loopback),
        Spelling("0:0:0:0:0:0:0:1", "::1", .loopback),
        Spelling("[::1]", "::1", .loopback),
        Spelling("0.0.0.0", "0.0.0.0", .unspecified),
        Spelling("0", "0.0.0.0", .unspecified),
        Spelling("::", "::", .unspecified),
        Spelling("169.254.169.254", "169.254.169.254", .cloudMetadata),
        Spelling("0xa9fea9fe", "169.254.169.254", .cloudMetadata),
        Spelling("::ffff:169.254.169.254", "::ffff:169.254.169.254", .cloudMetadata),
        Spelling("[fd00:ec2::254]", "fd00:ec2::254", .cloudMetadata),
        Spelling("100.100.100.200", "100.100.100.200", .cloudMetadata),
        Spelling("168.63.129.16", "168.63.129.16", .cloudMetadata),
        Spelling("169.254.170.2", "169.254.170.2", .cloudMetadata),
        Spelling("64:ff9b::7f00:1", "64:ff9b::7f00:1", .loopback),
        Spelling("64:ff9b::169.254.169.254", "64:ff9b::a9fe:a9fe", .cloudMetadata),
        Spelling("64:ff9b:1:7f00:0:100::", "64:ff9b:1:7f00:0:100::", .loopback),
        Spelling("2002:7f00:1::", "2002:7f00:1::", .loopback),
        Spelling("2002:a00:1::1", "2002:a00:1::1", .private),
        Spelling("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:3fff:fdd2", .reserved),
        Spelling("2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:0:4136:e378:8000:63bf:80ff:fffe", .loopback),
        Spelling("2600::5efe:a00:1", "2600::5efe:a00:1", .private),
        Spelling("2600::200:5efe:7f00:1", "2600::200:5efe:7f00:1", .loopback),
        Spelling("::127.0.0.1", "::7f00:1", .loopback),
        Spelling("10.1.2.3", "10.1.2.3", .private),
        Spelling("012.1", "10.0.0.1", .private),
        Spelling("172.16.0.1", "172.16.0.1", .private),
        Spelling("172.31.255.255", "172.31.255.255", .private),
        Spelling("192.168.1.1", "192.168.1.1", .private),
        Spelling("100.64.0.1", "100.64.0.1", .sharedCGNAT),
        Spelling("169.254.1.1", "169.254.1.1", .linkLocal),
        Spelling("224.0.0.1", "224.0.0.1", .multicast),
        Spelling("ff02::1", "ff02::1", .multicast),
        Spelling("fc00::1", "fc00::1", .uniqueLocal),
        Spelling("fd12:3456::1", "fd12:3456::1", .uniqueLocal),
        Spelling("255.255.255.255", "255.255.255.255", .broadcast),
        Spelling("240.0.0.1", "240.0.0.1", .reserved),
        Spelling("192.0.2.1", "192.0.2.1", .reserved),
        Spelling("198.18.0.1", "198.18.0.1", .reserved),
        Spelling("2001:db8::1", "2001:db8::1", .reserved),
        Spelling("100::1", "100::1", .reserved),
        Spelling("fec0::1", "fec0::1", .reserved),
        Spelling("4000::1", "4000::1", .reserved),
    ]

    @Test(arguments: special)
    func specialSpellingParsesAndIsSpecial(_ s: Spelling) throws {
        let address = try #require(IPAddress(literal: s.text))
        #expect(address.description == s.canonical)
        #expect(address.addressClass == s.addressClass)
        #expect(address.addressClass.isSpecial)
        #expect(try HostName.parse(s.text) == .address(address))
    }

    @Test(arguments: [
        "8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
        "172.32.0.1", "100.128.0.1", "192.169.0.1",
    ])
    func publicAddressesArePublic(_ text: String) throws {
        let address = try #require(IPAddress(literal: text))
        #expect(address.addressClass == .public)
        #expect(!address.addressClass.isSpecial)
    }

    @Test(arguments: [
        "256.1.1.1", "1.2.3.4.5", "0x100000000", "::ffff::1", "1:2:3:4:5:6:7:8:9", "1.2.3.256", "1.256.3", "1.2.65536",
        "1.16777216", "4294967296", "08.1.2.3", "1.2.3.09", "0x", "0x.1", "1..2", ".1.2.3", "1.2.3.4.", "", " 1.2.3.4",
        "1.2.3.4 ", "1.2.3.4\t", "+1", "-1", "1.-1", "0x1g", "[127.0.0.1]", "[::1", "::1]", "fe80::1%",
        "fe80::1%e/th0", "::ffff:0177.0.0.1", "::ffff:1.2.3", "::1.2.3.4.5", ":1::", "1::2::3", ":::", "1:2:3:4:5:6:7:8::",
        "1:2:3:4:5:6:7:1.2.3.4", "12345::", "::1:", "g::", "example.com", "1.2.3.4:80", "[::1]:80",
    ])
    func invalidLiteralsAreNotAddresses(_ text: String) {
        #expect(IPAddress(literal: text) == nil)
    }

    @Test(arguments: [
        "256.1.1.1", "1.2.3.4.5", "0x100000000", "::ffff::1", "1:2:3:4:5:6:7:8:9", "0x1g", "1.2.3.256", "127.0.0.1.5", "08",
        "1.2.3.4%eth0",
    ])
    func invalidLiteralsAreNotHostNamesEither(_ text: String) {
        #expect(throws: AirlockError.self) { try HostName.parse(text) }
    }

    @Test func zoneIsDropped() throws {
        #expect(IPAddress(literal: "fe80::1%eth0") == IPAddress(literal: "fe80::1"))
        #expect(IPAddress(literal: "fe80::1%25") == IPAddress(literal: "fe80::1"))
        #expect(IPAddress(literal: "[fe80::1%252]") == IPAddress(literal: "fe80::1"))
    }

    @Test(arguments: [
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:DB8::AbC", "2001:db8::abc"),
        ("1::", "1::"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("0:0:1:0:0:0:0:0", "0:0:1::"),
        ("::ffff:0:0", "::ffff:0.0.0.0"),
        ("::1:2:3:4:5:6:7", "0:1:2:3:4:5:6:7"),
    ])
    func rfc5952Text(_ input: String, _ expected: String) throws {
        #expect(try #require(IPAddress(literal: input)).description == expected)
    }

    @Test func bytesRoundTrip() throws {
        let v4 = try #require(IPAddress(literal: "192.0.2.33"))
        #expect(v4 == .v4(0xC000_0221))
        #expect(v4.bytes == [192, 0, 2, 33])
        #expect(IPAddress(bytes: v4.bytes) == v4)
        let v6 = try #require(IPAddress(literal: "2001:db8::ff00:42:8329"))
        #expect(v6.bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0xff, 0x00, 0x00, 0x42, 0x83, 0x29])
        #expect(IPAddress(v6Bytes: v6.bytes) == v6)
        #expect(IPAddress(bytes: v6.bytes) == v6)
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress(v6Bytes: [1, 2, 3, 4]) == nil)
    }

    @Test func embeddedIPv4() throws {
        func embedded(_ s: String) throws -> String? { try #require(IPAddress(literal: s)).embeddedIPv4?.description }
        #expect(try embedded("::ffff:10.0.0.1") == "10.0.0.1")
        #expect(try embedded("::10.0.0.1") == "10.0.0.1")
        #expect(try embedded("64:ff9b::10.0.0.1") == "10.0.0.1")
        #expect(try embedded("64:ff9b:1:7f00:0:100::") == "127.0.0.1")
        #expect(try embedded("64:ff9b:1::a00:1") == "10.0.0.1")
        #expect(try embedded("2002:c000:0221::1") == "192.0.2.33")
        #expect(try embedded("2001:0:4136:e378:8000:63bf:3fff:fdd2") == "192.0.2.45")
        #expect(try embedded("fe80::5efe:c000:221") == "192.0.2.33")
        #expect(try embedded("fe80::200:5efe:c000:221") == "192.0.2.33")
        #expect(try embedded("::1") == nil)
        #expect(try embedded("::") == nil)
        #expect(try embedded("2606:4700::1111") == nil)
        #expect(try embedded("10.0.0.1") == nil)
    }

    @Test func networks() throws {
        let ten = try IPNetwork(cidr: "10.0.0.0/8")
        #expect(ten.contains(.v4(0x0A01_0203)))
        #expect(!ten.contains(.v4(0x0B00_0000)))
        #expect(!ten.contains(try #require(IPAddress(literal: "::ffff:10.0.0.1"))))
        let ula = try IPNetwork(cidr: "fd00::/8")
        #expect(ula.contains(try #require(IPAddress(literal: "fd12::1"))))
        #expect(!ula.contains(try #require(IPAddress(literal: "fc12::1"))))
        #expect(try IPNetwork(cidr: "0.0.0.0/0").contains(.v4(0xFFFF_FFFF)))
        #expect(try IPNetwork(cidr: "::/0").contains(try #require(IPAddress(literal: "ffff::1"))))
        #expect(try IPNetwork(cidr: "2001:db8::/33").description == "2001:db8::/33")
        #expect(try IPNetwork(cidr: "10.0.0.7/32").contains(.v4(0x0A00_0007)))
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "fd00::/129", "example.com/8", "/8", "fd00::1/8"] {
            #expect(throws: AirlockError.self, "\(bad)") { try IPNetwork(cidr: bad) }
        }
    }
}
