import ArgumentParser
import AirlockAudit
import AirlockControl
import AirlockCore
import AirlockDLP
import AirlockPolicy
import AirlockRuntime
import Logging
#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command in a fresh sandbox.",
        discussion: """
            The command runs with your terminal's stdin, stdout and stderr, in a new session, as an
            unprivileged user, with only loopback networking. The workspace (default: the current
            directory) is mounted at /workspace, the working directory. Example:
              airlock run --timeout 30s --memory 512M -- python3 main.py
            """)

    @Option(name: .long, help: "Built-in profile or a profile of --policy (see `airlock profiles`).")
    var profile: String = "default"

    @Option(name: .long, help: "Policy file (YAML) with profiles.")
    var policy: String?

    @Option(name: .long, help: ArgumentHelp("Host directory mounted at /workspace; add :ro or :rw.", valueName: "DIR[:ro|:rw]"))
    var workspace: String?

    @Option(name: .long, help: ArgumentHelp("Extra bind mount (default read-only).", valueName: "SRC:DST[:ro|:rw]"))
    var mount: [String] = []

    @Option(name: .long, help: ArgumentHelp("Set an environment variable inside.", valueName: "K=V"))
    var env: [String] = []

    @Option(name: .long, help: ArgumentHelp("Wall-clock limit, e.g. 30s, 5m.", valueName: "DURATION"))
    var timeout: String?

    @Option(name: .long, help: ArgumentHelp("Memory limit, swap included, e.g. 512M.", valueName: "SIZE"))
    var memory: String?

    @Option(name: .long, help: ArgumentHelp("CPU quota in cores, e.g. 1.5.", valueName: "N"))
    var cpus: String?

    @Option(name: .long, help: ArgumentHelp("Maximum number of processes and threads.", valueName: "N"))
    var pids: String?

    @Option(name: .long, help: ArgumentHelp("The disk budget: /tmp, $HOME and /dev/shm together, e.g. 1G.", valueName: "SIZE"))
    var disk: String?

    @Option(name: .long, help: ArgumentHelp("Also append JSON-lines events to this file.", valueName: "FILE"))
    var events: String?

    @Option(name: .long, help: ArgumentHelp("When the run ends, write Prometheus metrics (text format) to this file.", valueName: "FILE"))
    var metricsFile: String?

    @Option(name: .long, help: ArgumentHelp("Let the sandbox reach this host through the egress gateway for this run (switches the network to proxied; ports 80 and 443 unless given).", valueName: "HOST[:PORT[,PORT]]"))
    var allowHost: [String] = []

    @Option(name: .long, help: ArgumentHelp("Pass the secret in this variable of airlock's environment into the sandbox; its value is redacted from every event.", valueName: "NAME"))
    var secret: [String] = []

    @Option(name: .long, help: ArgumentHelp("The audit log directory (default: $AIRLOCK_AUDIT_DIR, /var/lib/airlock/audit as root, ~/.local/state/airlock/audit).", valueName: "DIR"))
    var auditDir: String?

    @Flag(name: .long, help: "Do not record this run in the audit log (loudly warned; not for production).")
    var noAudit = false

    @Option(name: .long, help: ArgumentHelp("Publish each signed head of the audit log to a witness off this host: file:/PATH, http://HOST[:PORT]/PATH or exec:COMMAND (default: $AIRLOCK_AUDIT_WITNESS). A failing witness is reported, never blocks the run.", valueName: "TARGET"))
    var auditWitness: String?

    @Option(name: .long, help: "Session id recorded with every event.") var session: String?
    @Option(name: .long, help: "Workflow id recorded with every event.") var workflow: String?
    @Option(name: .long, help: "Agent id recorded with every event.") var agent: String?
    @Option(name: .long, help: "The human or service this run acts for (default: uid:<your uid>).") var principal: String?

    @Flag(name: .long, help: "Print the resolved sandbox spec and exit without running anything.")
    var explain = false

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after `--`.")
    var command: [String] = []

    func run() throws {
        var marks: [(String, UInt64)] = [("main", AirlockCommand.processStart), ("cli", Timing.now())]
        let hostEnv = HostEnvironment.current()
        let spec: SandboxSpec
        do { spec = try resolve(hostEnvironment: hostEnv) } catch { throw fail(error) }
        marks.append(("resolved", Timing.now()))

        if explain {
            do { print(try Explain.render(spec)) } catch { throw fail(error) }
            return
        }

        let audit: RunAudit
        let identity = Identity(instance: "", session: session, workflow: workflow, agent: agent, principal: principal ?? "uid:\(getuid())")
        do {
            audit = try RunAudit(RunAudit.Settings(
                auditDirectory: auditDir.map(AuditCommand.absolute), noAudit: noAudit, auditWitness: auditWitness, eventsFile: events, metricsFile: metricsFile,
                identity: identity, environment: hostEnv))
        } catch { throw fail(error) }
        var logger = Logger(label: "airlock")
        logger.logLevel = .warning
        let runner = SandboxRunner(logger: logger, environment: hostEnv) { warning in
            printError("airlock: warning: \(warning)")
        }
        // The one lifecycle (SandboxLauncher): secrets, this sandbox's event pipeline and its
        // services (the egress gateway for a proxied network) before it starts; torn down after.
        let launcher: SandboxLauncher
        do throws(AirlockError) {
            launcher = try SandboxLauncher(
                spec: spec, instance: SandboxRunner.newInstanceID(), identity: identity, secretFlags: try secrets(hostEnv),
                events: audit.sink, environment: hostEnv)
        } catch {
            _ = audit.finish()
            throw fail(error)
        }
        for name in launcher.events.ignoredSecrets {
            printError("airlock: warning: secret \(name) is shorter than \(DLPScanner.minimumSecretLength) bytes: it cannot be told apart from ordinary text and is NOT redacted from events")
        }
        marks.append(("services", Timing.now()))
        let outcome: RunOutcome
        do { outcome = try launcher.run(runner, marks: marks) } catch {
            _ = audit.finish()
            throw fail(error)
        }
        _ = audit.finish()

        if hostEnv["AIRLOCK_TIMING"] == "1" {
            for line in outcome.timeline.report { printError("airlock: timing: \(line)") }
        }
        if let failure = outcome.execFailure { printError("airlock: \(failure)") }
        if let stop = outcome.stopReason {
            printError("airlock: stopped: \(stop.message)")
            throw ExitCode(AirlockExit.limitReached)
        }
        let code = outcome.status.shellCode
        if code != 0 { throw ExitCode(code) }
    }

    /// `--secret NAME`: the values, from airlock's own environment.
    func secrets(_ hostEnvironment: [String: String]) throws(AirlockError) -> [Secret] {
        try secret.map { (name: String) throws(AirlockError) -> Secret in
            guard let value = hostEnvironment[name], !value.isEmpty else {
                throw AirlockError(.usage, "--secret \(name): airlock's environment has no \(name) (set it, e.g. \(name)=... airlock run --secret \(name) ...)")
            }
            return Secret(name: name, value: value)
        }
    }

    func resolve(hostEnvironment: [String: String]) throws(AirlockError) -> SandboxSpec {
        guard !command.isEmpty else {
            throw AirlockError(.usage, "no command given: write it after `--`, e.g. airlock run -- /bin/sh -c 'echo hi'")
        }
        var request = RunRequest(command: command, currentDirectory: try HostEnvironment.currentDirectory(), hostEnvironment: hostEnvironment)
        request.profile = profile
        if let policy { request.policy = try PolicyFile.load(policy) }
        if let workspace {
            let (path, mode) = RunRequest.parseWorkspace(workspace)
            request.workspace = try HostEnvironment.canonicalDirectory(path, flag: "--workspace")
            request.workspaceMode = mode
        }
        for m in mount {
            var grant = try RunRequest.parseMount(m)
            grant.source = try HostEnvironment.canonicalPath(grant.source, flag: "--mount")
            request.mounts.append(grant)
        }
        request.env = try env.map { (s: String) throws(AirlockError) -> EnvironmentVariable in try RunRequest.parseEnvironment(s) }
        for s in try secrets(hostEnvironment) { request.env.append(try RunRequest.parseEnvironment("\(s.name)=\(s.value)")) }
        request.allowHosts = try allowHost.map { (s: String) throws(AirlockError) -> EgressRule in try RunRequest.parseAllowHost(s) }
        if let timeout { request.wallClock = try Units.parseDuration(timeout) }
        if let memory { request.memory = try Units.parseBytes(memory) }
        if let cpus { request.cpus = try CLIParsing.cpus(cpus) }
        if let pids { request.pids = try CLIParsing.positiveInt(pids, flag: "--pids") }
        if let disk { request.disk = try Units.parseBytes(disk) }
        let spec = try Resolver.resolve(request)
        try SandboxRunner.validate(spec)
        return spec
    }
}

/// Parsing of the numeric `run` flags (the others are parsed by `RunRequest`).
enum CLIParsing {
    static func cpus(_ s: String) throws(AirlockError) -> Double {
        guard let v = Double(s), v.isFinite else {
            throw AirlockError(.usage, "--cpus '\(s)': write a number of cores from 0.01 to 1024, e.g. 0.5 or 2")
        }
        if let p = LimitBounds.cpusProblem(v) { throw AirlockError(.usage, "--cpus \(p)") }
        return v
    }

    static func positiveInt(_ s: String, flag: String) throws(AirlockError) -> Int {
        guard let v = Int(s), v > 0 else { throw AirlockError(.usage, "\(flag) '\(s)': write a whole number greater than 0") }
        return v
    }
}

/// The host facts the CLI passes to the policy layer.
enum HostEnvironment {
    static func current() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }

    static func currentDirectory() throws(AirlockError) -> String {
        guard let cwd = getcwd(nil, 0) else { throw systemError("getcwd", errno, "cannot determine the current directory") }
        defer { free(cwd) }
        return String(cString: cwd)
    }

    static func canonicalPath(_ path: String, flag: String) throws(AirlockError) -> String {
        guard let real = realpath(path, nil) else {
            throw AirlockError(.usage, "\(flag) \(path): \(errnoDescription(errno))")
        }
        defer { free(real) }
        return String(cString: real)
    }

    static func canonicalDirectory(_ path: String, flag: String) throws(AirlockError) -> String {
        let real = try canonicalPath(path, flag: flag)
        var st = stat()
        guard stat(real, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw AirlockError(.usage, "\(flag) \(path) is not a directory")
        }
        return real
    }
}
