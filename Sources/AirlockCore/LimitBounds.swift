/// The bounds of a sandbox's limits: the one check behind the policy reader, the CLI's
/// flags, the daemon's API and the cgroup drivers, so that a value one of them accepts is
/// never refused later by another (after the audit log and the gateway were opened).
///
/// Each check returns nil for a value in bounds, or what a value must be, for the caller to
/// put after the name of its field or flag ("limits.cpus", "--cpus"): "must be a number of
/// cores from 0.01 to 1024, such as 2 or 0.5; found 0.005".
public enum LimitBounds {
    /// The kernel refuses a CFS quota below 1 ms per 100 ms period.
    public static let cpus: ClosedRange<Double> = 0.01...1024
    /// Below 16 the sandbox cannot start its own setup processes; PID_MAX_LIMIT on 64-bit Linux.
    public static let pids: ClosedRange<Int> = 16...4_194_304
    /// The smallest memory limit a cgroup is given.
    public static let minimumMemory: UInt64 = 1 << 20
    /// The smallest disk budget (the scratch tmpfs).
    public static let minimumDisk: UInt64 = 1 << 20

    public static func cpusProblem(_ value: Double) -> String? {
        guard value.isFinite, cpus.contains(value) else {
            return "must be a number of cores from 0.01 to 1024, such as 2 or 0.5; found \(value)"
        }
        return nil
    }

    public static func pidsProblem(_ value: Int) -> String? {
        guard pids.contains(value) else {
            return "must be a whole number from \(pids.lowerBound) to \(pids.upperBound), such as 1024 (a sandbox needs at least \(pids.lowerBound) for its own setup); found \(value)"
        }
        return nil
    }

    public static func memoryProblem(_ bytes: UInt64) -> String? {
        guard bytes >= minimumMemory else { return "must be at least 1M, such as 512M or 4G; found \(Units.formatBytes(bytes))" }
        return nil
    }

    public static func diskProblem(_ bytes: UInt64) -> String? {
        guard bytes >= minimumDisk else { return "must be at least 1M, such as 256M or 1G; found \(Units.formatBytes(bytes))" }
        return nil
    }

    public static func wallClockProblem(_ duration: Duration) -> String? {
        guard duration > .zero else { return "must be greater than zero, such as 30m" }
        return nil
    }
}
