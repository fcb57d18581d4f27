import AirlockCore
import Testing

@testable import AirlockPolicy

@Suite struct ResolverTests {
    static let host = [
        "HOME": "/home/alice", "TERM": "xterm-256color", "LANG": "C.UTF-8", "GITHUB_TOKEN": "ghp_secret",
        "PATH": "/home/alice/bin:/usr/bin", "USER": "alice",
    ]

    func request(_ command: [String] = ["make", "test"], profile: String = "default", policy: PolicyDocument? = nil) -> RunRequest {
        RunRequest(profile: profile, policy: policy, command: command, currentDirectory: "/home/alice/project", hostEnvironment: Self.host)
    }

    @Test func theDefaultProfileResolvesToTheSpecItDescribes() throws {
        let spec = try Resolver.resolve(request())
        #expect(spec.profile == "default")
        #expect(spec.runtime == .namespace)
        #expect(spec.command == ["make", "test"])
        #expect(spec.user == .agent)
        #expect(spec.workingDirectory == "/workspace")
        #expect(spec.filesystem.workspace == WorkspaceGrant(hostPath: "/home/alice/project", readOnly: false))
        #expect(spec.filesystem.workspace?.denyWrite == WorkspaceGrant.mandatoryDeny)
        #expect(spec.filesystem.mounts.isEmpty)
        #expect(spec.filesystem.tmpSize == GiB)
        #expect(spec.filesystem.etcEntries == FilesystemSpec.defaultEtc)
        #expect(spec.network.mode == NetworkSpec.Mode.none)
        #expect(spec.limits == Limits(wallClock: .seconds(3600), memoryBytes: 4 * GiB, cpus: 2, pids: 1024, openFiles: 4096, fileSize: nil))
        #expect(spec.syscalls == .default)
        #expect(spec.landlock == .bestEffort)
        #expect(spec.cgroups == .bestEffort)
        // The host's PATH, USER and GITHUB_TOKEN stay outside; TERM and LANG are passed.
        #expect(
            spec.environment == [
                .init("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), .init("HOME", "/home/agent"),
                .init("USER", "agent"), .init("LOGNAME", "agent"), .init("SHELL", "/bin/sh"),
                .init("TERM", "xterm-256color"), .init("LANG", "C.UTF-8"),
            ])
    }

    @Test func untrustedResolvesTight() throws {
        let spec = try Resolver.resolve(request(profile: "untrusted"))
        #expect(spec.filesystem.workspace?.readOnly == true)
        #expect(spec.filesystem.tmpSize == 256 * MiB)
        #expect(
            spec.limits
                == Limits(wallClock: .seconds(300), memoryBytes: 512 * MiB, cpus: 1, pids: 128, openFiles: 1024, fileSize: 256 * MiB))
        #expect(spec.syscalls == .strict)
        #expect(spec.landlock == .required)
    }

    @Test func commandLineLimitsWin() throws {
        var r = request(profile: "untrusted")
        r.wallClock = .seconds(30)
        r.memory = 8 * GiB
        r.cpus = 0.5
        r.pids = 20
        r.disk = 2 * GiB
        let spec = try Resolver.resolve(r)
        #expect(spec.limits.wallClock == .seconds(30))
        #expect(spec.limits.memoryBytes == 8 * GiB)
        #expect(spec.limits.cpus == 0.5)
        #expect(spec.limits.pids == 20)
        #expect(spec.filesystem.tmpSize == 2 * GiB)
        #expect(spec.limits.openFiles == 1024)  // not overridable from the command line: the profile's
    }

    @Test func badCommandLineLimitsAreUsageErrorsNamingEachFlag() {
        var r = request()
        r.cpus = 0
        r.pids = 0
        r.memory = 0
        r.wallClock = .zero
        r.disk = 0
        let error = refusal(r)
        #expect(error?.code == .usage)
        #expect(
            error?.message.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }.sorted()
                == ["--cpus", "--disk", "--memory", "--pids", "--timeout"])
        r = request()
        r.cpus = 1025
        #expect(refusal(r)?.message == "--cpus must be a number of cores from 0.01 to 1024, such as 2 or 0.5; found 1025.0")
        // Below the smallest CFS quota: refused here, not later by the cgroup driver.
        r.cpus = 0.005
        #expect(refusal(r)?.message == "--cpus must be a number of cores from 0.01 to 1024, such as 2 or 0.5; found 0.005")
        r = request()
        r.pids = 15
        #expect(refusal(r)?.message.hasPrefix("--pids must be a whole number from 16 to 4194304") == true)
    }

    @Test func workspaceModeComesFromTheProfileUnlessOverridden() throws {
        var r = request(profile: "untrusted")
        #expect(try Resolver.resolve(r).filesystem.workspace?.readOnly == true)
        r.workspaceMode = .rw
        #expect(try Resolver.resolve(r).filesystem.workspace?.readOnly == false)
        r = request()
        r.workspace = "/srv/repos/app"
        r.workspaceMode = .ro
        #expect(try Resolver.resolve(r).filesystem.workspace == WorkspaceGrant(hostPath: "/srv/repos/app", readOnly: true))
    }

    @Test func aProfileWithoutWorkspaceRunsInHomeUnlessAWorkspaceIsGiven() throws {
        let doc = try #require(document("profiles:\n  bare:\n    extends: default\n    filesystem: {workspace: none}\n"))
        var r = request(profile: "bare", policy: doc)
        let spec = try Resolver.resolve(r)
        #expect(spec.filesystem.workspace == nil)
        #expect(spec.workingDirectory == "/home/agent")
        r.workspace = "/srv/repo"
        let granted = try Resolver.resolve(r)
        #expect(granted.filesystem.workspace == WorkspaceGrant(hostPath: "/srv/repo", readOnly: true))
        #expect(granted.workingDirectory == "/workspace")
        r.workspaceMode = .rw
        #expect(try Resolver.resolve(r).filesystem.workspace?.readOnly == false)
    }

    @Test func dangerousWorkspacesAreRefused() {
        var r = request()
        r.currentDirectory = "/home/alice"
        #expect(
            refusal(r)?.message.hasPrefix(
                "the current directory (the default workspace; choose another with --workspace DIR): workspace '/home/alice' is your home directory (/home/alice)"
            ) == true)
        r.workspace = "/home"
        #expect(refusal(r)?.message.hasPrefix("--workspace: workspace '/home' is a sensitive host path") == true)
        r.workspace = "/"
        #expect(refusal(r)?.code == .usage)
        r.workspace = "/etc/nginx"
        #expect(refusal(r)?.message.contains("is under /etc, a sensitive host path") == true)
        r.workspace = "/srv/repo/../../etc"
        #expect(refusal(r)?.message.contains("'.' or '..'") == true)
        r.workspace = "/srv/repo"
        #expect(refusal(r) == nil)
    }

    @Test func environmentOrderAndPrecedence() throws {
        let doc = try #require(
            document(
                """
                profiles:
                  env:
                    extends: default
                    environment:
                      pass: [LANG, TERM, NOT_SET_ON_HOST]
                      set: {LANG: C, X: "1", PATH: /opt/bin}
                """))
        var r = request(profile: "env", policy: doc)
        r.env = [.init("X", "2"), .init("GITHUB_TOKEN", "typed-by-operator"), .init("X", "3")]
        let env = try Resolver.resolve(r).environment
        #expect(
            env == [
                .init("PATH", "/opt/bin"), .init("HOME", "/home/agent"), .init("USER", "agent"), .init("LOGNAME", "agent"),
                .init("SHELL", "/bin/sh"), .init("LANG", "C"), .init("TERM", "xterm-256color"), .init("X", "3"),
                .init("GITHUB_TOKEN", "typed-by-operator"),
            ])
        #expect(Set(env.map(\.name)).count == env.count)
    }

    @Test func rootGetsRootsHome() throws {
        let doc = try #require(document("profiles:\n  r: {extends: default, user: root, filesystem: {workspace: none}}\n"))
        let spec = try Resolver.resolve(request(profile: "r", policy: doc))
        #expect(spec.user == .root)
        #expect(spec.workingDirectory == "/root")
        #expect(spec.environment.filter { ["HOME", "USER", "LOGNAME"].contains($0.name) }.map(\.value) == ["/root", "root", "root"])
    }

    @Test func profileAndCommandLineMounts() throws {
        let doc = try #require(
            document(
                """
                profiles:
                  m:
                    extends: default
                    filesystem:
                      mounts:
                        - {source: /opt/tools, target: /opt/tools}
                        - {source: /srv/cache, target: /mnt/cache, mode: rw}
                      deny: [.env.local]
                      etc: [gitconfig]
                """))
        var r = request(profile: "m", policy: doc)
        r.mounts = [
            MountGrant(source: "/srv/other-cache", destination: "/mnt/cache", readOnly: true),
            MountGrant(source: "/home/alice/data", destination: "/data", readOnly: false),
        ]
        let spec = try Resolver.resolve(r)
        #expect(
            spec.filesystem.mounts == [
                MountGrant(source: "/opt/tools", destination: "/opt/tools", readOnly: true),
                MountGrant(source: "/srv/other-cache", destination: "/mnt/cache", readOnly: true),
                MountGrant(source: "/home/alice/data", destination: "/data", readOnly: false),
            ])
        #expect(spec.filesystem.workspace?.denyWrite == WorkspaceGrant.mandatoryDeny + [".env.local"])
        #expect(spec.filesystem.etcEntries == FilesystemSpec.defaultEtc + ["gitconfig"])
    }

    @Test func commandLineMountsFollowThePathRules() {
        var r = request()
        r.mounts = [
            MountGrant(source: "/etc", destination: "/mnt/etc", readOnly: true),
            MountGrant(source: "/srv/a", destination: "/usr/local/a", readOnly: true),
            MountGrant(source: "/srv/b", destination: "/mnt/b", readOnly: true),
            MountGrant(source: "/srv/c", destination: "/mnt/b", readOnly: true),
        ]
        let error = refusal(r)
        #expect(error?.code == .usage)
        #expect(
            error?.message.split(separator: "\n").map(String.init) == [
                "--mount /etc:/mnt/etc: mount source '/etc' is /etc, a sensitive host path; mount sources must not be / or /home itself, be or lie under /etc, /root, /proc, /sys, /dev, /boot, /run, /var/run, /var/lib/docker, /var/lib/containerd, /var/lib/kubelet, or have a component named .ssh, .gnupg, .aws, .kube, .docker, .azure, .netrc, .git-credentials, .pgpass, .password-store",
                "--mount /srv/a:/usr/local/a: mount target '/usr/local/a' is under /usr, which the sandbox needs for itself; mount targets must be at or under /mnt, /srv, /data or /workspace-extra, or strictly under /opt or /home/agent",
                "--mount /srv/c:/mnt/b: another --mount already has the target /mnt/b; each target may be mounted only once",
            ])
    }

    @Test func usageErrors() {
        #expect(refusal(request([]))?.code == .usage)
        #expect(refusal(request([""]))?.code == .usage)
        let unknown = refusal(request(profile: "nope"))
        #expect(unknown?.code == .usage)
        #expect(unknown?.message == "--profile: there is no profile 'nope'; available profiles: default, review, untrusted")
        var r = request()
        r.env = [.init("BAD-NAME", "x")]
        #expect(refusal(r)?.message.hasPrefix("--env: 'BAD-NAME' is not a valid environment variable name") == true)
    }

    @Test func brokenChainsArePolicyErrorsWithPositions() throws {
        let doc = try Policy.parse("profiles:\n  a:\n    extends: b\n  b:\n    extends: a\n", file: "team.yaml").get()
        let error = refusal(request(profile: "a", policy: doc))
        #expect(error?.code == .policy)
        #expect(
            error?.message
                == "team.yaml:5:14: profile 'b' extends 'a', which leads back to it (a → b → a); an extends chain must end at a profile that extends nothing"
        )
    }

    @Test func aDocumentBuiltInCodeIsCheckedToo() {
        var evil = Profile(extends: "default")
        evil.filesystem.mounts = [MountGrant(source: "/home/alice/.ssh", destination: "/mnt/keys", readOnly: true)]
        evil.environment.pass = ["AWS_SECRET_ACCESS_KEY"]
        let doc = PolicyDocument(profiles: ["evil": evil], source: "code")
        let error = refusal(request(profile: "evil", policy: doc))
        #expect(error?.code == .policy)
        #expect(error?.message.split(separator: "\n").count == 2)
        #expect(error?.message.hasPrefix("profile 'evil': mount source '/home/alice/.ssh' contains '.ssh'") == true)
    }

    @Test func runtimeAndNetworkChoicesPassThroughForTheRuntimeToJudge() throws {
        let doc = try #require(document("profiles:\n  vm: {extends: default, runtime: microvm, network: {mode: proxied}}\n"))
        let spec = try Resolver.resolve(request(profile: "vm", policy: doc))
        #expect(spec.runtime == .microvm)
        #expect(spec.network.mode == .proxied)
    }

    @Test func aProfileExtendingNothingStartsFromTheConservativeDefaults() throws {
        let doc = try #require(document("profiles:\n  bare: {}\n"))
        let spec = try Resolver.resolve(request(profile: "bare", policy: doc))
        #expect(spec.filesystem.workspace?.readOnly == true)
        #expect(spec.limits == Limits())
        #expect(spec.network.mode == NetworkSpec.Mode.none)
        #expect(spec.environment.map(\.name) == ["PATH", "HOME", "USER", "LOGNAME", "SHELL"])
    }

    @Test func flagSyntax() throws {
        #expect(try RunRequest.parseMount("/srv/data:/data") == MountGrant(source: "/srv/data", destination: "/data", readOnly: true))
        #expect(try RunRequest.parseMount("/srv/data:/data:rw") == MountGrant(source: "/srv/data", destination: "/data", readOnly: false))
        #expect(throws: AirlockError.self) { try RunRequest.parseMount("/srv/data") }
        #expect(throws: AirlockError.self) { try RunRequest.parseMount("/srv/data:/data:rx") }
        #expect(throws: AirlockError.self) { try RunRequest.parseMount(":/data") }
        #expect(try RunRequest.parseEnvironment("A=b=c") == EnvironmentVariable("A", "b=c"))
        #expect(try RunRequest.parseEnvironment("EMPTY=") == EnvironmentVariable("EMPTY", ""))
        #expect(throws: AirlockError.self) { try RunRequest.parseEnvironment("=x") }
        #expect(throws: AirlockError.self) { try RunRequest.parseEnvironment("NOVALUE") }
        #expect(RunRequest.parseWorkspace("/srv/repo:ro") == ("/srv/repo", .ro))
        #expect(RunRequest.parseWorkspace("/srv/repo:rw") == ("/srv/repo", .rw))
        #expect(RunRequest.parseWorkspace("/srv/repo") == ("/srv/repo", nil))
    }
}
