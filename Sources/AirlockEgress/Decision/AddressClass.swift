/// What kind of destination an address is. Every class but `public` is special: the
/// gateway connects to a special address only when an allow rule names it.
public enum AddressClass: String, Sendable, CaseIterable {
    case `public`
    /// 127.0.0.0/8, ::1.
    case loopback
    /// RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16.
    case `private`
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    case sharedCGNAT = "shared-cgnat"
    /// 169.254.0.0/16, fe80::/10.
    case linkLocal = "link-local"
    /// Instance metadata services, which hand out the host's cloud credentials:
    /// 169.254.169.254 (AWS, GCP, Azure, OCI, …), 169.254.170.2 and 169.254.170.23 (AWS ECS
    /// and EKS), fd00:ec2::254 and fd00:ec2::23 (AWS over IPv6), 100.100.100.200 (Alibaba),
    /// 168.63.129.16 (Azure wire server). Checked before every other class.
    case cloudMetadata = "cloud-metadata"
    /// fc00::/7.
    case uniqueLocal = "unique-local"
    /// 224.0.0.0/4, ff00::/8.
    case multicast
    /// 0.0.0.0/8 and ::, which Linux connects to the host itself.
    case unspecified
    /// 255.255.255.255.
    case broadcast
    /// Everything else that is not a public unicast destination: 240.0.0.0/4, 192.0.0.0/24,
    /// 192.88.99.0/24, 198.18.0.0/15, the documentation blocks (192.0.2.0/24, 198.51.100.0/24,
    /// 203.0.113.0/24, 2001:db8::/32, 3fff::/20), 100::/64 (discard), 2001:2::/48, fec0::/10
    /// (site-local), the rest of ::/8, and IPv6 outside 2000::/3 not named above.
    case reserved
    /// One of the addresses of the host's own interfaces (see `LocalAddresses`).
    case thisHost = "this-host"

    public var isSpecial: Bool { self != .public }

    /// The class in a sentence: "169.254.169.254 is \(phrase)".
    public var phrase: String {
        switch self {
        case .public: "a public address"
        case .loopback: "a loopback address"
        case .private: "a private (RFC 1918) address"
        case .sharedCGNAT: "a shared carrier-grade NAT address (100.64.0.0/10)"
        case .linkLocal: "a link-local address"
        case .cloudMetadata: "a cloud metadata address"
        case .uniqueLocal: "a unique local IPv6 address (fc00::/7)"
        case .multicast: "a multicast address"
        case .unspecified: "an unspecified address (it reaches this host)"
        case .broadcast: "the broadcast address"
        case .reserved: "a reserved or non-routable address"
        case .thisHost: "an address of this host"
        }
    }
}

extension IPAddress {
    /// The instance metadata addresses listed under `AddressClass.cloudMetadata`.
    public var isCloudMetadata: Bool {
        switch self {
        case .v4(let a):
            // 169.254.169.254, 169.254.170.2, 169.254.170.23, 100.100.100.200, 168.63.129.16
            a == 0xA9FE_A9FE || a == 0xA9FE_AA02 || a == 0xA9FE_AA17 || a == 0x6464_64C8 || a == 0xA83F_8110
        case .v6(let h, let l):
            // fd00:ec2::254, fd00:ec2::23
            h == 0xFD00_0EC2_0000_0000 && (l == 0x254 || l == 0x23)
        }
    }

    /// The class of this address. For an IPv6 address that embeds an IPv4 address (see
    /// `embeddedIPv4`), the class of the embedded address when that is special, else the
    /// IPv6 address's own. `thisHost` is never returned here: only the policy knows the
    /// host's addresses.
    public var addressClass: AddressClass {
        if isCloudMetadata { return .cloudMetadata }
        switch self {
        case .v4(let a): return IPAddress.classify(v4: a)
        case .v6(let h, let l):
            for embedded in embeddedIPv4Candidates {
                let c = embedded.addressClass
                if c.isSpecial { return c }
            }
            return IPAddress.classify(v6High: h, low: l)
        }
    }

    static func classify(v4 a: UInt32) -> AddressClass {
        func within(_ base: UInt32, _ length: Int) -> Bool { a >> (32 - length) == base >> (32 - length) }
        if within(0x0000_0000, 8) { return .unspecified }
        if within(0x7F00_0000, 8) { return .loopback }
        if within(0x0A00_0000, 8) || within(0xAC10_0000, 12) || within(0xC0A8_0000, 16) { return .private }
        if within(0x6440_0000, 10) { return .sharedCGNAT }
        if within(0xA9FE_0000, 16) { return .linkLocal }
        if within(0xE000_0000, 4) { return .multicast }
        if a == 0xFFFF_FFFF { return .broadcast }
        if within(0xF000_0000, 4) || within(0xC000_0000, 24) || within(0xC000_0200, 24) || within(0xC058_6300, 24)
            || within(0xC612_0000, 15) || within(0xC633_6400, 24) || within(0xCB00_7100, 24)
        {
            return .reserved
        }
        return .public
    }

    static func classify(v6High h: UInt64, low l: UInt64) -> AddressClass {
        func within(_ base: UInt64, _ length: Int) -> Bool { h >> (64 - length) == base >> (64 - length) }
        if h == 0, l == 0 { return .unspecified }
        if h == 0, l == 1 { return .loopback }
        if h == 0, l >> 32 == 0xffff { return .public }  // IPv4-mapped: the embedded address is public
        if h == 0x0064_FF9B_0000_0000, l >> 32 == 0 { return .public }  // NAT64 to a public address
        if within(0x0064_FF9B_0001_0000, 48) { return .public }  // local-use NAT64 to a public address
        if within(0x0000_0000_0000_0000, 8) { return .reserved }  // compatible, translated, unassigned
        if h == 0x0100_0000_0000_0000 { return .reserved }  // 100::/64, discard
        if within(0xFF00_0000_0000_0000, 8) { return .multicast }
        if within(0xFE80_0000_0000_0000, 10) { return .linkLocal }
        if within(0xFEC0_0000_0000_0000, 10) { return .reserved }
        if within(0xFC00_0000_0000_0000, 7) { return .uniqueLocal }
        if within(0x2001_0DB8_0000_0000, 32) || within(0x3FFF_0000_0000_0000, 20) || within(0x2001_0002_0000_0000, 48) {
            return .reserved
        }
        if within(0x2000_0000_0000_0000, 3) { return .public }
        return .reserved
    }

    /// The IPv4 address this IPv6 address embeds, which packets to it end up at: IPv4-mapped
    /// `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` (deprecated), NAT64 `64:ff9b::/96` and
    /// `64:ff9b:1::/48` (RFC 6052 layout for a /48, or a /96 inside it), 6to4
    /// `2002:AABB:CCDD::/16`, Teredo `2001:0::/32` (the client address, stored inverted),
    /// ISATAP (interface identifier `0:5efe:a.b.c.d` or `200:5efe:a.b.c.d`). nil for none,
    /// and for IPv4 addresses.
    public var embeddedIPv4: IPAddress? { embeddedIPv4Candidates.first }

    /// Every IPv4 address this address might reach, most likely first (an address can fit
    /// two layouts; policy checks consider them all).
    var embeddedIPv4Candidates: [IPAddress] {
        guard case .v6(let h, let l) = self else { return [] }
        let low32 = IPAddress.v4(UInt32(truncatingIfNeeded: l))
        var out: [IPAddress] = []
        if h == 0 {
            if l >> 32 == 0xffff { out.append(low32) }  // mapped
            if l >> 32 == 0, l > 1 { out.append(low32) }  // compatible (not :: or ::1)
        }
        if h == 0x0064_FF9B_0000_0000, l >> 32 == 0 { out.append(low32) }
        if h >> 16 == 0x0064_FF9B_0001 {
            if h & 0xffff == 0, l >> 32 == 0 { out.append(low32) }
            // RFC 6052 /48: bits 48..63 then (after the u octet, bits 64..71) bits 72..87.
            let v4 = UInt32(h & 0xffff) << 16 | UInt32((l >> 40) & 0xffff)
            if !out.contains(.v4(v4)) { out.append(.v4(v4)) }
        }
        if h >> 48 == 0x2002 { out.append(.v4(UInt32(truncatingIfNeeded: h >> 16))) }
        if h >> 32 == 0x2001_0000 { out.append(.v4(~UInt32(truncatingIfNeeded: l))) }
        if l >> 32 == 0x0000_5EFE || l >> 32 == 0x0200_5EFE, !out.contains(low32) { out.append(low32) }
        return out
    }
}
