import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ControlSuite {
    @Suite("the warm pool") struct WarmPoolTests {
        /// The sandboxes with a workspace in this daemon's state directory (a pooled one has its own).
        static func workspaces(_ d: TestDaemon) -> Set<String> {
            Set((try? FileManager.default.contentsOfDirectory(atPath: d.state + "/workspaces")) ?? [])
        }

        static func processes(_ id: String) -> [String] {
            ["/sys/fs/cgroup/pids/airlock/airlock-\(id)/cgroup.procs", "/sys/fs/cgroup/airlock/airlock-\(id)/cgroup.procs"].flatMap { path in
                ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            }
        }

        @Test("a sandbox claimed from the warm pool is killed at its TTL by its helper while the daemon is stopped")
        func pooledTTLBackstop() throws {
            let d = try TestDaemon(["--warm", "default=1"])
            defer { d.finish() }
            guard let pid = d.process?.processIdentifier else { throw TestFailure("no daemon process") }
            // The pool holds one built sandbox.
            var pooled = Set<String>()
            for _ in 0..<300 where pooled.isEmpty {
                pooled = Self.workspaces(d)
                if pooled.isEmpty { usleep(50_000) }
            }
            // Built: its processes run (and it is in the pool a moment after).
            for _ in 0..<300 where pooled.allSatisfy({ Self.processes($0).isEmpty }) { usleep(50_000) }
            usleep(500_000)
            let id = try d.create(["ttl": 2])
            #expect(pooled.contains(id), "the sandbox was claimed from the pool (pooled: \(pooled))")
            #expect(!Self.processes(id).isEmpty)

            // The daemon can no longer enforce anything: only the helper's backstop is left.
            kill(pid, SIGSTOP)
            let stopped = Date()
            var alive = true
            while alive, Date().timeIntervalSince(stopped) < 15 {
                alive = !Self.processes(id).isEmpty
                if alive { usleep(50_000) }
            }
            let seconds = Date().timeIntervalSince(stopped)
            kill(pid, SIGCONT)
            #expect(!alive && seconds < 6, "the pooled ttl: 2 sandbox still ran \(String(format: "%.1f", seconds)) s after the daemon stopped")

            // Back from SIGCONT, the daemon records why it ended.
            var reason: String?
            for _ in 0..<100 where reason == nil {
                let s = try d.sandbox(id)
                if s["state"] as? String == "stopped" { reason = s["stop_reason"] as? String } else { usleep(50_000) }
            }
            #expect(reason == "ttl")
        }
    }
}
