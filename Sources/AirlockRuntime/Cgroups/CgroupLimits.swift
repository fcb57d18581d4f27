import AirlockCore

/// Which cgroup interface a host offers for the sandbox's limits.
public enum CgroupVersion: String, Sendable, Equatable, CustomStringConvertible {
    /// One hierarchy per controller (or per group of co-mounted controllers).
    case v1
    /// The unified hierarchy.
    case v2

    public var description: String { "cgroup \(rawValue)" }
}

/// The limits a sandbox's cgroup enforces; `nil` leaves that resource unbounded.
public struct CgroupLimits: Sendable, Equatable {
    /// Memory limit in bytes, swap included.
    public var memoryBytes: UInt64?
    /// CPU bandwidth in cores (1.5 = one and a half cores), as a CFS quota per 100 ms period.
    public var cpus: Double?
    /// Maximum number of processes and threads.
    public var pids: Int?

    public init(memoryBytes: UInt64? = nil, cpus: Double? = nil, pids: Int? = nil) {
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
    }

    /// The cgroup part of a sandbox's `Limits` (wall clock and rlimits are enforced elsewhere).
    public init(_ limits: Limits) {
        self.init(memoryBytes: limits.memoryBytes, cpus: limits.cpus, pids: limits.pids)
    }

    /// The CFS period every quota is expressed in, in microseconds.
    static let cpuPeriodMicros = 100_000

    /// `cpus` as a CFS quota per `cpuPeriodMicros`, or nil when unbounded.
    func cpuQuotaMicros() throws(AirlockError) -> Int? {
        guard let cpus else { return nil }
        if let p = LimitBounds.cpusProblem(cpus) { throw AirlockError(.usage, "the cpu limit \(p)") }
        return Int((cpus * Double(Self.cpuPeriodMicros)).rounded())
    }

    func validate() throws(AirlockError) {
        _ = try cpuQuotaMicros()
        if let memoryBytes, let p = LimitBounds.memoryProblem(memoryBytes) { throw AirlockError(.usage, "the memory limit \(p)") }
        if let pids, let p = LimitBounds.pidsProblem(pids) { throw AirlockError(.usage, "the pids limit \(p)") }
    }
}

/// What a sandbox's cgroup has measured so far.
///
/// Gauges are nil where the host does not measure them; counters are 0 where it does not count.
public struct CgroupUsage: Sendable, Equatable {
    /// CPU time consumed by every process of the sandbox, user and system, in nanoseconds
    /// (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`).
    public var cpuNanos: UInt64?
    /// Highest memory use seen (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`, Linux 5.19+).
    public var memoryPeakBytes: UInt64?
    /// Memory in use now (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    public var memoryCurrentBytes: UInt64?
    /// Processes killed by the OOM killer inside the sandbox
    /// (v1 `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`).
    public var oomKills: UInt64
    /// Times an allocation ran into the memory limit (v1 `memory.failcnt` + `memory.memsw.failcnt`,
    /// v2 `memory.events` `max`).
    public var memoryLimitHits: UInt64
    /// Times a `fork`/`clone` was refused by the pids limit (`pids.events` `max`).
    public var pidsLimitHits: UInt64
    /// Processes and threads in the sandbox now (`pids.current`).
    public var pidsCurrent: Int?

    public init(
        cpuNanos: UInt64? = nil, memoryPeakBytes: UInt64? = nil, memoryCurrentBytes: UInt64? = nil,
        oomKills: UInt64 = 0, memoryLimitHits: UInt64 = 0, pidsLimitHits: UInt64 = 0, pidsCurrent: Int? = nil
    ) {
        self.cpuNanos = cpuNanos
        self.memoryPeakBytes = memoryPeakBytes
        self.memoryCurrentBytes = memoryCurrentBytes
        self.oomKills = oomKills
        self.memoryLimitHits = memoryLimitHits
        self.pidsLimitHits = pidsLimitHits
        self.pidsCurrent = pidsCurrent
    }
}
