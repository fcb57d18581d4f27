import AirlockCore
import AirlockRuntime
import CAirlockShim
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One exec, seen from the API: its output as it happens, then how it ended.
///
/// The command's stdout and stderr are pipes read by one thread; chunks go to an async
/// stream with bounded buffering (the reader waits when 64 chunks are not yet consumed, so a
/// slow client slows the command rather than growing the daemon's memory).
public final class ExecRun: Sendable {
    public enum Event: Sendable {
        case stdout([UInt8])
        case stderr([UInt8])
        case exit(Outcome)
    }

    public struct Outcome: Sendable, Equatable {
        public var exitCode: Int32?
        public var signal: Int32?
        public var timedOut: Bool
        public var durationMs: Double
        /// Why it could not run at all (exec failure text goes to stderr instead).
        public var failure: String?
    }

    public let events: AsyncStream<Event>
    let credits: DispatchSemaphore
    private let onCancel = Mutex<(@Sendable () -> Void)?>(nil)
    private let recordedTask = Mutex<Task<Void, Never>?>(nil)

    /// The audit record of this exec (awaited before the answer ends).
    var recorded: Task<Void, Never>? {
        get { recordedTask.withLock { $0 } }
        set { recordedTask.withLock { $0 = newValue } }
    }

    /// Kills the command's process group (its client went away).
    public func cancel() { onCancel.withLock { $0 }?() }
    private let continuation: AsyncStream<Event>.Continuation

    init() {
        var c: AsyncStream<Event>.Continuation!
        events = AsyncStream(bufferingPolicy: .unbounded) { c = $0 }
        continuation = c
        credits = DispatchSemaphore(value: 64)
    }

    /// The consumer took one event: the reader may produce one more.
    public func consumed() { credits.signal() }

    func yield(_ e: Event) { continuation.yield(e) }
    func finish() { continuation.finish() }

    /// Runs `request` in `sandbox`, feeding `stdin`; `timeout` kills the exec's process group.
    static func start(
        in sandbox: ServiceSandbox, request: ServiceSandbox.ExecRequest, stdin: [UInt8], timeout: Double,
        onEnd: @escaping @Sendable (Outcome) -> Void
    ) throws(Problem) -> ExecRun {
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard airlock_pipe_cloexec(&inPipe) == 0 else { throw Problem.unavailable("cannot create pipes for the command: \(errnoDescription(errno))") }
        guard airlock_pipe_cloexec(&outPipe) == 0 else {
            close(inPipe[0]); close(inPipe[1])
            throw Problem.unavailable("cannot create pipes for the command: \(errnoDescription(errno))")
        }
        guard airlock_pipe_cloexec(&errPipe) == 0 else {
            [inPipe[0], inPipe[1], outPipe[0], outPipe[1]].forEach { close($0) }
            throw Problem.unavailable("cannot create pipes for the command: \(errnoDescription(errno))")
        }
        let exec: ServiceSandbox.Exec
        do {
            exec = try sandbox.exec(request, stdin: inPipe[0], stdout: outPipe[1], stderr: errPipe[1])
        } catch {
            [inPipe[0], inPipe[1], outPipe[0], outPipe[1], errPipe[0], errPipe[1]].forEach { close($0) }
            throw error.code == .usage ? Problem.validation(error.description) : Problem.conflict(error.description)
        }
        close(inPipe[0]); close(outPipe[1]); close(errPipe[1])
        let run = ExecRun()
        run.onCancel.withLock { $0 = { sandbox.signal(exec, SIGKILL) } }
        let started = ContinuousClock.now
        let exited = Flag()
        let timedOut = Flag()

        // stdin: written on its own thread (a command that does not read it must not block
        // the reader), then closed; none at all is end of file at once.
        let stdinFD = inPipe[1]
        if stdin.isEmpty {
            close(stdinFD)
        } else if !ThreadBox({
            _ = fcntl(stdinFD, F_SETFL, fcntl(stdinFD, F_GETFL) & ~O_NONBLOCK)
            _ = POSIXIO.writeAll(stdinFD, stdin)
            close(stdinFD)
        }).start() { close(stdinFD) }

        let outFD = outPipe[0], errFD = errPipe[0]
        let reader = ThreadBox {
            var open = [true, true]
            var buf = [UInt8](repeating: 0, count: 64 << 10)
            var exitSeenAt: ContinuousClock.Instant?
            while open[0] || open[1] {
                var fds = [pollfd(fd: open[0] ? outFD : -1, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: open[1] ? errFD : -1, events: Int16(POLLIN), revents: 0)]
                let n = poll(&fds, 2, 100)
                if n < 0, errno != EINTR { break }
                for i in 0..<2 where open[i] && fds[i].revents != 0 {
                    let got = buf.withUnsafeMutableBytes { read(i == 0 ? outFD : errFD, $0.baseAddress, $0.count) }
                    if got < 0, errno == EINTR || errno == EAGAIN { continue }
                    if got <= 0 { open[i] = false; continue }
                    run.credits.wait()
                    run.yield(i == 0 ? .stdout(Array(buf[0..<got])) : .stderr(Array(buf[0..<got])))
                }
                // A background process that keeps the pipes open must not hold the reply
                // forever: once the command has exited, what is buffered is read, then done.
                if exited.isSet {
                    if exitSeenAt == nil { exitSeenAt = .now }
                    if n == 0, let t = exitSeenAt, ContinuousClock.now - t > .milliseconds(250) { break }
                }
            }
            close(outFD)
            close(errFD)
        }
        let readerDone = OneShot()
        let wrapped = ThreadBox {
            reader.runBody()
            readerDone.open()
        }
        guard wrapped.start() else {
            sandbox.signal(exec, SIGKILL)
            close(outFD); close(errFD)
            throw Problem.unavailable("cannot start a thread to read the command's output (too many threads?)")
        }

        let timer = Task {
            try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
            if !Task.isCancelled, !exited.isSet {
                timedOut.set()
                sandbox.signal(exec, SIGKILL)
            }
        }
        Task {
            let start = await exec.started()
            let end = await exec.ended()
            exited.set()
            timer.cancel()
            await readerDone.wait()
            let elapsed = ContinuousClock.now - started
            var outcome = Outcome(exitCode: nil, signal: nil, timedOut: timedOut.isSet, durationMs: Double(elapsed.nanoseconds) / 1e6, failure: nil)
            switch end {
            case .exited(.exited(let c)): outcome.exitCode = c
            case .exited(.signaled(let s)): outcome.signal = s
            case .lost(let why): outcome.failure = why
            }
            if case .failed(let e) = start {
                let path = request.command[0]
                let text =
                    e < 0 ? "cannot change to the working directory \(request.workingDirectory) (\(errnoDescription(-e)))\n"
                    : e == ENOENT ? "\(path): command not found in the sandbox\n" : "\(path): cannot execute (\(errnoDescription(e)))\n"
                run.credits.wait()
                run.yield(.stderr(Array(("airlock: " + text).utf8)))
            }
            onEnd(outcome)
            run.yield(.exit(outcome))
            run.finish()
        }
        return run
    }
}

/// A boolean that goes from false to true once.
final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

