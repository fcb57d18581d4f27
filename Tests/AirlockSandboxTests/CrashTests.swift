import AirlockTestSupport
import Foundation
import Testing

extension SandboxSuite {
    /// When the airlock process itself dies (kill -9), the helper notices through the
    /// lifeline, kills the sandbox and removes what airlock would have removed.
    @Suite("crash")
    struct CrashTests {
        @Test func killingAirlockTakesTheSandboxDownAndLeavesNothing() throws {
            try Fixture.with { f in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: Airlock.binary)
                p.arguments = ["run", "--memory", "128M", "--", "/bin/sh", "-c",
                               "touch started; python3 -c 'import time; time.sleep(1000)' airlock-marker"]
                p.currentDirectoryURL = URL(fileURLWithPath: f.workspace)
                p.environment = ["PATH": "/usr/bin:/bin", "TMPDIR": Fixture.tmpdir]
                try p.run()
                let deadline = Date().addingTimeInterval(10)
                while !f.exists("started") && Date() < deadline { usleep(10_000) }
                #expect(f.exists("started"), "the sandbox never started")
                #expect(f.exists(".vscode"), "placeholders should exist while the sandbox runs")
                usleep(200_000)
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                // The helper is re-parented and tidies up on its own; give it a moment.
                let gone = Date().addingTimeInterval(5)
                while Date() < gone && (!HostSnapshot.take().sandboxProcesses.isEmpty || f.exists(".vscode")) {
                    usleep(20_000)
                }
                let entries = try FileManager.default.contentsOfDirectory(atPath: f.workspace)
                #expect(entries == ["started"], "workspace after the crash: \(entries)")
                // Fixture.with then checks: no sandbox process, no cgroup, no mount, nothing in /tmp.
            }
        }

        /// A proxied run killed with -9 cannot remove its airlock directory (socket, CA,
        /// bundle) in /run/airlock; the next proxied run proves its owner dead (its lock is
        /// free) and removes it, and leaves nothing of its own either.
        @Test func aKilledProxiedRunLeavesNothingAfterTheNextRun() throws {
            try Fixture.with { f in
                let base = "/run/airlock"
                func entries() -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []) }
                let before = entries()
                let p = Process()
                p.executableURL = URL(fileURLWithPath: Airlock.binary)
                p.arguments = ["run", "--allow-host", "example.test", "--", "/bin/sh", "-c", "touch started; sleep 1000"]
                p.currentDirectoryURL = URL(fileURLWithPath: f.workspace)
                p.environment = ["PATH": "/usr/bin:/bin", "TMPDIR": Fixture.tmpdir, "AIRLOCK_AUDIT_DIR": Fixture.auditDirectory(uid: 0)]
                try p.run()
                let deadline = Date().addingTimeInterval(10)
                while !f.exists("started") && Date() < deadline { usleep(10_000) }
                #expect(f.exists("started"), "the sandbox never started")
                let during = entries().subtracting(before)
                #expect(during.count == 2, "a running proxied run has its directory and its lock in \(base): \(during)")
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                let gone = Date().addingTimeInterval(5)
                while Date() < gone && !HostSnapshot.take().sandboxProcesses.isEmpty { usleep(20_000) }
                #expect(!entries().subtracting(before).isEmpty, "kill -9 leaves the directory (this test needs that to mean anything)")

                let next = try Airlock.run(["run", "--allow-host", "example.test", "--", "/bin/true"], cwd: f.workspace)
                #expect(next.status == 0, "\(next.stderr)")
                let left = entries().subtracting(before)
                #expect(left.isEmpty, "left in \(base) after the next run: \(left)")
            }
        }
    }
}
