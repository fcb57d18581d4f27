#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import CAirlockShim

/// The spawned `airlock-sandbox` helper, seen from the airlock process.
///
/// No Swift code runs between fork and exec: the helper is started with
/// `posix_spawn`, its plan in a memfd on fd 3, the status pipe on fd 4 and the
/// lifeline on fd 5. Signals meant for the sandbox (INT, TERM, HUP, QUIT, USR1,
/// USR2, WINCH) are blocked here and read from a signalfd, then forwarded to the
/// helper, which forwards them to PID 1, which forwards them to the command.
final class HelperProcess {
    static let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]

    let pid: pid_t
    private let statusFD: Int32
    private let lifelineFD: Int32
    private let signalFD: Int32
    /// The caller's signal mask, restored by `wait()`; nil for a long-lived sandbox (nothing was blocked).
    private var oldMask: sigset_t?

    private init(pid: pid_t, statusFD: Int32, lifelineFD: Int32, signalFD: Int32, oldMask: sigset_t?) {
        self.pid = pid
        self.statusFD = statusFD
        self.lifelineFD = lifelineFD
        self.signalFD = signalFD
        self.oldMask = oldMask
    }

    /// `workspaceLock`: the workspace directory, flock'ed shared; the helper holds it as fd 6
    /// for the sandbox's whole life (and tidies placeholders with it if airlock dies).
    ///
    /// `control`: a long-lived sandbox's control socket, passed as fd 7 (``ServiceSandbox``). The
    /// daemon forwards no signals, so then none are blocked, and the helper's stdio is /dev/null.
    static func spawn(helper: String, plan: [UInt8], workspaceLock: Int32? = nil, control: Int32? = nil) throws(AirlockError) -> HelperProcess {
        let memfd = airlock_memfd("airlock-plan")
        guard memfd >= 0 else { throw systemError("memfd_create", errno, "cannot hold the sandbox plan") }
        defer { close(memfd) }
        let werr = POSIXIO.writeAll(memfd, plan)
        guard werr == 0 else { throw systemError("write", werr, "cannot write the sandbox plan") }

        var status: [Int32] = [0, 0]
        var lifeline: [Int32] = [0, 0]
        guard airlock_pipe_cloexec(&status) == 0 else { throw systemError("pipe2", errno, "cannot create the status pipe") }
        guard airlock_pipe_cloexec(&lifeline) == 0 else {
            close(status[0]); close(status[1])
            throw systemError("pipe2", errno, "cannot create the lifeline pipe")
        }

        var mask = sigset_t()
        var old = sigset_t()
        sigemptyset(&mask)
        var sfd: Int32 = -1
        if control == nil {
            for s in forwarded { sigaddset(&mask, s) }
            pthread_sigmask(SIG_BLOCK, &mask, &old)
            sfd = airlock_signalfd(&mask)
        } else {
            pthread_sigmask(SIG_BLOCK, &mask, &old)  // only reads the current mask back for wait()
        }

        // The helper expects fds 3-6 in place. Any source that is itself 3-6 would be
        // clobbered by an earlier dup2, so first lift every source above the target range.
        var lifted: [Int32] = []
        defer { lifted.forEach { close($0) } }
        func lift(_ fd: Int32) -> Int32 {
            let high = fcntl(fd, F_DUPFD_CLOEXEC, 10)
            if high >= 0 { lifted.append(high) }
            return high
        }
        var sources: [(Int32, Int32)] = [(lift(memfd), 3), (lift(status[1]), 4), (lift(lifeline[0]), 5)]
        if let workspaceLock { sources.append((lift(workspaceLock), 6)) }
        if let control { sources.append((lift(control), 7)) }
        guard !sources.contains(where: { $0.0 < 0 }) else {
            pthread_sigmask(SIG_SETMASK, &old, nil)
            throw systemError("fcntl", errno, "cannot prepare the helper's descriptors")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if control != nil {
            for fd: Int32 in 0...2 { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        }
        for (source, target) in sources {
            posix_spawn_file_actions_adddup2(&actions, source, target)
        }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in forwarded + [SIGPIPE, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(helper), nil]
        defer { for a in argv { free(a) } }
        let envp: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
        defer { for e in envp { free(e) } }
        let rc = posix_spawn(&pid, helper, &actions, &attr, argv, envp)
        close(status[1])
        close(lifeline[0])
        guard rc == 0 else {
            close(status[0]); close(lifeline[1])
            if sfd >= 0 { close(sfd) }
            pthread_sigmask(SIG_SETMASK, &old, nil)
            throw AirlockError(.sandboxSetup, "cannot start the sandbox helper \(helper)", cause: errnoDescription(rc))
        }
        return HelperProcess(pid: pid, statusFD: status[0], lifelineFD: lifeline[1], signalFD: sfd, oldMask: control == nil ? old : nil)
    }

    /// Status bytes read but not yet a whole line (kept between `supervise` calls).
    private var pending: [UInt8] = []

    /// Reads status lines until the helper closes the pipe, forwarding signals meanwhile.
    func supervise(_ onLine: (Substring) -> Void) {
        supervise(onLine, onExtra: { false }, until: { false })
    }

    /// The same, returning early once `until` holds after a line.
    func supervise(_ onLine: (Substring) -> Void, until: () -> Bool) {
        supervise(onLine, onExtra: { false }, until: until)
    }

    /// The same, also calling `onExtra` whenever `extra` is readable, until it returns false.
    func supervise(extra: Int32 = -1, _ onLine: (Substring) -> Void, onExtra: () -> Bool, until: () -> Bool = { false }) {
        var buf = [UInt8](repeating: 0, count: 4096)
        var open = true
        var extraOpen = extra >= 0
        while open && !until() {
            var fds = [pollfd(fd: statusFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: signalFD, events: signalFD >= 0 ? Int16(POLLIN) : 0, revents: 0),
                       pollfd(fd: extraOpen ? extra : -1, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 3, -1)
            if n < 0 { if errno == EINTR { continue }; break }
            if signalFD >= 0, fds[1].revents & Int16(POLLIN) != 0 {
                let signo = airlock_signalfd_read(signalFD)
                if signo > 0 { kill(pid, signo) }
            }
            if extraOpen, fds[2].revents != 0 { extraOpen = onExtra() }
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let got = buf.withUnsafeMutableBytes { read(statusFD, $0.baseAddress, $0.count) }
                if got < 0, errno == EINTR { continue }
                if got <= 0 { open = false } else { pending.append(contentsOf: buf[0..<got]) }
                while let nl = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[..<nl], as: UTF8.self)
                    onLine(Substring(line))
                    pending.removeSubrange(...nl)
                    if until() { return }
                }
            }
        }
    }

    /// A new descriptor (close-on-exec, non-blocking) for the lifeline's write end, for
    /// ``ServiceSandbox/rearmWallClock(_:)``; -1 if none could be made. Its owner closes it.
    func duplicateLifeline() -> Int32 {
        let fd = fcntl(lifelineFD, F_DUPFD_CLOEXEC, 10)
        if fd >= 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return fd
    }

    /// Waits for the helper and returns its status; releases every descriptor.
    func wait() -> ExitStatus {
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        close(statusFD)
        close(lifelineFD)
        if signalFD >= 0 { close(signalFD) }
        if var mask = oldMask { pthread_sigmask(SIG_SETMASK, &mask, nil) }
        let low = st & 0x7f
        if low == 0 { return .exited((st >> 8) & 0xff) }
        return .signaled(low)
    }
}
