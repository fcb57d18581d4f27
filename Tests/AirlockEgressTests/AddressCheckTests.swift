import AirlockCore
import Testing

@testable import AirlockEgress

@Suite struct AddressCheckTests {
    func ip(_ s: String) throws -> IPAddress { try #require(IPAddress(literal: s)) }

    @Test func publicAddressesAreAllowed() throws {
        let p = try makePolicy(allow: [EgressRule(host: "example.com")])
        for a in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"] {
            let d = p.checkAddress(try ip(a), host: try parsedHost("example.com"), port: 443)
            #expect(d.allowed && d.rule == nil, "\(a)")
        }
    }

    @Test(arguments: IPAddressTests.special)
    func specialAddressesAreRefusedWithoutARule(_ s: Spelling) throws {
        let p = try makePolicy(allow: [EgressRule(host: "*.example.com"), EgressRule(host: "10.0.0.0/8", ports: [5432])])
        let address = try ip(s.text)
        let d = p.checkAddress(address, host: try parsedHost("app.example.com"), port: 443)
        #expect(!d.allowed)
        #expect(d.rule == nil)
        #expect(d.reason.hasPrefix("\(address) (resolved from app.example.com) "), "\(d.reason)")
        #expect(d.reason.contains(s.addressClass.phrase), "\(d.reason)")
        #expect(d.hint?.contains("- {host: \(address.isIPv4 ? address.description : "\"\(address)\""), ports: [443]}") == true)
        #expect(p.effectiveClass(address) == s.addressClass)
    }

    @Test func cloudMetadataIsNamed() throws {
        let p = try makePolicy()
        let d = p.checkAddress(try ip("169.254.169.254"), host: try parsedHost("metadata.google.internal"), port: 80)
        #expect(d.reason == "169.254.169.254 (resolved from metadata.google.internal) is a cloud metadata address")
        #expect(d.hint?.contains("credentials") == true)
        let embedded = p.checkAddress(try ip("::ffff:169.254.169.254"), host: .address(try ip("::ffff:169.254.169.254")), port: 80)
        #expect(embedded.reason == "::ffff:169.254.169.254 leads to 169.254.169.254, a cloud metadata address")
        let literal = p.checkAddress(try ip("127.0.0.1"), host: try parsedHost("127.1"), port: 80)
        #expect(literal.reason == "127.0.0.1 is a loopback address")
    }

    @Test func explicitAddressRuleAllowsLoopbackOnlyOnItsPort() throws {
        let p = try makePolicy(allow: [EgressRule(host: "127.0.0.1", ports: [8080])])
        let loopback = try ip("127.0.0.1")
        let ok = p.checkAddress(loopback, host: .address(loopback), port: 8080)
        #expect(ok.allowed && ok.rule == "127.0.0.1:8080")
        #expect(p.decide(host: .address(loopback), port: 8080).allowed)
        #expect(!p.checkAddress(loopback, host: .address(loopback), port: 8081).allowed)
        #expect(!p.checkAddress(loopback, host: .address(loopback), port: 443).allowed)
        #expect(!p.checkAddress(try ip("127.0.0.2"), host: .address(loopback), port: 8080).allowed)
        #expect(!p.checkAddress(try ip("::1"), host: .address(loopback), port: 8080).allowed)
        // The same address mapped into IPv6 is the same destination; NAT64 is not.
        #expect(p.checkAddress(try ip("::ffff:127.0.0.1"), host: .address(loopback), port: 8080).allowed)
        #expect(!p.checkAddress(try ip("64:ff9b::7f00:1"), host: .address(loopback), port: 8080).allowed)
        // A name rule never opens an address: localhost resolving to 127.0.0.1 needs the address rule.
        let byName = try makePolicy(allow: [EgressRule(host: "localhost", ports: [8080])])
        #expect(byName.decide(host: try parsedHost("localhost"), port: 8080).allowed)
        #expect(!byName.checkAddress(loopback, host: try parsedHost("localhost"), port: 8080).allowed)
    }

    @Test func blocksOpenSpecialAddressesButNeverCloudMetadata() throws {
        let p = try makePolicy(allow: [
            EgressRule(host: "10.0.0.0/8", ports: [5432]), EgressRule(host: "169.254.0.0/16"), EgressRule(host: "0.0.0.0/0", ports: [9999]),
        ])
        #expect(p.checkAddress(try ip("10.1.2.3"), host: try parsedHost("db.internal"), port: 5432).allowed)
        #expect(!p.checkAddress(try ip("10.1.2.3"), host: try parsedHost("db.internal"), port: 5433).allowed)
        #expect(p.checkAddress(try ip("169.254.1.1"), host: try parsedHost("x.internal"), port: 80).allowed)
        #expect(!p.checkAddress(try ip("169.254.169.254"), host: try parsedHost("x.internal"), port: 80).allowed)
        #expect(!p.checkAddress(try ip("169.254.169.254"), host: try parsedHost("x.internal"), port: 9999).allowed)
        #expect(p.checkAddress(try ip("127.0.0.1"), host: try parsedHost("x.internal"), port: 9999).allowed)
        let named = try makePolicy(allow: [EgressRule(host: "169.254.169.254", ports: [80])])
        #expect(named.checkAddress(try ip("169.254.169.254"), host: try parsedHost("x.internal"), port: 80).allowed)
    }

    @Test func denyRulesNamingAnAddressWinOnEveryPathToIt() throws {
        let p = try makePolicy(
            allow: [EgressRule(host: "*.example.com"), EgressRule(host: "2002::/16"), EgressRule(host: "93.184.216.34")],
            deny: [EgressRule(host: "93.184.216.0/24")])
        for a in ["93.184.216.34", "::ffff:93.184.216.34", "2002:5db8:d822::1", "64:ff9b::5db8:d822"] {
            let d = p.checkAddress(try ip(a), host: try parsedHost("www.example.com"), port: 443)
            #expect(!d.allowed, "\(a)")
            #expect(d.rule == "deny:93.184.216.0/24", "\(a)")
        }
        #expect(p.checkAddress(try ip("93.184.217.34"), host: try parsedHost("www.example.com"), port: 443).allowed)
        // A deny rule for another port does not apply.
        let ssh = try makePolicy(deny: [EgressRule(host: "93.184.216.34", ports: [22])])
        #expect(ssh.checkAddress(try ip("93.184.216.34"), host: try parsedHost("www.example.com"), port: 443).allowed)
        #expect(!ssh.checkAddress(try ip("93.184.216.34"), host: try parsedHost("www.example.com"), port: 22).allowed)
    }

    @Test func theHostsOwnAddressesAreRefused() throws {
        let own = try ip("8.8.4.4")
        let p = try makePolicy(allow: [EgressRule(host: "*.example.com")], local: [own, try ip("2606:4700::6810:1")])
        for a in ["8.8.4.4", "::ffff:8.8.4.4", "2002:808:404::1", "2606:4700::6810:1"] {
            let d = p.checkAddress(try ip(a), host: try parsedHost("www.example.com"), port: 443)
            #expect(!d.allowed, "\(a)")
            #expect(d.reason.contains("an address of this host"), "\(d.reason)")
            #expect(p.effectiveClass(try ip(a)) == .thisHost)
        }
        let allowed = try makePolicy(allow: [EgressRule(host: "8.8.4.4", ports: [443])], local: [own])
        #expect(allowed.checkAddress(own, host: .address(own), port: 443).allowed)
    }

    @Test func systemLocalAddressesAreSpecialOrThisHost() throws {
        let local = LocalAddresses.current()
        let p = try EgressPolicy(NetworkSpec(mode: .proxied))
        for a in local {
            #expect(p.effectiveClass(a).isSpecial, "\(a)")
            #expect(!p.checkAddress(a, host: .address(a), port: 443).allowed, "\(a)")
        }
    }
}
