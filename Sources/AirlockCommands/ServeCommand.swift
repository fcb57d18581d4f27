import ArgumentParser
import AirlockControl
import AirlockCore
import Dispatch
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `airlock serve`: the daemon (docs/api.md).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the control-plane daemon: an HTTP API that creates, runs, stops and contains sandboxes.",
        discussion: """
            The API listens on <state-dir>/airlock.sock (mode 0600: its owner is the local admin) and,
            with --listen, on TCP with TLS (bearer tokens required). Its contract is docs/openapi.yaml.
            SIGTERM or SIGINT stop it gracefully: every sandbox is stopped first.
            """)

    @Option(help: "State directory (store, master key, audit log, sealed workspaces). Default: /var/lib/airlock as root, $XDG_STATE_HOME/airlock otherwise.")
    var stateDir: String?

    @Option(help: "The Unix socket of the API (default: <state-dir>/airlock.sock).")
    var socket: String?

    @Option(help: "Also serve the API on TCP, HOST:PORT, with TLS (--tls-cert, --tls-key).")
    var listen: String?

    @Option(help: "PEM certificate chain for --listen.")
    var tlsCert: String?

    @Option(help: "PEM private key for --listen.")
    var tlsKey: String?

    @Flag(help: "Serve --listen as plain HTTP; refused unless the address is loopback. For tests only.")
    var insecureHTTP = false

    @Option(help: "A policy file whose profiles sandboxes may use (the built-in ones always exist).")
    var policy: String?

    @Option(help: "Largest single file the files API takes or gives (default 64M).")
    var maxFileSize: String = "64M"

    @Option(help: "Largest archive the archive API takes or gives (default 256M).")
    var maxArchiveSize: String = "256M"

    @Option(help: "Keep N sandboxes of PROFILE built in advance, so creating one only claims it (PROFILE=N, repeatable; 0 disables). Only profiles without a proxied network are pooled.")
    var warm: [String] = ["default=2"]

    @Option(help: "Running sandboxes at most (creates beyond get 429).")
    var maxSandboxes: Int = 256

    @Option(help: "Seconds a client has to send a request head, and may pause while sending a body; the connection is closed past it.")
    var requestTimeout: Double = 30
    @Option(help: ArgumentHelp("Publish each signed head of the audit log to a witness off this host: file:/PATH, http://HOST[:PORT]/PATH or exec:COMMAND. Failures are logged; they never block the log.", valueName: "TARGET"))
    var auditWitness: String?

    func run() throws {
        // Whoever started us may have blocked these (test runners do); a daemon must hear them.
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&mask, s) }
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
        let env = ProcessInfo.processInfo.environment
        var o = Daemon.Options(stateDirectory: stateDir ?? Daemon.defaultStateDirectory(environment: env), environment: env)
        o.socketPath = socket
        o.listen = listen
        o.tlsCertificate = tlsCert
        o.tlsKey = tlsKey
        o.insecureHTTP = insecureHTTP
        o.policyFile = policy
        o.maxSandboxes = max(1, maxSandboxes)
        guard requestTimeout > 0, requestTimeout <= 3600 else {
            throw fail(AirlockError(.usage, "--request-timeout takes seconds from 0 to 3600, e.g. --request-timeout 30"))
        }
        o.requestTimeout = requestTimeout
        o.auditWitness = auditWitness
        for w in warm {
            let kv = w.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let n = Int(kv[1]), (0...64).contains(n) else {
                throw fail(AirlockError(.usage, "--warm takes PROFILE=N with N from 0 to 64, e.g. --warm default=4"))
            }
            o.warm[String(kv[0])] = n
        }
        do {
            o.maxFileBytes = Int(try Units.parseBytes(maxFileSize))
            o.maxArchiveBytes = Int(try Units.parseBytes(maxArchiveSize))
        } catch { throw fail(error) }
        var logger = Logger(label: "airlock.serve")
        logger.logLevel = env["AIRLOCK_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let options = o
        let log = logger
        Task {
            do { try await Daemon.run(options, logger: log) } catch { outcome.set(error) }
            done.signal()
        }
        done.wait()
        if let e = outcome.error {
            if let a = e as? AirlockError { throw fail(a) }
            throw fail(AirlockError(.system, "airlock serve stopped: \(e)"))
        }
    }

    final class Outcome: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Error?
        func set(_ e: Error) { lock.lock(); stored = e; lock.unlock() }
        var error: Error? { lock.lock(); defer { lock.unlock() }; return stored }
    }
}
