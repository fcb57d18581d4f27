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
    private var oldMask: sigset_t

    private init(pid: pid_t, statusFD: Int32, lifelineFD: Int32, signalFD: Int32, oldMask: sigset_t) {
        self.pid = pid
        self.statusFD = statusFD
        self.lifelineFD = lifelineFD
        self.signalFD = signalFD
        self.oldMask = oldMask
    }

    /// `workspaceLock`: the workspace directory, flock'ed shared; the helper holds it as fd 6
    /// for the sandbox's whole life (and tidies placeholders with it if airlock dies).
    static func spawn(helper: String, plan: [UInt8], workspaceLock: Int32? = nil) throws(AirlockError) -> HelperProcess {
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
        for s in forwarded { sigaddset(&mask, s) }
        pthread_sigmask(SIG_BLOCK, &mask, &old)
        let sfd = airlock_signalfd(&mask)

        // The helper expects fds 3-6 in place. Any source that is itself 3-6 would be
        // clobbered by an earlier dup2, so first lift every source above the target range.
        var lifted: [Int32] = []
        defer { lifted.forEach { close($0) } }
        func lift(_ fd: Int32) -> Int32 {
            let high = fcntl(fd, F_DUPFD_CLOEXEC, 10)
            if high >= 0 { lifted.append(high) }
            return high
        }
        let sources = [lift(memfd), lift(status[1]), lift(lifeline[0])] + (workspaceLock.map { [lift($0)] } ?? [])
        guard !sources.contains(where: { $0 < 0 }) else {
            pthread_sigmask(SIG_SETMASK, &old, nil)
            throw systemError("fcntl", errno, "cannot prepare the helper's descriptors")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in sources.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, source, Int32(3 + target))
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
        return HelperProcess(pid: pid, statusFD: status[0], lifelineFD: lifeline[1], signalFD: sfd, oldMask: old)
    }

    /// Reads status lines until the helper closes the pipe, forwarding signals meanwhile.
    func supervise(_ onLine: (Substring) -> Void) {
        var pending: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var open = true
        while open {
            var fds = [pollfd(fd: statusFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, signalFD >= 0 ? 2 : 1, -1)
            if n < 0 { if errno == EINTR { continue }; break }
            if signalFD >= 0, fds[1].revents & Int16(POLLIN) != 0 {
                let signo = airlock_signalfd_read(signalFD)
                if signo > 0 { kill(pid, signo) }
            }
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let got = buf.withUnsafeMutableBytes { read(statusFD, $0.baseAddress, $0.count) }
                if got < 0, errno == EINTR { continue }
                if got <= 0 { open = false } else { pending.append(contentsOf: buf[0..<got]) }
                while let nl = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[..<nl], as: UTF8.self)
                    onLine(Substring(line))
                    pending.removeSubrange(...nl)
                }
            }
        }
    }

    /// Waits for the helper and returns its status; releases every descriptor.
    func wait() -> ExitStatus {
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        close(statusFD)
        close(lifelineFD)
        if signalFD >= 0 { close(signalFD) }
        pthread_sigmask(SIG_SETMASK, &oldMask, nil)
        let low = st & 0x7f
        if low == 0 { return .exited((st >> 8) & 0xff) }
        return .signaled(low)
    }
}
