import AirlockCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The cgroup(s) of one sandbox: created with its limits before the sandbox starts, joined
/// by the sandbox helper (it writes `0` into each of `procsFiles`), read for usage while it
/// runs, and removed at teardown.
///
/// Layout: `<base>/airlock/airlock-<instance>`, where `<base>` is each used v1 hierarchy's
/// mount point, or the v2 mount (root) or delegated subtree (rootless). The shared `airlock`
/// parent is created on demand and never removed; under v2 it enables `cpu memory pids`
/// for its children and holds no process itself (the no-internal-process rule).
///
/// Creating is a handful of system calls when the parent exists: one `mkdir` per group and
/// one `open`/`write`/`close` per limit. Nothing scans a directory; only teardown sleeps.
public final class SandboxCgroup: Sendable {
    public let version: CgroupVersion
    /// The directories this sandbox owns (one per v1 hierarchy, one for v2); `destroy()` removes them.
    public let directories: [String]
    /// Limits asked for that this host does not fully enforce (no swap accounting, a missing
    /// controller, an old kernel), each written for the person reading the run's report.
    public let warnings: [String]

    struct Group: Sendable, Equatable {
        var path: String
        var controllers: [String]
    }

    let groups: [Group]
    let fs: any CgroupFS

    init(version: CgroupVersion, groups: [Group], warnings: [String], fs: any CgroupFS) {
        self.version = version
        self.groups = groups
        self.directories = groups.map(\.path)
        self.warnings = warnings
        self.fs = fs
    }

    /// Absolute paths of the `cgroup.procs` files a process writes its pid (or `0`, for itself)
    /// into to join the sandbox: one per v1 hierarchy, one under v2.
    public var procsFiles: [String] { groups.map { $0.path + "/cgroup.procs" } }

    // MARK: Creating

    /// Creates `airlock-<instance>` in each needed hierarchy and applies `limits`.
    /// On failure nothing it created is left behind.
    public static func create(instance: String, limits: CgroupLimits, host: CgroupHost) throws(AirlockError)
        -> SandboxCgroup
    {
        try limits.validate()
        try validate(instance: instance)
        let name = "airlock-" + instance
        guard let version = host.version else {
            throw AirlockError(
                .sandboxSetup,
                "cgroup limits cannot be applied on this host: \(host.unavailableReason ?? "unknown reason")")
        }
        var builder = Builder(fs: host.fs)
        do throws(CgroupFSError) {
            switch host.layout {
            case .unavailable: break
            case .v1(let hierarchies):
                try builder.createV1(name: name, limits: limits, hierarchies: hierarchies)
            case .v2(let base, let controllers):
                try builder.createV2(name: name, limits: limits, base: base, controllers: controllers)
            }
        } catch {
            builder.rollBack()
            throw setupError(error)
        }
        return SandboxCgroup(version: version, groups: builder.groups, warnings: builder.warnings, fs: host.fs)
    }

    /// Instance ids become directory names: one plain path component.
    private static func validate(instance: String) throws(AirlockError) {
        let allowed = instance.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-")
                || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
        guard allowed, !instance.isEmpty, instance.utf8.count <= 200, !instance.hasPrefix(".") else {
            throw AirlockError(
                .usage,
                "'\(instance)' cannot name a cgroup: use 1 to 200 letters, digits, '-', '_' or '.', not starting with '.'"
            )
        }
    }

    /// Builds the groups of one sandbox and remembers what it created, to roll back.
    private struct Builder {
        let fs: any CgroupFS
        var groups: [Group] = []
        var warnings: [String] = []
        /// Every directory made so far, for `rollBack()`.
        var created: [String] = []

        mutating func createV1(name: String, limits: CgroupLimits, hierarchies: [CgroupHost.Hierarchy])
            throws(CgroupFSError)
        {
            for hierarchy in hierarchies {
                // cpu only when limited; the others always (usage, freeze, kill).
                let wanted = hierarchy.controllers.filter { $0 != "cpu" || limits.cpus != nil }
                guard !wanted.isEmpty else { continue }
                let parent = hierarchy.mountPoint + "/airlock"
                let leaf = parent + "/" + name
                let fs = self.fs
                try makeGroup(leaf, parent: parent) { (parent) throws(CgroupFSError) in
                    if hierarchy.hasCpuset { try Self.copyCpuset(from: hierarchy.mountPoint, to: parent, fs: fs) }
                }
                groups.append(Group(path: leaf, controllers: hierarchy.controllers))
                if hierarchy.hasCpuset { try Self.copyCpuset(from: parent, to: leaf, fs: fs) }
            }

            if let bytes = limits.memoryBytes {
                if let memory = group(with: "memory") {
                    // memsw bounds memory + swap and must never be below the memory limit: memory first.
                    try fs.writeFile(memory + "/memory.limit_in_bytes", String(bytes))
                    do {
                        try fs.writeFile(memory + "/memory.memsw.limit_in_bytes", String(bytes))
                    } catch  where error.errno == ENOENT {
                        warnings.append(
                            "swap is not counted in the memory limit: \(memory)/memory.memsw.limit_in_bytes is absent "
                                + "(the kernel runs without swap accounting; boot it with swapaccount=1)")
                    }
                } else {
                    warnings.append(notEnforced("memory limit (\(Units.formatBytes(bytes)))", "memory"))
                }
            }
            if let quota = try? limits.cpuQuotaMicros(), let cpus = limits.cpus {
                if let cpu = group(with: "cpu") {
                    try fs.writeFile(cpu + "/cpu.cfs_period_us", String(CgroupLimits.cpuPeriodMicros))
                    try fs.writeFile(cpu + "/cpu.cfs_quota_us", String(quota))
                } else {
                    warnings.append(notEnforced("cpu limit (\(cpus) cpus)", "cpu"))
                }
            }
            if let pids = limits.pids {
                if let group = group(with: "pids") {
                    try fs.writeFile(group + "/pids.max", String(pids))
                } else {
                    warnings.append(notEnforced("pids limit (\(pids))", "pids"))
                }
            }
        }

        mutating func createV2(name: String, limits: CgroupLimits, base: String, controllers: [String])
            throws(CgroupFSError)
        {
            let parent = base + "/airlock"
            let leaf = parent + "/" + name
            let enable = controllers.map { "+" + $0 }.joined(separator: " ")
            let fs = self.fs
            var configured = false
            // Enables the controllers for `airlock/` and for its children. Done when `airlock/`
            // is created, or when a limit file is missing because someone else created it bare.
            func configureParent() throws(CgroupFSError) {
                configured = true
                guard !enable.isEmpty else { return }
                try fs.writeFile(base + "/cgroup.subtree_control", enable)
                try fs.writeFile(parent + "/cgroup.subtree_control", enable)
            }
            func write(_ file: String, _ value: String) throws(CgroupFSError) {
                do {
                    try fs.writeFile(leaf + "/" + file, value)
                } catch  where error.errno == ENOENT && !configured {
                    try configureParent()
                    try fs.writeFile(leaf + "/" + file, value)
                }
            }

            try makeGroup(leaf, parent: parent) { (_) throws(CgroupFSError) in try configureParent() }
            groups.append(Group(path: leaf, controllers: controllers))

            if controllers.contains("memory") {
                if let bytes = limits.memoryBytes {
                    try write("memory.max", String(bytes))
                    do {
                        try write("memory.swap.max", "0")
                    } catch  where error.errno == ENOENT {
                        warnings.append(
                            "swap is not counted in the memory limit: \(leaf)/memory.swap.max is absent "
                                + "(the kernel runs without swap accounting)")
                    }
                }
                // The whole sandbox dies together on OOM, limit or not.
                do {
                    try write("memory.oom.group", "1")
                } catch  where error.errno == ENOENT {
                    warnings.append(
                        "on out-of-memory only one process of the sandbox is killed, not all: memory.oom.group is absent (Linux before 4.19)"
                    )
                }
            } else if let bytes = limits.memoryBytes {
                warnings.append(notEnforced("memory limit (\(Units.formatBytes(bytes)))", "memory"))
            }
            if let quota = try? limits.cpuQuotaMicros(), let cpus = limits.cpus {
                if controllers.contains("cpu") {
                    try write("cpu.max", "\(quota) \(CgroupLimits.cpuPeriodMicros)")
                } else {
                    warnings.append(notEnforced("cpu limit (\(cpus) cpus)", "cpu"))
                }
            }
            if let pids = limits.pids {
                if controllers.contains("pids") {
                    try write("pids.max", String(pids))
                } else {
                    warnings.append(notEnforced("pids limit (\(pids))", "pids"))
                }
            }
        }

        /// `mkdir leaf`; only when that fails because `airlock/` is missing: create it, set it up, retry.
        private mutating func makeGroup(
            _ leaf: String, parent: String, setUpParent: (String) throws(CgroupFSError) -> Void
        ) throws(CgroupFSError) {
            do {
                try fs.makeDirectory(leaf)
            } catch  where error.errno == ENOENT {
                do {
                    try fs.makeDirectory(parent)
                    try setUpParent(parent)
                } catch  where error.errno == EEXIST && error.path == parent {
                    // Another sandbox created it first; it sets it up.
                }
                try fs.makeDirectory(leaf)
            }
            // Tracked as soon as it exists, so a later failure removes it.
            created.append(leaf)
        }

        /// A v1 cpuset group accepts no process until it has CPUs and memory nodes: inherit the parent's.
        private static func copyCpuset(from source: String, to destination: String, fs: any CgroupFS)
            throws(CgroupFSError)
        {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let value = try fs.readFile(source + "/" + file).cgroupTrimmed
                try fs.writeFile(destination + "/" + file, value)
            }
        }

        private func group(with controller: String) -> String? {
            groups.first { $0.controllers.contains(controller) }?.path
        }

        private func notEnforced(_ what: String, _ controller: String) -> String {
            "\(what) is NOT enforced: this host's cgroups offer no \(controller) controller"
        }

        func rollBack() {
            for directory in created.reversed() { try? fs.removeDirectory(directory) }
        }
    }

    private static func setupError(_ error: CgroupFSError) -> AirlockError {
        let cause = errnoDescription(error.errno)
        switch (error.call, error.errno) {
        case ("mkdir", EEXIST):
            return AirlockError(
                .sandboxSetup,
                "the cgroup \(error.path) already exists: a sandbox with this instance id is running, or an earlier one was not cleaned up (remove the directory with rmdir once it holds no processes)",
                cause: cause)
        case ("write", EBUSY) where error.path.hasSuffix("/cgroup.subtree_control"):
            return AirlockError(
                .sandboxSetup,
                "could not enable cgroup controllers in \(error.path): that cgroup holds processes, and cgroup v2 forbids enabling controllers for a group with processes of its own (typical at the root of a container's cgroup namespace); run Airlock from a cgroup that has no processes besides its children's",
                cause: cause)
        case (_, EACCES), (_, EPERM), (_, EROFS):
            return AirlockError(
                .sandboxSetup,
                "could not set up the sandbox cgroup: \(describe(error)): permission denied; run as root, or on a cgroup v2 host with a delegated subtree",
                cause: cause)
        default:
            return AirlockError(.sandboxSetup, "could not set up the sandbox cgroup: \(describe(error))", cause: cause)
        }
    }

    private static func describe(_ error: CgroupFSError) -> String {
        switch error.call {
        case "write": "writing \"\(error.value ?? "")\" to \(error.path) failed"
        case "mkdir": "creating \(error.path) failed"
        case "rmdir": "removing \(error.path) failed"
        default: "\(error.call) \(error.path) failed"
        }
    }

    // MARK: Measuring

    /// What the sandbox has used so far. Reads a few small files; missing ones leave their field empty.
    public func usage() -> CgroupUsage {
        var usage = CgroupUsage()
        switch version {
        case .v1:
            if let cpuacct = path(with: "cpuacct") {
                usage.cpuNanos = number(cpuacct + "/cpuacct.usage")
            }
            if let memory = path(with: "memory") {
                usage.memoryPeakBytes = number(memory + "/memory.max_usage_in_bytes")
                usage.memoryCurrentBytes = number(memory + "/memory.usage_in_bytes")
                usage.oomKills = flatKeyed(memory + "/memory.oom_control")["oom_kill"] ?? 0
                usage.memoryLimitHits =
                    (number(memory + "/memory.failcnt") ?? 0) + (number(memory + "/memory.memsw.failcnt") ?? 0)
                // Some kernels (6.18 seen) leave v1 failcnt at 0 even under OOM; a peak that
                // reached the limit is at least one hit.
                if usage.memoryLimitHits == 0, let peak = usage.memoryPeakBytes,
                    let limit = number(memory + "/memory.limit_in_bytes"), peak >= limit
                {
                    usage.memoryLimitHits = 1
                }
            }
            if let pids = path(with: "pids") {
                usage.pidsCurrent = number(pids + "/pids.current").map { Int(clamping: $0) }
                usage.pidsLimitHits = flatKeyed(pids + "/pids.events")["max"] ?? 0
            }
        case .v2:
            guard let group = groups.first?.path else { return usage }
            usage.cpuNanos = flatKeyed(group + "/cpu.stat")["usage_usec"].map { $0 &* 1000 }
            if path(with: "memory") != nil {
                usage.memoryPeakBytes = number(group + "/memory.peak")
                usage.memoryCurrentBytes = number(group + "/memory.current")
                let events = flatKeyed(group + "/memory.events")
                usage.oomKills = events["oom_kill"] ?? 0
                usage.memoryLimitHits = events["max"] ?? 0
            }
            if path(with: "pids") != nil {
                usage.pidsCurrent = number(group + "/pids.current").map { Int(clamping: $0) }
                usage.pidsLimitHits = flatKeyed(group + "/pids.events")["max"] ?? 0
            }
        }
        return usage
    }

    /// The pids in the sandbox now (the union over its groups).
    public func processes() -> [pid_t] {
        var pids: Set<pid_t> = []
        for file in procsFiles {
            guard let text = try? fs.readFile(file) else { continue }
            for token in CgroupProcFiles.parseList(text) { if let pid = pid_t(token) { pids.insert(pid) } }
        }
        return pids.sorted()
    }

    private func path(with controller: String) -> String? {
        groups.first { $0.controllers.contains(controller) }?.path
    }

    private func number(_ file: String) -> UInt64? {
        guard let text = try? fs.readFile(file) else { return nil }
        return UInt64(text.cgroupTrimmed)
    }

    private func flatKeyed(_ file: String) -> [String: UInt64] {
        guard let text = try? fs.readFile(file) else { return [:] }
        return CgroupProcFiles.parseFlatKeyed(text)
    }

    // MARK: Freezing

    /// Stops every process of the sandbox (they stay stopped, and unkillable until thawed)
    /// and returns once the kernel reports the whole group frozen, or throws after 1 s.
    public func freeze() throws(AirlockError) {
        try freeze(until: CgroupClock.now() + CgroupClock.second)
    }

    /// v1: moves `pid` (the sandbox's own supervisor, which joined every group before it
    /// cloned PID 1) out of the freezer group, so that freezing the sandbox does not freeze
    /// the process that must still be able to take it down. v2 needs nothing: the helper
    /// never joins (PID 1 is cloned into the group).
    public func excludeFromFreezer(_ pid: pid_t) {
        guard version == .v1, let dir = path(with: "freezer"), let slash = dir.lastIndex(of: "/") else { return }
        try? fs.writeFile(String(dir[..<slash]) + "/cgroup.procs", String(pid))
    }

    /// Lets a frozen sandbox run again.
    public func thaw() throws(AirlockError) {
        let (file, value) = freezerControl(frozen: false)
        guard let file else { throw noFreezer() }
        do {
            try fs.writeFile(file, value)
        } catch {
            throw AirlockError(
                .system, "could not thaw the sandbox: \(Self.describe(error))", cause: errnoDescription(error.errno))
        }
    }

    private func freeze(until deadline: UInt64) throws(AirlockError) {
        let (file, value) = freezerControl(frozen: true)
        guard let file, let state = freezerState() else { throw noFreezer() }
        var attempt = 0
        while true {
            // Writing again is harmless and unsticks a v1 freezer that raced with a fork.
            if attempt % 50 == 0 {
                do {
                    try fs.writeFile(file, value)
                } catch {
                    throw AirlockError(
                        .system, "could not freeze the sandbox: \(Self.describe(error))",
                        cause: errnoDescription(error.errno))
                }
            }
            if state() { return }
            guard CgroupClock.now() < deadline else {
                try? thaw()
                throw AirlockError(.system, "the sandbox did not freeze within 1 s (\(file)); it was thawed again")
            }
            attempt += 1
            CgroupClock.sleep(nanoseconds: 1_000_000)
        }
    }

    /// The file that freezes or thaws the sandbox, and the value to write.
    private func freezerControl(frozen: Bool) -> (String?, String) {
        switch version {
        case .v1: (path(with: "freezer").map { $0 + "/freezer.state" }, frozen ? "FROZEN" : "THAWED")
        case .v2: (groups.first.map { $0.path + "/cgroup.freeze" }, frozen ? "1" : "0")
        }
    }

    /// Reads whether the kernel has finished freezing.
    private func freezerState() -> (() -> Bool)? {
        let fs = self.fs
        switch version {
        case .v1:
            guard let freezer = path(with: "freezer") else { return nil }
            return { (try? fs.readFile(freezer + "/freezer.state"))?.cgroupTrimmed == "FROZEN" }
        case .v2:
            guard let group = groups.first?.path else { return nil }
            return { CgroupProcFiles.parseFlatKeyed((try? fs.readFile(group + "/cgroup.events")) ?? "")["frozen"] == 1 }
        }
    }

    private func noFreezer() -> AirlockError {
        AirlockError(.system, "this host's cgroups have no freezer: the sandbox cannot be frozen (kill it instead)")
    }

    // MARK: Killing and removing

    /// SIGKILLs every process of the sandbox and waits (at most 1 s) until none is left.
    /// Returns whether the sandbox is empty.
    @discardableResult
    public func killAll() -> Bool {
        killAll(until: CgroupClock.now() + CgroupClock.second)
    }

    private func killAll(until deadline: UInt64) -> Bool {
        // v2 (Linux 5.14+): the kernel kills the whole group, forks included, in one write.
        if version == .v2, let group = groups.first?.path, (try? fs.writeFile(group + "/cgroup.kill", "1")) != nil {
            return waitUntilEmpty(until: deadline)
        }
        // Otherwise: freeze so nothing forks while we signal, kill what is listed, thaw so the
        // signals are delivered; again until empty.
        var round = 0
        while true {
            if processes().isEmpty { return true }
            guard CgroupClock.now() < deadline else { return false }
            let frozen = (try? freeze(until: min(deadline, CgroupClock.now() + CgroupClock.second / 10))) != nil
            let me = getpid()
            for pid in processes() where pid > 1 && pid != me { _ = kill(pid, SIGKILL) }
            if frozen { try? thaw() }
            CgroupClock.sleep(nanoseconds: UInt64(1_000_000) << min(round, 4))
            round += 1
        }
    }

    private func waitUntilEmpty(until deadline: UInt64) -> Bool {
        var round = 0
        while !processes().isEmpty {
            guard CgroupClock.now() < deadline else { return false }
            CgroupClock.sleep(nanoseconds: UInt64(100_000) << min(round, 6))
            round += 1
        }
        return true
    }

    /// Kills whatever is still inside, then removes every directory `create` made, retrying
    /// while the kernel still reports them busy (at most about 1 s). The shared `airlock`
    /// parent stays. Calling it again is harmless.
    public func destroy() throws(AirlockError) {
        let deadline = CgroupClock.now() + CgroupClock.second
        var failures: [CgroupFSError] = []
        var busy = removeDirectories(directories, failures: &failures)
        if !busy.isEmpty {
            _ = killAll(until: deadline)
            var round = 0
            while !busy.isEmpty && CgroupClock.now() < deadline {
                busy = removeDirectories(busy, failures: &failures)
                if busy.isEmpty { break }
                CgroupClock.sleep(nanoseconds: UInt64(1_000_000) << min(round, 5))
                round += 1
            }
        }
        if !busy.isEmpty {
            throw AirlockError(
                .system,
                "could not remove the sandbox cgroup \(busy.joined(separator: ", ")): still busy after 1 s (processes left: \(processes().map(String.init).joined(separator: " ")))"
            )
        }
        if let failure = failures.first {
            throw AirlockError(
                .system, "could not remove the sandbox cgroup: \(Self.describe(failure))",
                cause: errnoDescription(failure.errno))
        }
    }

    /// `rmdir`s each directory, in reverse order; returns those still busy. Already gone is fine.
    private func removeDirectories(_ paths: [String], failures: inout [CgroupFSError]) -> [String] {
        var busy: [String] = []
        for path in paths.reversed() {
            do {
                try fs.removeDirectory(path)
            } catch  where error.errno == ENOENT {
            } catch  where error.errno == EBUSY || error.errno == ENOTEMPTY {
                busy.insert(path, at: 0)
            } catch {
                failures.append(error)
            }
        }
        return busy
    }
}

/// Monotonic time and sleeping for the teardown loops (the only places the cgroup code waits).
enum CgroupClock {
    static let second: UInt64 = 1_000_000_000

    static func now() -> UInt64 { Clock.monotonicNanos() }

    static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / second), tv_nsec: Int(nanoseconds % second))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines (cgroup files end in a newline).
    var cgroupTrimmed: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\n" || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\n" || l == "\t" { s.removeLast() }
        return String(s)
    }
}
