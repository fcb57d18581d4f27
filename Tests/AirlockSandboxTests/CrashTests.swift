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
    }
}
