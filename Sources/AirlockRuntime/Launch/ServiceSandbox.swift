#if canImport(Glibc)
import Glibc
#endif
import AirlockEvents
import AirlockCore
import CAirlockShim
import Synchronization

/// A long-lived sandbox: built once from a spec, then running the commands asked of it
/// (``exec(_:)``) until it is stopped, its wall clock ends, or its owner goes away.
///
/// It is the same sandbox `airlock run` builds — same plan, same helper, same PID 1 — but PID 1
/// starts no command of its own. It forks each exec from itself, after it has dropped every
/// privilege and installed Landlock and seccomp, so each exec is confined exactly like a run's
/// command (`Sources/CAirlockShim/service.c`). Requests travel on a SOCK_SEQPACKET socket pair
/// whose sandbox end only PID 1 holds; the command's stdin, stdout and stderr are passed
/// with each request.
///
/// The helper keeps its lifeline to this process: if the daemon dies, the helper kills the
/// sandbox and removes its cgroups, and the daemon's recovery removes the rest.
public final class ServiceSandbox: Sendable {
    public let instance: String
    public let cgroup: SandboxCgroup?
    /// Host pid of the helper (the sandbox's supervisor outside every namespace).
    public let helperPID: pid_t
    /// Host pid of PID 1.
    public let initPID: pid_t
    public let landlockABI: Int?
    public let warnings: [String]

    private let control: Int32
    /// The write end of the helper's lifeline (a duplicate, closed when the sandbox ended):
    /// the wall clock is re-armed through it.
    private let lifeline: Int32
    private let state: Mutex<State>
    /// Opened once PID 1 is reaped: the kernel has then killed every process of the sandbox.
    private let pid1Reaped = OneShot()
    private let sink: any EventSink

    struct State {
        var nextID: UInt32 = 1
        var execs: [UInt32: ExecSlot] = [:]
        var ended: SandboxEnd?
        var endWaiters: [CheckedContinuation<SandboxEnd, Never>] = []
        var controlClosed = false
        var frozen = false
        var lifelineClosed = false
    }

    final class ExecSlot: Sendable {
        let events: Mutex<(started: Int32?, failure: Int32?, end: ExecEnd?, waiters: [CheckedContinuation<ExecEnd, Never>], startWaiters: [CheckedContinuation<ExecStart, Never>])>
        init() { events = Mutex((nil, nil, nil, [], [])) }

        /// Ends an exec whose reply will never come: its end is `end` unless it already had
        /// one, and whoever still waits for its start hears `notStarted(why)`.
        func conclude(_ end: ExecEnd, notStarted why: String) {
            let (starts, ends, final): ([CheckedContinuation<ExecStart, Never>], [CheckedContinuation<ExecEnd, Never>], ExecEnd) = events.withLock { e in
                if e.end == nil { e.end = end }
                defer { e.startWaiters = []; e.waiters = [] }
                return (e.startWaiters, e.waiters, e.end ?? end)
            }
            starts.forEach { $0.resume(returning: .notStarted(why)) }
            ends.forEach { $0.resume(returning: final) }
        }
    }

    private init(
        instance: String, cgroup: SandboxCgroup?, helperPID: pid_t, initPID: pid_t, landlockABI: Int?, warnings: [String],
        control: Int32, lifeline: Int32, sink: any EventSink
    ) {
        self.instance = instance
        self.cgroup = cgroup
        self.helperPID = helperPID
        self.initPID = initPID
        self.landlockABI = landlockABI
        self.warnings = warnings
        self.control = control
        self.lifeline = lifeline
        self.sink = sink
        self.state = Mutex(State())
    }

    /// Builds the sandbox and returns once PID 1 is ready for execs (or throws why it could
    /// not be built, with everything undone). `airlockDirectory` as for ``SandboxRunner/run``.
    public static func start(
        _ spec: SandboxSpec, instance: String, runner: SandboxRunner, airlockDirectory: String? = nil
    ) throws(AirlockError) -> ServiceSandbox {
        let teardown = Teardown()
        var marks: [(String, UInt64)] = []
        var warnings: [String] = []
        let events = runner.events
        func warn(_ w: String) {
            warnings.append(w)
            runner.onWarning(w)
            events.emit(AuditEvent(type: "sandbox.warning", instance: instance, attributes: [("airlock.warning", .string(w))]))
        }
        let prepared: SandboxRunner.Prepared
        do {
            prepared = try runner.prepare(
                spec, instance: instance, airlockDirectory: spec.network.mode == .proxied ? airlockDirectory : nil,
                service: true, teardown: teardown, marks: &marks, warn: warn)
        } catch {
            _ = teardown.run()
            throw error
        }
        var pair: [Int32] = [-1, -1]
        guard airlock_seqpacket_pair(&pair) == 0 else {
            _ = teardown.run()
            throw systemError("socketpair", errno, "cannot create the sandbox's control socket")
        }
        events.emit(AuditEvent(type: "sandbox.created", instance: instance, attributes: SpecAttributes.of(spec, cgroup: prepared.cgroupVersion)))
        let process: HelperProcess
        do {
            process = try HelperProcess.spawn(
                helper: prepared.helper, plan: prepared.plan, workspaceLock: prepared.guardian?.lockFD, control: pair[1])
        } catch {
            close(pair[0]); close(pair[1])
            _ = teardown.run()
            throw error
        }
        close(pair[1])

        // Up to "ready": the status lines of the build, on this thread.
        var session = StatusSession()
        var ready = false
        process.supervise({ line in
            session.consume(line)
            if line.hasPrefix("ready") { ready = true }
        }, until: { ready })
        for w in session.warnings { warn(w) }
        guard ready, let pid1 = session.pid1 else {
            close(pair[0])
            _ = process.wait()
            _ = teardown.run()
            if let (stage, code, message) = session.setupError {
                events.emit(AuditEvent(type: "sandbox.destroyed", instance: instance, attributes: [
                    ("airlock.outcome", .string("setup_failed")), ("airlock.error", .string("\(stage): \(message)")),
                ]))
                throw AirlockError(.sandboxSetup, "the sandbox could not be built (\(stage)): \(message)", cause: errnoDescription(code))
            }
            throw AirlockError(.sandboxSetup, "the sandbox helper ended before the sandbox was ready")
        }
        let sandbox = ServiceSandbox(
            instance: instance, cgroup: prepared.cgroup, helperPID: process.pid, initPID: pid1, landlockABI: session.landlockABI,
            warnings: warnings, control: pair[0], lifeline: process.duplicateLifeline(), sink: events)
        let watcher = Watcher(sandbox: sandbox, process: process, session: session, teardown: teardown, spec: spec)
        guard ThreadBox({ watcher.run() }).start() else {
            // No thread to supervise it: take it down here rather than leave it unwatched.
            sandbox.stop()
            watcher.run()
            throw AirlockError(.sandboxSetup, "cannot start a thread to supervise the sandbox (too many threads?)")
        }
        return sandbox
    }

    // MARK: Exec

    /// One command to run in the sandbox.
    public struct ExecRequest: Sendable {
        public var command: [String]
        /// The complete environment (the caller merges the sandbox's with what it allows).
        public var environment: [EnvironmentVariable]
        public var workingDirectory: String
        public init(command: [String], environment: [EnvironmentVariable], workingDirectory: String) {
            self.command = command
            self.environment = environment
            self.workingDirectory = workingDirectory
        }
    }

    public enum ExecStart: Sendable, Equatable {
        /// Running, with this pid inside the sandbox.
        case started(Int32)
        /// `execve` (or `chdir`) failed with this errno; an `exited` end follows (126/127).
        case failed(Int32)
        /// Not started: the request was refused (errno) or the sandbox ended.
        case notStarted(String)
    }

    public enum ExecEnd: Sendable, Equatable {
        case exited(ExitStatus)
        /// It never ran, or the sandbox ended under it (the reason says which).
        case lost(String)
    }

    /// A running exec: its id (for ``signal(_:_:)``), how it started and how it ended.
    public struct Exec: Sendable {
        public let id: UInt32
        let slot: ExecSlot

        public func started() async -> ExecStart {
            await withCheckedContinuation { (c: CheckedContinuation<ExecStart, Never>) in
                let now: ExecStart? = slot.events.withLock { e in
                    if let f = e.failure { return .failed(f) }
                    if let p = e.started { return .started(p) }
                    if case .lost(let why)? = e.end { return .notStarted(why) }
                    if e.end != nil { return .notStarted("ended") }
                    e.startWaiters.append(c)
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        }

        public func ended() async -> ExecEnd {
            await withCheckedContinuation { (c: CheckedContinuation<ExecEnd, Never>) in
                let now: ExecEnd? = slot.events.withLock { e in
                    if let end = e.end { return end }
                    e.waiters.append(c)
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        }
    }

    /// Starts a command. `stdin`, `stdout`, `stderr` are passed to it (this process keeps its
    /// own copies: close them once this returns).
    public func exec(_ request: ExecRequest, stdin: Int32, stdout: Int32, stderr: Int32) throws(AirlockError) -> Exec {
        guard !request.command.isEmpty, !request.command[0].isEmpty else {
            throw AirlockError(.usage, "no command to run: give the program and its arguments")
        }
        var records: [PlanRecord] = request.command.map { .argument($0) }
        records += request.environment.map { .environment($0.name + "=" + $0.value) }
        records.append(.workingDirectory(request.workingDirectory))
        let payload = try PlanEncoder.encode(records)
        guard payload.count + 16 <= Int(AL_SVC_MAX_MESSAGE) else {
            throw AirlockError(
                .usage, "the command, its arguments and environment take \(payload.count) bytes; at most \(Int(AL_SVC_MAX_MESSAGE) - 16) fit in one exec (pass large data on stdin or in a file)")
        }
        let slot = ExecSlot()
        let id: UInt32 = try state.withLock { (s: inout State) throws(AirlockError) -> UInt32 in
            guard s.ended == nil, !s.controlClosed else { throw AirlockError(.sandboxSetup, "the sandbox \(instance) has ended") }
            let id = s.nextID
            s.nextID &+= 1
            s.execs[id] = slot
            return id
        }
        var message = Self.header(kind: UInt32(AL_SVC_EXEC), id: id, arg: 0)
        message += payload
        let fds: [Int32] = [stdin, stdout, stderr]
        let sent = message.withUnsafeBytes { buf in
            fds.withUnsafeBufferPointer { airlock_send_with_fds(control, buf.baseAddress, buf.count, $0.baseAddress, 3) }
        }
        if sent < 0 {
            let e = errno
            state.withLock { _ = $0.execs.removeValue(forKey: id) }
            throw systemError("sendmsg", e, "cannot reach the sandbox \(instance) to start a command")
        }
        return Exec(id: id, slot: slot)
    }

    /// Sends a signal to an exec's process group (a timeout, a client's cancel).
    public func signal(_ exec: Exec, _ signo: Int32) {
        let message = Self.header(kind: UInt32(AL_SVC_SIGNAL), id: exec.id, arg: UInt32(bitPattern: signo))
        _ = message.withUnsafeBytes { airlock_send_with_fds(control, $0.baseAddress, $0.count, nil, 0) }
    }

    public var runningExecs: Int { state.withLock { $0.execs.count } }

    /// Gives up on every running exec (the sandbox was frozen: they cannot end, and their
    /// callers must not wait for them). Each ends as `.lost(why)`.
    public func abandonExecs(_ why: String) {
        let slots = state.withLock { s in
            defer { s.execs = [:] }
            return Array(s.execs.values)
        }
        for slot in slots { slot.conclude(.lost(why), notStarted: why) }
    }

    static func header(kind: UInt32, id: UInt32, arg: UInt32) -> [UInt8] {
        var m = al_svc_msg(kind: kind, id: id, arg: arg, reserved: 0)
        return withUnsafeBytes(of: &m) { Array($0) }
    }

    // MARK: Lifecycle

    /// How the sandbox ended.
    public struct SandboxEnd: Sendable, Equatable {
        /// Its wall-clock limit ended it (the helper's backstop).
        public var wallClock: Bool
        /// The helper lost its lifeline (this process died) — not seen by a living daemon.
        public var lifeline: Bool
        public var usage: CgroupUsage?
        public var warnings: [String]
    }

    /// Ends the sandbox: every process is killed (through the cgroup when there is one, so a
    /// frozen sandbox dies too), then PID 1 sees its control socket close. Returns at once;
    /// ``ended()`` waits for the teardown.
    public func stop() {
        // SIGKILL to PID 1 takes its whole PID namespace down (nothing of the sandbox lives
        // outside it). A frozen sandbox cannot die until thawed: its cgroup is killed instead
        // (freeze, kill, thaw, until empty).
        if state.withLock({ $0.frozen }) { _ = cgroup?.killAll() }
        kill(initPID, SIGKILL)
        closeControl()
    }

    /// Re-arms the helper's wall clock: the sandbox is killed `remaining` from now, by the
    /// helper, whatever becomes of this process meanwhile (a sandbox built in advance gets the
    /// lifetime of the request that claims it). False if the sandbox already ended or the
    /// helper could not be told.
    public func rearmWallClock(_ remaining: Duration) -> Bool {
        var ms = UInt64(max(1, remaining.milliseconds))
        return state.withLock { s in
            guard s.ended == nil, !s.lifelineClosed, lifeline >= 0 else { return false }
            let n = withUnsafeBytes(of: &ms) { write(lifeline, $0.baseAddress, $0.count) }
            return n == MemoryLayout<UInt64>.size
        }
    }

    /// Freezes every process of the sandbox (cgroup freezer); they stay stopped until
    /// ``thaw()`` or ``stop()``.
    public func freeze() throws(AirlockError) {
        guard let cgroup else {
            throw AirlockError(.system, "the sandbox has no cgroup (no delegation), so it cannot be frozen")
        }
        cgroup.excludeFromFreezer(helperPID)
        state.withLock { $0.frozen = true }
        try cgroup.freeze()
    }

    public func thaw() throws(AirlockError) {
        try cgroup?.thaw()
        state.withLock { $0.frozen = false }
    }

    /// Waits until no process of the sandbox is left (PID 1 reaped: its namespace went with it);
    /// the teardown may still be running.
    public func processesEnded() async { await pid1Reaped.wait() }

    /// Waits until the sandbox is gone and torn down.
    @discardableResult
    public func ended() async -> SandboxEnd {
        await withCheckedContinuation { (c: CheckedContinuation<SandboxEnd, Never>) in
            let now: SandboxEnd? = state.withLock { s in
                if let e = s.ended { return e }
                s.endWaiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }

    public var hasEnded: Bool { state.withLock { $0.ended != nil } }

    private func closeControl() {
        let close: Bool = state.withLock { s in
            guard !s.controlClosed else { return false }
            s.controlClosed = true
            return true
        }
        // shutdown, not close: the watcher thread may be polling the descriptor; it closes it.
        if close { _ = shutdown(control, Int32(SHUT_RDWR)) }
    }

    /// The watcher thread: reads the helper's status and the control socket's replies until
    /// the helper ends, then reaps it and runs the teardown.
    private final class Watcher: @unchecked Sendable {
        let sandbox: ServiceSandbox
        let process: HelperProcess
        var session: StatusSession
        let teardown: Teardown
        let spec: SandboxSpec

        init(sandbox: ServiceSandbox, process: HelperProcess, session: StatusSession, teardown: Teardown, spec: SandboxSpec) {
            self.sandbox = sandbox
            self.process = process
            self.session = session
            self.teardown = teardown
            self.spec = spec
        }

        func run() {
            var buf = [UInt8](repeating: 0, count: 64)
            var controlOpen = true
            process.supervise(extra: sandbox.control, { line in
                self.session.consume(line)
                if line.hasPrefix("pid1-exit") || line.hasPrefix("pid1-signal") { self.sandbox.pid1Reaped.open() }
            }, onExtra: {
                // The control socket is readable: replies from PID 1.
                guard controlOpen else { return false }
                let n = buf.withUnsafeMutableBytes { recv(self.sandbox.control, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n < 0, errno == EAGAIN || errno == EINTR { return true }
                if n < MemoryLayout<al_svc_msg>.size {
                    controlOpen = false
                    return false
                }
                let m = buf.withUnsafeBytes { $0.loadUnaligned(as: al_svc_msg.self) }
                self.sandbox.deliver(m)
                return true
            })
            let usage = sandbox.cgroup?.usage()
            _ = process.wait()
            sandbox.closeControl()
            close(sandbox.control)
            let warnings = teardown.run()
            for w in warnings {
                sandbox.sink.emit(AuditEvent(type: "sandbox.warning", instance: sandbox.instance, attributes: [("airlock.warning", .string(w))]))
            }
            let end = SandboxEnd(wallClock: session.timedOut, lifeline: session.lifelineLost, usage: usage, warnings: warnings)
            sandbox.finish(end)
        }
    }

    fileprivate func deliver(_ m: al_svc_msg) {
        guard let slot = state.withLock({ $0.execs[m.id] }) else { return }
        var resumeStart: [CheckedContinuation<ExecStart, Never>] = []
        var resumeEnd: [CheckedContinuation<ExecEnd, Never>] = []
        var start: ExecStart?
        var end: ExecEnd?
        slot.events.withLock { e in
            switch Int(m.kind) {
            case Int(AL_SVC_STARTED):
                e.started = Int32(bitPattern: m.arg)
                start = .started(e.started!)
            case Int(AL_SVC_FAILED):
                e.failure = Int32(bitPattern: m.arg)
                start = .failed(e.failure!)
            case Int(AL_SVC_EXITED):
                let st = Int32(bitPattern: m.arg)
                let low = st & 0x7f
                e.end = .exited(low == 0 ? .exited((st >> 8) & 0xff) : .signaled(low))
                end = e.end
            case Int(AL_SVC_REFUSED):
                let code = Int32(bitPattern: m.arg)
                let why = code == EAGAIN
                    ? "the sandbox cannot start another process now: it runs the most commands it takes at once, or has reached its pids limit; retry when one has ended"
                    : "the sandbox refused the command: \(errnoDescription(code))"
                e.end = .lost(why)
                start = .notStarted(why)
                end = e.end
            default: return
            }
            if start != nil { resumeStart = e.startWaiters; e.startWaiters = [] }
            if end != nil { resumeEnd = e.waiters; e.waiters = [] }
        }
        if let start { resumeStart.forEach { $0.resume(returning: start) } }
        if let end {
            // A refusal before any start also releases start waiters with notStarted.
            resumeEnd.forEach { $0.resume(returning: end) }
            state.withLock { _ = $0.execs.removeValue(forKey: m.id) }
        }
    }

    fileprivate func finish(_ end: SandboxEnd) {
        pid1Reaped.open()
        let (waiters, execs): ([CheckedContinuation<SandboxEnd, Never>], [ExecSlot]) = state.withLock { s in
            s.ended = end
            if !s.lifelineClosed, lifeline >= 0 { close(lifeline) }
            s.lifelineClosed = true
            defer { s.endWaiters = []; s.execs = [:] }
            return (s.endWaiters, Array(s.execs.values))
        }
        let why = end.wallClock ? "the sandbox reached its wall-clock limit" : "the sandbox was stopped"
        for slot in execs { slot.conclude(.exited(.signaled(SIGKILL)), notStarted: why) }
        waiters.forEach { $0.resume(returning: end) }
    }
}

/// Opens once; waiters before and after the opening all get through.
public final class OneShot: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public func open() {
        let waiters = state.withLock { s in
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        waiters.forEach { $0.resume() }
    }

    public var isOpen: Bool { state.withLock { $0.open } }

    public func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let isOpen = state.withLock { s in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if isOpen { c.resume() }
        }
    }
}

/// A plain thread for blocking work (poll loops must not occupy Swift's cooperative pool).
public final class ThreadBox: @unchecked Sendable {
    private let body: () -> Void
    public init(_ body: @escaping () -> Void) { self.body = body }

    /// Runs the body on the calling thread.
    public func runBody() { body() }

    /// False when no thread could be created (nothing ran).
    public func start() -> Bool {
        let unmanaged = Unmanaged.passRetained(self)
        var tid = pthread_t()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attr, 256 << 10)
        let rc = pthread_create(&tid, &attr, { raw in
            let box = Unmanaged<ThreadBox>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, unmanaged.toOpaque())
        pthread_attr_destroy(&attr)
        if rc != 0 { unmanaged.release() }
        return rc == 0
    }
}
