import AirlockCore
import Testing

@testable import AirlockEgress

func makePolicy(
    allow: [EgressRule] = [], deny: [EgressRule] = [], inspect: [String] = [], local: Set<IPAddress> = []
) throws(AirlockError) -> EgressPolicy {
    try EgressPolicy(NetworkSpec(mode: .proxied, allow: allow, deny: deny, inspectTLS: inspect), localAddresses: local)
}

func parsedHost(_ s: String) throws -> HostName { try HostName.parse(s) }

@Suite struct EgressPolicyTests {
    @Test func exactHostMatchesCaseInsensitivelyOnDefaultPorts() throws {
        let p = try makePolicy(allow: [EgressRule(host: "Example.com.")])
        for h in ["example.com", "EXAMPLE.com", "example.com."] {
            let d = p.decide(host: try parsedHost(h), port: 443)
            #expect(d.allowed && d.rule == "Example.com.", "\(h)")
        }
        #expect(p.decide(host: try parsedHost("example.com"), port: 80).allowed)
        #expect(!p.decide(host: try parsedHost("www.example.com"), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("example.com.evil.net"), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("notexample.com"), port: 443).allowed)

        let other = p.decide(host: try parsedHost("example.com"), port: 8443)
        #expect(!other.allowed && other.rule == nil)
        #expect(other.reason.contains("only on ports 80, 443") && other.reason.contains("8443"))
        #expect(other.hint?.contains("add 8443") == true)
    }

    @Test func wildcardMatchesSubdomainsAtAnyDepthButNeverTheApex() throws {
        let p = try makePolicy(allow: [EgressRule(host: "*.example.com")])
        #expect(p.decide(host: try parsedHost("a.example.com"), port: 443).allowed)
        #expect(p.decide(host: try parsedHost("a.b.example.com"), port: 443).allowed)
        #expect(p.decide(host: try parsedHost("A.B.Example.COM."), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("example.com"), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("badexample.com"), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("a.example.com.evil.net"), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("a.example.org"), port: 443).allowed)
    }

    @Test func namesAndAddressesNeverMatchEachOther() throws {
        let p = try makePolicy(allow: [EgressRule(host: "example.com"), EgressRule(host: "93.184.216.34")])
        #expect(p.decide(host: try parsedHost("93.184.216.34"), port: 443).allowed)
        #expect(p.decide(host: try parsedHost("0x5db8d822"), port: 443).allowed)
        #expect(p.decide(host: try parsedHost("[::ffff:93.184.216.34]"), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("93.184.216.35"), port: 443).allowed)
        let byName = try makePolicy(allow: [EgressRule(host: "example.com")])
        #expect(!byName.decide(host: try parsedHost("93.184.216.34"), port: 443).allowed)
        let wild = try makePolicy(allow: [EgressRule(host: "*.0.0.1.nip.io")])
        #expect(!wild.decide(host: try parsedHost("127.0.0.1"), port: 443).allowed)
    }

    @Test func denyWinsOverAllow() throws {
        let p = try makePolicy(
            allow: [EgressRule(host: "*.example.com", ports: [22, 443])],
            deny: [EgressRule(host: "secret.example.com"), EgressRule(host: "*.internal.example.com", ports: [22])])
        let d = p.decide(host: try parsedHost("secret.example.com"), port: 443)
        #expect(!d.allowed)
        #expect(d.rule == "deny:secret.example.com")
        #expect(d.reason.contains("deny rule secret.example.com"))
        #expect(!p.decide(host: try parsedHost("Secret.Example.com."), port: 22).allowed)
        #expect(p.decide(host: try parsedHost("public.example.com"), port: 443).allowed)
        // A deny rule without ports denies every port; one with ports only those.
        #expect(p.decide(host: try parsedHost("secret.example.com"), port: 8080).rule == "deny:secret.example.com")
        #expect(!p.decide(host: try parsedHost("db.internal.example.com"), port: 22).allowed)
        #expect(p.decide(host: try parsedHost("db.internal.example.com"), port: 443).allowed)
    }

    @Test func portsAreExplicit() throws {
        let p = try makePolicy(allow: [EgressRule(host: "git.example.com", ports: [22, 8443])])
        #expect(p.decide(host: try parsedHost("git.example.com"), port: 22).allowed)
        #expect(p.decide(host: try parsedHost("git.example.com"), port: 8443).allowed)
        #expect(!p.decide(host: try parsedHost("git.example.com"), port: 443).allowed)
        #expect(!p.decide(host: try parsedHost("git.example.com"), port: 0).allowed)
        #expect(!p.decide(host: try parsedHost("git.example.com"), port: 70_000).allowed)
    }

    @Test func firstMatchingAllowRuleIsReported() throws {
        let p = try makePolicy(allow: [EgressRule(host: "*.github.com"), EgressRule(host: "api.github.com")])
        #expect(p.decide(host: try parsedHost("api.github.com"), port: 443).rule == "*.github.com")
        #expect(p.decide(host: try parsedHost("api.github.com"), port: 443).reason == "allowed by rule *.github.com")
    }

    @Test func defaultDenySaysHowToAllow() throws {
        let p = try makePolicy(allow: [EgressRule(host: "example.com")])
        let d = p.decide(host: try parsedHost("evil.com"), port: 443)
        #expect(d == EgressDecision(
            allowed: false, rule: nil, reason: "no allow rule matches evil.com:443",
            hint: "add `- host: evil.com` to network.allow, or run with --allow-host evil.com"))
        let odd = p.decide(host: try parsedHost("evil.com"), port: 8443)
        #expect(odd.hint == "add `- {host: evil.com, ports: [8443]}` to network.allow, or run with --allow-host evil.com:8443")
        let v6 = p.decide(host: try parsedHost("[2001:db8::1]"), port: 443)
        #expect(v6.reason == "no allow rule matches [2001:db8::1]:443")
        #expect(v6.hint?.contains("- host: \"2001:db8::1\"") == true)
        #expect(!(try makePolicy()).decide(host: try parsedHost("example.com"), port: 443).allowed)
    }

    @Test func connectionGateIgnoresMethodsAndPaths() throws {
        let p = try makePolicy(
            allow: [EgressRule(host: "api.github.com", methods: ["GET"], paths: ["/repos/acme/**"])],
            deny: [EgressRule(host: "api.github.com", methods: ["DELETE"])])
        let d = p.decide(host: try parsedHost("api.github.com"), port: 443)
        #expect(d.allowed && d.rule == "api.github.com GET /repos/acme/**")
        #expect(p.needsRequestView(host: try parsedHost("api.github.com"), port: 443))
    }

    @Test func needsRequestView() throws {
        let constrained = EgressRule(host: "api.example.com", methods: ["GET"])
        #expect(try makePolicy(allow: [constrained]).needsRequestView(host: try parsedHost("api.example.com"), port: 443))
        // An unconstrained allow rule lets the whole tunnel through...
        let both = try makePolicy(allow: [constrained, EgressRule(host: "*.example.com")])
        #expect(!both.needsRequestView(host: try parsedHost("api.example.com"), port: 443))
        // ...unless a deny rule with methods or paths applies to it.
        let denyPaths = try makePolicy(
            allow: [EgressRule(host: "*.example.com")], deny: [EgressRule(host: "api.example.com", paths: ["/admin/**"])])
        #expect(denyPaths.needsRequestView(host: try parsedHost("api.example.com"), port: 443))
        #expect(!denyPaths.needsRequestView(host: try parsedHost("www.example.com"), port: 443))
        // Rules for other ports do not count.
        let otherPort = try makePolicy(allow: [EgressRule(host: "api.example.com", ports: [8443], methods: ["GET"])])
        #expect(!otherPort.needsRequestView(host: try parsedHost("api.example.com"), port: 443))
        #expect(!(try makePolicy()).needsRequestView(host: try parsedHost("api.example.com"), port: 443))
    }

    @Test func inspectTLSUsesTheSameHostMatching() throws {
        let p = try makePolicy(inspect: ["api.github.com", "*.openai.com", "10.0.0.0/8"])
        #expect(p.inspects(host: try parsedHost("API.github.com.")))
        #expect(!p.inspects(host: try parsedHost("github.com")))
        #expect(!p.inspects(host: try parsedHost("uploads.github.com")))
        #expect(p.inspects(host: try parsedHost("api.openai.com")))
        #expect(p.inspects(host: try parsedHost("a.b.openai.com")))
        #expect(!p.inspects(host: try parsedHost("openai.com")))
        #expect(p.inspects(host: try parsedHost("10.1.2.3")))
        #expect(!p.inspects(host: try parsedHost("11.1.2.3")))
    }

    @Test func ipv4MappedIsTheSameDestinationButOtherEmbeddingsOnlyCountForDeny() throws {
        let p = try makePolicy(
            allow: [EgressRule(host: "10.0.0.5", ports: [5432]), EgressRule(host: "2002::/16", ports: [5432])],
            deny: [EgressRule(host: "10.0.0.0/29", ports: [5432])])
        // 10.0.0.5 is denied (deny wins) in every spelling, including 6to4 and NAT64 embeddings.
        for h in ["10.0.0.5", "[::ffff:10.0.0.5]", "[2002:a00:5::1]", "[64:ff9b::a00:5]"] {
            #expect(p.decide(host: try parsedHost(h), port: 5432).rule == "deny:10.0.0.0/29:5432", "\(h)")
        }
        let mapped = try makePolicy(allow: [EgressRule(host: "::ffff:10.0.0.8", ports: [5432])])
        #expect(mapped.decide(host: try parsedHost("10.0.0.8"), port: 5432).allowed)
        #expect(mapped.decide(host: try parsedHost("[::ffff:a00:8]"), port: 5432).allowed)
        #expect(!mapped.decide(host: try parsedHost("[64:ff9b::a00:8]"), port: 5432).allowed)
    }

    @Test(arguments: [
        (EgressRule(host: "*"), "'*' alone"),
        (EgressRule(host: "ex*ample.com"), "leading labels"),
        (EgressRule(host: "a.*.example.com"), "leading labels"),
        (EgressRule(host: "*.*.example.com"), "leading labels"),
        (EgressRule(host: "*example.com"), "leading labels"),
        (EgressRule(host: "*.10.0.0.1"), "not an address"),
        (EgressRule(host: "example..com"), "empty label"),
        (EgressRule(host: "exämple.com"), "ASCII"),
        (EgressRule(host: "1.2.3.4.5"), "IP address"),
        (EgressRule(host: ""), "empty"),
        (EgressRule(host: "10.0.0.1/8"), "10.0.0.0/8"),
        (EgressRule(host: "10.0.0.0/33"), "0 to 32"),
        (EgressRule(host: "example.com", ports: []), "'ports' is empty"),
        (EgressRule(host: "example.com", ports: [0]), "port 0"),
        (EgressRule(host: "example.com", ports: [443, 65536]), "port 65536"),
        (EgressRule(host: "example.com", methods: ["get"]), "upper case"),
        (EgressRule(host: "example.com", methods: ["GE T"]), "not an HTTP method"),
        (EgressRule(host: "example.com", methods: []), "'methods' is empty"),
        (EgressRule(host: "example.com", paths: []), "'paths' is empty"),
        (EgressRule(host: "example.com", paths: ["repos"]), "start with '/'"),
        (EgressRule(host: "example.com", paths: ["/a/**b"]), "whole segment"),
        (EgressRule(host: "example.com", paths: ["/a/../b"]), "dot segment"),
        (EgressRule(host: "example.com", paths: ["/a//b"]), "empty segment"),
        (EgressRule(host: "example.com", paths: ["/a?x=1"]), "query"),
        (EgressRule(host: "example.com", paths: ["/a%2Fb"]), "encoded '/'"),
    ])
    func invalidRulesAreRefusedNamingTheRule(_ rule: EgressRule, _ mention: String) {
        do {
            _ = try makePolicy(allow: [EgressRule(host: "ok.example.com"), rule])
            Issue.record("\(rule.label) accepted")
        } catch {
            #expect(error.code == .policy)
            #expect(error.message.hasPrefix("network.allow[1] (\(rule.label)): "), "\(error.message)")
            #expect(error.message.contains(mention), "\(error.message)")
        }
    }

    @Test func invalidDenyAndInspectEntriesAreNamed() {
        let deny = #expect(throws: AirlockError.self) { try makePolicy(deny: [EgressRule(host: "*")]) }
        #expect(deny?.message.hasPrefix("network.deny[0] (*): ") == true)
        let inspect = #expect(throws: AirlockError.self) { try makePolicy(inspect: ["ok.example.com", "*.*.example.com"]) }
        #expect(inspect?.message.hasPrefix("network.inspect_tls[1] (*.*.example.com): ") == true)
    }

    @Test func validRuleForms() throws {
        let p = try makePolicy(allow: [
            EgressRule(host: "example.com"), EgressRule(host: "*.example.com"), EgressRule(host: "10.0.0.5"),
            EgressRule(host: "::1", ports: [8080]), EgressRule(host: "10.0.0.0/8"), EgressRule(host: "fd00::/8"),
            EgressRule(host: "0x7f.1", ports: [9000]), EgressRule(host: "::ffff:192.168.0.0/112", ports: [1]),
            EgressRule(host: "api.example.com", ports: [443], methods: ["GET", "M-SEARCH"], paths: ["/", "/v1/**", "/a/*/b"]),
        ])
        #expect(p.decide(host: try parsedHost("127.0.0.1"), port: 9000).rule == "0x7f.1:9000")
        #expect(p.decide(host: try parsedHost("192.168.7.7"), port: 1).allowed)
        #expect(p.decide(host: try parsedHost("[fd12::1]"), port: 443).allowed)
        #expect(p.decide(host: try parsedHost("[::1]"), port: 8080).allowed)
    }
}
