import AirlockCore
import Testing

@testable import AirlockRuntime

#if canImport(Glibc)
    import Glibc
#endif

/// cgroup v1 for real, on a host that has it and as root (skipped elsewhere). Every test
/// removes the groups it creates, on failure too.
@Suite(
    "cgroup v1 on this host", .serialized,
    .enabled(if: geteuid() == 0 && CgroupHost.detect().version == .v1, "needs root on a cgroup v1 host"))
struct CgroupV1HostTests {
    let host = CgroupHost.detect()
    let fs = SystemCgroupFS()

    /// A sandbox cgroup that is destroyed when `body` returns or throws, and whose directories
    /// are then checked to be gone.
    func withCgroup(_ label: String, _ limits: CgroupLimits, _ body: (SandboxCgroup) throws -> Void) throws {
        let cgroup = try SandboxCgroup.create(instance: uniqueCgroupInstance(label), limits: limits, host: host)
        var destroyed = false
        defer { if !destroyed { try? cgroup.destroy() } }
        try body(cgroup)
        try cgroup.destroy()
        destroyed = true
        for directory in cgroup.directories {
            #expect(access(directory, F_OK) == -1 && errno == ENOENT, "\(directory) is still there")
        }
    }

    func file(_ cgroup: SandboxCgroup, _ controller: String, _ name: String) throws -> String {
        let group = try #require(cgroup.groups.first { $0.controllers.contains(controller) })
        return try fs.readFile(group.path + "/" + name).cgroupTrimmed
    }

    @Test func limitsJoinUsageKillAndDestroy() throws {
        try withCgroup("live", CgroupLimits(memoryBytes: 64 << 20, cpus: 0.5, pids: 32)) { cgroup in
            #expect(cgroup.version == .v1)
            if case .v1(let hierarchies) = host.layout {
                #expect(cgroup.procsFiles.count == hierarchies.count)  // cpu, cpuacct, memory, freezer, pids here
            }
            #expect(try file(cgroup, "memory", "memory.limit_in_bytes") == "67108864")
            if cgroup.warnings.isEmpty {
                #expect(try file(cgroup, "memory", "memory.memsw.limit_in_bytes") == "67108864")
            }
            #expect(try file(cgroup, "cpu", "cpu.cfs_period_us") == "100000")
            #expect(try file(cgroup, "cpu", "cpu.cfs_quota_us") == "50000")
            #expect(try file(cgroup, "pids", "pids.max") == "32")

            let child = try CgroupTestChild(["/bin/sleep", "5"])
            defer { child.killAndReap() }
            for procs in cgroup.procsFiles { try fs.writeFile(procs, String(child.pid)) }
            #expect(cgroup.processes() == [child.pid])
            let membership = try fs.readFile("/proc/\(child.pid)/cgroup")
            #expect(membership.contains("/airlock/airlock-test-live-"))

            let usage = cgroup.usage()
            #expect(usage.pidsCurrent == 1)
            #expect(usage.cpuNanos != nil)
            #expect(usage.memoryPeakBytes != nil)
            #expect(usage.oomKills == 0)

            #expect(cgroup.killAll())
            #expect(child.wait() == .signaled(SIGKILL))
            #expect(cgroup.processes().isEmpty)
        }
    }

    @Test(.enabled(if: access("/usr/bin/python3", X_OK) == 0, "needs /usr/bin/python3"))
    func aMemoryHogIsOOMKilled() throws {
        try withCgroup("oom", CgroupLimits(memoryBytes: 64 << 20)) { cgroup in
            // The shell joins every hierarchy, then becomes a process that writes 200 MiB.
            let join = cgroup.procsFiles.map { "echo $$ > \($0)" }.joined(separator: "; ")
            let hog = "exec /usr/bin/python3 -c 'b = bytes(range(256)) * (800 << 10)'"
            let child = try CgroupTestChild(["/bin/sh", "-c", join + "; " + hog])
            defer { child.killAndReap() }
            #expect(child.wait() == .signaled(SIGKILL))
            let usage = cgroup.usage()
            #expect(usage.oomKills >= 1)
            #expect(usage.memoryLimitHits >= 1)
            #expect((usage.memoryPeakBytes ?? 0) <= 64 << 20)
        }
    }

    @Test func freezeStopsAndThawResumes() throws {
        try withCgroup("freeze", CgroupLimits()) { cgroup in
            let child = try CgroupTestChild(["/bin/sleep", "5"])
            defer { child.killAndReap() }
            for procs in cgroup.procsFiles { try fs.writeFile(procs, String(child.pid)) }
            try cgroup.freeze()
            #expect(try file(cgroup, "freezer", "freezer.state") == "FROZEN")
            try cgroup.thaw()
            #expect(try file(cgroup, "freezer", "freezer.state") == "THAWED")
        }
    }

    @Test func killAllTakesTheWholeTreeDown() throws {
        try withCgroup("tree", CgroupLimits(pids: 16)) { cgroup in
            // The shell joins, then starts grandchildren that inherit the groups.
            let join = cgroup.procsFiles.map { "echo $$ > \($0)" }.joined(separator: "; ")
            let child = try CgroupTestChild(["/bin/sh", "-c", join + "; /bin/sleep 30 & /bin/sleep 30 & wait"])
            defer { child.killAndReap() }
            var processes: [pid_t] = []
            for _ in 0..<500 where processes.count < 3 {
                processes = cgroup.processes()
                usleep(2000)
            }
            #expect(processes.count == 3)
            #expect(cgroup.usage().pidsCurrent == 3)
            #expect(cgroup.killAll())
            #expect(child.wait() == .signaled(SIGKILL))
        }
    }

    @Test func destroyKillsWhatIsStillInside() throws {
        let cgroup = try SandboxCgroup.create(
            instance: uniqueCgroupInstance("busy"), limits: CgroupLimits(), host: host)
        defer { try? cgroup.destroy() }
        let child = try CgroupTestChild(["/bin/sleep", "30"])
        defer { child.killAndReap() }
        for procs in cgroup.procsFiles { try fs.writeFile(procs, String(child.pid)) }
        try cgroup.destroy()
        #expect(child.wait() == .signaled(SIGKILL))
        for directory in cgroup.directories { #expect(access(directory, F_OK) == -1) }
    }
}

/// A process started with `posix_spawn`, reaped exactly once.
final class CgroupTestChild {
    enum Status: Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    let pid: pid_t
    private var status: Status?

    init(_ argv: [String]) throws {
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for arg in cArgs { free(arg) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], nil, nil, cArgs, environ)
        guard rc == 0 else { throw AirlockError(.system, "posix_spawn \(argv[0]) failed", cause: errnoDescription(rc)) }
        self.pid = pid
    }

    @discardableResult
    func wait() -> Status {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) == -1 && errno == EINTR {}
        let signal = raw & 0x7f
        let result: Status = signal == 0 ? .exited((raw >> 8) & 0xff) : .signaled(signal)
        status = result
        return result
    }

    func killAndReap() {
        if status == nil {
            kill(pid, SIGKILL)
            wait()
        }
    }
}
