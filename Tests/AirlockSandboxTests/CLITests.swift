import Foundation
import Testing

extension SandboxSuite {
@Suite("cli")
struct CLITests {
    @Test func profilesListsBuiltins() throws {
        try Fixture.with { f in
            let r = try f.run(["profiles"])
            #expect(r.status == 0)
            #expect(r.stdout.contains("default"))
            #expect(r.stdout.contains("untrusted"))
        }
    }

    @Test func policyCheckReportsLineAndColumn() throws {
        try Fixture.with { f in
            try f.write("bad.yaml", "profiles:\n  mine:\n    limits:\n      memroy: 1G\n      cpus: lots\n")
            let r = try f.run(["policy", "check", "bad.yaml"])
            #expect(r.status == 64)
            #expect(r.stderr.contains("bad.yaml:4:7:"), "\(r.stderr)")
            #expect(r.stderr.contains("memory"))
            #expect(r.stderr.contains("bad.yaml:5:"), "\(r.stderr)")
            try f.write("good.yaml", "profiles:\n  mine:\n    extends: untrusted\n    limits:\n      memory: 1G\n")
            let ok = try f.run(["policy", "check", "good.yaml"])
            #expect(ok.status == 0, "\(ok.stderr)")
        }
    }

    @Test func explainPrintsTheSpecWithoutRunning() throws {
        try Fixture.with { f in
            let r = try f.run(["run", "--explain", "--memory", "512M", "--", "/bin/sh", "-c", "echo RAN > ran.txt"])
            #expect(r.status == 0, "\(r.stderr)")
            for needle in ["namespaces:", "memory 512 MiB", "/workspace", "seccomp:", "landlock:", "/proc/sys", "ptrace"] {
                #expect(r.stdout.contains(needle), "explain lacks \(needle)")
            }
            #expect(!f.exists("ran.txt"))
        }
    }

    @Test func usageErrorsUseTheirExitCode() throws {
        try Fixture.with { f in
            #expect(try f.run(["run", "--memory", "12Q", "--", "true"]).status == 64)
            #expect(try f.run(["run", "--profile", "nope", "--", "true"]).status == 64)
            #expect(try f.run(["run", "--mount", "/etc:/usr/evil", "--", "true"]).status == 64)
            #expect(try f.run(["run"]).status == 64)
            let nf = try f.run(["run", "--", "no-such-command-xyz"])
            #expect(nf.status == 127)
            #expect(nf.stderr.contains("not found"))
        }
    }

    @Test func untrustedProfileHasReadOnlyWorkspace() throws {
        try Fixture.with { f in
            let r = try f.sh("echo x > a.txt 2>/dev/null && echo WROTE; echo ok > /tmp/t && echo tmp-ok", flags: ["--profile", "untrusted"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("WROTE"))
            #expect(r.stdout.contains("tmp-ok"))
            #expect(!f.exists("a.txt"))
        }
    }

    @Test func eventsAreWrittenAsJSONLines() throws {
        try Fixture.with { f in
            let events = "/var/tmp/airlock-test-events-\(UUID().uuidString.prefix(6)).jsonl"
            defer { try? FileManager.default.removeItem(atPath: events) }
            let r = try f.run(["run", "--events", events, "--", "/bin/sh", "-c", "exit 3"])
            #expect(r.status == 3)
            let lines = try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n")
            let objs = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            #expect(objs.map { $0["type"] as? String } == ["sandbox.created", "process.started", "process.exited", "sandbox.destroyed"])
            let ids = Set(objs.compactMap { $0["airlock.sandbox.id"] as? String })
            #expect(ids.count == 1)
            #expect(objs[2]["process.exit.code"] as? Int == 3)
            #expect((objs.map { $0["seq"] as? Int }) == [1, 2, 3, 4])
        }
    }

    @Test func rootlessRunWorksAndSaysWhatItCannotEnforce() throws {
        try Fixture.with { f in
            chown(f.workspace, 65534, 65534)
            let r = try f.run(["run", "--memory", "256M", "--", "/bin/sh", "-c", "id -u; echo hi > out.txt; grep Seccomp: /proc/self/status"], asUser: 65534)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.hasPrefix("1000\n"))
            #expect(r.stdout.contains("Seccomp:\t2"))
            #expect(r.stderr.contains("NOT enforced"), "rootless limits degraded silently: \(r.stderr)")
            var st = stat()
            #expect(stat(f.path("out.txt"), &st) == 0 && st.st_uid == 65534, "files are owned by the calling user")
        }
    }
}
}
