import AirlockCore
import Testing

@testable import AirlockPolicy

/// The `network:` and `secrets:` sections: every mistake at its line and column, the checks
/// that need the whole `extends` chain, and how a child's network merges with its parent's.
@Suite struct NetworkPolicyTests {
    // Lines are numbered from 1.
    static let fixture = """
        profiles:
          bad:
            network:
              mode: proxied
              allow:
                - host: "*"
                - "a.*.example.com"
                - host: example.com:443
                - host: api.example.com
                  ports: [0, 80, 70000]
                  methods: ["GE T", get]
                  paths: [repos, "/a b", "/x?y=1"]
                  verbs: [GET]
                - {ports: [443]}
                - [x]
                - host: 10.0.0.1/8
                - 0.0.0.0/0
                - 999.1.1.1
                - host: "[::1]"
                - host: api.example.com
                  ports: []
              deny: [-bad-.com, "bücher.de"]
              inspect_tls: ["*.", "exa mple.com"]
              budgets: {bytes_out: 0, bytes_in: lots, requests_per_minute: 0, requests: 5}
              dlp: warn
              hosts: {"*.x.test": 127.0.0.1, y.test: [], z.test: example.com}
              upstream_ca: ca.pem
              proxy_port: 0
              inspect: []
            secrets:
              - name: 1BAD
                from: env:X
              - name: GOOD
                from: vault:x
              - name: GOOD
                from: env:GOOD
              - name: PATH
                from: file:relative
              - name: T
                from: "env:BAD-NAME"
                inject: {host: 10.0.0.0/8, header: "Bad Header", format: "Bearer"}
              - name: U
                from: env:U
                inject: {header: Connection, format: "{}{}", hots: x}
              - {from: env:V}
              - name: W
                from: env:W
                inject: {host: api.example.com, header: X-Key, format: "a\\nb{}"}
              - name: HTTP_PROXY
                value: x
        """

    /// (line, column, a fragment the message must contain)
    static let expected: [(Int, Int, String)] = [
        (6, 17, "network.allow host: '*' would allow every host; name the hosts or domains, e.g. *.example.com"),
        (7, 11, "network.allow: 'a.*.example.com': a '*' may only stand for the whole first label, as in *.example.com"),
        (8, 17, "network.allow host: 'example.com:443' contains ':'; give ports separately, e.g. {host: example.com, ports: [443]}"),
        (10, 19, "each port of network.allow must be a whole number from 1 to 65535, such as 443; found 0"),
        (10, 26, "each port of network.allow must be a whole number from 1 to 65535, such as 443; found 70000"),
        (11, 21, "network.allow methods: 'GE T' is not an HTTP method; write methods such as GET, POST"),
        (12, 19, "network.allow paths: path 'repos' does not start with '/'"),
        (12, 26, "network.allow paths: path '/a b' contains a space or a control character"),
        (12, 34, "network.allow paths: path '/x?y=1' contains '?' or '#'; rules match the path alone"),
        (13, 11, "unknown key 'verbs' in a rule of network.allow; allowed keys: host, ports, methods, paths"),
        (14, 11, "a rule of network.allow needs 'host'"),
        (15, 11, "each rule of network.allow must be a host such as api.example.com, or a mapping {host: api.example.com, ports: [443], methods: [GET], paths: [\"/v1/*\"]}; found a list"),
        (16, 17, "network.allow host: '10.0.0.1/8' has address bits set after the /8 prefix; write 10.0.0.0/8"),
        (17, 11, "network.allow: '0.0.0.0/0' would allow every address; name the networks"),
        (18, 11, "network.allow: '999.1.1.1' is not a valid IP address (write IPv4 addresses as four numbers, e.g. 10.0.0.5), and a host name's last label cannot start with a digit"),
        (19, 17, "network.allow host: '[::1]': write an IPv6 address without brackets, e.g. ::1"),
        (21, 18, "network.allow ports is empty; leave it out for ports 80 and 443"),
        (22, 14, "network.deny: '-bad-.com' has a label that starts or ends with '-'"),
        (22, 25, "network.deny: 'bücher.de' is not ASCII; write an internationalized name in its ASCII (punycode) form"),
        (23, 21, "network.inspect_tls: '*.' would allow every host"),
        (23, 27, "network.inspect_tls: 'exa mple.com' is not a host: it contains a space or a control character"),
        (24, 28, "network.budgets.bytes_out must be greater than zero; found '0'"),
        (24, 41, "network.budgets.bytes_in: 'lots' is not a size"),
        (24, 68, "network.budgets.requests_per_minute must be a whole number from 1 to 1000000, such as 600; found 0"),
        (24, 71, "unknown key 'requests' in network.budgets; allowed keys: bytes_out, bytes_in, requests_per_minute"),
        (25, 12, "network.dlp must be one of block, redact; found 'warn'"),
        (26, 15, "network.hosts: '*.x.test' cannot be pinned: network.hosts maps DNS names"),
        (26, 46, "network.hosts.y.test is empty; give the address (or addresses) the name resolves to"),
        (26, 58, "network.hosts.z.test: 'example.com' is not an IP address"),
        (27, 20, "network.upstream_ca must be the absolute host path of a PEM file of CA certificates, e.g. /etc/ssl/private-ca.pem; found 'ca.pem'"),
        (28, 19, "network.proxy_port must be a whole number from 1 to 65535, such as 3128; found 0"),
        (29, 7, "unknown key 'inspect' in network; allowed keys: mode, allow, deny, inspect_tls, budgets, dlp, hosts, upstream_ca, proxy_port"),
        (31, 15, "secret name '1BAD' is not a valid environment variable name"),
        (34, 15, "secret 'GOOD': from 'vault:x' names no source; 'from' is env:NAME (a variable of airlock's environment) or file:/absolute/path"),
        (35, 15, "two secrets are named 'GOOD' (the first at line 33, column 15); each secret needs its own name"),
        (37, 15, "secret name 'PATH' is a variable Airlock sets inside the sandbox; choose another name"),
        (38, 15, "secret 'PATH': from 'file:relative': the path is not absolute"),
        (40, 15, "secret 'T': from 'env:BAD-NAME': 'BAD-NAME' is not a valid environment variable name"),
        (41, 24, "secret 'T' inject.host: '10.0.0.0/8' is an address block"),
        (41, 44, "secret 'T' inject.header: header 'Bad Header' is not an HTTP header name"),
        (41, 66, "secret 'T' inject.format: format 'Bearer' has no '{}'; it needs exactly one, where the secret goes, e.g. \"Bearer {}\""),
        (44, 17, "secret 'U' inject needs 'host'"),
        (44, 26, "secret 'U' inject.header: header 'Connection' cannot carry a secret: it is hop-by-hop or frames the request"),
        (44, 46, "secret 'U' inject.format: format '{}{}' has 2 '{}'; it needs exactly one"),
        (44, 54, "unknown key 'hots' in a secret's inject; allowed keys: host, header, format (did you mean 'host'?)"),
        (45, 9, "a secret needs a 'name', the variable the sandbox sees"),
        (48, 64, "secret 'W' inject.format: format 'a\\u{a}b{}' contains a control character, which no header value may hold"),
        (49, 9, "a secret needs 'from', where airlock reads its value: env:NAME (a variable of airlock's environment) or file:/absolute/path"),
        (49, 15, "secret name 'HTTP_PROXY' is a variable Airlock sets inside the sandbox"),
        (50, 9, "unknown key 'value' in a secret; allowed keys: name, from, inject"),
    ]

    @Test func everyMistakeIsReportedAtItsLineAndColumn() {
        let found = diagnostics(Self.fixture)
        #expect(found.map { [$0.line, $0.column] } == Self.expected.map { [$0.0, $0.1] })
        for (d, e) in zip(found, Self.expected) {
            #expect(d.message.contains(e.2), "\(d) should contain: \(e.2)")
        }
    }

    @Test func moreShapesThatAreRefused() {
        let text = """
            profiles:
              a:
                network:
                  mode: proxied
                  allow:
                    - fe80::1%eth0
                    - 10.0
                    - host: example.com
                      methods: GET
                    - host: x.example.com
                      ports: [https]
                    - host: y.example.com
                      methods: []
                      paths:
                  hosts: {a.test: ~}
                  budgets: [1M]
                secrets:
                  - {name: B, from: env:B, inject: {host: h.example.com, header: X, format: ~}}
                  - {name: C, from: yes}
                  - "D"
              b:
                secrets: {name: A}
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "6:11 network.allow: 'fe80::1%eth0' is not a valid IPv6 address; a host is a DNS name (example.com), '*.' and a DNS name for its subdomains (*.example.com), an IP address (10.0.0.5, ::1) or a CIDR block (10.0.0.0/8)",
                "7:11 network.allow: '10.0' is not a valid IP address (write IPv4 addresses as four numbers, e.g. 10.0.0.5), and a host name's last label cannot start with a digit; a host is a DNS name (example.com), '*.' and a DNS name for its subdomains (*.example.com), an IP address (10.0.0.5, ::1) or a CIDR block (10.0.0.0/8)",
                "9:20 network.allow methods must be a list such as [GET, HEAD]; found the text 'GET'",
                "11:19 each port of network.allow must be a whole number from 1 to 65535, such as 443; found 'https'",
                "13:20 network.allow methods is empty; leave it out for any method",
                "14:17 network.allow paths has no value; write a list such as [\"/v1/*\"], or leave it out for any path",
                "15:23 network.hosts.a.test has no value; expected text",
                "16:16 network.budgets must be a mapping with the keys bytes_out, bytes_in, requests_per_minute (e.g. {bytes_out: 50M, requests_per_minute: 600}); found a list",
                "18:81 secret 'B' inject.format has no value; expected text",
                "19:25 secret 'C' from is the YAML boolean 'yes'; write it in quotes (\"yes\") if you mean the text",
                "20:9 each secret must be a mapping {name: GITHUB_TOKEN, from: env:GITHUB_TOKEN, inject: {host: api.github.com, header: Authorization, format: \"Bearer {}\"}}; found the text 'D'",
                "22:14 secrets must be a list of bindings, each a mapping {name: GITHUB_TOKEN, from: env:GITHUB_TOKEN, inject: {host: api.github.com, header: Authorization, format: \"Bearer {}\"}}; found a mapping",
            ])
    }

    @Test func misspelledKeysGetASuggestionAndWrongShapesSayWhatIsExpected() {
        let text = """
            profiles:
              a:
                network: {mode: proxied, alow: [x.example.com], inspect_tsl: [x.example.com], proxy-port: 1}
                secrets: [{name: A, form: env:A, inject: [x]}]
              b:
                network: proxied
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        let keys = "allowed keys: mode, allow, deny, inspect_tls, budgets, dlp, hosts, upstream_ca, proxy_port"
        #expect(
            found == [
                "3:30 unknown key 'alow' in network; \(keys) (did you mean 'allow'?)",
                "3:53 unknown key 'inspect_tsl' in network; \(keys) (did you mean 'inspect_tls'?)",
                "3:83 unknown key 'proxy-port' in network; \(keys) (did you mean 'proxy_port'?)",
                "4:15 a secret needs 'from', where airlock reads its value: env:NAME (a variable of airlock's environment) or file:/absolute/path",
                "4:25 unknown key 'form' in a secret; allowed keys: name, from, inject (did you mean 'from'?)",
                "4:46 secret 'A' inject must be a mapping {host: api.example.com, header: Authorization, format: \"Bearer {}\"}; found a list",
                "6:14 network must be a mapping with the keys mode, allow, deny, inspect_tls, budgets, dlp, hosts, upstream_ca, proxy_port (e.g. network: {mode: none}); found the text 'proxied'",
            ])
    }

    @Test func plainAndQuotedAddressesAndShorthandRules() throws {
        let p = try #require(
            flat(
                "a",
                """
                profiles:
                  a:
                    network:
                      mode: proxied
                      allow: [example.com, "::1", 10.0.0.5, "2001:db8::/32", "*.example.net"]
                      deny:
                        - ::ffff:10.0.0.1
                        - fd00::/8
                      hosts: {one.test: "::1"}
                """))
        #expect(p.network.allow?.map(\.host) == ["example.com", "::1", "10.0.0.5", "2001:db8::/32", "*.example.net"])
        #expect(p.network.allow?.allSatisfy { $0.ports == nil && $0.methods == nil && $0.paths == nil } == true)
        #expect(p.network.deny?.map(\.host) == ["::ffff:10.0.0.1", "fd00::/8"])
        #expect(p.network.hosts == ["one.test": ["::1"]])
        // Given nothing, the section's values stay unset (the resolver supplies the defaults).
        let bare = try #require(flat("b", "profiles:\n  b: {network: {mode: proxied}}\n"))
        #expect(bare.network == Profile.Network(mode: .proxied))
    }

    // MARK: Checks of the flattened profile

    static let crossFixture = """
        profiles:
          closed:
            extends: default
            network:
              allow: [example.com]
              inspect_tls: [example.com]
          closed2:
            network:
              mode: none
              deny: [example.com]
          open:
            network:
              mode: proxied
              allow:
                - api.github.com
                - {host: uploads.example.com, methods: [PUT]}
                - {host: plain.example.com, ports: [80], paths: ["/x"]}
                - {host: api.example.org, paths: ["/v1/**"]}
              deny: [blocked.example.com]
              inspect_tls: ["*.example.com"]
            environment:
              set: {GITHUB_TOKEN: x}
              pass: [OTHER]
            secrets:
              - name: GITHUB_TOKEN
                from: env:GITHUB_TOKEN
                inject: {host: api.github.com, header: Authorization, format: "Bearer {}"}
              - name: OTHER
                from: env:OTHER
                inject: {host: other.example.org, header: X-Key}
              - name: BLOCKED
                from: env:B
                inject: {host: blocked.example.com, header: X-Key}
          child:
            extends: open
            description: "inherits every problem of open: none is reported again"
          offchild:
            extends: open
            network: {mode: none}
          fixed:
            extends: open
            network:
              inspect_tls: [api.github.com]
        """

    @Test func rulesUnderModeNoneAndSecretsTheGatewayCouldNotInjectAreReportedWhereWritten() {
        let found = diagnostics(Self.crossFixture).map { "\($0.line):\($0.column) \($0.message)" }
        func none(_ secret: String, _ host: String) -> String {
            "37:3 profile 'offchild', through what it inherits: secret '\(secret)' is injected into requests to \(host) by the egress gateway, which a profile with network mode: none does not use; set network.mode: proxied and add \(host) to network.allow and network.inspect_tls (or drop 'inject')"
        }
        #expect(
            found == [
                "5:7 network.allow has no effect with mode: none; set mode: proxied (this profile inherits mode: none)",
                "6:7 network.inspect_tls has no effect with mode: none; set mode: proxied (this profile inherits mode: none)",
                "10:7 network.deny has no effect with mode: none; set mode: proxied",
                "18:11 network.allow rule 'api.example.org /v1/**' limits paths, which the gateway can only see in HTTPS requests whose TLS it inspects; add api.example.org to network.inspect_tls, or give the rule only plain-HTTP ports (e.g. ports: [80])",
                "25:15 secret 'GITHUB_TOKEN' is also given a value by environment.set; the sandbox's GITHUB_TOKEN comes from the secret: remove one of them",
                "27:24 secret 'GITHUB_TOKEN': injecting a credential into HTTPS requests to api.github.com needs the gateway to inspect their TLS; add api.github.com to network.inspect_tls",
                "28:15 secret 'OTHER' is also in environment.pass; the sandbox's OTHER comes from the secret: remove it from environment.pass",
                "30:24 the gateway would refuse other.example.org: add it to network.allow (secret 'OTHER' is injected into requests to it)",
                "30:24 secret 'OTHER': injecting a credential into HTTPS requests to other.example.org needs the gateway to inspect their TLS; add other.example.org to network.inspect_tls",
                "33:24 the gateway would refuse blocked.example.com: network.deny has 'blocked.example.com', so secret 'BLOCKED' could never be sent; remove the deny rule or inject into another host",
                none("GITHUB_TOKEN", "api.github.com"),
                none("OTHER", "other.example.org"),
                none("BLOCKED", "blocked.example.com"),
            ])
    }

    @Test func methodAndPathRulesOnHTTPSNeedInspection() {
        let text = """
            profiles:
              a:
                network:
                  mode: proxied
                  allow:
                    - {host: api.example.com, methods: [GET]}
                    - {host: both.example.com, methods: [GET]}
                    - both.example.com
                    - {host: plain.example.com, ports: [80, 8080], paths: ["/x"]}
                    - {host: seen.example.com, paths: ["/x"]}
                  deny:
                    - {host: api.example.com, methods: [DELETE]}
                    - {host: plain.example.com, ports: [80], methods: [DELETE]}
                    - {host: seen.example.com, paths: ["/admin/**"]}
                  inspect_tls: [seen.example.com]
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "6:11 network.allow rule 'api.example.com GET' limits methods, which the gateway can only see in HTTPS requests whose TLS it inspects; add api.example.com to network.inspect_tls, or give the rule only plain-HTTP ports (e.g. ports: [80])",
                "12:11 network.deny rule 'api.example.com DELETE' limits methods, which the gateway can only see in HTTPS requests whose TLS it inspects, so it would refuse every HTTPS connection to api.example.com; add api.example.com to network.inspect_tls, or drop the rule's methods to refuse the host outright",
            ])
    }

    @Test func aModeSetInTheSameSectionOrInheritedMakesRulesValid() {
        let text = """
            profiles:
              base: {network: {mode: proxied}}
              child: {extends: base, network: {allow: [example.com], deny: [bad.example.com], inspect_tls: [example.com]}}
              empty: {network: {allow: [], inspect_tls: []}}
            """
        #expect(diagnostics(text).isEmpty)
    }

    @Test func aCorrectBindingNeedsAllowAndInspectTLSCoveringItsHost() {
        func policy(injectingInto host: String) -> String {
            """
            profiles:
              gh:
                network:
                  mode: proxied
                  allow: ["*.github.com", {host: uploads.example.com, ports: [8080], methods: [PUT]}]
                  deny: [{host: api.github.com, methods: [DELETE]}]
                  inspect_tls: ["*.github.com"]
                secrets:
                  - {name: GH, from: env:GH, inject: {host: \(host), header: Authorization, format: "token {}"}}
                  - {name: GH_ALL, from: "file:/run/gh", inject: {host: "*.eu.github.com", header: Authorization}}
                  - {name: PLAIN, from: env:PLAIN}
            """
        }
        #expect(diagnostics(policy(injectingInto: "api.github.com")).isEmpty)
        // *.github.com never covers the apex.
        #expect(
            diagnostics(policy(injectingInto: "github.com")).map(\.message) == [
                "the gateway would refuse github.com: add it to network.allow (secret 'GH' is injected into requests to it)",
                "secret 'GH': injecting a credential into HTTPS requests to github.com needs the gateway to inspect their TLS; add github.com to network.inspect_tls",
            ])
    }

    // MARK: extends

    static let family = """
        profiles:
          base:
            network:
              mode: proxied
              allow: [a.example.com, {host: b.example.com, ports: [443]}]
              deny: [bad.example.com]
              inspect_tls: [a.example.com]
              budgets: {bytes_out: 1M, requests_per_minute: 10}
              dlp: redact
              hosts: {a.example.com: 10.0.0.1, b.example.com: [10.0.0.2]}
              upstream_ca: /etc/ssl/a.pem
              proxy_port: 8080
            secrets:
              - {name: A, from: env:A, inject: {host: a.example.com, header: X-A}}
              - {name: B, from: env:B}
          child:
            extends: base
            network:
              allow: [c.example.com, a.example.com]
              deny: [worse.example.com]
              inspect_tls: [c.example.com]
              budgets: {bytes_in: 2M, requests_per_minute: 20}
              hosts: {b.example.com: [10.0.0.3], c.example.com: 10.0.0.4}
              proxy_port: 9090
            secrets:
              - {name: B, from: "file:/run/b"}
              - {name: C, from: env:C, inject: {host: c.example.com, header: Authorization, format: "token {}"}}
          off:
            extends: child
            network: {mode: none}
            secrets: [{name: A, from: env:A}, {name: C, from: env:C}]
        """

    @Test func listsAddBudgetsAndHostsMergeScalarsOverride() throws {
        let p = try #require(flat("child", Self.family))
        #expect(p.network.mode == .proxied)
        #expect(p.network.allow == [EgressRule(host: "a.example.com"), EgressRule(host: "b.example.com", ports: [443]), EgressRule(host: "c.example.com")])
        #expect(p.network.deny == [EgressRule(host: "bad.example.com"), EgressRule(host: "worse.example.com")])
        #expect(p.network.inspectTLS == ["a.example.com", "c.example.com"])
        #expect(p.network.budgets == EgressBudgets(bytesOut: MiB, bytesIn: 2 * MiB, requestsPerMinute: 20))
        #expect(p.network.dlp == .redact)
        #expect(p.network.hosts == ["a.example.com": ["10.0.0.1"], "b.example.com": ["10.0.0.3"], "c.example.com": ["10.0.0.4"]])
        #expect(p.network.upstreamCAFile == "/etc/ssl/a.pem")
        #expect(p.network.proxyPort == 9090)
        #expect(
            p.secrets == [
                SecretBinding(name: "A", source: "env:A", inject: SecretInjection(host: "a.example.com", header: "X-A")),
                SecretBinding(name: "B", source: "file:/run/b"),
                SecretBinding(
                    name: "C", source: "env:C", inject: SecretInjection(host: "c.example.com", header: "Authorization", format: "token {}")),
            ])
    }

    @Test func aChildCanTurnTheNetworkOffAndKeepItsSecretsUninjected() throws {
        let p = try #require(flat("off", Self.family))
        #expect(p.network.mode == NetworkSpec.Mode.none)
        #expect(p.network.allow?.count == 3)  // still there, but without effect (the resolver drops them)
        #expect(p.secrets?.map(\.name) == ["A", "B", "C"])
        #expect(p.secrets?.allSatisfy { $0.inject == nil } == true)
    }

    @Test func theBuiltinsHaveNoNetworkAndNoSecrets() throws {
        for name in ["default", "review", "untrusted"] {
            let p = try Policy.flatten(name, in: nil).get()
            #expect(p.network == Profile.Network(mode: NetworkSpec.Mode.none))
            #expect(p.secrets == nil)
        }
    }
}
