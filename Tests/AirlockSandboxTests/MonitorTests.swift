import Foundation
import Testing

/// Alert rules evaluated on real sandboxes.
extension SandboxSuite {
@Suite("monitor")
struct MonitorTests {
    static func events(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    @Test func cpuSpinningSandboxIsStoppedByItsAlertRule() throws {
        try Fixture.with { f in
            try f.write("policy.yaml", """
                profiles:
                  spin:
                    extends: default
                    limits: { cpus: 0.5 }
                    monitor: { interval: 200ms }
                    alerts:
                      - name: cpu-spin
                        cpu: { above: 40%, for: 1s }
                        action: stop
                      - name: forks
                        pids: { above: 500 }
                """)
            let events = f.workspace + "/../airlock-test-events-\(UUID().uuidString.prefix(6)).jsonl"
            defer { try? FileManager.default.removeItem(atPath: events) }
            let r = try f.run([
                "run", "--policy", f.path("policy.yaml"), "--profile", "spin", "--timeout", "60s", "--events", events,
                "--", "python3", "-c", "while True: pass",
            ])
            #expect(r.status == 124, "\(r.stderr)")
            #expect(r.stderr.contains("airlock: stopped: alert cpu-spin: cpu "), "\(r.stderr)")
            #expect(r.elapsed < 20, "stopped after \(r.elapsed) s")
            let all = try Self.events(events)
            let types = all.compactMap { $0["type"] as? String }
            #expect(types == ["sandbox.created", "process.started", "alert.fired", "limit.reached", "process.exited", "sandbox.destroyed"])
            let alert = try #require(all.first { $0["type"] as? String == "alert.fired" })
            #expect(alert["airlock.decision"] as? String == "alert")
            #expect(alert["airlock.decision.rule"] as? String == "cpu-spin")
            #expect(alert["airlock.alert.rule"] as? String == "cpu-spin")
            #expect(alert["airlock.alert.metric"] as? String == "cpu")
            #expect(alert["airlock.alert.action"] as? String == "stop")
            #expect((alert["airlock.alert.value"] as? Double ?? 0) > 40)
            let limit = try #require(all.first { $0["type"] as? String == "limit.reached" })
            #expect(limit["airlock.limit"] as? String == "alert")
            let exited = try #require(all.first { $0["type"] as? String == "process.exited" })
            #expect(exited["airlock.stop_reason"] as? String == "alert")
            #expect(exited["airlock.exit.signal"] as? Int == 9)
        }
    }

    @Test func unlistedExecutableRaisesAnAlertAndTheRunGoesOn() throws {
        try Fixture.with { f in
            try f.write("policy.yaml", """
                profiles:
                  watched:
                    extends: default
                    monitor: { interval: 100ms }
                    alerts:
                      - name: unexpected-exec
                        exec: { allow: [/bin/sh, /usr/bin/sleep] }
                """)
            let events = f.workspace + "/../airlock-test-events-\(UUID().uuidString.prefix(6)).jsonl"
            defer { try? FileManager.default.removeItem(atPath: events) }
            let r = try f.run([
                "run", "--policy", f.path("policy.yaml"), "--profile", "watched", "--events", events,
                "--", "/bin/sh", "-c", "sleep 1; python3 -c 'import time; time.sleep(1)'; echo done",
            ])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == "done\n")
            let alerts = try Self.events(events).filter { $0["type"] as? String == "alert.fired" }
            #expect(alerts.count == 1, "\(alerts)")
            let path = alerts.first?["process.executable.path"] as? String ?? ""
            #expect(path.hasPrefix("/usr/bin/python3"), "\(alerts)")
            #expect(alerts.first?["airlock.alert.action"] as? String == "alert")
        }
    }
}
}
