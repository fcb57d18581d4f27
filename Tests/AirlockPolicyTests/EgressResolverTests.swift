import AirlockCore
import Testing

@testable import AirlockPolicy

/// How the resolver turns a profile's network and secrets (and `--allow-host`) into the spec.
@Suite struct EgressResolverTests {
    static let host = ["HOME": "/home/alice", "TERM": "xterm", "HTTP_PROXY": "http://corp-proxy:8080", "NO_PROXY": ".corp"]

    static let policy = """
        profiles:
          gh:
            extends: default
            environment:
              pass: [TERM, HTTP_PROXY]
            network:
              mode: proxied
              allow:
                - pypi.org
                - {host: api.github.com, ports: [443], methods: [GET, POST]}
              deny: [evil.pypi.org]
              inspect_tls: [api.github.com]
              budgets: {bytes_out: 50M, requests_per_minute: 600}
              dlp: redact
              hosts: {upstream.test: [127.0.0.1]}
              upstream_ca: /etc/ssl/test-ca.pem
              proxy_port: 8888
            secrets:
              - {name: GITHUB_TOKEN, from: env:GITHUB_TOKEN, inject: {host: api.github.com, header: Authorization, format: "Bearer {}"}}
              - {name: PYPI_TOKEN, from: "file:/run/secrets/pypi"}
          plain:
            extends: default
            network: {mode: proxied, allow: [pypi.org]}
          offline:
            extends: gh
            network: {mode: none}
            secrets: [{name: GITHUB_TOKEN, from: env:GITHUB_TOKEN}]
        """

    func request(_ profile: String, allowHosts: [EgressRule] = [], env: [EnvironmentVariable] = []) throws -> RunRequest {
        let doc = try #require(document(Self.policy))
        return RunRequest(
            profile: profile, policy: doc, command: ["true"], env: env, allowHosts: allowHosts, currentDirectory: "/srv/repo",
            hostEnvironment: Self.host)
    }

    func value(_ name: String, in spec: SandboxSpec) -> String? {
        spec.environment.first { $0.name == name }?.value
    }

    @Test func aProxiedProfileResolvesToTheWholeNetworkSpec() throws {
        let spec = try Resolver.resolve(try request("gh"))
        #expect(
            spec.network
                == NetworkSpec(
                    mode: .proxied,
                    allow: [EgressRule(host: "pypi.org"), EgressRule(host: "api.github.com", ports: [443], methods: ["GET", "POST"])],
                    deny: [EgressRule(host: "evil.pypi.org")], inspectTLS: ["api.github.com"],
                    budgets: EgressBudgets(bytesOut: 50 * MiB, requestsPerMinute: 600), dlp: .redact,
                    hosts: ["upstream.test": ["127.0.0.1"]], upstreamCAFile: "/etc/ssl/test-ca.pem", proxyPort: 8888))
        #expect(
            spec.secrets == [
                SecretBinding(
                    name: "GITHUB_TOKEN", source: "env:GITHUB_TOKEN",
                    inject: SecretInjection(host: "api.github.com", header: "Authorization", format: "Bearer {}")),
                SecretBinding(name: "PYPI_TOKEN", source: "file:/run/secrets/pypi"),
            ])
    }

    @Test func theEnvironmentOfAProxiedRunWithInspection() throws {
        let spec = try Resolver.resolve(try request("gh"))
        let proxy = "http://127.0.0.1:8888"
        let bundle = "/run/airlock/ca-bundle.pem"
        let ca = "/run/airlock/ca.pem"
        #expect(
            spec.environment == [
                .init("PATH", Resolver.path), .init("HOME", "/home/agent"), .init("USER", "agent"), .init("LOGNAME", "agent"),
                .init("SHELL", "/bin/sh"), .init("TERM", "xterm"),
                // The host's proxy is passed, then replaced in place by the gateway's.
                .init("HTTP_PROXY", proxy),
                .init("HTTPS_PROXY", proxy), .init("http_proxy", proxy), .init("https_proxy", proxy), .init("ALL_PROXY", proxy),
                .init("all_proxy", proxy), .init("NO_PROXY", "localhost,127.0.0.1,::1"), .init("no_proxy", "localhost,127.0.0.1,::1"),
                .init("SSL_CERT_FILE", bundle), .init("REQUESTS_CA_BUNDLE", bundle), .init("CURL_CA_BUNDLE", bundle),
                .init("GIT_SSL_CAINFO", bundle), .init("NODE_EXTRA_CA_CERTS", ca), .init("AIRLOCK_CA_CERT", ca),
                // Injected: a placeholder. Not injected (PYPI_TOKEN): nothing from the resolver.
                .init("GITHUB_TOKEN", "airlock-placeholder-GITHUB_TOKEN"),
            ])
    }

    @Test func noCAVariablesWithoutInspectionAndNoProxyVariablesWithoutTheGateway() throws {
        let plain = try Resolver.resolve(try request("plain"))
        #expect(value("HTTPS_PROXY", in: plain) == "http://127.0.0.1:3128")
        #expect(plain.network.proxyPort == NetworkSpec.defaultProxyPort)
        for name in EgressEnvironment.caVariableNames { #expect(value(name, in: plain) == nil) }

        let none = try Resolver.resolve(try request("default"))
        #expect(none.network == NetworkSpec(mode: .none))
        for name in EgressEnvironment.proxyVariableNames + EgressEnvironment.caVariableNames {
            #expect(value(name, in: none) == nil, "\(name)")
        }
        #expect(none.secrets.isEmpty)
    }

    @Test func theOperatorsEnvWinsOverTheGatewaysVariablesAndPlaceholders() throws {
        let spec = try Resolver.resolve(
            try request("gh", env: [.init("NO_PROXY", "localhost,.internal"), .init("GITHUB_TOKEN", "typed"), .init("SSL_CERT_FILE", "/x")]))
        #expect(value("NO_PROXY", in: spec) == "localhost,.internal")
        #expect(value("GITHUB_TOKEN", in: spec) == "typed")
        #expect(value("SSL_CERT_FILE", in: spec) == "/x")
        #expect(Set(spec.environment.map(\.name)).count == spec.environment.count)
    }

    @Test func environmentSetCanAdjustTheGatewaysVariables() throws {
        let doc = try #require(
            document("profiles:\n  p: {network: {mode: proxied}, environment: {set: {no_proxy: 'localhost,.svc'}}}\n"))
        let spec = try Resolver.resolve(RunRequest(profile: "p", policy: doc, command: ["true"], currentDirectory: "/srv/repo"))
        #expect(value("no_proxy", in: spec) == "localhost,.svc")
        #expect(value("NO_PROXY", in: spec) == EgressEnvironment.noProxy)
    }

    // MARK: --allow-host

    @Test func allowHostOpensExactlyThoseHostsOnAProfileWithoutNetwork() throws {
        let rule = try RunRequest.parseAllowHost("api.example.com:443")
        let spec = try Resolver.resolve(try request("default", allowHosts: [rule]))
        #expect(spec.network == NetworkSpec(mode: .proxied, allow: [rule]))
        #expect(value("HTTP_PROXY", in: spec) == "http://127.0.0.1:3128")
        #expect(value("AIRLOCK_CA_CERT", in: spec) == nil)
    }

    @Test func allowHostOnAProfileTurnedOffKeepsItsOtherSettingsButNotItsInheritedAllowRules() throws {
        let rule = EgressRule(host: "files.example.com")
        let off = try Resolver.resolve(try request("offline"))
        #expect(off.network == NetworkSpec(mode: .none))
        #expect(value("GITHUB_TOKEN", in: off) == nil)  // not injected: the command layer gives the value
        let spec = try Resolver.resolve(try request("offline", allowHosts: [rule]))
        #expect(
            spec.network
                == NetworkSpec(
                    mode: .proxied, allow: [rule], deny: [EgressRule(host: "evil.pypi.org")], inspectTLS: [],
                    budgets: EgressBudgets(bytesOut: 50 * MiB, requestsPerMinute: 600), dlp: .redact,
                    hosts: ["upstream.test": ["127.0.0.1"]], upstreamCAFile: "/etc/ssl/test-ca.pem", proxyPort: 8888))
        #expect(value("HTTPS_PROXY", in: spec) == "http://127.0.0.1:8888")
    }

    @Test func allowHostAddsToAProxiedProfile() throws {
        let spec = try Resolver.resolve(try request("plain", allowHosts: [EgressRule(host: "*.example.com", ports: [443]), EgressRule(host: "pypi.org")]))
        #expect(spec.network.allow == [EgressRule(host: "pypi.org"), EgressRule(host: "*.example.com", ports: [443])])
    }

    @Test func allowHostRulesBuiltInCodeAreChecked() throws {
        let error = refusal(try request("default", allowHosts: [EgressRule(host: "*"), EgressRule(host: "ok.example.com", ports: [0])]))
        #expect(error?.code == .usage)
        #expect(
            error?.message.split(separator: "\n").map(String.init) == [
                "--allow-host *: '*' would allow every host; name the hosts or domains, e.g. *.example.com",
                "--allow-host ok.example.com:0: port 0 is out of range; ports are 1 to 65535",
            ])
    }

    @Test(arguments: [
        ("api.example.com", EgressRule(host: "api.example.com")),
        ("api.example.com:443", EgressRule(host: "api.example.com", ports: [443])),
        ("api.example.com:443,8443,443", EgressRule(host: "api.example.com", ports: [443, 8443])),
        ("*.example.com:443", EgressRule(host: "*.example.com", ports: [443])),
        ("10.0.0.5:8080", EgressRule(host: "10.0.0.5", ports: [8080])),
        ("10.0.0.0/8", EgressRule(host: "10.0.0.0/8")),
        ("[::1]:443", EgressRule(host: "::1", ports: [443])),
        ("[::1]", EgressRule(host: "::1")),
        ("[fd00::/8]:443", EgressRule(host: "fd00::/8", ports: [443])),
        ("EXAMPLE.com.:65535", EgressRule(host: "EXAMPLE.com.", ports: [65535])),
    ])
    func allowHostSyntax(text: String, rule: EgressRule) throws {
        #expect(try RunRequest.parseAllowHost(text) == rule)
    }

    @Test(arguments: [
        ("evil.com:0", "port 0 is out of range; ports are 1 to 65535"),
        ("evil.com:65536", "port 65536 is out of range; ports are 1 to 65535"),
        (":443", "there is no host before the ':'"),
        ("a b", "'a b' is not a host: it contains a space or a control character"),
        ("", "no host given"),
        ("evil.com:", "there is no port after the ':'"),
        ("evil.com:https", "'https' is not a port number"),
        ("evil.com:443,", "'' is not a port number"),
        ("evil.com:-1", "'-1' is not a port number"),
        ("::1", "an IPv6 address goes in brackets, e.g. [::1] or [::1]:443"),
        ("2001:db8::1:443", "an IPv6 address goes in brackets"),
        ("[::1", "the '[' of an IPv6 address has no ']'"),
        ("[::1]443", "'443' follows the ']'; write [ADDRESS] or [ADDRESS]:PORT"),
        ("[example.com]:443", "brackets are only for IPv6 addresses; write example.com without them"),
        ("*", "'*' would allow every host"),
        ("*:443", "'*' would allow every host"),
        ("a.*.com", "a '*' may only stand for the whole first label"),
        ("0.0.0.0/0:443", "would allow every address"),
    ])
    func allowHostMistakes(text: String, fragment: String) {
        do {
            let rule = try RunRequest.parseAllowHost(text)
            Issue.record("'\(text)' was accepted as \(rule)")
        } catch {
            #expect(error.code == .usage)
            #expect(error.message.hasPrefix("--allow-host '\(text)': "), "\(error.message)")
            #expect(error.message.contains(fragment), "\(error.message)")
            #expect(error.message.hasSuffix("; write HOST or HOST:PORT[,PORT…], e.g. --allow-host api.example.com or --allow-host api.example.com:443,8443 ([::1]:443 for an IPv6 address)"))
        }
    }

    // MARK: Placeholders and code-built profiles

    @Test func placeholdersAreDeterministic() {
        #expect(Placeholder.value(for: "GITHUB_TOKEN") == "airlock-placeholder-GITHUB_TOKEN")
        #expect(Placeholder.value(for: "X") == Placeholder.value(for: "X"))
    }

    @Test func aNetworkBuiltInCodeIsCheckedLikeAPolicyFile() {
        var evil = Profile(extends: "default")
        evil.network = Profile.Network(
            mode: .proxied, allow: [EgressRule(host: "*"), EgressRule(host: "x.example.com", methods: ["get"])],
            inspectTLS: ["x.example.com"], budgets: EgressBudgets(bytesOut: 0), hosts: ["a.test": []], upstreamCAFile: "ca.pem",
            proxyPort: 70000)
        evil.secrets = [
            SecretBinding(name: "T", source: "env:T", inject: SecretInjection(host: "x.example.com", header: "Host", format: "{}\r\n")),
            SecretBinding(name: "V", source: "vault:V"),
            SecretBinding(name: "U", source: "env:U", inject: SecretInjection(host: "y.example.com", header: "X-Key")),
        ]
        let error = refusal(RunRequest(profile: "evil", policy: PolicyDocument(profiles: ["evil": evil], source: "code"), command: ["true"], currentDirectory: "/srv/repo"))
        #expect(error?.code == .policy)
        #expect(
            error?.message.split(separator: "\n").map(String.init) == [
                "profile 'evil': network.allow: '*' would allow every host; name the hosts or domains, e.g. *.example.com",
                "profile 'evil': network.allow: x.example.com: methods must be upper case",
                "profile 'evil': network.budgets.bytes_out must be greater than zero",
                "profile 'evil': network.hosts.a.test is empty",
                "profile 'evil': network.upstream_ca must be an absolute path",
                "profile 'evil': network.proxy_port: port 70000 is out of range; ports are 1 to 65535",
                "profile 'evil': secret 'T': inject.header: header 'Host' cannot carry a secret: it is hop-by-hop or frames the request; refused headers: connection, keep-alive, proxy-authenticate, proxy-authorization, proxy-connection, te, trailer, transfer-encoding, upgrade, host, content-length",
                "profile 'evil': secret 'T': inject.format: format '{}\\u{d}\\u{a}' contains a control character, which no header value may hold",
                "profile 'evil': secret 'V': from 'vault:V' names no source; 'from' is env:NAME (a variable of airlock's environment) or file:/absolute/path (its first line)",
                "profile 'evil': the gateway would refuse y.example.com: add it to network.allow (secret 'U' is injected into requests to it)",
                "profile 'evil': secret 'U': injecting a credential into HTTPS requests to y.example.com needs the gateway to inspect their TLS; add y.example.com to network.inspect_tls",
            ])
    }
}
