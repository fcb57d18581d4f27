import AirlockCore

/// The host part of an egress rule or an `inspect_tls` entry.
enum HostPattern: Sendable, Hashable, CustomStringConvertible {
    /// `example.com`: exactly that name.
    case exact(String)
    /// `*.example.com`, stored as `example.com`: any name ending in `.example.com`.
    case subdomains(String)
    /// `10.0.0.5`, `::1`: exactly that address (an IPv4-mapped IPv6 address is stored as IPv4).
    case address(IPAddress)
    /// `10.0.0.0/8`: any address in the block.
    case network(IPNetwork)

    /// Parses a pattern; the error's message is a sentence saying what is wrong.
    init(_ text: String) throws(AirlockError) {
        if text == "*" {
            throw AirlockError(
                .policy, "'*' alone would match every host; list the hosts, or write *.example.com for the subdomains of one")
        }
        if text.utf8.contains(UInt8(ascii: "/")) {
            let canonical = HostPattern.unmapped(try IPNetwork(cidr: text))
            let bits = canonical.address.isIPv4 ? 32 : 128
            self = canonical.prefixLength == bits ? .address(canonical.address) : .network(canonical)
            return
        }
        var name = Substring(text)
        let wildcard = text.hasPrefix("*.")
        if wildcard { name = name.dropFirst(2) }
        if name.contains("*") {
            throw AirlockError(.policy, "'*' may only stand for whole leading labels, as in *.example.com")
        }
        let host: HostName
        do { host = try HostName.parse(String(name)) } catch { throw AirlockError(.policy, error.message) }
        switch host {
        case .name(let n): self = wildcard ? .subdomains(n) : .exact(n)
        case .address(let a):
            if wildcard { throw AirlockError(.policy, "'*.' must be followed by a host name, not an address") }
            self = .address(HostPattern.unmapped(a))
        }
    }

    /// IPv4 for an IPv4-mapped IPv6 address (`::ffff:10.0.0.5` and `10.0.0.5` are one destination).
    static func unmapped(_ a: IPAddress) -> IPAddress {
        if case .v6(0, let l) = a, l >> 32 == 0xffff { return .v4(UInt32(truncatingIfNeeded: l)) }
        return a
    }

    static func unmapped(_ n: IPNetwork) -> IPNetwork {
        if case .v6(0, let l) = n.address, l >> 32 == 0xffff, n.prefixLength >= 96 {
            return IPNetwork(.v4(UInt32(truncatingIfNeeded: l)), prefixLength: n.prefixLength - 96)
        }
        return n
    }

    /// Whether `host` is one this pattern names, with the rules' semantics (a name pattern
    /// never matches an address, `*.x` never matches `x`).
    func matches(_ host: HostName) -> Bool {
        switch (self, host) {
        case (.exact(let p), .name(let n)): n == p
        case (.subdomains(let p), .name(let n)): n.utf8.count > p.utf8.count + 1 && n.hasSuffix("." + p)
        case (.address(let a), .address(let b)): a == HostPattern.unmapped(b)
        case (.network(let net), .address(let b)): net.contains(HostPattern.unmapped(b))
        default: false
        }
    }

    var description: String {
        switch self {
        case .exact(let n): n
        case .subdomains(let n): "*." + n
        case .address(let a): a.description
        case .network(let n): n.description
        }
    }
}
