#if canImport(Glibc)
    import Glibc
#endif
import AirlockEvents
import AirlockCore

/// One reading of a sandbox's resource use, taken by a ``ResourceProbe``.
struct ResourceSample: Sendable, Equatable {
    /// Monotonic time of the reading, in nanoseconds.
    var time: UInt64
    /// CPU time used so far by everything in the sandbox's cgroup.
    var cpuNanos: UInt64?
    /// Memory in use now, as the cgroup counts it (page cache included).
    var memoryBytes: UInt64?
    /// Processes and threads now.
    var pids: Int?
    /// The sandbox's processes and their executables; nil when no exec rule asks for them.
    var processes: [ProcessImage]?
}

/// A process of the sandbox and the executable it runs.
struct ProcessImage: Sendable, Equatable {
    /// Host pid.
    var pid: Int32
    /// The executable's path as the sandbox sees it (`readlink /proc/PID/exe`), with the
    /// kernel's ` (deleted)` suffix when the file was removed.
    var executable: String
}

/// What a rule found when it fired.
struct AlertFiring: Sendable, Equatable {
    var rule: AlertRule
    /// The measured value: CPU percent, memory bytes, process count, or the executable path.
    var value: JSONValue
    /// The threshold as written in the profile, e.g. `90% for 1m`.
    var threshold: String
    /// One sentence on what happened, e.g. `cpu 98% of one core, above 90% for 1m`.
    var reason: String
    /// The offending process, for exec rules.
    var process: ProcessImage?
}

/// Evaluates alert rules over a series of samples. Pure: no clock, no I/O, so it is tested
/// with hand-made series. Each rule fires at most once.
///
/// - `cpu`: the share of the CPU quota (`cpuCores`) used between two consecutive samples; the
///   rule holds while every interval since the first one above the threshold was above it, and
///   fires when that run covers at least `for` (with no `for`, on the first interval above).
/// - `memory` and `pids.above`: the value at each sample; held from the first sample above.
/// - `pids.increase`: the current count minus the lowest count sampled within the window.
/// - `exec`: the first sampled process (lowest pid) whose executable matches no pattern.
struct AlertEvaluator: Sendable {
    let rules: [AlertRule]
    /// What 100% CPU means: `limits.cpus`, or one core when the sandbox has no CPU limit.
    let cpuCores: Double
    let cpuLimited: Bool
    /// `limits.memory`, for percentage thresholds.
    let memoryLimit: UInt64?

    private var previous: ResourceSample?
    /// Per rule: the time its condition started to hold without interruption.
    private var holdingSince: [Int: UInt64] = [:]
    private var fired: Set<Int> = []
    /// (time, count) of the samples within the longest `pids.increase` window.
    private var pidsHistory: [(time: UInt64, count: Int)] = []

    init(rules: [AlertRule], cpuLimit: Double?, memoryLimit: UInt64?) {
        self.rules = rules
        self.cpuCores = cpuLimit ?? 1
        self.cpuLimited = cpuLimit != nil
        self.memoryLimit = memoryLimit
    }

    /// Whether a rule reads the sandbox's processes (which costs a `readlink` per process).
    var needsProcesses: Bool { rules.contains { if case .exec = $0.condition { true } else { false } } }

    /// Whether every rule has fired (nothing is left to watch).
    var isDone: Bool { fired.count == rules.count }

    mutating func consume(_ sample: ResourceSample) -> [AlertFiring] {
        defer { previous = sample }
        if let count = sample.pids {
            pidsHistory.append((sample.time, count))
            let longest = rules.compactMap { rule -> UInt64? in
                if case .pidsIncrease(_, let window) = rule.condition { return Self.nanos(window) }
                return nil
            }.max() ?? 0
            pidsHistory.removeAll { sample.time &- $0.time > longest }
        }
        var out: [AlertFiring] = []
        for (index, rule) in rules.enumerated() where !fired.contains(index) {
            if let firing = evaluate(rule, index: index, sample) {
                fired.insert(index)
                out.append(firing)
            }
        }
        return out
    }

    private mutating func evaluate(_ rule: AlertRule, index: Int, _ s: ResourceSample) -> AlertFiring? {
        switch rule.condition {
        case .cpu(let threshold, let duration):
            guard let prev = previous, let before = prev.cpuNanos, let now = s.cpuNanos, s.time > prev.time else { return nil }
            let percent = Double(now &- min(now, before)) / Double(s.time - prev.time) / cpuCores * 100
            let limit = threshold.formatted + (duration > .zero ? " for \(Units.formatDuration(duration))" : "")
            guard let held = hold(index, percent > threshold, from: prev.time, at: s.time), held >= Self.nanos(duration) else { return nil }
            let share = cpuLimited ? "of the \(Self.cores(cpuCores)) cpu quota" : "of one core"
            return AlertFiring(
                rule: rule, value: .double((percent * 10).rounded() / 10), threshold: limit,
                reason: "cpu \(Int(percent.rounded()))% \(share), above \(limit)")

        case .memory(let threshold, let duration):
            guard let used = s.memoryBytes else { return nil }
            let bytes: UInt64
            let written: String
            switch threshold {
            case .bytes(let b):
                bytes = b
                written = Units.formatBytes(b)
            case .percent(let p):
                guard let limit = memoryLimit else { return nil }
                bytes = UInt64(Double(limit) * p / 100)
                written = "\(p.formatted) of \(Units.formatBytes(limit))"
            }
            let limit = written + (duration > .zero ? " for \(Units.formatDuration(duration))" : "")
            guard let held = hold(index, used > bytes, from: s.time, at: s.time), held >= Self.nanos(duration) else { return nil }
            return AlertFiring(
                rule: rule, value: .int(Int64(clamping: used)), threshold: limit,
                reason: "memory \(Units.formatBytes(used)), above \(limit)")

        case .pidsAbove(let count, let duration):
            guard let n = s.pids else { return nil }
            let limit = "\(count)" + (duration > .zero ? " for \(Units.formatDuration(duration))" : "")
            guard let held = hold(index, n > count, from: s.time, at: s.time), held >= Self.nanos(duration) else { return nil }
            return AlertFiring(
                rule: rule, value: .int(Int64(n)), threshold: limit, reason: "\(n) processes and threads, above \(limit)")

        case .pidsIncrease(let count, let window):
            guard let n = s.pids else { return nil }
            let w = Self.nanos(window)
            let lowest = pidsHistory.filter { s.time &- $0.time <= w }.map(\.count).min() ?? n
            let limit = "+\(count) within \(Units.formatDuration(window))"
            guard n - lowest >= count else { return nil }
            return AlertFiring(
                rule: rule, value: .int(Int64(n)), threshold: limit,
                reason: "processes and threads rose from \(lowest) to \(n), at least \(limit)")

        case .exec(let allow):
            guard let processes = s.processes else { return nil }
            for p in processes.sorted(by: { $0.pid < $1.pid }) where !Self.matches(p.executable, allow) {
                return AlertFiring(
                    rule: rule, value: .string(p.executable), threshold: allow.joined(separator: ", "),
                    reason: "a process runs \(p.executable), which exec.allow does not list", process: p)
            }
            return nil
        }
    }

    /// Tracks how long a condition has held: nil when it does not hold now (which resets it),
    /// else the nanoseconds since `from` of the first sample of the current run.
    private mutating func hold(_ index: Int, _ holds: Bool, from start: UInt64, at now: UInt64) -> UInt64? {
        guard holds else {
            holdingSince[index] = nil
            return nil
        }
        let since = holdingSince[index] ?? start
        holdingSince[index] = since
        return now &- since
    }

    /// `fnmatch` with `FNM_PATHNAME` against each pattern; a deleted file is matched by its old path.
    static func matches(_ executable: String, _ patterns: [String]) -> Bool {
        let suffix = " (deleted)"
        let path = executable.hasSuffix(suffix) ? String(executable.dropLast(suffix.count)) : executable
        return patterns.contains { fnmatch($0, path, FNM_PATHNAME) == 0 }
    }

    static func nanos(_ d: Duration) -> UInt64 { UInt64(max(0, d.nanoseconds)) }

    static func cores(_ c: Double) -> String { c == c.rounded() ? String(Int(c)) : String(c) }
}

extension Double {
    /// `90%`, `12.5%`.
    fileprivate var formatted: String { self == rounded() && abs(self) < 1e15 ? "\(Int64(self))%" : "\(self)%" }
}
