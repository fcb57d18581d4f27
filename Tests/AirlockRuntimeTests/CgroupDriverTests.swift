import AirlockCore
import Testing

@testable import AirlockRuntime

#if canImport(Glibc)
    import Glibc
#endif

/// The driver against a fake cgroup tree (`FakeCgroupFS`): v2 without a v2 host, and the
/// v1 layouts this host does not have.
@Suite("cgroup driver (fake tree)")
struct CgroupDriverTests {
    static let limits = CgroupLimits(memoryBytes: 64 << 20, cpus: 1.5, pids: 32)

    static func v2Host(
        _ options: FakeCgroupFS.Options = .init(), controllers: [String] = CgroupSamples.pureV2Controllers
    )
        -> (FakeCgroupFS, CgroupHost)
    {
        let fs = FakeCgroupFS([("/sys/fs/cgroup", .v2(controllers: controllers))], options: options)
        return (fs, fs.host(mountinfo: CgroupSamples.pureV2Mountinfo))
    }

    // MARK: v2

    @Test func v2CreateWritesEveryLimit() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "i1", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        let leaf = "/sys/fs/cgroup/airlock/airlock-i1"

        #expect(cgroup.version == .v2)
        #expect(cgroup.directories == [leaf])
        #expect(cgroup.procsFiles == [leaf + "/cgroup.procs"])
        #expect(cgroup.warnings.isEmpty)
        // airlock/ was missing: mkdir of the leaf failed, so the parent was made and set up first.
        #expect(
            fs.writes.map { "\($0.path)=\($0.value)" } == [
                "/sys/fs/cgroup/cgroup.subtree_control=+cpu +memory +pids",
                "/sys/fs/cgroup/airlock/cgroup.subtree_control=+cpu +memory +pids",
                "\(leaf)/memory.max=67108864",
                "\(leaf)/memory.swap.max=0",
                "\(leaf)/memory.oom.group=1",
                "\(leaf)/cpu.max=150000 100000",
                "\(leaf)/pids.max=32",
            ])
        #expect(fs.contents(leaf + "/memory.max") == "67108864\n")
        #expect(fs.contents(leaf + "/memory.swap.max") == "0\n")
        #expect(fs.contents(leaf + "/memory.oom.group") == "1\n")
        #expect(fs.contents(leaf + "/cpu.max") == "150000 100000\n")
        #expect(fs.contents(leaf + "/pids.max") == "32\n")
        #expect(fs.contents("/sys/fs/cgroup/airlock/cgroup.subtree_control") == "cpu memory pids\n")
        // The parent holds no process (cgroup v2's no-internal-process rule).
        #expect(fs.contents("/sys/fs/cgroup/airlock/cgroup.procs") == "")
    }

    @Test func v2SecondSandboxIsOnlyMkdirAndLimitWrites() throws {
        let (fs, host) = Self.v2Host()
        let first = try SandboxCgroup.create(instance: "a", limits: Self.limits, host: host)
        defer { try? first.destroy() }
        fs.clearWrites()
        let second = try SandboxCgroup.create(instance: "b", limits: Self.limits, host: host)
        defer { try? second.destroy() }
        #expect(
            fs.writes.map(\.path) == [
                "/sys/fs/cgroup/airlock/airlock-b/memory.max", "/sys/fs/cgroup/airlock/airlock-b/memory.swap.max",
                "/sys/fs/cgroup/airlock/airlock-b/memory.oom.group", "/sys/fs/cgroup/airlock/airlock-b/cpu.max",
                "/sys/fs/cgroup/airlock/airlock-b/pids.max",
            ])
    }

    @Test func v2ParentMadeBareBySomeoneElseIsSetUpOnFirstUse() throws {
        let (fs, host) = Self.v2Host()
        fs.seedV2Group("/sys/fs/cgroup/airlock", controllers: [])
        let cgroup = try SandboxCgroup.create(instance: "bare", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        #expect(fs.contents("/sys/fs/cgroup/airlock/airlock-bare/memory.max") == "67108864\n")
        #expect(fs.contents("/sys/fs/cgroup/airlock/cgroup.subtree_control") == "cpu memory pids\n")
    }

    @Test func v2WithoutLimitsStillGroupsTheOOMKill() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "nolimits", limits: CgroupLimits(), host: host)
        defer { try? cgroup.destroy() }
        #expect(fs.contents("/sys/fs/cgroup/airlock/airlock-nolimits/memory.oom.group") == "1\n")
        #expect(fs.contents("/sys/fs/cgroup/airlock/airlock-nolimits/memory.max") == "max\n")
        #expect(fs.contents("/sys/fs/cgroup/airlock/airlock-nolimits/pids.max") == "max\n")
    }

    @Test func v2WarnsAboutWhatItCannotEnforce() throws {
        var options = FakeCgroupFS.Options()
        options.swapAccounting = false
        options.oomGroup = false
        let (fs, host) = Self.v2Host(options, controllers: ["memory", "pids"])
        let cgroup = try SandboxCgroup.create(instance: "w", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        #expect(cgroup.warnings.count == 3)
        #expect(cgroup.warnings.contains { $0.hasPrefix("swap is not counted in the memory limit") })
        #expect(cgroup.warnings.contains { $0.contains("memory.oom.group is absent") })
        #expect(
            cgroup.warnings.contains {
                $0 == "cpu limit (1.5 cpus) is NOT enforced: this host's cgroups offer no cpu controller"
            })
        #expect(!fs.writes.contains { $0.path.hasSuffix("cpu.max") })
        #expect(fs.contents("/sys/fs/cgroup/airlock/cgroup.subtree_control") == "memory pids\n")
    }

    @Test func v2UsageParsesTheKernelFiles() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "u", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        let leaf = "/sys/fs/cgroup/airlock/airlock-u"
        fs.set(leaf + "/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 1\n")
        fs.set(leaf + "/pids.events", "max 2\n")
        fs.set(leaf + "/cpu.stat", "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 0\n")
        fs.set(leaf + "/memory.peak", "52428800\n")
        fs.set(leaf + "/memory.current", "4096\n")
        fs.set(leaf + "/pids.current", "3\n")
        #expect(
            cgroup.usage()
                == CgroupUsage(
                    cpuNanos: 1_234_000, memoryPeakBytes: 52_428_800, memoryCurrentBytes: 4096, oomKills: 1,
                    memoryLimitHits: 3, pidsLimitHits: 2, pidsCurrent: 3))
    }

    @Test func v2UsageOnAnOldKernelLeavesGaugesEmpty() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "old", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        _ = unlink(fs.real("/sys/fs/cgroup/airlock/airlock-old/memory.peak"))
        let usage = cgroup.usage()
        #expect(usage.memoryPeakBytes == nil)
        #expect(usage.memoryCurrentBytes == 0)
        #expect(usage.oomKills == 0)
    }

    @Test func v2DestroyRemovesTheLeafAndKeepsTheParent() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "d", limits: Self.limits, host: host)
        #expect(fs.exists("/sys/fs/cgroup/airlock/airlock-d"))
        try cgroup.destroy()
        #expect(!fs.exists("/sys/fs/cgroup/airlock/airlock-d"))
        #expect(fs.exists("/sys/fs/cgroup/airlock"))
        try cgroup.destroy()  // again: nothing left to do
    }

    @Test func v2DestroyKillsWhatIsStillInside() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "busy", limits: Self.limits, host: host)
        // Pids above pid_max: nothing real could ever be signalled.
        fs.set("/sys/fs/cgroup/airlock/airlock-busy/cgroup.procs", "2000000001\n2000000002\n")
        #expect(cgroup.processes() == [2_000_000_001, 2_000_000_002])
        try cgroup.destroy()
        #expect(fs.writes.last { $0.path.hasSuffix("cgroup.kill") }?.value == "1")
        #expect(!fs.exists("/sys/fs/cgroup/airlock/airlock-busy"))
    }

    @Test func v2KillAllWritesCgroupKill() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "k", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        fs.set("/sys/fs/cgroup/airlock/airlock-k/cgroup.procs", "2000000001\n")
        #expect(cgroup.killAll())
        #expect(cgroup.processes().isEmpty)
        #expect(fs.writes.last?.path == "/sys/fs/cgroup/airlock/airlock-k/cgroup.kill")
    }

    @Test func v2FreezeAndThaw() throws {
        let (fs, host) = Self.v2Host()
        let cgroup = try SandboxCgroup.create(instance: "f", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        try cgroup.freeze()
        #expect(fs.contents("/sys/fs/cgroup/airlock/airlock-f/cgroup.freeze") == "1\n")
        try cgroup.thaw()
        #expect(fs.contents("/sys/fs/cgroup/airlock/airlock-f/cgroup.freeze") == "0\n")
    }

    @Test func v2RootlessCreatesUnderTheDelegatedSubtree() throws {
        let fs = CgroupDetectionTests.systemdUserTree()
        let host = fs.host(
            mountinfo: CgroupSamples.pureV2Mountinfo,
            selfCgroup: "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope\n", uid: 1000)
        let appSlice = CgroupDetectionTests.userService + "/app.slice"
        let cgroup = try SandboxCgroup.create(instance: "r", limits: Self.limits, host: host)
        defer { try? cgroup.destroy() }
        #expect(cgroup.procsFiles == [appSlice + "/airlock/airlock-r/cgroup.procs"])
        #expect(fs.writes.contains { $0 == (appSlice + "/cgroup.subtree_control", "+cpu +memory +pids") })
        #expect(!fs.writes.contains { $0.path == "/sys/fs/cgroup/cgroup.subtree_control" })
        #expect(fs.contents(appSlice + "/airlock/airlock-r/cpu.max") == "150000 100000\n")
    }

    // MARK: Failures

    @Test func aFailedLimitLeavesNothingBehind() throws {
        var options = FakeCgroupFS.Options()
        options.failingWrites = ["pids.max"]
        let (fs, host) = Self.v2Host(options)
        #expect {
            try SandboxCgroup.create(instance: "fail", limits: Self.limits, host: host)
        } throws: { error in
            guard let error = error as? AirlockError else { return false }
            return error.code == .sandboxSetup
                && error.message
                    == "could not set up the sandbox cgroup: writing \"32\" to /sys/fs/cgroup/airlock/airlock-fail/pids.max failed"
                && error.cause?.contains("Invalid argument") == true
        }
        #expect(!fs.exists("/sys/fs/cgroup/airlock/airlock-fail"))
    }

    @Test func anExistingGroupIsNotReused() throws {
        let (fs, host) = Self.v2Host()
        let first = try SandboxCgroup.create(instance: "dup", limits: Self.limits, host: host)
        defer { try? first.destroy() }
        #expect {
            try SandboxCgroup.create(instance: "dup", limits: Self.limits, host: host)
        } throws: { error in
            (error as? AirlockError)?.message.contains("/sys/fs/cgroup/airlock/airlock-dup already exists") == true
        }
        #expect(fs.exists("/sys/fs/cgroup/airlock/airlock-dup"))  // the first sandbox's group is untouched
    }

    @Test(arguments: [
        CgroupLimits(cpus: 0), CgroupLimits(cpus: 0.001), CgroupLimits(cpus: .nan), CgroupLimits(cpus: -1),
        CgroupLimits(pids: 0), CgroupLimits(pids: 15), CgroupLimits(memoryBytes: 4096),
    ])
    func badLimitsAreUsageErrors(limits: CgroupLimits) {
        let (fs, host) = Self.v2Host()
        #expect {
            try SandboxCgroup.create(instance: "bad", limits: limits, host: host)
        } throws: { error in
            (error as? AirlockError)?.code == .usage
        }
        #expect(!fs.exists("/sys/fs/cgroup/airlock"))
    }

    @Test(arguments: ["", "../x", "a/b", ".hidden", String(repeating: "x", count: 201)])
    func badInstanceNamesAreRefused(instance: String) {
        let (_, host) = Self.v2Host()
        #expect(throws: AirlockError.self) {
            try SandboxCgroup.create(instance: instance, limits: CgroupLimits(), host: host)
        }
    }

    @Test func limitsFromASandboxSpec() throws {
        let limits = Limits(wallClock: .seconds(30), memoryBytes: 1 << 30, cpus: 2, pids: 100)
        #expect(CgroupLimits(limits) == CgroupLimits(memoryBytes: 1 << 30, cpus: 2, pids: 100))
        #expect(try CgroupLimits(cpus: 0.29).cpuQuotaMicros() == 29_000)
    }

    // MARK: v1 layouts this host does not have

    @Test func v1CoMountedCpuAndCpuacctShareOneGroup() throws {
        let fs = FakeCgroupFS(CgroupSamples.comountedMounts)
        let host = fs.host(mountinfo: CgroupSamples.comountedV1Mountinfo)
        let cgroup = try SandboxCgroup.create(
            instance: "c", limits: CgroupLimits(memoryBytes: 64 << 20, cpus: 0.5, pids: 32), host: host)
        defer { try? cgroup.destroy() }
        #expect(
            cgroup.procsFiles == [
                "/sys/fs/cgroup/cpu,cpuacct/airlock/airlock-c/cgroup.procs",
                "/sys/fs/cgroup/memory/airlock/airlock-c/cgroup.procs",
                "/sys/fs/cgroup/pids/airlock/airlock-c/cgroup.procs",
                "/sys/fs/cgroup/freezer/airlock/airlock-c/cgroup.procs",
            ])
        let limitWrites = fs.writes.map { "\($0.path.split(separator: "/").last ?? "")=\($0.value)" }
        #expect(
            limitWrites == [
                "memory.limit_in_bytes=67108864", "memory.memsw.limit_in_bytes=67108864",
                "cpu.cfs_period_us=100000", "cpu.cfs_quota_us=50000", "pids.max=32",
            ])
        fs.set("/sys/fs/cgroup/cpu,cpuacct/airlock/airlock-c/cpuacct.usage", "987654321\n")
        fs.set(
            "/sys/fs/cgroup/memory/airlock/airlock-c/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
        fs.set("/sys/fs/cgroup/memory/airlock/airlock-c/memory.failcnt", "5\n")
        fs.set("/sys/fs/cgroup/memory/airlock/airlock-c/memory.memsw.failcnt", "7\n")
        fs.set("/sys/fs/cgroup/memory/airlock/airlock-c/memory.max_usage_in_bytes", "67108864\n")
        fs.set("/sys/fs/cgroup/pids/airlock/airlock-c/pids.events", "max 4\n")
        fs.set("/sys/fs/cgroup/pids/airlock/airlock-c/pids.current", "1\n")
        #expect(
            cgroup.usage()
                == CgroupUsage(
                    cpuNanos: 987_654_321, memoryPeakBytes: 67_108_864, memoryCurrentBytes: 0, oomKills: 2,
                    memoryLimitHits: 12, pidsLimitHits: 4, pidsCurrent: 1))
        // A kernel that does not count failcnt: a peak at the limit still shows a hit.
        fs.set("/sys/fs/cgroup/memory/airlock/airlock-c/memory.failcnt", "0\n")
        fs.set("/sys/fs/cgroup/memory/airlock/airlock-c/memory.memsw.failcnt", "0\n")
        #expect(cgroup.usage().memoryLimitHits == 1)
        fs.set("/sys/fs/cgroup/memory/airlock/airlock-c/memory.max_usage_in_bytes", "1048576\n")
        #expect(cgroup.usage().memoryLimitHits == 0)
        try cgroup.destroy()
        for directory in cgroup.directories { #expect(!fs.exists(directory)) }
    }

    @Test func v1WithoutCpuLimitSkipsACpuOnlyHierarchy() throws {
        let fs = FakeCgroupFS(CgroupSamples.hybridMounts)
        let host = fs.host(mountinfo: CgroupSamples.hybridMountinfo)
        let cgroup = try SandboxCgroup.create(instance: "nocpu", limits: CgroupLimits(pids: 16), host: host)
        defer { try? cgroup.destroy() }
        #expect(
            cgroup.directories == [
                "/sys/fs/cgroup/cpuacct/airlock/airlock-nocpu", "/sys/fs/cgroup/memory/airlock/airlock-nocpu",
                "/sys/fs/cgroup/freezer/airlock/airlock-nocpu", "/sys/fs/cgroup/pids/airlock/airlock-nocpu",
            ])
    }

    @Test func v1WithoutSwapAccountingWarns() throws {
        var options = FakeCgroupFS.Options()
        options.swapAccounting = false
        let fs = FakeCgroupFS(CgroupSamples.hybridMounts, options: options)
        let host = fs.host(mountinfo: CgroupSamples.hybridMountinfo)
        let cgroup = try SandboxCgroup.create(
            instance: "noswap", limits: CgroupLimits(memoryBytes: 64 << 20), host: host)
        defer { try? cgroup.destroy() }
        #expect(cgroup.warnings.count == 1)
        #expect(cgroup.warnings.first?.contains("memory.memsw.limit_in_bytes is absent") == true)
        #expect(fs.contents("/sys/fs/cgroup/memory/airlock/airlock-noswap/memory.limit_in_bytes") == "67108864\n")
    }

    @Test func v1CpusetCoMountedGetsItsCpusAndMemsFilledIn() throws {
        let fs = FakeCgroupFS([("/sys/fs/cgroup/cpu,cpuset", .v1(controllers: ["cpu", "cpuset"]))])
        fs.set("/sys/fs/cgroup/cpu,cpuset/cpuset.cpus", "0-1\n")
        fs.set("/sys/fs/cgroup/cpu,cpuset/cpuset.mems", "0\n")
        let host = fs.host(mountinfo: "28 24 0:24 / /sys/fs/cgroup/cpu,cpuset rw - cgroup cgroup rw,cpu,cpuset\n")
        let cgroup = try SandboxCgroup.create(instance: "cs", limits: CgroupLimits(cpus: 1), host: host)
        defer { try? cgroup.destroy() }
        #expect(fs.contents("/sys/fs/cgroup/cpu,cpuset/airlock/cpuset.cpus") == "0-1\n")
        #expect(fs.contents("/sys/fs/cgroup/cpu,cpuset/airlock/airlock-cs/cpuset.cpus") == "0-1\n")
        #expect(fs.contents("/sys/fs/cgroup/cpu,cpuset/airlock/airlock-cs/cpuset.mems") == "0\n")
    }
}
