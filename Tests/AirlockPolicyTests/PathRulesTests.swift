import Testing

@testable import AirlockPolicy

@Suite struct PathRulesTests {
    @Test(arguments: [
        "/srv/data", "/home/alice", "/home/alice/src", "/opt/tools", "/var/lib/app", "/mnt", "/etcetera",
        "/var/runner", "/data/ssh", "/srv/my.ssh.notes",
    ])
    func acceptedSources(_ path: String) {
        #expect(PathRules.mountSourceProblem(path) == nil)
    }

    @Test(arguments: [
        "", "srv", "./srv", "/", "/home", "/etc", "/etc/ssl/certs", "/root/x", "/proc/1", "/sys", "/dev/null",
        "/boot", "/run/docker.sock", "/var/run", "/var/lib/docker/volumes", "/home/a/.ssh", "/x/.gnupg/y",
        "/x/.aws", "/x/.kube/config", "/x/.docker", "/srv/", "/srv//a", "/srv/./a", "/srv/../etc", "/srv/a\n",
        // Grapheme clusters must not hide a path from the checks: the kernel sees bytes.
        "/etc/\u{301}x", "/home/a/.ssh\u{301}/../.ssh",
    ])
    func refusedSources(_ path: String) {
        #expect(PathRules.mountSourceProblem(path) != nil)
    }

    @Test(arguments: [
        "/mnt", "/mnt/a", "/srv/x", "/data", "/data/a/b", "/workspace-extra", "/workspace-extra/a", "/opt/tools",
        "/home/agent/.cache",
    ])
    func acceptedTargets(_ path: String) {
        #expect(PathRules.mountTargetProblem(path) == nil)
    }

    @Test(arguments: [
        "/", "/usr", "/usr/local/bin", "/bin/x", "/lib", "/lib64/x", "/libx32", "/sbin", "/etc/x", "/proc/x",
        "/dev/x", "/sys/x", "/tmp", "/tmp/x", "/workspace", "/workspace/x", "/opt", "/home/agent", "/home/bob",
        "/var/x", "/root", "mnt/x", "/mnt/", "/mnt/../etc", "/mnt/\u{301}/../../etc",
    ])
    func refusedTargets(_ path: String) {
        #expect(PathRules.mountTargetProblem(path) != nil)
    }

    @Test func nestedDenyEntriesAreRefusedWithTheReason() {
        let problem = PathRules.denyEntryProblem("config/prod.yaml")
        #expect(problem?.contains("renaming its parent") == true)
        #expect(problem?.contains("'config/'") == true)
    }

    @Test func denyEntries() {
        for ok in [".env.local", "secrets/", ".git"] {
            #expect(PathRules.denyEntryProblem(ok) == nil, "\(ok)")
        }
        for bad in ["", "/abs", "../x", "a/../b", "./a", "a//b", "a/./b", "//", "config/prod.yaml", ".git/hooks/"] {
            #expect(PathRules.denyEntryProblem(bad) != nil, "\(bad)")
        }
    }

    @Test func etcEntries() {
        for ok in ["gitconfig", "npmrc", "ssl"] { #expect(PathRules.etcEntryProblem(ok) == nil, "\(ok)") }
        for bad in ["", ".", "..", "ssl/private", "shadow", "sudoers", "ssh", "passwd", "resolv.conf"] {
            #expect(PathRules.etcEntryProblem(bad) != nil, "\(bad)")
        }
    }

    @Test func environmentNames() {
        #expect(PathRules.isValidEnvironmentName("_A1"))
        #expect(!PathRules.isValidEnvironmentName("1A"))
        #expect(!PathRules.isValidEnvironmentName("A-B"))
        #expect(!PathRules.isValidEnvironmentName(""))
        #expect(!PathRules.isValidEnvironmentName("É"))
        for secret in [
            "GITHUB_TOKEN", "api_key", "DB_PASSWD", "AWS_PROFILE", "SSH_AUTH_SOCK", "MY_CREDENTIALS", "OPENAI_APIKEY", "SSH_KEY",
        ] {
            #expect(PathRules.looksLikeCredential(secret), "\(secret)")
        }
        for plain in ["TERM", "LANG", "KEYBOARD", "MONKEY", "TZ", "SSH_TTY"] {
            #expect(!PathRules.looksLikeCredential(plain), "\(plain)")
        }
    }

    @Test func workspaces() {
        #expect(PathRules.workspaceProblem("/home/alice/project", hostHome: "/home/alice") == nil)
        #expect(PathRules.workspaceProblem("/home/alice", hostHome: "/home/alice") != nil)
        #expect(PathRules.workspaceProblem("/srv/users", hostHome: "/srv/users/alice") != nil)  // contains the home
        #expect(PathRules.workspaceProblem("/srv/users/bob", hostHome: "/srv/users/alice") == nil)
        #expect(PathRules.workspaceProblem("/root/project", hostHome: nil) != nil)
    }

    @Test func suggestions() {
        #expect(Suggestion.closest("memroy", among: PolicyReader.limitsKeys) == "memory")
        #expect(Suggestion.closest("wallclock", among: PolicyReader.limitsKeys) == "wall_clock")
        #expect(Suggestion.closest("MEMORY", among: PolicyReader.limitsKeys) == "memory")
        #expect(Suggestion.closest("gpu", among: PolicyReader.limitsKeys) == nil)
        #expect(Suggestion.closest("x", among: ["y"]) == nil)
        #expect(Suggestion.distance(Array("ab".unicodeScalars), Array("ba".unicodeScalars)) == 1)
    }
}
