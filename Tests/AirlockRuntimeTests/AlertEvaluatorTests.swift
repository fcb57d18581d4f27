import AirlockEvents
import AirlockCore
import Synchronization
import Testing

@testable import AirlockRuntime

#if canImport(Glibc)
    import Glibc
#endif


/// Rule evaluation over hand-made sample series (no clock, no cgroup), the v2 probe against a
/// fake cgroup tree, and the monitor thread's start, firing and deterministic stop.
@Suite struct AlertEvaluatorTests {
    static let second: UInt64 = 1_000_000_000

    /// Samples one second apart; `cpu` is the CPU seconds used in each second.
    static func series(cpu: [Double] = [], memory: [UInt64] = [], pids: [Int] = []) -> [ResourceSample] {
        let n = max(cpu.count, memory.count, pids.count)
        var used: UInt64 = 0
        return (0..<n).map { i in
            if i < cpu.count { used += UInt64(cpu[i] * Double(second)) }
            return ResourceSample(
                time: UInt64(i) * second, cpuNanos: cpu.isEmpty ? nil : used,
                memoryBytes: i < memory.count ? memory[i] : nil, pids: i < pids.count ? pids[i] : nil)
        }
    }

    static func run(_ rules: [AlertRule], _ samples: [ResourceSample], cpus: Double? = nil, memory: UInt64? = nil) -> [(Int, AlertFiring)] {
        var e = AlertEvaluator(rules: rules, cpuLimit: cpus, memoryLimit: memory)
        return samples.enumerated().flatMap { i, s in e.consume(s).map { (i, $0) } }
    }

    @Test func cpuFiresOnceAfterHoldingForItsDuration() {
        let rule = AlertRule(name: "spin", condition: .cpu(percent: 90, for: .seconds(3)), action: .stop)
        // Intervals 1…: 0.5, 1, 1, 0.2 (resets), 1, 1, 1, 1, 1 core-seconds per second.
        let fired = Self.run([rule], Self.series(cpu: [0, 0.5, 1, 1, 0.2, 1, 1, 1, 1, 1]))
        #expect(fired.map(\.0) == [7], "held from sample 4 to 7 = 3 s")
        #expect(fired.first?.1.value == .double(100))
        #expect(fired.first?.1.reason == "cpu 100% of one core, above 90% for 3s")
    }

    @Test func cpuIsAShareOfTheQuota() {
        let rule = AlertRule(name: "spin", condition: .cpu(percent: 90, for: .zero))
        // Half a core used against a 0.5-core quota is 100%; against no limit, 50% of one core.
        #expect(Self.run([rule], Self.series(cpu: [0, 0.5]), cpus: 0.5).first?.1.reason == "cpu 100% of the 0.5 cpu quota, above 90%")
        #expect(Self.run([rule], Self.series(cpu: [0, 0.5, 0.5])).isEmpty)
        #expect(Self.run([rule], Self.series(cpu: [0, 1.9]), cpus: 2).map(\.0) == [1])
    }

    @Test func memoryAbsoluteAndPercent() {
        let mib: UInt64 = 1 << 20
        let abs = AlertRule(name: "abs", condition: .memory(.bytes(100 * mib), for: .seconds(1)))
        let pct = AlertRule(name: "pct", condition: .memory(.percent(50), for: .zero))
        let fired = Self.run([abs, pct], Self.series(memory: [10 * mib, 101 * mib, 90 * mib, 120 * mib, 130 * mib]), memory: 200 * mib)
        #expect(fired.map { "\($0.0) \($0.1.rule.name)" } == ["1 pct", "4 abs"], "101 MiB is above 50% of 200 MiB at once; 100 MiB must hold 1 s, and 90 MiB resets it")
        #expect(fired.last?.1.reason == "memory 130 MiB, above 100 MiB for 1s")
        #expect(fired.first?.1.threshold == "50% of 200 MiB")
    }

    @Test func pidsIncreaseWithinAWindowAndAbove() {
        let burst = AlertRule(name: "burst", condition: .pidsIncrease(50, within: .seconds(2)))
        let above = AlertRule(name: "above", condition: .pidsAbove(100, for: .zero))
        // A slow climb (+30 per second) never rises 50 in 1 s but does in 2 s; then 120 > 100.
        let fired = Self.run([burst, above], Self.series(pids: [3, 4, 5, 6, 36, 66, 120]))
        #expect(fired.map { "\($0.0) \($0.1.rule.name)" } == ["5 burst", "6 above"])
        #expect(fired.first?.1.reason == "processes and threads rose from 6 to 66, at least +50 within 2s")
        // A slow leak over a long time never fires.
        #expect(Self.run([burst], Self.series(pids: Array(stride(from: 1, through: 200, by: 20)))).isEmpty)
    }

    @Test func execFiresForTheFirstUnlistedExecutable() {
        let rule = AlertRule(name: "exec", condition: .exec(allow: ["/usr/bin/python3*", "/usr/bin/dash"]))
        var e = AlertEvaluator(rules: [rule], cpuLimit: nil, memoryLimit: nil)
        #expect(e.needsProcesses)
        let ok = [ProcessImage(pid: 10, executable: "/usr/bin/dash"), ProcessImage(pid: 11, executable: "/usr/bin/python3.11")]
        #expect(e.consume(ResourceSample(time: 0, processes: ok)).isEmpty)
        // `*` does not cross '/'; a deleted file is matched by its old path.
        #expect(!AlertEvaluator.matches("/usr/bin/python3/../../tmp/x", ["/usr/bin/python3*"]))
        #expect(AlertEvaluator.matches("/usr/bin/dash (deleted)", ["/usr/bin/dash"]))
        let bad = ok + [ProcessImage(pid: 13, executable: "/tmp/miner"), ProcessImage(pid: 12, executable: "/usr/bin/curl")]
        let fired = e.consume(ResourceSample(time: 1, processes: bad))
        #expect(fired.map(\.value) == [.string("/usr/bin/curl")])
        #expect(fired.first?.process?.pid == 12)
        #expect(e.consume(ResourceSample(time: 2, processes: bad)).isEmpty, "a rule fires once")
        #expect(e.isDone)
    }

    @Test func missingReadingsNeverFire() {
        let rules = [
            AlertRule(name: "c", condition: .cpu(percent: 1, for: .zero)),
            AlertRule(name: "m", condition: .memory(.bytes(1), for: .zero)),
            AlertRule(name: "p", condition: .pidsAbove(1, for: .zero)),
        ]
        #expect(Self.run(rules, (0..<5).map { ResourceSample(time: UInt64($0) * Self.second) }).isEmpty)
    }

    @Test func v2ProbeReadsTheCgroupFiles() throws {
        let fs = FakeCgroupFS([("/sys/fs/cgroup", .v2(controllers: CgroupSamples.pureV2Controllers))])
        let host = fs.host(mountinfo: CgroupSamples.pureV2Mountinfo)
        let cgroup = try SandboxCgroup.create(instance: uniqueCgroupInstance("probe"), limits: CgroupLimits(), host: host)
        let dir = cgroup.directories[0]
        fs.set(dir + "/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
        fs.set(dir + "/memory.current", "52428800\n")
        fs.set(dir + "/pids.current", "7\n")
        fs.set(dir + "/cgroup.procs", "\(getpid())\n")
        let probe = CgroupProbe(cgroup: cgroup, helperPath: nil)
        let s = probe.sample(processes: true)
        #expect(s.cpuNanos == 2_500_000_000)
        #expect(s.memoryBytes == 52_428_800)
        #expect(s.pids == 7)
        // This test process runs the test bundle's executable.
        #expect(s.processes?.map(\.pid) == [getpid()])
        #expect(s.processes?.first?.executable == CgroupProbe.readLink("/proc/self/exe"))
        // …which the helper's identity (device, inode) hides.
        #expect(CgroupProbe(cgroup: cgroup, helperPath: "/proc/self/exe").sample(processes: true).processes == [])
        #expect(probe.sample(processes: false).processes == nil)
        fs.set(dir + "/cgroup.procs", "")
        try cgroup.destroy()
    }

    @Test func hostSymlinksInPatternsAreResolved() {
        let rule = AlertRule(name: "e", condition: .exec(allow: ["/proc/self/root/usr/bin/*", "/nonexistent/x"]))
        guard case .exec(let allow) = CgroupProbe.resolvingHostLinks(rule).condition else { return }
        #expect(allow == ["/proc/self/root/usr/bin/*", "/usr/bin/*", "/nonexistent/x"])
    }

    @Test func monitorFiresStopsTheSandboxAndStopsDeterministically() throws {
        final class Ramp: ResourceProbe {
            let calls = Mutex(0)
            func sample(processes: Bool) -> ResourceSample {
                let n = calls.withLock { $0 += 1; return $0 }
                return ResourceSample(time: Timing.now(), pids: n * 10)
            }
        }
        let probe = Ramp()
        let fired = Mutex<[String]>([])
        let stops = Mutex(0)
        let spec = MonitorSpec(interval: .milliseconds(100), alerts: [
            AlertRule(name: "note", condition: .pidsAbove(15, for: .zero)),
            AlertRule(name: "kill", condition: .pidsAbove(35, for: .zero), action: .stop),
            AlertRule(name: "never", condition: .pidsAbove(1_000_000, for: .zero)),
        ])
        let monitor = try ResourceMonitor(
            spec: spec, limits: Limits(), probe: probe,
            onFiring: { f in fired.withLock { $0.append(f.rule.name) } }, stopSandbox: { stops.withLock { $0 += 1 } })
        try monitor.start()
        let deadline = Timing.now() + 5 * Self.second
        while monitor.stopFiring == nil && Timing.now() < deadline { usleep(10_000) }
        monitor.stop()
        #expect(fired.withLock { $0 } == ["note", "kill"])
        #expect(monitor.stopFiring?.rule.name == "kill")
        #expect(stops.withLock { $0 } == 1)
        let taken = probe.calls.withLock { $0 }
        #expect(taken == 4, "sampling ends with the stop")
        usleep(300_000)
        #expect(probe.calls.withLock { $0 } == taken)

        // A monitor with nothing to fire is stopped at once, mid-interval.
        let idle = try ResourceMonitor(
            spec: MonitorSpec(interval: .seconds(60), alerts: [AlertRule(name: "n", condition: .pidsAbove(1_000_000, for: .zero))]),
            limits: Limits(), probe: Ramp(), onFiring: { _ in }, stopSandbox: {})
        try idle.start()
        usleep(50_000)
        let t0 = Timing.now()
        idle.stop()
        #expect(Timing.now() - t0 < Self.second / 2)
        #expect(idle.sampleCount == 1)
        idle.stop()
    }
}
