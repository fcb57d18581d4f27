#if canImport(Glibc)
    import Glibc
#endif
import AirlockCore
import CAirlockShim
import Synchronization

/// Samples one sandbox on its own thread every `interval` while the runner supervises the
/// helper, feeds each sample to an ``AlertEvaluator``, and reports each firing as it happens.
/// A firing rule whose action is `stop` calls `stopSandbox` once and ends the sampling.
///
/// The thread starts with every signal blocked (signals are the supervising thread's job) and
/// is woken through a pipe, so ``stop()`` returns as soon as the current sample is done.
final class ResourceMonitor: Sendable {
    private let interval: Duration
    private let probe: any ResourceProbe
    private let onFiring: @Sendable (AlertFiring) -> Void
    private let stopSandbox: @Sendable () -> Void
    private let state: Mutex<State>
    /// Read end (polled by the sampling thread) and write end (closed by `stop()`).
    private let wake: (read: Int32, write: Int32)

    private struct State {
        var evaluator: AlertEvaluator
        var stopFiring: AlertFiring?
        var samples = 0
        var thread: pthread_t?
        var stopped = false
    }

    init(
        spec: MonitorSpec, limits: Limits, probe: any ResourceProbe,
        onFiring: @escaping @Sendable (AlertFiring) -> Void, stopSandbox: @escaping @Sendable () -> Void
    ) throws(AirlockError) {
        var fds: [Int32] = [-1, -1]
        guard airlock_pipe_cloexec(&fds) == 0 else { throw systemError("pipe2", errno, "cannot start the resource monitor") }
        self.wake = (fds[0], fds[1])
        self.interval = spec.interval
        self.probe = probe
        self.onFiring = onFiring
        self.stopSandbox = stopSandbox
        self.state = Mutex(State(evaluator: AlertEvaluator(rules: spec.alerts, cpuLimit: limits.cpus, memoryLimit: limits.memoryBytes)))
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    /// The first firing whose action was `stop`, if any.
    var stopFiring: AlertFiring? { state.withLock { $0.stopFiring } }

    /// How many samples were taken.
    var sampleCount: Int { state.withLock { $0.samples } }

    /// Starts the sampling thread (the first sample is taken at once).
    func start() throws(AirlockError) {
        let body = Unmanaged.passRetained(ThreadBody { [self] in self.loop() }).toOpaque()
        var all = sigset_t()
        var old = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &old)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                guard let raw else { return nil }
                Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue().run()
                return nil
            }, body)
        pthread_sigmask(SIG_SETMASK, &old, nil)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(body).release()
            throw AirlockError(.system, "cannot start the resource monitor thread", cause: errnoDescription(rc))
        }
        state.withLock { $0.thread = thread }
    }

    /// Ends the sampling and waits for the thread. Idempotent; returns once no sample is in progress.
    func stop() {
        let thread: pthread_t? = state.withLock { s in
            defer { s.thread = nil }
            s.stopped = true
            return s.thread
        }
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        if let thread { pthread_join(thread, nil) }
    }

    private func loop() {
        let timeout = Int32(clamping: interval.milliseconds)
        while true {
            if state.withLock({ $0.stopped }) { return }
            let wantsProcesses = state.withLock { $0.evaluator.needsProcesses }
            let sample = probe.sample(processes: wantsProcesses)
            let (firings, done) = state.withLock { s in
                s.samples += 1
                return (s.evaluator.consume(sample), s.evaluator.isDone)
            }
            var stopNow = false
            for firing in firings {
                onFiring(firing)
                if firing.rule.action == .stop, !stopNow {
                    stopNow = true
                    state.withLock { if $0.stopFiring == nil { $0.stopFiring = firing } }
                }
            }
            if stopNow {
                stopSandbox()
                return
            }
            if done { return }
            var fd = pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)
            let n = poll(&fd, 1, timeout)
            if n > 0 { return }
            if n < 0 && errno != EINTR { return }
        }
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
