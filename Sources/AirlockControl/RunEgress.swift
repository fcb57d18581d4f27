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
public final class RunEgress: @unchecked Sendable {
    public let directory: String
    public let gateway: EgressGateway
    private var stopped = false

    public init(spec: SandboxSpec, instance: String, secrets: [GatewaySecret], sink: any EventSink, environment: [String: String]) throws(AirlockError) {
        let base = try Self.baseDirectory(environment)
        var random = [UInt8](repeating: 0, count: 12)
        guard random.withUnsafeMutableBytes({ airlock_random($0.baseAddress, 12) }) == 0 else {
            throw AirlockError(.sandboxSetup, "cannot read random bytes for the airlock directory name")
        }
        directory = base + "/" + random.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        // A Unix socket path holds at most 107 bytes.
        guard (directory + "/egress.sock").utf8.count <= 107 else {
            throw AirlockError(
                .sandboxSetup,
                "the egress socket path under \(base) would be longer than a Unix socket allows (107 bytes); set XDG_RUNTIME_DIR to a shorter directory")
        }
        // Made, then given its mode through a descriptor of the directory just made (never by
        // name again; the umask may have narrowed it).
        guard mkdir(directory, 0o755) == 0 else {
            throw AirlockError(.sandboxSetup, "cannot create the sandbox's airlock directory \(directory)", cause: String(cString: strerror(errno)))
        }
        do throws(AirlockError) { try Self.setMode(directory, 0o755, owner: geteuid()) } catch {
            rmdir(directory)
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
            throw error
        }
    }

    /// Stops the gateway (its events are delivered first) and removes the directory.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        gateway.stop()
        Self.remove(directory)
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
}
