import AirlockCore
import Testing

@testable import AirlockPolicy

@Suite struct ParseTests {
    static let full = """
        profiles:
          agent:
            description: "Run an agent on a repository"
            runtime: namespace
            user: root
            filesystem:
              workspace: rw
              deny: [".env.local", "secrets/"]
              mounts:
                - { source: /opt/tools, target: /opt/tools, mode: ro }
                - source: /srv/cache
                  target: /mnt/cache
                  mode: rw
                - { source: /home/alice/datasets, target: /data }
              tmp_size: 2G
              etc: [gitconfig, npmrc]
            network:
              mode: proxied
              allow:
                - host: packages.example.org
                - host: "*.githubusercontent.com"
                - host: api.github.com
                  ports: [443, 8443]
                  methods: [GET, post]
                  paths: ["/repos/acme/*", "/user"]
                - 10.0.0.5
                - "::1"
                - 192.168.0.0/16
              deny: [metadata.example.internal, {host: api.github.com, methods: [DELETE]}]
              inspect_tls: [api.github.com]
              budgets: { bytes_out: 50M, bytes_in: 500M, requests_per_minute: 600 }
              dlp: redact
              hosts: { upstream.test: [127.0.0.1, "::1"], other.test: 10.0.0.7 }
              upstream_ca: /etc/ssl/private-ca.pem
              proxy_port: 8080
            secrets:
              - name: GITHUB_TOKEN
                from: env:GITHUB_TOKEN
                inject: {host: api.github.com, header: Authorization, format: "Bearer {}"}
              - {name: NPM_TOKEN, from: "file:/run/secrets/npm"}
              - {name: API_KEY, from: env:OTHER_NAME, inject: {host: api.github.com, header: X-Api-Key}}
            environment:
              pass: [TERM, LANG]
              set: { PYTHONDONTWRITEBYTECODE: "1", JOBS: 4, GREETING: 'yes' }
            limits:
              wall_clock: 90m
              memory: 3G
              cpus: 1.5
              pids: 512
              disk: 2G
              open_files: 2048
              file_size: 100M
            syscalls: strict
            landlock: required
            cgroups: required
        """

    @Test func everyFieldIsReadAsWritten() throws {
        let doc = try Policy.parse(Self.full, file: "p.yaml").get()
        let p = try #require(doc.profiles["agent"])
        #expect(doc.source == "p.yaml")
        #expect(p.description == "Run an agent on a repository")
        #expect(p.extends == nil)
        #expect(p.runtime == .namespace)
        #expect(p.user == .root)
        #expect(p.filesystem.workspace == .rw)
        #expect(p.filesystem.deny == [".env.local", "secrets/"])
        #expect(
            p.filesystem.mounts == [
                MountGrant(source: "/opt/tools", destination: "/opt/tools", readOnly: true),
                MountGrant(source: "/srv/cache", destination: "/mnt/cache", readOnly: false),
                MountGrant(source: "/home/alice/datasets", destination: "/data", readOnly: true),
            ])
        #expect(p.filesystem.tmpSize == 2 * GiB)
        #expect(p.filesystem.etc == ["gitconfig", "npmrc"])
        #expect(p.network.mode == .proxied)
        #expect(
            p.network.allow == [
                EgressRule(host: "packages.example.org"),
                EgressRule(host: "*.githubusercontent.com"),
                EgressRule(host: "api.github.com", ports: [443, 8443], methods: ["GET", "POST"], paths: ["/repos/acme/*", "/user"]),
                EgressRule(host: "10.0.0.5"),
                EgressRule(host: "::1"),
                EgressRule(host: "192.168.0.0/16"),
            ])
        #expect(p.network.deny == [EgressRule(host: "metadata.example.internal"), EgressRule(host: "api.github.com", methods: ["DELETE"])])
        #expect(p.network.inspectTLS == ["api.github.com"])
        #expect(p.network.budgets == EgressBudgets(bytesOut: 50 * MiB, bytesIn: 500 * MiB, requestsPerMinute: 600))
        #expect(p.network.dlp == .redact)
        #expect(p.network.hosts == ["upstream.test": ["127.0.0.1", "::1"], "other.test": ["10.0.0.7"]])
        #expect(p.network.upstreamCAFile == "/etc/ssl/private-ca.pem")
        #expect(p.network.proxyPort == 8080)
        #expect(
            p.secrets == [
                SecretBinding(
                    name: "GITHUB_TOKEN", source: "env:GITHUB_TOKEN",
                    inject: SecretInjection(host: "api.github.com", header: "Authorization", format: "Bearer {}")),
                SecretBinding(name: "NPM_TOKEN", source: "file:/run/secrets/npm"),
                SecretBinding(
                    name: "API_KEY", source: "env:OTHER_NAME", inject: SecretInjection(host: "api.github.com", header: "X-Api-Key", format: "{}")),
            ])
        #expect(p.environment.pass == ["TERM", "LANG"])
        #expect(
            p.environment.set == [
                EnvironmentVariable("PYTHONDONTWRITEBYTECODE", "1"), EnvironmentVariable("JOBS", "4"),
                EnvironmentVariable("GREETING", "yes"),
            ])
        #expect(p.limits.wallClock == .seconds(5400))
        #expect(p.limits.memory == 3 * GiB)
        #expect(p.limits.cpus == 1.5)
        #expect(p.limits.pids == 512)
        #expect(p.limits.disk == 2 * GiB)
        #expect(p.limits.openFiles == 2048)
        #expect(p.limits.fileSize == 100 * MiB)
        #expect(p.syscalls == .strict)
        #expect(p.landlock == .required)
        #expect(p.cgroups == .required)
    }

    @Test func theFullExampleIsValidWithItsExtendsChainFollowed() {
        #expect(diagnostics(Self.full).isEmpty)
    }

    @Test func emptySectionsAndAnEmptyProfileAreAllowed() throws {
        let doc = try Policy.parse("profiles:\n  bare:\n  other:\n    limits:\n    filesystem: {deny: }\n", file: "p.yaml").get()
        #expect(doc.profiles["bare"] == Profile())
        #expect(doc.profiles["other"]?.filesystem.deny == [])
        #expect(doc.profiles["other"]?.limits == Profile.Limits())
    }

    @Test func loadThrowsEveryDiagnosticAsOnePolicyError() {
        let text = "profiles:\n  a:\n    limits: {memory: 0}\n    user: nobody\n"
        #expect(throws: AirlockError.self) { try Policy.load(text, file: "p.yaml") }
        do {
            _ = try Policy.load(text, file: "p.yaml")
        } catch {
            #expect(error.code == .policy)
            #expect(error.message.split(separator: "\n").map { String($0.prefix(11)) } == ["p.yaml:3:22", "p.yaml:4:11"])
        }
        guard case .failure(let failure) = Policy.parse(text, file: "p.yaml") else {
            Issue.record("expected a failure")
            return
        }
        #expect(failure.airlockError == AirlockError(.policy, failure.diagnostics.map(\.description).joined(separator: "\n")))
        #expect(failure.diagnostics.first?.description.hasPrefix("p.yaml:3:22: limits.memory must be greater than zero") == true)
    }

    @Test func bareNumbersAreSecondsAndBytes() throws {
        let doc = try Policy.parse("profiles:\n  a:\n    limits: {wall_clock: 90, memory: 1048576, cpus: 3}\n", file: "p").get()
        #expect(doc.profiles["a"]?.limits.wallClock == .seconds(90))
        #expect(doc.profiles["a"]?.limits.memory == MiB)
        #expect(doc.profiles["a"]?.limits.cpus == 3)
    }
}
