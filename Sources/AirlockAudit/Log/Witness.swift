#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import Dispatch
import Synchronization

/// Publishes the log's signed heads off the host, so that cutting the log back to an
/// earlier signature (which needs no key) is caught: `audit verify --anchor FILE` checks
/// that every witnessed head is still in the log, unchanged.
///
/// Targets:
/// - `file:PATH`: appends one JSON head per line and fsyncs (opened `O_NOFOLLOW`, 0600).
///   Put it on another mount, ideally another machine's.
/// - `http://HOST[:PORT]/PATH`: POSTs the heads as `application/x-ndjson` (one JSON head
///   per line); any 2xx is success.
/// - `exec:COMMAND`: runs `/bin/sh -c COMMAND` with the heads on stdin, one per line;
///   exit status 0 is success (e.g. `exec:curl -fsS --data-binary @- https://…`).
///
/// Publishing never blocks the log: heads are queued and sent by a queue of their own,
/// several at once when they arrive faster than the target takes them. A failure is
/// reported once (and its end once) through `report`; the newest unsent head is kept
/// and retried with the next one and at `close`. Audit records are never lost or held
/// back by a witness.
public final class AuditWitness: Sendable {
    public enum Target: Sendable, CustomStringConvertible, Equatable {
        case file(String)
        case http(host: String, port: Int, path: String)
        case exec(String)

        public var description: String {
            switch self {
            case .file(let p): "file:\(p)"
            case .http(let h, let port, let path): "http://\(h.contains(":") ? "[\(h)]" : h):\(port)\(path)"
            case .exec(let c): "exec:\(c)"
            }
        }

        public static func parse(_ text: String) throws(AirlockError) -> Target {
            if text.hasPrefix("file:") {
                let path = String(text.dropFirst(5))
                guard path.hasPrefix("/") else { throw AirlockError(.usage, "audit witness \(text): file: needs an absolute path, e.g. file:/mnt/witness/audit-heads") }
                return .file(path)
            }
            if text.hasPrefix("exec:") {
                let command = String(text.dropFirst(5))
                guard command.contains(where: { $0 != " " }) else { throw AirlockError(.usage, "audit witness \(text): exec: needs a command, e.g. exec:ssh witness 'cat >> heads'") }
                return .exec(command)
            }
            if text.hasPrefix("https://") {
                throw AirlockError(
                    .usage,
                    "audit witness \(text): https is not built in; use exec:curl -fsS --data-binary @- -H 'Content-Type: application/x-ndjson' \(text)")
            }
            if text.hasPrefix("http://") {
                let rest = text.dropFirst(7)
                let slash = rest.firstIndex(of: "/") ?? rest.endIndex
                let authority = rest[..<slash]
                let path = slash == rest.endIndex ? "/" : String(rest[slash...])
                var host = String(authority)
                var port = 80
                if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
                    host = String(authority[authority.index(after: authority.startIndex)..<close])
                    let after = authority[authority.index(after: close)...]
                    if after.hasPrefix(":") {
                        guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw AirlockError(.usage, "audit witness \(text): invalid port") }
                        port = p
                    }
                } else if let colon = authority.lastIndex(of: ":") {
                    host = String(authority[..<colon])
                    guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                        throw AirlockError(.usage, "audit witness \(text): invalid port")
                    }
                    port = p
                }
                guard !host.isEmpty, !path.contains(where: { $0 == "\r" || $0 == "\n" || $0 == " " }) else {
                    throw AirlockError(.usage, "audit witness \(text): expected http://HOST[:PORT]/PATH")
                }
                return .http(host: host, port: port, path: path)
            }
            throw AirlockError(.usage, "audit witness \(text): expected file:/PATH, http://HOST[:PORT]/PATH or exec:COMMAND")
        }
    }

    public let target: Target
    private let report: @Sendable (String) -> Void
    private let queue = DispatchQueue(label: "airlock.audit.witness")
    private let state = Mutex(State())
    /// Heads waiting beyond this many are dropped, oldest first: a newer head covers them.
    static let maxPending = 10_000
    static let timeoutSeconds = 10

    private struct State {
        var pending: [SignedHead] = []
        var draining = false
        var failing = false
        var published = 0
    }

    /// `report` receives one line when publishing starts failing and one when it works again.
    public init(target: Target, report: @escaping @Sendable (String) -> Void) {
        self.target = target
        self.report = report
    }

    /// How many heads reached the target.
    public var published: Int { state.withLock { $0.published } }

    /// Queues `head`; returns at once.
    public func publish(_ head: SignedHead) {
        let start = state.withLock { s -> Bool in
            s.pending.append(head)
            if s.pending.count > Self.maxPending { s.pending.removeFirst(s.pending.count - Self.maxPending) }
            if s.draining { return false }
            s.draining = true
            return true
        }
        if start { queue.async { self.drain() } }
    }

    /// Sends whatever is still queued (one more try for a head that failed), waiting at
    /// most `timeout`. Returns false if something could not be published.
    @discardableResult
    public func close(timeout: Duration = .seconds(10)) -> Bool {
        let done = DispatchSemaphore(value: 0)
        queue.async {
            let again = self.state.withLock { s -> Bool in
                if s.draining || s.pending.isEmpty { return false }
                s.draining = true
                return true
            }
            if again { self.drain() }
            done.signal()
        }
        let ms = Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard done.wait(timeout: .now() + .milliseconds(ms)) == .success else {
            report("audit witness \(target): gave up after \(ms) ms; the newest heads were not published")
            return false
        }
        return state.withLock { $0.pending.isEmpty }
    }

    private func drain() {
        while true {
            let batch = state.withLock { s -> [SignedHead] in
                defer { s.pending.removeAll() }
                if s.pending.isEmpty { s.draining = false }
                return s.pending
            }
            if batch.isEmpty { return }
            var body: [UInt8] = []
            for h in batch {
                h.json.write(into: &body)
                body.append(0x0A)
            }
            let error = deliver(body)
            let message = state.withLock { s -> String? in
                if let error {
                    // Keep the newest failed head (it covers the older ones) for the next try.
                    if s.pending.isEmpty, let last = batch.last { s.pending = [last] }
                    s.draining = false
                    if s.failing { return nil }
                    s.failing = true
                    return "audit witness \(target): cannot publish the signed head (seq \(batch.last?.seq ?? 0)): \(error); audit records are still written, and the newest head is retried with the next one"
                }
                s.published += batch.count
                if s.failing {
                    s.failing = false
                    return "audit witness \(target): publishing again (seq \(batch.last?.seq ?? 0))"
                }
                return nil
            }
            if let message { report(message) }
            if error != nil { return }
        }
    }

    /// Sends `body` (JSON lines) to the target; nil on success, else what went wrong.
    private func deliver(_ body: [UInt8]) -> String? {
        switch target {
        case .file(let path): Self.appendFile(path, body)
        case .http(let host, let port, let path): Self.post(host: host, port: port, path: path, body: body)
        case .exec(let command): Self.run(command, stdin: body)
        }
    }

    static func appendFile(_ path: String, _ body: [UInt8]) -> String? {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return "open \(path): \(errnoDescription(errno))" }
        defer { Glibc.close(fd) }
        let e = POSIXIO.writeAll(fd, body)
        guard e == 0 else { return "write \(path): \(errnoDescription(e))" }
        guard fsync(fd) == 0 else { return "fsync \(path): \(errnoDescription(errno))" }
        return nil
    }

    static func setTimeouts(_ fd: Int32) {
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    static func post(host: String, port: Int, path: String, body: [UInt8]) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else { return "cannot resolve \(host): \(String(cString: gai_strerror(rc)))" }
        defer { freeaddrinfo(list) }
        var fd: Int32 = -1
        var lastError: Int32 = 0
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            if fd >= 0 {
                setTimeouts(fd)  // (SO_SNDTIMEO also bounds connect)
                if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { break }
                lastError = errno
                Glibc.close(fd)
                fd = -1
            }
            ai = a.pointee.ai_next
        }
        guard fd >= 0 else { return "cannot connect to \(host):\(port): \(errnoDescription(lastError))" }
        defer { Glibc.close(fd) }
        let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let head = "POST \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nContent-Type: application/x-ndjson\r\nContent-Length: \(body.count)\r\nConnection: close\r\nUser-Agent: airlock-audit-witness\r\n\r\n"
        let e = POSIXIO.sendAll(fd, Array(head.utf8) + body)
        guard e == 0 else { return "cannot send to \(host):\(port): \(errnoDescription(e))" }
        var reply: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        while reply.count < 4096, !reply.contains(0x0A) {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            reply += buf[0..<n]
        }
        let statusLine = String(decoding: reply.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            return "no HTTP reply from \(host):\(port)" + (reply.isEmpty ? " (timed out or closed)" : "")
        }
        return (200..<300).contains(status) ? nil : "\(host):\(port) answered \(statusLine)"
    }

    static func run(_ command: String, stdin body: [UInt8]) -> String? {
        // A socket rather than a pipe: a command that does not read its input is EPIPE here,
        // never a SIGPIPE that would kill the writer's process.
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            return "socketpair: \(errnoDescription(errno))"
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 0)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup(command), nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ)
        Glibc.close(fds[1])
        guard rc == 0 else {
            Glibc.close(fds[0])
            return "cannot run /bin/sh: \(errnoDescription(rc))"
        }
        setTimeouts(fds[0])
        let e = POSIXIO.sendAll(fds[0], body)
        Glibc.close(fds[0])
        var status: Int32 = 0
        let deadline = Clock.monotonicNanos() + UInt64(timeoutSeconds) * 1_000_000_000
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return "waitpid: \(errnoDescription(errno))" }
            if Clock.monotonicNanos() > deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return "the command did not finish within \(timeoutSeconds) s (killed)"
            }
            usleep(2000)
        }
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        if exited && code == 0 { return e == 0 || e == EPIPE ? nil : "cannot write the heads to the command: \(errnoDescription(e))" }
        return exited ? "the command exited with status \(code)" : "the command was killed by signal \(status & 0x7f)"
    }
}
