#if canImport(Glibc)
import Glibc
#endif
import AirlockEvents
import AirlockCore
import CAirlockShim
import Logging
import Synchronization

/// How a sandboxed command ended.
public enum ExitStatus: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)

    /// The status a shell would report: the exit code, or 128 + signal.
    public var shellCode: Int32 {
        switch self {
        case .exited(let c): c
        case .signaled(let s): 128 + s
        }
    }
}

/// Why Airlock, rather than the command, ended a run.
public enum StopReason: Equatable, Sendable {
    case wallClock(Duration)
    case memory(UInt64)
    /// The supervising `airlock` process disappeared.
    case lifeline
    /// An alert rule with `action: stop` fired (`reason` says what it measured).
    case alert(rule: String, reason: String)

    /// The one line printed on stderr, after `airlock: stopped: `.
    public var message: String {
        switch self {
        case .wallClock(let d): "wall-clock limit \(Units.formatDuration(d)) reached"
        case .memory(let b): "memory limit \(Units.formatBytes(b)) exceeded"
        case .lifeline: "the supervising airlock process went away"
        case .alert(let rule, let reason): "alert \(rule): \(reason)"
        }
    }

    public var kind: String {
        switch self {
        case .wallClock: "wall_clock"
        case .memory: "memory"
        case .lifeline: "lifeline"
        case .alert: "alert"
        }
    }
}

public struct RunOutcome: Sendable {
    public var instance: String
    /// The command's status; nil when it never started (exec failure is reported as 126/127).
    public var status: ExitStatus
    public var stopReason: StopReason?
    /// Things that were not enforced or not cleaned up; each was also printed and recorded.
    public var warnings: [String]
    public var usage: CgroupUsage?
    public var landlockABI: Int?
    public var elapsed: Duration
    /// Set when the command could not be executed (not found, not executable).
    public var execFailure: String?
    /// Where the time went, up to the helper being reaped (teardown follows).
    public var timeline: Timing
}

/// Monotonic marks of a run's phases: airlock's own and the helper's (same clock).
public struct Timing: Sendable {
    public var marks: [(String, UInt64)]

    public static func now() -> UInt64 { Clock.monotonicNanos() }

    /// `phase: +0.123 ms` lines, each the time since the previous mark.
    public var report: [String] {
        guard var prev = marks.first?.1 else { return [] }
        return marks.map { name, t in
            defer { prev = t }
            let us = Double(t &- prev) / 1000
            return "\(name): +\((us * 10).rounded() / 10) µs @\(t)"
        }
    }
}

/// Runs one `SandboxSpec` in the namespace runtime: cgroups, placeholders, plan,
/// helper, supervision, attribution, teardown. Synchronous by design: the CLI has
/// one job, and it must start fast.
public struct SandboxRunner: Sendable {
    public var logger: Logger
    public var events: any EventSink
    public var environment: [String: String]
    /// Called for each warning as it happens (the CLI prints `airlock: warning: …`).
    public var onWarning: @Sendable (String) -> Void

    public init(
        logger: Logger, events: any EventSink = NullSink(), environment: [String: String],
        onWarning: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.logger = logger
        self.events = events
        self.environment = environment
        self.onWarning = onWarning
    }

    /// When airlock runs as root, the host uid/gid of one sandbox: 0x70000000 plus 24
    /// random bits (1879048192-1895825407), a range no distribution allocates to users.
    public static let sandboxIDBase: UInt32 = 0x7000_0000
    static func sandboxHostID() -> UInt32 {
        var r: UInt32 = 0
        _ = withUnsafeMutableBytes(of: &r) { airlock_random($0.baseAddress, 4) }
        return sandboxIDBase + (r & 0x00FF_FFFF)
    }

    public static func newInstanceID() -> String {
        var bytes = [UInt8](repeating: 0, count: 8)
        _ = bytes.withUnsafeMutableBytes { airlock_random($0.baseAddress, 8) }
        return "sbx-" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// Checks that this runtime can run the spec at all, before anything is created.
    public static func validate(_ spec: SandboxSpec, service: Bool = false) throws(AirlockError) {
        switch spec.runtime {
        case .namespace: break
        case .microvm, .kubernetes:
            throw AirlockError(.policy, "runtime tier '\(spec.runtime.rawValue)' is not available in this build of airlock; use 'runtime: namespace'")
        }
        if spec.network.mode == .proxied, !(1...65535).contains(spec.network.proxyPort) {
            throw AirlockError(.policy, "network.proxy_port \(spec.network.proxyPort) is not a TCP port (1-65535)")
        }
        guard service || !spec.command.isEmpty else { throw AirlockError(.usage, "no command given: write it after `--`") }
    }

    /// Runs the spec. `marks` are earlier phases of the caller (e.g. the CLI's parsing) for the timeline.
    ///
    /// `airlockDirectory`: with a proxied network (required then, ignored otherwise), the host
    /// directory of this run's airlock, made by the caller: the egress gateway's listening
    /// socket `egress.sock` and its CA files. It is bound read-only at `/run/airlock`, and the
    /// sandbox's PID 1 relays `127.0.0.1:<proxyPort>` and `[::1]:<proxyPort>` to the socket.
    /// The sandbox user (the caller's uid, or an unprivileged per-sandbox uid when the caller
    /// is root) must be able to search the directory and connect to the socket (0711 and 0666).
    public func run(
        _ spec: SandboxSpec, instance: String = SandboxRunner.newInstanceID(), marks: [(String, UInt64)] = [],
        airlockDirectory: String? = nil
    ) throws(AirlockError) -> RunOutcome {
        let teardown = Teardown()
        do {
            var outcome = try run(
                spec, instance: instance, airlockDirectory: spec.network.mode == .proxied ? airlockDirectory : nil,
                teardown: teardown)
            outcome.timeline.marks.insert(contentsOf: marks, at: 0)
            let warnings = teardown.run()
            for w in warnings {
                onWarning(w)
                events.emit(AuditEvent(type: "sandbox.warning", instance: instance, attributes: [("airlock.warning", .string(w))]))
            }
            outcome.warnings.append(contentsOf: warnings)
            outcome.timeline.marks.append(contentsOf: teardown.marks)
            outcome.timeline.marks.append(("teardown", Timing.now()))
            return outcome
        } catch {
            _ = teardown.run()
            throw error
        }
    }

    /// The BPF programs, compiled once per profile (a daemon builds many sandboxes).
    private static let seccompCache = Mutex<[SyscallProfile: [UInt8]]>([:])

    static func compiledSeccomp(_ profile: SyscallProfile) throws(AirlockError) -> [UInt8] {
        if let cached = seccompCache.withLock({ $0[profile] }) { return cached }
        let program = try SeccompCompiler.compile(profile: profile, arch: .native)
        seccompCache.withLock { $0[profile] = program }
        return program
    }

    /// What `prepare` built: the helper's plan and the pieces supervision needs.
    struct Prepared {
        var helper: String
        var plan: [UInt8]
        var cgroup: SandboxCgroup?
        var cgroupVersion: String?
        var guardian: WorkspaceGuard?
    }

    /// Everything up to the helper: cgroups, placeholders, seccomp, the plan. Undo steps
    /// go to `teardown`; `warn` records each warning as it happens.
    func prepare(
        _ spec: SandboxSpec, instance: String, airlockDirectory: String?, service: Bool, teardown: Teardown,
        marks: inout [(String, UInt64)], warn: (String) -> Void
    ) throws(AirlockError) -> Prepared {
        try Self.validate(spec, service: service)
        if spec.network.mode == .proxied { try Self.checkAirlockDirectory(airlockDirectory) }
        let helper = try HelperLocator.locate(environment: environment)
        if geteuid() != 0 {
            // An unprivileged user cannot drop supplementary groups (setgroups is denied in the
            // sandbox's user namespace), and the kernel still checks host files against them.
            var groups = [gid_t](repeating: 0, count: 256)
            let n = getgroups(Int32(groups.count), &groups)
            let extra = n > 0 ? groups[0..<Int(n)].filter { $0 != getegid() } : []
            if !extra.isEmpty {
                warn("your supplementary groups (\(extra.map(String.init).joined(separator: ", "))) stay in effect inside the sandbox for host permission checks; unprivileged users cannot drop them (start airlock from a session without them if that matters)")
            }
        }

        // cgroups: limits, accounting and kill-all.
        let cgroupHost = CgroupHost.detect()
        var cgroup: SandboxCgroup?
        if cgroupHost.version != nil {
            cgroup = try SandboxCgroup.create(instance: instance, limits: CgroupLimits(spec.limits), host: cgroupHost)
            for w in cgroup?.warnings ?? [] { warn(w) }
        } else {
            let reason = cgroupHost.unavailableReason ?? "no usable cgroup hierarchy"
            if spec.cgroups == .required {
                throw AirlockError(.sandboxSetup, "the profile requires cgroup limits, but \(reason)")
            }
            if spec.limits.memoryBytes != nil || spec.limits.cpus != nil || spec.limits.pids != nil {
                warn(reason.contains("NOT enforced") ? reason : "memory, cpu and process limits are NOT enforced: \(reason)")
            }
            if !spec.monitor.alerts.isEmpty {
                let names = spec.monitor.alerts.map(\.name).joined(separator: ", ")
                warn("alert rules (\(names)) are NOT evaluated: they sample the sandbox's cgroup, and \(reason)")
            }
        }
        marks.append(("cgroup", Timing.now()))
        if let cgroup {
            teardown.add("cgroup-removed") {
                do { try cgroup.destroy() } catch { return "cgroup not removed: \(error)" }
                return nil
            }
        }

        // Placeholders for protected paths that do not exist yet.
        let cleanup = cgroup?.directories ?? []
        var guardian: WorkspaceGuard?
        if let ws = spec.filesystem.workspace, !ws.readOnly {
            let g = try WorkspaceGuard(
                workspace: ws.hostPath, protected: ws.denyWrite, placeholders: ws.placeholderEntries, instance: instance)
            guardian = g
            teardown.add("placeholders-removed") {
                let changed = g.changedEntries()
                g.removePlaceholdersIfLast()
                guard !changed.isEmpty else { return nil }
                return "protected workspace path(s) changed during the run: \(changed.joined(separator: ", ")); "
                    + "a host-side replace detaches the read-only bind, so review them before trusting them"
            }
        }
        marks.append(("placeholders", Timing.now()))
        let seccomp = try Self.compiledSeccomp(spec.syscalls)
        marks.append(("seccomp", Timing.now()))
        var builder = PlanBuilder(host: .live, seccomp: seccomp, cgroupProcs: [])
        builder.cleanupDirectories = cleanup
        builder.airlockDirectory = airlockDirectory
        builder.service = service
        if geteuid() == 0 {
            // Never run a sandbox as host uid 0: each gets its own unprivileged uid/gid, and
            // writable binds are idmapped so the workspace stays writable and keeps its owner.
            let id = Self.sandboxHostID()
            builder.hostIdentity = (id, id)
            if let ws = spec.filesystem.workspace {
                var st = stat()
                guard stat(ws.hostPath, &st) == 0 else {
                    throw systemError("stat", errno, "cannot read the owner of the workspace \(ws.hostPath)")
                }
                builder.idmapDiskOwner = (st.st_uid, st.st_gid)
            }
        }
        builder.placeholderNames = spec.filesystem.workspace?.placeholderEntries.map {
            $0.hasSuffix("/") ? String($0.dropLast()) : $0
        } ?? []
        if let cgroup {
            if cgroup.version == .v2, let procs = cgroup.procsFiles.first, let slash = procs.lastIndex(of: "/") {
                builder.cgroupDirectory = String(procs[..<slash])
            } else {
                builder.cgroupProcs = cgroup.procsFiles
            }
        }
        let plan = try PlanEncoder.encode(try builder.records(for: spec))

        return Prepared(
            helper: helper, plan: plan, cgroup: cgroup, cgroupVersion: cgroupHost.version?.rawValue, guardian: guardian)
    }

    private func run(
        _ spec: SandboxSpec, instance: String, airlockDirectory: String?, teardown: Teardown
    ) throws(AirlockError) -> RunOutcome {
        let started = ContinuousClock.now
        var marks: [(String, UInt64)] = [("runner", Timing.now())]
        var warnings: [String] = []
        func warn(_ w: String) {
            warnings.append(w)
            onWarning(w)
            events.emit(AuditEvent(type: "sandbox.warning", instance: instance, attributes: [("airlock.warning", .string(w))]))
        }
        let prepared = try prepare(
            spec, instance: instance, airlockDirectory: airlockDirectory, service: false, teardown: teardown,
            marks: &marks, warn: warn)
        let (helper, plan, cgroup, guardian) = (prepared.helper, prepared.plan, prepared.cgroup, prepared.guardian)
        events.emit(AuditEvent(type: "sandbox.created", instance: instance, attributes: SpecAttributes.of(spec, cgroup: prepared.cgroupVersion)))

        marks.append(("plan", Timing.now()))
        let process = try HelperProcess.spawn(helper: helper, plan: plan, workspaceLock: guardian?.lockFD)
        var session = StatusSession()
        let sink = self.events
        // Alert rules are sampled from the cgroup once the command runs; without a cgroup
        // they cannot be evaluated (said above, with the cgroup warning).
        var monitor: ResourceMonitor?
        var monitorError: AirlockError?
        process.supervise { line in
            session.consume(line)
            // Written as it happens, not after the command ends.
            if line.hasPrefix("started "), let pid = session.commandPID {
                sink.emit(AuditEvent(type: "process.started", instance: instance, attributes: [
                    ("process.vpid", .int(Int64(pid))), ("process.command_args", .array(spec.command.map { .string($0) })),
                ]))
                if let cgroup, !spec.monitor.alerts.isEmpty, monitor == nil {
                    do throws(AirlockError) {
                        monitor = try Self.startMonitor(spec, cgroup: cgroup, helper: helper, instance: instance, sink: sink)
                    } catch {
                        monitorError = error
                        _ = kill(process.pid, SIGKILL)
                    }
                }
            }
        }
        // Deterministically, before the helper is reaped and the cgroup removed.
        monitor?.stop()
        let helperStatus = process.wait()
        if let monitorError { throw monitorError }
        marks.append(contentsOf: session.marks)
        marks.append(("reaped", Timing.now()))

        for w in session.warnings { warn(w) }
        if let (stage, code, message) = session.setupError {
            events.emit(AuditEvent(type: "sandbox.destroyed", instance: instance, attributes: [
                ("airlock.outcome", .string("setup_failed")), ("airlock.error", .string("\(stage): \(message)")),
            ]))
            throw AirlockError(.sandboxSetup, "the sandbox could not be built (\(stage)): \(message)", cause: errnoDescription(code))
        }

        let usage = cgroup?.usage()
        var status = session.commandStatus ?? helperStatus
        var stop: StopReason?
        if let firing = monitor?.stopFiring {
            stop = .alert(rule: firing.rule.name, reason: firing.reason)
        } else if session.timedOut, let wall = spec.limits.wallClock {
            stop = .wallClock(wall)
        } else if let usage, usage.oomKills > 0, let mem = spec.limits.memoryBytes,
            status == .signaled(SIGKILL) || session.commandStatus == nil
        {
            stop = .memory(mem)
        } else if session.lifelineLost {
            stop = .lifeline
        }
        if session.commandStatus == nil, stop != nil { status = .signaled(SIGKILL) }
        if let usage, stop == nil, usage.oomKills > 0 {
            warn("memory limit reached: \(usage.oomKills) process(es) in the sandbox were killed")
        }
        if let usage, usage.pidsLimitHits > 0, let pids = spec.limits.pids {
            warn("process limit \(pids) reached \(usage.pidsLimitHits) time(s): forks were refused")
        }
        if let stop {
            events.emit(AuditEvent(type: "limit.reached", instance: instance, attributes: [
                ("airlock.limit", .string(stop.kind)), ("airlock.reason", .string(stop.message)),
            ]))
        }
        let elapsed = ContinuousClock.now - started
        var exitAttrs: [(String, JSONValue)] = []
        switch status {
        case .exited(let c): exitAttrs.append(("process.exit.code", .int(Int64(c))))
        case .signaled(let s): exitAttrs.append(("airlock.exit.signal", .int(Int64(s))))
        }
        exitAttrs.append(("airlock.duration_ms", .int(elapsed.milliseconds)))
        if let u = usage {
            if let c = u.cpuNanos { exitAttrs.append(("airlock.cpu.time_ns", .int(Int64(c)))) }
            if let m = u.memoryPeakBytes { exitAttrs.append(("airlock.memory.peak_bytes", .int(Int64(m)))) }
            exitAttrs.append(("airlock.oom_kills", .int(Int64(u.oomKills))))
            exitAttrs.append(("airlock.pids_limit_hits", .int(Int64(u.pidsLimitHits))))
        }
        if let stop { exitAttrs.append(("airlock.stop_reason", .string(stop.kind))) }
        events.emit(AuditEvent(type: "process.exited", instance: instance, attributes: exitAttrs))
        events.emit(AuditEvent(type: "sandbox.destroyed", instance: instance, attributes: [("airlock.outcome", .string(stop == nil ? "exited" : "stopped"))]))

        var execFailure: String?
        if let (code, path) = session.execFailure {
            execFailure = code == ENOENT ? "\(path): command not found in the sandbox" : "\(path): cannot execute (\(errnoDescription(code)))"
        }
        return RunOutcome(
            instance: instance, status: status, stopReason: stop, warnings: warnings, usage: usage,
            landlockABI: session.landlockABI, elapsed: elapsed, execFailure: execFailure,
            timeline: Timing(marks: marks.sorted { $0.1 < $1.1 }))
    }
}

extension SandboxRunner {
    /// A proxied run needs the egress gateway's airlock directory with its socket in place:
    /// without it the sandbox would start with no way out and every request would fail.
    static func checkAirlockDirectory(_ directory: String?) throws(AirlockError) {
        guard let directory else {
            throw AirlockError(
                .sandboxSetup, "network mode 'proxied' needs the egress gateway's airlock directory, and the runtime was given none")
        }
        guard directory.hasPrefix("/") else {
            throw AirlockError(.sandboxSetup, "the airlock directory \(directory) is not an absolute path")
        }
        var st = stat()
        guard stat(directory, &st) == 0 else { throw systemError("stat", errno, "cannot use the airlock directory \(directory)") }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw AirlockError(.sandboxSetup, "the airlock directory \(directory) is not a directory")
        }
        let socket = directory + "/" + PlanBuilder.egressSocketName
        guard lstat(socket, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK else {
            throw AirlockError(
                .sandboxSetup, "the egress gateway's socket \(socket) does not exist or is not a socket; is the gateway running?")
        }
    }

    /// Starts sampling the sandbox for its alert rules. Each firing is an `alert.fired` event;
    /// a `stop` rule kills every process of the sandbox's cgroup (v2 `cgroup.kill`; v1 freeze,
    /// SIGKILL what is listed, thaw, until empty), PID 1 included, so the PID namespace goes
    /// with it. Signalling the helper would not do: PID 1's parent-death signal is cleared when
    /// it changes credentials, so it outlives the helper.
    static func startMonitor(
        _ spec: SandboxSpec, cgroup: SandboxCgroup, helper: String, instance: String, sink: any EventSink
    ) throws(AirlockError) -> ResourceMonitor {
        var monitorSpec = spec.monitor
        monitorSpec.alerts = monitorSpec.alerts.map(CgroupProbe.resolvingHostLinks)
        let monitor = try ResourceMonitor(
            spec: monitorSpec, limits: spec.limits, probe: CgroupProbe(cgroup: cgroup, helperPath: helper),
            onFiring: { firing in sink.emit(alertEvent(firing, instance: instance)) },
            stopSandbox: { cgroup.killAll() })
        try monitor.start()
        return monitor
    }

    static func alertEvent(_ f: AlertFiring, instance: String) -> AuditEvent {
        var attributes: [(String, JSONValue)] = [
            ("airlock.alert.rule", .string(f.rule.name)), ("airlock.alert.metric", .string(f.rule.condition.metric)),
            ("airlock.alert.value", f.value), ("airlock.alert.threshold", .string(f.threshold)),
            ("airlock.alert.action", .string(f.rule.action.rawValue)),
        ]
        if let p = f.process {
            attributes.append(("process.executable.path", .string(p.executable)))
            if let vpid = CgroupProbe.namespacePID(of: p.pid) { attributes.append(("process.vpid", .int(Int64(vpid)))) }
        }
        return AuditEvent(
            type: "alert.fired", identity: Identity(instance: instance),
            decision: Decision("alert", reason: f.reason, rule: f.rule.name), attributes: attributes)
    }
}

/// Undo steps run in reverse order once the sandbox is gone, each timed; a step
/// returns a warning when it could not finish.
final class Teardown {
    private var steps: [(String, () -> String?)] = []
    private(set) var marks: [(String, UInt64)] = []

    func add(_ name: String, _ step: @escaping () -> String?) { steps.append((name, step)) }

    func run() -> [String] {
        var warnings: [String] = []
        while let (name, step) = steps.popLast() {
            if let w = step() { warnings.append(w) }
            marks.append((name, Timing.now()))
        }
        return warnings
    }
}

/// Parses the helper's status lines (see `sandbox.h`).
struct StatusSession {
    var pid1: Int32?
    var commandPID: Int32?
    var commandStatus: ExitStatus?
    var timedOut = false
    var lifelineLost = false
    var landlockABI: Int?
    var warnings: [String] = []
    var setupError: (String, Int32, String)?
    var execFailure: (Int32, String)?

    /// Monotonic time (ns) of each status word, from the helper's " @<ns>" suffix.
    var marks: [(String, UInt64)] = []

    mutating func consume(_ raw: Substring) {
        var line = raw
        var stamp: UInt64?
        if let at = raw.lastIndex(of: "@"), at > raw.startIndex, raw[raw.index(before: at)] == " ",
            let t = UInt64(raw[raw.index(after: at)...])
        {
            stamp = t
            line = raw[..<raw.index(before: at)]
        }
        let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
        if let stamp, let w = parts.first { marks.append((w, stamp)) }
        guard let word = parts.first else { return }
        let rest = parts.count > 1 ? parts[1] : ""
        switch word {
        case "pid1": pid1 = Int32(rest)
        case "started": commandPID = Int32(rest)
        case "exit": commandStatus = Int32(rest).map { .exited($0) }
        case "signal": commandStatus = Int32(rest.split(separator: " ").first ?? "").map { .signaled($0) }
        case "timeout": timedOut = true
        case "lifeline": lifelineLost = true
        case "landlock": landlockABI = Int(rest)
        case "warn":
            let w = rest.split(separator: " ", maxSplits: 1)
            warnings.append(w.count > 1 ? String(w[1]) : rest)
        case "error":
            let e = rest.split(separator: " ", maxSplits: 2).map(String.init)
            if e.count == 3 { setupError = (e[0], Int32(e[1]) ?? 0, e[2]) } else { setupError = ("unknown", 0, rest) }
        case "exec-failed":
            let e = rest.split(separator: " ", maxSplits: 1).map(String.init)
            execFailure = (Int32(e.first ?? "") ?? 0, e.count > 1 ? e[1] : "?")
        default: break
        }
    }
}
