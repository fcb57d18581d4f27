import AirlockAudit
import AirlockCore
import AirlockPolicy
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// `airlock serve`: one service group — the audit writer, the supervisor, and the API on
/// the owner-only Unix socket (and, optionally, on TCP with TLS) — shut down gracefully on
/// SIGTERM or SIGINT: the API stops taking requests, every sandbox is stopped (persistent
/// workspaces sealed), then the audit log is closed.
public enum Daemon {
    public struct Options: Sendable {
        public var stateDirectory: String
        public var socketPath: String?
        /// `host:port` for TCP; TLS unless `insecureHTTP`.
        public var listen: String?
        public var tlsCertificate: String?
        public var tlsKey: String?
        /// Plain HTTP on TCP, only on a loopback address (tests, local tooling): loud and audited.
        public var insecureHTTP = false
        public var policyFile: String?
        public var environment: [String: String]
        public var maxFileBytes = 64 << 20
        public var maxArchiveBytes = 256 << 20
        /// Sandboxes kept built per profile (the warm pool).
        public var warm: [String: Int] = [:]
        public var maxSandboxes = 256
        /// Seconds a client has to send a request head, and may pause while sending a body.
        public var requestTimeout: Double = 30
        /// Where each signed head of the audit log is published (`AuditWitness.Target`
        /// syntax: file:/PATH, http://HOST[:PORT]/PATH, exec:COMMAND); nil for none.
        public var auditWitness: String?

        public init(stateDirectory: String, environment: [String: String]) {
            self.stateDirectory = stateDirectory
            self.environment = environment
        }
    }

    /// The default state directory: `/var/lib/airlock` as root, `$XDG_STATE_HOME/airlock`
    /// (or `~/.local/state/airlock`) otherwise.
    public static func defaultStateDirectory(environment env: [String: String]) -> String {
        if geteuid() == 0 { return "/var/lib/airlock" }
        if let x = env["XDG_STATE_HOME"], x.hasPrefix("/") { return x + "/airlock" }
        return (env["HOME"] ?? "/tmp") + "/.local/state/airlock"
    }

    public static func socketPath(stateDirectory: String) -> String { stateDirectory + "/airlock.sock" }

    /// Creates the state directory (0711, owned by this user) or checks an existing one.
    public static func prepareStateDirectory(_ dir: String) throws(AirlockError) {
        guard dir.hasPrefix("/") else { throw AirlockError(.usage, "--state-dir must be an absolute path") }
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711]) } catch {
            throw AirlockError(.system, "cannot create the state directory \(dir): \(error)")
        }
        var st = stat()
        guard lstat(dir, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid() else {
            throw AirlockError(.usage, "the state directory \(dir) is not a directory owned by uid \(geteuid())")
        }
        // Search-only for others: a sandbox's read-only workspace is bound by its own
        // (unprivileged) PID 1, which must traverse to it. Nothing here can be listed, and
        // everything secret (master key, store, socket, audit log, sealed objects) is 0600/0700.
        if st.st_mode & 0o777 != 0o711 { chmod(dir, 0o711) }
    }

    /// As root, each sandbox runs as its own unprivileged host uid, and the PID 1 of one with a
    /// read-only workspace (the profiles `review` and `untrusted`) binds it itself: it must be
    /// able to traverse every directory down to `<state>/workspaces`. A directory on the way
    /// that others cannot search (a `mktemp -d` parent, a home directory) is refused here, at
    /// start-up, rather than failing those creates later with "bind: Permission denied".
    public static func checkTraversable(_ dir: String) throws(AirlockError) {
        guard geteuid() == 0 else { return }  // otherwise sandboxes run as the daemon's own uid
        guard let resolved = realpath(dir, nil) else {
            throw AirlockError(.system, "cannot resolve the state directory \(dir): \(errnoDescription(errno))")
        }
        let real = String(cString: resolved)
        free(resolved)
        var path = ""
        for part in [""] + real.split(separator: "/").map(String.init) {
            path = part.isEmpty ? "/" : (path == "/" ? "" : path) + "/" + part
            var st = stat()
            guard stat(path, &st) == 0 else { throw AirlockError(.system, "cannot read \(path): \(errnoDescription(errno))") }
            guard st.st_mode & 0o001 != 0 else {
                let mode = String(st.st_mode & 0o7777, radix: 8)
                throw AirlockError(
                    .usage,
                    "the state directory \(dir) is under \(path) (mode 0\(mode), owner uid \(st.st_uid)), which other users cannot traverse; "
                        + "sandboxes run as unprivileged users, and those with a read-only workspace (profiles review and untrusted) could not be created. "
                        + "Let others traverse it (chmod o+x \(path)) or choose a --state-dir whose parent directories all allow it (the default /var/lib/airlock does)")
            }
        }
    }

    public static func openStore(_ dir: String) throws(AirlockError) -> SQLiteStore {
        do { return try SQLiteStore(path: dir + "/airlock.db") } catch {
            throw AirlockError(.system, "cannot open the store \(dir)/airlock.db: \(error)")
        }
    }

    public static func run(_ o: Options, logger: Logger) async throws {
        umask(0o077)
        try prepareStateDirectory(o.stateDirectory)
        try checkTraversable(o.stateDirectory)
        let store = try openStore(o.stateDirectory)
        let vault = try Vault.open(keyFile: o.stateDirectory + "/master.key")
        var auditOptions = AuditLog.Options(directory: o.stateDirectory + "/audit")
        var witness: AuditWitness?
        if let text = o.auditWitness {
            let w = AuditWitness(target: try AuditWitness.Target.parse(text)) { message in logger.warning("\(message)") }
            auditOptions.onHead = { w.publish($0) }
            witness = w
        }
        let log = try AuditLog.open(auditOptions)
        var policy: PolicyDocument?
        if let file = o.policyFile { policy = try PolicyFile.load(file) }
        var settings = DaemonSettings(stateDirectory: o.stateDirectory, hostname: hostName(), environment: o.environment)
        settings.environment["HOME"] = settings.environment["HOME"] ?? "/"
        settings.maxFileBytes = o.maxFileBytes
        settings.maxArchiveBytes = o.maxArchiveBytes
        settings.maxSandboxes = o.maxSandboxes
        // Every event the daemon records passes through one pipeline (each sandbox's derived
        // from it): redacted the same way as `airlock run`'s.
        let events = EventPipeline(log: log)
        let supervisor = Supervisor(settings: settings, store: store, vault: vault, audit: events, policy: policy, logger: logger)
        let reaped = await supervisor.recover()
        if !reaped.isEmpty { logger.warning("reaped \(reaped.count) sandbox(es) left by an earlier daemon: \(reaped.joined(separator: ", "))") }

        let api = ControlAPI(supervisor: supervisor)
        let socket = o.socketPath ?? socketPath(stateDirectory: o.stateDirectory)
        try claimSocket(socket)
        // Shut down in reverse order: the supervisor first (every sandbox stopped, so no request
        // waits on one), then the API servers, the audit writer last.
        var services: [any Service] = [AuditService(log: log, witness: witness)]
        let limits = ConnectionGuard.Limits(
            head: .milliseconds(Int64(o.requestTimeout * 1000)), bodyIdle: .milliseconds(Int64(o.requestTimeout * 1000)))
        let http1: HTTPServerBuilder = .http1(configuration: .init(additionalChannelHandlers: [ConnectionGuard(limits)]))
        let unix = Application(
            router: api.router(transport: .unix), server: http1,
            configuration: .init(address: .unixDomainSocket(path: socket), serverName: nil),
            onServerRunning: { _ in
                chmod(socket, 0o600)
                printError("airlock serve: listening on \(socket)")
            }, logger: logger)
        services.append(unix)
        if let listen = o.listen {
            let (host, port) = try parseListen(listen)
            let config = ApplicationConfiguration(address: .hostname(host, port: port), serverName: nil)
            let router = api.router(transport: .tcp)
            if o.insecureHTTP {
                guard ["127.0.0.1", "::1", "localhost"].contains(host) else {
                    throw AirlockError(.usage, "--insecure-http serves tokens in clear text and is allowed only on a loopback address (127.0.0.1, ::1)")
                }
                printError("airlock serve: WARNING: --insecure-http: the API on \(listen) is plain HTTP (loopback only); use TLS anywhere else")
                events.emit(AuditEvent(type: "control.insecure_http", instance: "", attributes: [("server.address", .string(listen))]))
                services.append(Application(router: router, server: http1, configuration: config, onServerRunning: { _ in printError("airlock serve: listening on http://\(listen)") }, logger: logger))
            } else {
                guard let cert = o.tlsCertificate, let key = o.tlsKey else {
                    throw AirlockError(.usage, "--listen needs --tls-cert and --tls-key (the API takes bearer tokens: never over clear text)")
                }
                let tls: TLSConfiguration
                do {
                    tls = TLSConfiguration.makeServerConfiguration(
                        certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                        privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
                } catch { throw AirlockError(.usage, "cannot load the TLS certificate or key: \(error)") }
                services.append(Application(
                    router: router, server: try .tls(http1, tlsConfiguration: tls), configuration: config,
                    onServerRunning: { _ in printError("airlock serve: listening on https://\(listen)") }, logger: logger))
            }
        }
        services.append(SupervisorService(supervisor: supervisor, warm: o.warm))
        let group = ServiceGroup(
            configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        unlink(socket)
    }

    static func parseListen(_ text: String) throws(AirlockError) -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw AirlockError(.usage, "--listen takes HOST:PORT, e.g. 127.0.0.1:8443")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// A socket file left by a daemon that died is removed; one a live daemon answers on is not.
    static func claimSocket(_ path: String) throws(AirlockError) {
        guard path.utf8.count <= 107 else { throw AirlockError(.usage, "the socket path \(path) is longer than a Unix socket allows (107 bytes)") }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFSOCK else { throw AirlockError(.usage, "\(path) exists and is not a socket; remove it or choose --socket") }
        if (try? ControlClient(socket: path).request("GET", "/v1/health", timeout: 1)) != nil {
            throw AirlockError(.usage, "another airlock serve is listening on \(path)")
        }
        unlink(path)
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, 255)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func printError(_ s: String) {
        var line = Array((s + "\n").utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
}

/// The supervisor's part of the group: lifetimes while running, every sandbox stopped on shutdown.
struct SupervisorService: Service {
    let supervisor: Supervisor
    let warm: [String: Int]
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { g in
                g.addTask { await supervisor.enforceLifetimes() }
                g.addTask { await supervisor.keepWarm(warm) }
            }
        }
        await supervisor.shutdown()
    }
}

/// The audit writer: closed last, after every other service's events were written.
struct AuditService: Service {
    let log: AuditLog
    let witness: AuditWitness?
    func run() async throws {
        try? await gracefulShutdown()
        try? log.close()
        witness?.close(timeout: .seconds(10))
    }
}
