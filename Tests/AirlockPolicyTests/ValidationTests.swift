import AirlockCore
import Testing

@testable import AirlockPolicy

/// Each fixture is written so that its line and column numbers can be counted by eye; the
/// expectations name the exact position and the part of the message that says what is allowed.
@Suite struct ValidationTests {
    // One profile with (at least) one mistake per rule. Lines are numbered from 1.
    static let fixture = """
        profiles:
          default:
            runtime: docker
            user: admin
            filesystem:
              workspace: rwx
              deny: [/abs, "a/../b", ok.txt]
              etc: [shadow, "a/b", gitconfig, hostname]
              tmp_size: 1X
              home_size: 0
              mounts:
                - source: relative/path
                  target: /opt/tools
                - source: /srv/a
                  target: /opt/tools
                - source: /srv/b
                  target: /workspace/cache
                - source: /srv/c
                  target: /mnt/c
                  mode: readonly
                  size: 1G
                - { target: /mnt/d }
            network:
              mode: open
            environment:
              pass: [TERM, AWS_SECRET_ACCESS_KEY, SSH_AUTH_SOCK, "BAD-NAME", HOME]
              set:
                "1X": a
                OK: {a: b}
            limits:
              wall_clock: 0s
              memory: lots
              cpus: 2000
              pids: 0
              open_files: many
              file_size: -5M
              memroy: 1G
            syscalls: lenient
            landlock: maybe
            cgroups: [required]
          "bad name!":
            description: x
        """

    /// (line, column, a fragment the message must contain)
    static let expected: [(Int, Int, String)] = [
        (3, 14, "runtime must be one of namespace, microvm, kubernetes; found 'docker'"),
        (4, 11, "user must be one of agent, root; found 'admin'"),
        (6, 18, "filesystem.workspace must be one of rw, ro, none; found 'rwx'"),
        (7, 14, "deny entry '/abs' is absolute; deny entries are top-level names in the workspace"),
        (7, 20, "deny entry 'a/../b' is not normalized"),
        (8, 13, "etc entry 'shadow' holds secrets"),
        (8, 21, "etc entry 'a/b' contains '/'; etc entries are single names directly under /etc"),
        (8, 39, "etc entry 'hostname' is generated for each sandbox"),
        (9, 17, "filesystem.tmp_size: '1X' has unknown size unit 'X': allowed units are K, M, G, T"),
        (10, 7, "filesystem.home_size is gone: $HOME shares the disk budget (limits.disk, the same as filesystem.tmp_size) with /tmp and /dev/shm; remove home_size and size limits.disk for all three"),
        (12, 19, "mount source 'relative/path' is not absolute; mount sources must be absolute, normalized paths"),
        (15, 19, "two mounts have the target '/opt/tools' (the first at line 13, column 19)"),
        (17, 19, "mount target '/workspace/cache' is inside /workspace"),
        (20, 17, "mount mode must be one of ro, rw; found 'readonly'"),
        (21, 11, "unknown key 'size' in a mount; allowed keys: source, target, mode"),
        (22, 11, "a mount needs both 'source' and 'target'; missing 'source'"),
        (24, 13, "network.mode must be one of none, proxied; found 'open'"),
        (26, 20, "'AWS_SECRET_ACCESS_KEY' looks like a credential"),
        (26, 43, "'SSH_AUTH_SOCK' looks like a credential"),
        (26, 58, "'BAD-NAME' is not a valid environment variable name; names use ASCII letters, digits and '_'"),
        (26, 70, "'HOME' is set by Airlock inside the sandbox"),
        (28, 9, "environment.set: '1X' is not a valid environment variable name"),
        (29, 13, "environment.set.OK must be text; found a mapping"),
        (31, 19, "limits.wall_clock must be greater than zero; found '0s'"),
        (32, 15, "limits.memory: 'lots' is not a size"),
        (33, 13, "limits.cpus must be a number of cores from 0.01 to 1024, such as 2 or 0.5; found 2000.0"),
        (34, 13, "limits.pids must be a whole number from 16 to 4194304, such as 1024 (a sandbox needs at least 16 for its own setup); found 0"),
        (35, 19, "limits.open_files must be a whole number from 1 to 1048576, such as 4096; found 'many'"),
        (36, 18, "limits.file_size must be greater than zero; found '-5M'"),
        (
            37, 7,
            "unknown key 'memroy' in limits; allowed keys: wall_clock, memory, cpus, pids, disk, open_files, file_size (did you mean 'memory'?)"
        ),
        (38, 15, "syscalls must be one of default, strict; found 'lenient'"),
        (39, 15, "landlock must be one of best-effort, required; found 'maybe'"),
        (40, 14, "cgroups must be one of best-effort, required; found a list"),
        (41, 3, "profile name 'bad name!' is not allowed; names are 1 to 64 ASCII letters, digits"),
    ]

    @Test func everyMistakeIsReportedAtItsLineAndColumn() {
        let found = diagnostics(Self.fixture)
        #expect(found.map { [$0.line, $0.column] } == Self.expected.map { [$0.0, $0.1] })
        for (d, e) in zip(found, Self.expected) {
            #expect(d.file == "policy.yaml")
            #expect(d.message.contains(e.2), "\(d) should contain: \(e.2)")
        }
    }

    @Test func theMessageFormIsFileLineColumnMessage() {
        let d = diagnostics("profiles:\n  a:\n    limits:\n      memroy: 4G\n")
        #expect(
            d.map(\.description) == [
                "policy.yaml:4:7: unknown key 'memroy' in limits; allowed keys: wall_clock, memory, cpus, pids, disk, open_files, file_size (did you mean 'memory'?)"
            ])
    }

    @Test func credentialPassThroughIsRefusedWithTheGatewayExplanation() {
        let d = diagnostics(
            "profiles:\n  a:\n    environment: {pass: [GITHUB_TOKEN, OPENAI_API_KEY, DB_PASSWORD, MY_SECRET, AWS_REGION, GPG_KEY]}\n")
        #expect(d.map(\.column) == [26, 40, 56, 69, 80, 92])
        #expect(d.allSatisfy { $0.line == 3 && $0.message.contains("egress gateway") && $0.message.contains("looks like a credential") })
    }

    @Test func unknownKeysAreReportedAtEveryLevelWithASuggestion() {
        let text = """
            profile: {}
            profiles:
              a:
                extend: default
                filesystem: {workspce: ro}
                network: {mod: none}
                environment: {passthrough: [TERM]}
                limits: {CPUS: 2, gpu: 1}
                filesystem_: {}
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "1:1 unknown key 'profile' in the top level; allowed keys: profiles (did you mean 'profiles'?)",
                "4:5 unknown key 'extend' in profile 'a'; allowed keys: description, extends, runtime, user, filesystem, network, environment, limits, syscalls, landlock, cgroups, alerts, monitor, secrets (did you mean 'extends'?)",
                "5:18 unknown key 'workspce' in filesystem; allowed keys: workspace, deny, mounts, tmp_size, etc (did you mean 'workspace'?)",
                "6:15 unknown key 'mod' in network; allowed keys: mode, allow, deny, inspect_tls, budgets, dlp, hosts, upstream_ca, proxy_port (did you mean 'mode'?)",
                "7:19 unknown key 'passthrough' in environment; allowed keys: pass, set",
                "8:14 unknown key 'CPUS' in limits; allowed keys: wall_clock, memory, cpus, pids, disk, open_files, file_size (did you mean 'cpus'?)",
                "8:23 unknown key 'gpu' in limits; allowed keys: wall_clock, memory, cpus, pids, disk, open_files, file_size",
                "9:5 unknown key 'filesystem_' in profile 'a'; allowed keys: description, extends, runtime, user, filesystem, network, environment, limits, syscalls, landlock, cgroups, alerts, monitor, secrets (did you mean 'filesystem'?)",
            ])
    }

    @Test func wrongTypesSayWhatIsExpected() {
        let text = """
            profiles:
              a:
                limits: [1G]
                filesystem:
                  mounts: /opt/x
                  deny: {x: 1}
                environment:
                  set: [A]
                  pass: TERM
                description: {text: x}
              b: 42
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "3:13 limits must be a mapping with the keys wall_clock, memory, cpus, pids, disk, open_files, file_size; found a list",
                "5:15 filesystem.mounts must be a list of mounts, each a mapping {source: /host/path, target: /mnt/path, mode: ro}; found the text '/opt/x'",
                "6:13 filesystem.deny must be a list of text items, e.g. [a, b]; found a mapping",
                "8:12 environment.set must be a mapping from variable names to text values; found a list",
                "9:13 environment.pass must be a list of text items, e.g. [a, b]; found the text 'TERM'",
                "10:18 description must be text; found a mapping",
                "11:6 profile 'b' must be a mapping of settings; found the number 42",
            ])
    }

    @Test func yamlBooleansAndNullsAreNotText() {
        let text = "profiles:\n  a:\n    environment:\n      set: {A: on, B: ~, C: 'on', D: 2.5}\n"
        let found = diagnostics(text)
        #expect(found.map { [$0.line, $0.column] } == [[4, 16], [4, 23]])
        #expect(found.first?.message == "environment.set.A is the YAML boolean 'on'; write it in quotes (\"on\") if you mean the text")
        #expect(found.last?.message == "environment.set.B has no value; expected text")
    }

    @Test func negativeZeroAndOutOfRangeLimits() {
        let text = """
            profiles:
              a:
                limits:
                  memory: -1G
                  disk: 0
                  cpus: -0.5
                  pids: 99999999
                  wall_clock: 2y
                  open_files: 0
              b:
                limits: {cpus: 1024, pids: 16, memory: 1M, wall_clock: 1ms}
              c:
                limits: {cpus: 0.005, pids: 15, memory: 1K, disk: 4K}
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "4:15 limits.memory must be greater than zero; found '-1G' (write a size such as 512M or 4G (units K, M, G, T, powers of 1024))",
                "5:13 limits.disk must be greater than zero; found '0' (write a size such as 512M or 4G (units K, M, G, T, powers of 1024))",
                "6:13 limits.cpus must be a number of cores from 0.01 to 1024, such as 2 or 0.5; found -0.5",
                "7:13 limits.pids must be a whole number from 16 to 4194304, such as 1024 (a sandbox needs at least 16 for its own setup); found 99999999",
                "8:19 limits.wall_clock: '2y' has unknown duration unit 'y': allowed units are ms, s, m, h",
                "9:19 limits.open_files must be a whole number from 1 to 1048576, such as 4096; found 0",
                "13:20 limits.cpus must be a number of cores from 0.01 to 1024, such as 2 or 0.5; found 0.005",
                "13:33 limits.pids must be a whole number from 16 to 4194304, such as 1024 (a sandbox needs at least 16 for its own setup); found 15",
                "13:45 limits.memory must be at least 1M, such as 512M or 4G; found 1 KiB",
                "13:55 limits.disk must be at least 1M, such as 256M or 1G; found 4 KiB",
            ])
    }

    @Test func diskAndTmpSizeMustAgree() {
        let contradictory = "profiles:\n  a:\n    filesystem: {tmp_size: 1G}\n    limits: {disk: 2G}\n"
        let found = diagnostics(contradictory)
        #expect(found.map { [$0.line, $0.column] } == [[4, 20]])
        #expect(
            found.first?.message
                == "limits.disk (2 GiB) contradicts filesystem.tmp_size (1 GiB) (line 3): both are the size of /tmp; give only one of them, or the same size in both"
        )
        #expect(diagnostics("profiles:\n  a:\n    filesystem: {tmp_size: 1G}\n    limits: {disk: 1024M}\n").isEmpty)
    }

    @Test func duplicateKeysAreReportedAtTheLaterOccurrenceAndReadingGoesOn() {
        let text = """
            profiles:
              a:
                limits:
                  memory: 1G
                  cpus: 1
                  memory: 2G
                  memory: 3G
                user: root
                user: agent
                network: {mode: none, mode: none}
                runtime: vm
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "6:7 duplicate key 'memory' in limits (first given at line 4, column 7); each key may appear only once",
                "7:7 duplicate key 'memory' in limits (first given at line 4, column 7); each key may appear only once",
                "9:5 duplicate key 'user' in profile 'a' (first given at line 8, column 5); each key may appear only once",
                "10:27 duplicate key 'mode' in network (first given at line 10, column 15); each key may appear only once",
                "11:14 runtime must be one of namespace, microvm, kubernetes; found 'vm'",
            ])
    }

    @Test func duplicateQuotedKeysAndDuplicateProfiles() {
        let text = "profiles:\n  \"a\": {}\n  b: {}\n  'a': {user: x}\n"
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "4:3 duplicate key 'a' in profiles (first given at line 2, column 3); each key may appear only once",
                "4:15 user must be one of agent, root; found 'x'",
            ])
    }

    @Test func syntaxErrorsCarryTheirPosition() {
        let tab = diagnostics("profiles:\n  a:\n\tuser: root\n")
        #expect(tab.count == 1)
        #expect(tab.first.map { [$0.line, $0.column] } == [3, 1])
        #expect(tab.first?.message.hasPrefix("YAML syntax error: found character that cannot start any token") == true)

        let flow = diagnostics("profiles:\n  a: {user: root\n  b: {}\n")
        #expect(flow.first.map { [$0.line, $0.column] } == [3, 4])
        #expect(flow.first?.message.contains("while parsing a flow mapping at line 2, column 6") == true)

        let indent = diagnostics("profiles:\n  a:\n    user: root\n   runtime: namespace\n")
        #expect(indent.first.map { [$0.line, $0.column] } == [4, 4])
        #expect(indent.first?.message.contains("check the indentation") == true)
    }

    @Test func emptyOrMissingProfilesIsAnError() {
        let cases: [(String, Int, Int, String)] = [
            ("", 1, 1, "the policy is empty; it must be a mapping with the key 'profiles'"),
            ("# only a comment\n", 1, 1, "the policy is empty"),
            ("profiles:\n", 1, 1, "'profiles' is empty; define at least one profile"),
            ("profiles: {}\n", 1, 11, "'profiles' is empty"),
            ("version: 1\n", 1, 1, "unknown key 'version' in the top level; allowed keys: profiles"),
            ("- a\n- b\n", 1, 1, "the policy must be a mapping with the key 'profiles'; found a list"),
            ("profiles: [a]\n", 1, 11, "profiles must be a mapping from profile names to profiles; found a list"),
        ]
        for (text, line, column, fragment) in cases {
            let found = diagnostics(text)
            #expect(found.first.map { [$0.line, $0.column] } == [line, column], "\(text.debugDescription)")
            #expect(found.first?.message.contains(fragment) == true, "\(found)")
        }
        #expect(diagnostics("version: 1\n").map(\.message).last?.hasPrefix("the policy has no 'profiles' key") == true)
    }

    @Test func anchorsAndAliasesAreRefused() {
        let text = "profiles:\n  a:\n    limits: &l {memory: 1G}\n  b:\n    limits: *l\n"
        let found = diagnostics(text)
        #expect(found.map { [$0.line, $0.column] } == [[3, 13]])
        #expect(
            found.first?.message
                == "anchors and aliases (&l / *l) are not supported in policies; use 'extends' to share settings between profiles")
    }

    @Test func mountPathRulesInAPolicy() {
        let text = """
            profiles:
              a:
                filesystem:
                  mounts:
                    - {source: /, target: /mnt/root}
                    - {source: /home, target: /mnt/home}
                    - {source: /home/alice/src, target: /srv/src}
                    - {source: /var/run/docker.sock, target: /mnt/docker.sock}
                    - {source: /srv/../etc, target: /mnt/x}
                    - {source: /srv//x, target: /mnt/y}
                    - {source: /srv/x/, target: /mnt/z}
                    - {source: /data/.aws, target: /data/aws}
                    - {source: /srv/a, target: /}
                    - {source: /srv/b, target: /lib64/b}
                    - {source: /srv/c, target: /workspace-extra/c}
                    - {source: /srv/d, target: /home/agent/.cache}
                    - {source: /srv/e, target: /home/agent}
                    - {source: /srv/f, target: /var/f}
                    - {source: /srv/g, target: mnt/g}
            """
        let found = diagnostics(text).map { "\($0.line):\($0.column) \(($0.message.split(separator: ";").first ?? ""))" }
        #expect(
            found == [
                "5:20 mount source '/' is a sensitive host path",
                "6:20 mount source '/home' is a sensitive host path",
                "8:20 mount source '/var/run/docker.sock' is under /var/run, a sensitive host path",
                "9:20 mount source '/srv/../etc' contains a '.' or '..' component",
                "10:20 mount source '/srv//x' contains '//'",
                "11:20 mount source '/srv/x/' ends with '/'",
                "12:20 mount source '/data/.aws' contains '.aws', which holds credentials",
                "13:36 mount target '/' would replace the sandbox's root",
                "14:36 mount target '/lib64/b' is under /lib64, which the sandbox needs for itself",
                "17:36 mount target '/home/agent' would replace /home/agent itself",
                "18:36 mount target '/var/f' is outside the allowed roots",
                "19:36 mount target 'mnt/g' is not absolute",
            ])
    }

    @Test func profileLevelContradictionAndMissingTarget() {
        let text = "profiles:\n  a:\n    filesystem:\n      mounts:\n        - {source: /srv/a}\n        - [x]\n"
        let found = diagnostics(text).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "5:11 a mount needs both 'source' and 'target'; missing 'target' (a mapping {source: /host/path, target: /mnt/path, mode: ro})",
                "6:11 each mount must be a mapping {source: /host/path, target: /mnt/path, mode: ro}; found a list",
            ])
    }
}
