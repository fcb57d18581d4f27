import AirlockAudit
import AirlockCore
import AirlockDLP
import AirlockEgress
import AirlockPolicy
import CAirlockShim
#if canImport(Glibc)
import Glibc
#endif

/// The egress side of one sandbox (an `airlock run`, or one of `airlock serve`'s) in proxied mode: the sandbox's airlock directory
/// (its socket and CA certificate, bind-mounted read-only at `/run/airlock`), and the
/// gateway serving it. Created before the sandbox starts, stopped after it ends; the
/// directory, the socket and the CA's key do not outlive the run.
///
/// Layout: `<base>/<96 random bits, hex>/` (0755) in a base directory others cannot list
/// (`/run/airlock`, 0711, as root; `$XDG_RUNTIME_DIR/airlock` or `/tmp/airlock-<uid>`,
/// 0700, otherwise). The random part keeps other host users from guessing the socket.
///
/// Beside each directory, `<name>.lock` (0600, outside what the sandbox sees) is held with
/// an exclusive `flock` by the process serving it for as long as it lives. A process that
/// dies, even by `kill -9`, releases it; the next `RunEgress` in the same base directory
/// takes the lock of every such leftover and removes it. A lock that cannot be taken
/// belongs to a live run and is left alone, so the reaping never races a live sandbox.
public final class RunEgress: @unchecked Sendable {
    public let directory: String
    public let gateway: EgressGateway
    private var stopped = false
    private let base: String
    private let name: String
    private let lockFD: Int32

    public init(spec: SandboxSpec, instance: String, secrets: [GatewaySecret], sink: any EventSink, environment: [String: String]) throws(AirlockError) {
        let base = try Self.baseDirectory(environment)
        Self.reapLeftovers(in: base)
        var random = [UInt8](repeating: 0, count: 12)
        guard random.withUnsafeMutableBytes({ airlock_random($0.baseAddress, 12) }) == 0 else {
            throw AirlockError(.sandboxSetup, "cannot read random bytes for the airlock directory name")
        }
        let name = random.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        self.base = base
        self.name = name
        directory = base + "/" + name
        // A Unix socket path holds at most 107 bytes.
        guard (directory + "/egress.sock").utf8.count <= 107 else {
            throw AirlockError(
                .sandboxSetup,
                "the egress socket path under \(base) would be longer than a Unix socket allows (107 bytes); set XDG_RUNTIME_DIR to a shorter directory")
        }
        lockFD = try Self.ownerLock(base: base, name: name)
        // Made, then given its mode through a descriptor of the directory just made (never by
        // name again; the umask may have narrowed it).
        guard mkdir(directory, 0o755) == 0 else {
            let cause = String(cString: strerror(errno))
            Self.release(base: base, name: name, lockFD: lockFD)
            throw AirlockError(.sandboxSetup, "cannot create the sandbox's airlock directory \(directory)", cause: cause)
        }
        do throws(AirlockError) { try Self.setMode(directory, 0o755, owner: geteuid()) } catch {
            rmdir(directory)
            Self.release(base: base, name: name, lockFD: lockFD)
            throw error
        }
        do {
            gateway = try EgressGateway(GatewayConfiguration(instance: instance, network: spec.network, secrets: secrets), events: sink)
            if let pem = gateway.caCertificatePEM {
                try Self.write(directory + "/ca.pem", pem)
                try Self.write(directory + "/ca-bundle.pem", Self.systemBundle() + pem)
            }
            try gateway.start(socketPath: directory + "/egress.sock")
        } catch {
            Self.remove(directory)
            Self.release(base: base, name: name, lockFD: lockFD)
            throw error
        }
    }

    /// Stops the gateway (its events are delivered first) and removes the directory.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        gateway.stop()
        Self.remove(directory)
        Self.release(base: base, name: name, lockFD: lockFD)
    }

    deinit { stop() }

    /// The secrets of a run: the profile's bindings (`env:` / `file:`) and `--secret`
    /// values. Bound ones reach the sandbox as placeholders; the others as themselves.
    public static func loadSecrets(_ spec: SandboxSpec, flags: [Secret], environment: [String: String]) throws(AirlockError) -> [GatewaySecret] {
        var out = flags.map { GatewaySecret(name: $0.name, value: $0.value) }
        for b in spec.secrets {
            let value: String
            if b.source.hasPrefix("env:") {
                let name = String(b.source.dropFirst(4))
                guard let v = environment[name], !v.isEmpty else {
                    throw AirlockError(.usage, "secret \(b.name): airlock's environment has no \(name) (set it before airlock run)")
                }
                value = v
            } else if b.source.hasPrefix("file:") {
                let path = String(b.source.dropFirst(5))
                // The first non-empty line, split on bytes ("\r\n" is one Character in Swift).
                guard let text = readText(path),
                    var line = text.utf8.split(separator: 10, omittingEmptySubsequences: true).first.map({ Array($0) })
                else {
                    throw AirlockError(.usage, "secret \(b.name): cannot read \(path) (it must exist and hold the value on its first line)")
                }
                if line.last == 13 { line.removeLast() }
                value = String(decoding: line, as: UTF8.self)
            } else {
                throw AirlockError(.policy, "secret \(b.name): unknown source \(b.source) (use env:NAME or file:/path)")
            }
            out.removeAll { $0.name == b.name }
            out.append(GatewaySecret(name: b.name, value: value, placeholder: b.inject == nil ? nil : Placeholder.value(for: b.name), inject: b.inject))
        }
        return out
    }

    private static func baseDirectory(_ environment: [String: String]) throws(AirlockError) -> String {
        let base: String
        let mode: mode_t
        if geteuid() == 0 {
            base = "/run/airlock"
            mode = 0o711
        } else if let xdg = environment["XDG_RUNTIME_DIR"], xdg.hasPrefix("/"), access(xdg, W_OK) == 0 {
            base = xdg + "/airlock"
            mode = 0o700
        } else {
            base = "/tmp/airlock-\(geteuid())"
            mode = 0o700
        }
        if mkdir(base, mode) != 0, errno != EEXIST {
            throw AirlockError(.sandboxSetup, "cannot create \(base)", cause: String(cString: strerror(errno)))
        }
        try setMode(base, mode, owner: geteuid())
        return base
    }

    /// Sets the mode of the directory `path` on a descriptor of it (opened without following a
    /// symlink), after checking it is a directory owned by `owner`: a name swapped meanwhile
    /// (in a shared /tmp) is refused, never followed.
    private static func setMode(_ path: String, _ mode: mode_t, owner: uid_t) throws(AirlockError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw AirlockError(.sandboxSetup, "\(path) is not a directory (or is a symlink); remove it and retry", cause: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == owner else {
            throw AirlockError(.sandboxSetup, "\(path) is not a directory owned by uid \(owner); remove it and retry")
        }
        if st.st_mode & 0o7777 != mode, fchmod(fd, mode) != 0 {
            throw AirlockError(.sandboxSetup, "cannot set the mode of \(path)", cause: String(cString: strerror(errno)))
        }
    }

    private static func systemBundle() -> String {
        for path in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"] {
            if let text = readText(path) { return text.hasSuffix("\n") ? text : text + "\n" }
        }
        return ""
    }

    private static func write(_ path: String, _ text: String) throws(AirlockError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw AirlockError(.sandboxSetup, "cannot create \(path)", cause: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard POSIXIO.writeAll(fd, Array(text.utf8)) == 0 else { throw AirlockError(.sandboxSetup, "cannot write \(path)", cause: String(cString: strerror(errno))) }
    }

    /// A small text file (secrets, CA bundles: at most 4 MiB), or nil.
    private static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let bytes = POSIXIO.readAll(fd, upTo: 4 << 20), bytes.count <= 4 << 20 else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func remove(_ dir: String) {
        for name in ["egress.sock", "ca.pem", "ca-bundle.pem"] { unlink(dir + "/" + name) }
        rmdir(dir)
    }

    // MARK: Ownership and leftovers

    /// Creates `<name>.lock` already locked: an anonymous file (`O_TMPFILE`) is locked, then
    /// linked in, so a reaper never sees it unlocked. Returns its descriptor (close-on-exec).
    static func ownerLock(base: String, name: String) throws(AirlockError) -> Int32 {
        // O_TMPFILE is a C macro Swift does not import: __O_TMPFILE (the same on every Linux
        // architecture Swift supports) with O_DIRECTORY.
        let tmpFile: Int32 = 0o2000_0000 | O_DIRECTORY
        let fd = open(base, tmpFile | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AirlockError(.sandboxSetup, "cannot create the owner lock of an airlock directory in \(base) (O_TMPFILE)", cause: String(cString: strerror(errno)))
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, base + "/" + name + ".lock", AT_SYMLINK_FOLLOW) == 0 else {
            let cause = String(cString: strerror(errno))
            close(fd)
            throw AirlockError(.sandboxSetup, "cannot create the owner lock \(base)/\(name).lock", cause: cause)
        }
        return fd
    }

    private static func release(base: String, name: String, lockFD: Int32) {
        unlink(base + "/" + name + ".lock")
        close(lockFD)
    }

    /// Removes every airlock directory in `base` whose owner is provably dead: its
    /// `<name>.lock` can be locked. Works on descriptors beneath `base` (which only this
    /// user can write) and never follows a symbolic link.
    public static func reapLeftovers(in base: String) {
        let dfd = open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dfd >= 0 else { return }
        defer { close(dfd) }
        for entry in directoryEntries(dfd) where entry.hasSuffix(".lock") {
            let name = String(entry.dropLast(5))
            guard !name.isEmpty, !name.contains("/") else { continue }
            let lfd = openat(dfd, entry, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard lfd >= 0 else { continue }
            defer { close(lfd) }
            guard flock(lfd, LOCK_EX | LOCK_NB) == 0 else { continue }  // its owner lives
            var st = stat()
            // Unlinked meanwhile by its owner's own teardown, or by another reaper.
            guard fstat(lfd, &st) == 0, st.st_nlink > 0 else { continue }
            removeDirectory(name, beneath: dfd)
            _ = unlinkat(dfd, entry, 0)
        }
    }

    /// Removes `<dfd>/<name>` and the files in it, without following links.
    private static func removeDirectory(_ name: String, beneath dfd: Int32) {
        let sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if sub >= 0 {
            for entry in directoryEntries(sub) { _ = unlinkat(sub, entry, 0) }
            close(sub)
        }
        _ = unlinkat(dfd, name, AT_REMOVEDIR)
    }

    /// The names in a directory (not `.` and `..`), read from a duplicate of `fd`.
    private static func directoryEntries(_ fd: Int32) -> [String] {
        let dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let dir = fdopendir(dup) else {
            if dup >= 0 { close(dup) }
            return []
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let e = readdir(dir) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if n != ".", n != ".." { names.append(n) }
        }
        return names
    }
}
