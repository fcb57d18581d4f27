import AirlockCore
import Testing

@testable import AirlockPolicy

@Suite struct AlertRulesTests {
    @Test func everyRuleKindParses() throws {
        let p = flat("mine", """
            profiles:
              mine:
                monitor: { interval: 250ms }
                alerts:
                  - name: cpu-spin
                    cpu: { above: 90%, for: 60s }
                    action: stop
                  - name: fork-burst
                    pids: { increase: 50, within: 5s }
                  - name: many
                    pids: { above: 200 }
                  - name: memory-high
                    memory: { above: 80% }
                  - name: memory-abs
                    memory: { above: 1G, for: 10s }
                  - name: unexpected-exec
                    exec: { allow: [/usr/bin/python3*, /bin/sh] }
            """)
        #expect(p?.monitorInterval == .milliseconds(250))
        #expect(p?.alerts == [
            AlertRule(name: "cpu-spin", condition: .cpu(percent: 90, for: .seconds(60)), action: .stop),
            AlertRule(name: "fork-burst", condition: .pidsIncrease(50, within: .seconds(5))),
            AlertRule(name: "many", condition: .pidsAbove(200, for: .zero)),
            AlertRule(name: "memory-high", condition: .memory(.percent(80), for: .zero)),
            AlertRule(name: "memory-abs", condition: .memory(.bytes(1 << 30), for: .seconds(10))),
            AlertRule(name: "unexpected-exec", condition: .exec(allow: ["/usr/bin/python3*", "/bin/sh"])),
        ])
    }

    @Test func mistakesAreReportedAtTheirPosition() {
        let found = diagnostics("""
            profiles:
              mine:
                monitor: { interval: 10ms, every: 1s }
                alerts:
                  - name: a
                    cpu: { abvoe: 90% }
                  - name: a
                    cpu: { above: 90 }
                  - name: b
                    memory: { above: lots }
                    action: kill
                  - name: c
                    pids: { increase: 5 }
                  - name: d
                    egress: { above: 1M }
                  - name: e
                    cpu: { above: 50% }
                    pids: { above: 10 }
                  - name: "bad name"
                    exec: { allow: [python3] }
                  - cpu: { above: 101%, for: 1s }
                    nmae: x
            """).map { "\($0.line):\($0.column): \($0.message)" }
        let expected: [(Int, Int, String)] = [
            (3, 26, "monitor.interval must be from 100ms to 1m; found 10ms"),
            (3, 32, "unknown key 'every' in monitor; allowed keys: interval"),
            (6, 16, "unknown key 'abvoe' in an alert's cpu; allowed keys: above, for (did you mean 'above'?)"),
            (6, 14, "cpu needs 'above'"),
            (7, 15, "two alert rules are named 'a' (the first at line 5, column 15)"),
            (8, 23, "cpu.above must be a percentage greater than 0% and at most 102400%, such as 90%; found '90' (add the '%')"),
            (10, 26, "memory.above: 'lots' is not a size"),
            (11, 17, "alert action must be one of alert, stop; found 'kill'"),
            (13, 17, "pids.increase needs 'within'"),
            (15, 9, "egress alert rules come with the egress gateway"),
            (18, 9, "an alert rule watches one metric; this one gives 'cpu' and 'pids'"),
            (19, 15, "alert name 'bad name' is not allowed"),
            (20, 25, "exec.allow: 'python3' is not an absolute path"),
            (22, 9, "unknown key 'nmae' in an alert rule; allowed keys: name, cpu, memory, pids, exec, action (did you mean 'name'?)"),
            (21, 9, "an alert rule needs a 'name'"),
        ]
        #expect(found.count == expected.count, "\(found.joined(separator: "\n"))")
        for (line, column, fragment) in expected {
            #expect(found.contains { $0.hasPrefix("\(line):\(column): ") && $0.contains(fragment) },
                "missing: \(line):\(column): \(fragment)\nfound:\n\(found.joined(separator: "\n"))")
        }
    }

    @Test func childRulesAddToAndReplaceTheParents() {
        let p = flat("child", """
            profiles:
              parent:
                monitor: { interval: 2s }
                alerts:
                  - { name: cpu-spin, cpu: { above: 90% } }
                  - { name: forks, pids: { above: 100 } }
              child:
                extends: parent
                alerts:
                  - { name: forks, pids: { above: 10 }, action: stop }
                  - { name: exec, exec: { allow: [/bin/*] } }
            """)
        #expect(p?.alerts?.map(\.name) == ["cpu-spin", "forks", "exec"])
        #expect(p?.alerts?[1] == AlertRule(name: "forks", condition: .pidsAbove(10, for: .zero), action: .stop))
        #expect(p?.monitorInterval == .seconds(2))
    }

    @Test func resolvedIntoTheSpec() throws {
        guard let doc = document("""
            profiles:
              mine:
                extends: default
                alerts:
                  - { name: mem, memory: { above: 50% } }
            """) else { return }
        let spec = try Resolver.resolve(RunRequest(profile: "mine", policy: doc, command: ["true"], currentDirectory: "/srv/ws"))
        #expect(spec.monitor == MonitorSpec(interval: .seconds(1), alerts: [AlertRule(name: "mem", condition: .memory(.percent(50), for: .zero))]))
        #expect(try Resolver.resolve(RunRequest(command: ["true"], currentDirectory: "/srv/ws")).monitor.alerts.isEmpty)
    }

    @Test func aPercentageWithoutItsLimitIsRefusedAtResolution() {
        guard let doc = document("""
            profiles:
              bare:
                alerts:
                  - { name: mem, memory: { above: 50% } }
              capped:
                limits: { cpus: 1 }
                alerts:
                  - { name: cpu, cpu: { above: 150% } }
            """) else { return }
        let mem = refusal(RunRequest(profile: "bare", policy: doc, command: ["true"], currentDirectory: "/srv/ws"))
        #expect(mem?.code == .policy)
        #expect(mem?.message.contains("alert 'mem': memory above 50% is a share of the memory limit, and this run has none") == true, "\(String(describing: mem))")
        // --memory supplies the limit.
        #expect(refusal(RunRequest(profile: "bare", policy: doc, command: ["true"], memory: 1 << 30, currentDirectory: "/srv/ws")) == nil)
        let cpu = refusal(RunRequest(profile: "capped", policy: doc, command: ["true"], currentDirectory: "/srv/ws"))
        #expect(cpu?.message.contains("cpu above 150% can never fire") == true, "\(String(describing: cpu))")
    }
}
