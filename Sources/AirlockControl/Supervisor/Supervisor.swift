import AirlockAudit
import AirlockCore
import AirlockDLP
import AirlockEgress
import AirlockPolicy
import AirlockRuntime
import CAirlockShim
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the daemon keeps its state and how it behaves.
public struct DaemonSettings: Sendable {
    public var stateDirectory: String
    public var hostname: String
    /// The daemon's environment (secrets bound as `env:` come from it; the helper is found with it).
    public var environment: [String: String]
    public var maxFileBytes = 64 << 20
    public var maxArchiveBytes = 256 << 20
    /// How often lifetimes are checked.
    public var tick: Duration = .milliseconds(100)
    /// Running sandboxes at most; a create beyond is refused with 429.
    public var maxSandboxes = 256

    public init(stateDirectory: String, hostname: String, environment: [String: String]) {
        self.stateDirectory = stateDirectory
        self.hostname = hostname
        self.environment = environment
    }

    var workspacesDirectory: String { stateDirectory + "/workspaces" }
    var sealedDirectory: String { stateDirectory + "/sealed" }
}

/// Layer 7 for `airlock serve`: creates long-lived sandboxes, runs their execs, enforces their
/// lifetimes (TTL, idle timeout, exec budget), stops them by any scope, contains them, and
/// recovers after a crash. Every change is recorded in the store and the audit log.
public final class Supervisor: Sendable {
    let settings: DaemonSettings
    let store: any ControlStore
    let vault: Vault
    /// The daemon's own events, redacted with every credential shape and every secret the
    /// policy's profiles name; each sandbox's go through `LiveSandbox.events`, derived from it.
    var audit: EventPipeline { daemonEvents.withLock { $0 } }
    private let baseEvents: EventPipeline
    private let daemonEvents: Mutex<EventPipeline>
    let logger: Logger
    private let policyDocument: Mutex<PolicyDocument?>
    let live = Mutex<[String: LiveSandbox]>([:])
    let shuttingDown = Flag()
    let warm = Mutex<[String: [WarmSandbox]]>([:])
    let runner: SandboxRunner

    public init(settings: DaemonSettings, store: any ControlStore, vault: Vault, audit: EventPipeline, policy: PolicyDocument?, logger: Logger) {
        self.settings = settings
        self.store = store
        self.vault = vault
        self.baseEvents = audit
        self.daemonEvents = Mutex(Self.daemonPipeline(audit, policy: policy, environment: settings.environment))
        self.logger = logger
        self.policyDocument = Mutex(policy)
        let log = logger
        runner = SandboxRunner(logger: logger, events: audit, environment: settings.environment) { w in
            log.warning("\(w)")
        }
    }

    public var policy: PolicyDocument? { policyDocument.withLock { $0 } }
    public func replacePolicy(_ p: PolicyDocument?) {
        policyDocument.withLock { $0 = p }
        let events = Self.daemonPipeline(baseEvents, policy: p, environment: settings.environment)
        daemonEvents.withLock { $0 = events }
    }

    /// The daemon's pipeline: `base` plus the secrets of every profile of `policy`.
    static func daemonPipeline(_ base: EventPipeline, policy: PolicyDocument?, environment: [String: String]) -> EventPipeline {
        var secrets: [Secret] = []
        for name in Policy.profileNames(in: policy).map(\.name) {
            guard case .success(let p) = Policy.flatten(name, in: policy) else { continue }
            secrets += SandboxSecrets.loadable(p.secrets ?? [], environment: environment)
        }
        return secrets.isEmpty ? base : base.sandbox(identity: base.identity, secrets: secrets)
    }

    /// One sandbox this daemon runs.
    final class LiveSandbox: Sendable {
        let id: String
        let service: ServiceSandbox
        let spec: SandboxSpec
        let egress: RunEgress?
        /// Its lifecycle (nil for a warm-pool sandbox, which has no services); torn down when it ends.
        let launcher: SandboxLauncher?
        let workspace: WorkspaceArea?
        /// Its events: its identity stamped, its secrets and every credential shape redacted.
        let events: EventPipeline
        let record: Mutex<SandboxRecord>
        let stopping = Mutex<String?>(nil)
        let finished = OneShot()
        let runningExecs = Mutex<Int>(0)
        /// The profile's environment allowlist (names an exec may set).
        let envAllowed: Set<String>

        init(
            id: String, service: ServiceSandbox, spec: SandboxSpec, egress: RunEgress?, launcher: SandboxLauncher? = nil, workspace: WorkspaceArea?,
            events: EventPipeline, record: SandboxRecord, envAllowed: Set<String>
        ) {
            self.id = id
            self.service = service
            self.spec = spec
            self.egress = egress
            self.launcher = launcher
            self.workspace = workspace
            self.events = events
            self.record = Mutex(record)
            self.envAllowed = envAllowed
        }
    }

    func liveSandbox(_ id: String) -> LiveSandbox? { live.withLock { $0[id] } }
    public var liveCount: Int { live.withLock { $0.count } }

    // MARK: Events

    /// Records a control-plane event (queued; durable shortly after). An event about a
    /// running sandbox goes through that sandbox's pipeline, so its secrets are redacted too.
    func emit(_ type: String, _ record: SandboxRecord?, principal: String, _ attributes: [(String, JSONValue)] = [], instance: String? = nil) {
        events(for: instance ?? record?.id).emit(event(type, record, principal: principal, attributes, instance: instance))
    }

    /// The pipeline of a running sandbox, or the daemon's own.
    func events(for id: String?) -> EventPipeline {
        guard let id, !id.isEmpty, let sb = liveSandbox(id) else { return audit }
        return sb.events
    }

    /// A new sandbox's pipeline.
    func events(sandbox id: String, labels: [String: String], principal: String, secrets: [Secret]) -> EventPipeline {
        audit.sandbox(
            identity: Identity(instance: id, session: labels["session"], workflow: labels["workflow"], agent: labels["agent"], principal: principal),
            secrets: secrets)
    }

    /// Records an event without waiting: it is queued (in order) at once, and the returned
    /// task ends when it is durable. The request paths do their work meanwhile and await it
    /// before they answer, so an answer never precedes its record.
    func recording(_ type: String, _ record: SandboxRecord?, principal: String, _ attributes: [(String, JSONValue)] = []) -> Task<Void, Never> {
        let e = event(type, record, principal: principal, attributes, instance: nil)
        let pipeline = events(for: record?.id)
        let logger = self.logger
        return Task {
            do { try await pipeline.record(e) } catch { logger.error("the audit log could not record \(type): \(error)") }
        }
    }

    private func event(_ type: String, _ record: SandboxRecord?, principal: String, _ attributes: [(String, JSONValue)], instance: String?) -> AuditEvent {
        var identity = Identity(instance: instance ?? record?.id ?? "", principal: principal)
        if let l = record?.labels {
            identity.session = l["session"]
            identity.workflow = l["workflow"]
            identity.agent = l["agent"]
        }
        return AuditEvent(type: type, identity: identity, attributes: [("airlock.principal", .string(principal))] + attributes)
    }

    // MARK: Create

    func create(_ req: CreateRequest, principal: String) async throws(Problem) -> SandboxRecord {
        guard !shuttingDown.isSet else { throw Problem.unavailable("the daemon is shutting down; retry against its successor") }
        guard liveCount < settings.maxSandboxes else {
            throw Problem.tooMany("\(liveCount) sandboxes are running, the most this daemon allows (--max-sandboxes \(settings.maxSandboxes)); delete some or retry later")
        }
        let profiles = Policy.profileNames(in: policy).map(\.name)
        guard profiles.contains(req.profile) else {
            throw Problem.validation(
                "there is no profile '\(req.profile)'; the profiles are: \(profiles.joined(separator: ", "))",
                errors: [.init(field: "profile", message: "unknown profile")])
        }
        let profile: Profile
        switch Policy.flatten(req.profile, in: policy) {
        case .success(let p): profile = p
        case .failure(let f): throw Problem.from(f.airlockError)
        }
        let id = Identifiers.random("sbx-")
        let wsMode = profile.filesystem.workspace ?? .ro
        // The profile's own values: every override must stay within them.
        let base: SandboxSpec
        do { base = try profileSpec(req.profile, workspace: wsMode) } catch { throw Problem.from(error) }
        var problems: [Problem.FieldError] = []
        func beyond(_ field: String, _ asked: String, _ allowed: String) {
            problems.append(.init(field: field, message: "\(asked) is more than the profile '\(req.profile)' allows (\(allowed))"))
        }
        let profileTTL = base.limits.wallClock.map { Double($0.components.seconds) }
        let ttl = req.ttl ?? profileTTL ?? 3600
        if let p = profileTTL, ttl > p { beyond("ttl", "\(Int(ttl))s", "\(Int(p))s") }
        if let m = req.memory, let p = base.limits.memoryBytes, m > p { beyond("limits.memory", Units.formatBytes(m), Units.formatBytes(p)) }
        if let c = req.cpus, let p = base.limits.cpus, c > p { beyond("limits.cpus", "\(c)", "\(p)") }
        if let n = req.pids, let p = base.limits.pids, n > p { beyond("limits.pids", "\(n)", "\(p)") }
        if let d = req.disk, d > base.filesystem.tmpSize { beyond("limits.disk", Units.formatBytes(d), Units.formatBytes(base.filesystem.tmpSize)) }
        let allowedEnv = Set(profile.environment.pass ?? [])
        for name in req.env.keys.sorted() where !allowedEnv.contains(name) {
            problems.append(.init(field: "env.\(name)", message: "the profile '\(req.profile)' does not let a sandbox's environment set \(name); it allows: \(allowedEnv.sorted().joined(separator: ", "))"))
        }
        if req.persist || req.workspace != nil, wsMode == .none {
            problems.append(.init(field: req.persist ? "persist" : "workspace", message: "the profile '\(req.profile)' grants no workspace, so there is nothing to persist or restore"))
        }
        if let first = problems.first {
            throw Problem(403, "forbidden", "Forbidden", problems.count == 1 ? "\(first.field): \(first.message)" : "\(problems.count) overrides go beyond the profile '\(req.profile)': " + problems.map { "\($0.field): \($0.message)" }.joined(separator: "; "), errors: problems)
        }
        var restoreFrom: SealedRecord?
        if let w = req.workspace {
            guard let r = try? store.sealed(id: w), r.kind == .workspace else { throw Problem.notFound("there is no persisted workspace \(w) (see GET /v1/workspaces)") }
            restoreFrom = r
        }

        // A request with nothing but labels, a TTL, an idle timeout or an exec budget takes a
        // sandbox the warm pool built for its profile in advance.
        if req.memory == nil, req.cpus == nil, req.pids == nil, req.disk == nil, req.env.isEmpty, !req.persist,
            req.workspace == nil, let warm = claimWarm(req.profile, wallClock: .seconds(ttl + 2))
        {
            let now = Date()
            var record = SandboxRecord(
                id: warm.id, host: settings.hostname, profile: req.profile, labels: Self.redacted(req.labels, audit), state: .running, createdAt: now,
                ttlSeconds: ttl, idleTimeoutSeconds: req.idleTimeout, maxExecs: req.maxExecs, lastActivityAt: now,
                spec: warm.specJSON, workspacePath: warm.area?.path, workspaceMounted: warm.area?.mounted ?? false,
                principal: principal)
            record.helperPID = warm.service.helperPID
            record.cgroupDirectories = warm.service.cgroup?.directories ?? []
            do { try store.insertSandbox(record) } catch {
                warm.service.stop()
                throw Problem.internalError("the store refused the new sandbox: \(error)")
            }
            return await register(
                LiveSandbox(
                    id: warm.id, service: warm.service, spec: warm.spec, egress: nil, workspace: warm.area,
                    events: events(sandbox: warm.id, labels: record.labels, principal: principal, secrets: []), record: record, envAllowed: allowedEnv),
                principal: principal)
        }

        // The workspace: a tmpfs of the disk budget when root (bounded, and gone with its mount).
        let diskBytes = req.disk ?? base.filesystem.tmpSize
        var area: WorkspaceArea?
        if wsMode != .none {
            do { area = try WorkspaceArea.make(under: settings.workspacesDirectory, id: id, size: diskBytes) } catch { throw Problem.from(error) }
        }
        // The one lifecycle (SandboxLauncher, as for `airlock run`): secrets loaded the same way
        // (bound ones as placeholders, the others set as themselves), this sandbox's event
        // pipeline, and its services (the egress gateway on its own airlock socket).
        let launcher: SandboxLauncher
        do {
            let resolved = try daemonSpec(RunRequest(
                profile: req.profile, policy: policy, command: ["/bin/true"], workspace: area?.path,
                env: req.env.sorted { $0.key < $1.key }.map { EnvironmentVariable($0.key, $0.value) },
                wallClock: .seconds(ttl + 2), memory: req.memory, cpus: req.cpus, pids: req.pids, disk: req.disk,
                currentDirectory: "/", hostEnvironment: settings.environment))
            launcher = try SandboxLauncher(
                spec: resolved, instance: id,
                identity: Identity(instance: id, session: req.labels["session"], workflow: req.labels["workflow"], agent: req.labels["agent"], principal: principal),
                events: audit, environment: settings.environment, service: true)
        } catch {
            area?.remove()
            throw Problem.from(error)
        }
        let spec = launcher.spec
        let events = launcher.events
        let labels = Self.redacted(req.labels, events)
        let now = Date()
        var record = SandboxRecord(
            id: id, host: settings.hostname, profile: req.profile, labels: labels, state: .running, createdAt: now,
            ttlSeconds: ttl, idleTimeoutSeconds: req.idleTimeout, maxExecs: req.maxExecs, lastActivityAt: now,
            spec: Self.json(Self.stored(spec, events)), workspacePath: area?.path, workspaceMounted: area?.mounted ?? false, persist: req.persist,
            workspaceID: req.workspace, principal: principal)
        record.airlockDirectory = launcher.airlockDirectory
        // Recorded before anything runs, so that a crash from here on is recovered.
        do { try store.insertSandbox(record) } catch {
            launcher.teardown()
            area?.remove()
            throw Problem.internalError("the store refused the new sandbox: \(error)")
        }
        let runner = self.runner
        let started: Result<ServiceSandbox, AirlockError> = await Blocking.run {
            do throws(AirlockError) { return .success(try launcher.start(runner)) } catch { return .failure(error) }
        }
        let service: ServiceSandbox
        switch started {
        case .success(let s): service = s
        case .failure(let error):
            // The launcher tore its services down.
            area?.remove()
            // The caller never got this sandbox: no record of it stays (the failure is audited).
            try? store.deleteSandbox(id: id)
            events.emit(event("control.sandbox.create_failed", record, principal: principal, [("airlock.error", .string(error.description))], instance: nil))
            throw Problem.from(error)
        }
        record.helperPID = service.helperPID
        record.cgroupDirectories = service.cgroup?.directories ?? []
        try? store.updateSandbox(record)
        let sandbox = LiveSandbox(
            id: id, service: service, spec: spec, egress: launcher.egress, launcher: launcher, workspace: area, events: events, record: record,
            envAllowed: allowedEnv)
        _ = await register(sandbox, principal: principal)
        if let restoreFrom {
            do { try await restore(restoreFrom, into: sandbox) } catch {
                await stop(sandbox, reason: "setup_failed", principal: principal)
                throw error
            }
        }
        return sandbox.record.withLock { $0 }
    }

    /// A profile's own values, without overrides: what a create's overrides are checked against.
    func profileSpec(_ profile: String, workspace mode: WorkspaceMode) throws(AirlockError) -> SandboxSpec {
        try Resolver.resolve(RunRequest(
            profile: profile, policy: policy, command: ["/bin/true"], workspace: mode == .none ? nil : settings.workspacesDirectory,
            currentDirectory: "/", hostEnvironment: [:]))
    }

    /// The spec of a daemon sandbox: no command of its own (execs come later), and none of
    /// `airlock run`'s protected-path placeholders — the workspace is the sandbox's own, not a
    /// host repository another program will run hooks from.
    func daemonSpec(_ request: RunRequest) throws(AirlockError) -> SandboxSpec {
        var spec = try Resolver.resolve(request)
        spec.command = []
        spec.filesystem.workspace?.denyWrite = []
        return spec
    }

    /// Makes a started sandbox live: listed, supervised, finalized when it ends.
    func register(_ sandbox: LiveSandbox, principal: String) async -> SandboxRecord {
        let record = sandbox.record.withLock { $0 }
        live.withLock { $0[sandbox.id] = sandbox }
        let recorded = recording("control.sandbox.created", record, principal: principal, [
            ("airlock.profile", .string(record.profile)),
            ("airlock.labels", .object(record.labels.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
            ("airlock.ttl_seconds", .double(record.ttlSeconds)),
        ])
        Task { [self] in
            await sandbox.service.ended()
            await self.finalize(sandbox)
        }
        await recorded.value
        return record
    }

    /// The spec as the store keeps it: the values of its environment redacted like its events
    /// (a secret set as itself, or a credential passed in `env`, never reaches the disk).
    static func stored(_ spec: SandboxSpec, _ events: EventPipeline) -> SandboxSpec {
        var s = spec
        s.environment = spec.environment.map { EnvironmentVariable($0.name, events.redact($0.value)) }
        return s
    }

    /// Labels as the store keeps and the API shows them: a credential (or one of the
    /// sandbox's secrets) put in a label is redacted like it is in events.
    static func redacted(_ labels: [String: String], _ events: EventPipeline) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in labels { out[events.redact(k)] = events.redact(v) }
        return out
    }

    static func json<T: Encodable>(_ v: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? String(decoding: e.encode(v), as: UTF8.self)) ?? "{}"
    }

    // MARK: Exec

    /// Execs one sandbox runs at once at most: PID 1's table (`SVC_MAX_EXECS` in service.c).
    static let maxConcurrentExecs = 256

    func exec(_ id: String, _ p: ExecParameters, principal: String, onEnd: @escaping @Sendable (ExecRun.Outcome) -> Void = { _ in }) throws(Problem) -> ExecRun {
        guard let sb = liveSandbox(id) else { throw notRunning(id) }
        if sb.stopping.withLock({ $0 }) != nil { throw notRunning(id) }
        var record = sb.record.withLock { $0 }
        guard record.state == .running else { throw Problem.conflict("the sandbox \(id) is \(record.state.rawValue); it runs no commands (delete it when done)") }
        if let max = record.maxExecs, record.execCount >= max {
            Task { await stop(sb, reason: "max_execs", principal: "airlock") }
            throw Problem.conflict("the sandbox \(id) has run its \(max) commands (max_execs); it is stopped")
        }
        for name in p.env.keys.sorted() where !sb.envAllowed.contains(name) {
            throw Problem(403, "forbidden", "Forbidden",
                "env.\(name): the profile '\(record.profile)' does not let a command's environment set \(name); it allows: \(sb.envAllowed.sorted().joined(separator: ", "))",
                errors: [.init(field: "env.\(name)", message: "not in the profile's environment allowlist")])
        }
        let remaining = record.createdAt.addingTimeInterval(record.ttlSeconds).timeIntervalSinceNow
        let timeout = min(p.timeout ?? 300, max(remaining, 0.001))
        var env = sb.spec.environment
        for (k, v) in p.env.sorted(by: { $0.key < $1.key }) {
            env.removeAll { $0.name == k }
            env.append(EnvironmentVariable(k, v))
        }
        let request = ServiceSandbox.ExecRequest(command: p.command, environment: env, workingDirectory: p.cwd ?? sb.spec.workingDirectory)
        // PID 1 keeps a table of at most this many execs and refuses one more (EAGAIN); the
        // daemon counts first, so a caller hears "retry later" rather than an errno.
        let admitted = sb.runningExecs.withLock { n in
            guard n < Self.maxConcurrentExecs else { return false }
            n += 1
            return true
        }
        guard admitted else {
            throw Problem.tooMany(
                "the sandbox \(id) is running \(Self.maxConcurrentExecs) commands, the most it runs at once; retry when one has ended (or run them in another sandbox)")
        }
        let count = sb.record.withLock { r in
            r.execCount += 1
            r.lastActivityAt = Date()
            return r.execCount
        }
        record.execCount = count
        // Exec counts and activity live in memory while the sandbox runs (recovery reaps, it
        // needs neither); the store gets them with the final record.
        let run: ExecRun
        do {
            run = try ExecRun.start(in: sb.service, request: request, stdin: p.stdin, timeout: timeout) { outcome in
                sb.runningExecs.withLock { $0 -= 1 }
                sb.record.withLock { $0.lastActivityAt = Date() }
                onEnd(outcome)
            }
        } catch {
            sb.runningExecs.withLock { $0 -= 1 }
            throw error
        }
        run.recorded = recording("control.exec", record, principal: principal, [
            ("process.command_args", .array(p.command.map { .string($0) })), ("airlock.exec.timeout_seconds", .double(timeout)),
        ])
        return run
    }

    func notRunning(_ id: String) -> Problem {
        if let r = liveSandbox(id)?.record.withLock({ $0 }) ?? (try? store.sandbox(id: id)) {
            return Problem.conflict("the sandbox \(id) is \(r.state.rawValue)\(r.stopReason.map { " (\($0))" } ?? ""); create a new one")
        }
        return Problem.notFound("there is no sandbox \(id) (see GET /v1/sandboxes)")
    }

    // MARK: Read

    func get(_ id: String) throws(Problem) -> SandboxRecord {
        if let sb = liveSandbox(id) { return sb.record.withLock { $0 } }
        guard Identifiers.isSandbox(id), let r = try? store.sandbox(id: id) else { throw Problem.notFound("there is no sandbox \(id) (see GET /v1/sandboxes)") }
        return r
    }

    func list() throws(Problem) -> [SandboxRecord] {
        let stored: [SandboxRecord]
        do { stored = try store.sandboxes(host: settings.hostname) } catch { throw Problem.internalError("the store cannot list sandboxes: \(error)") }
        let current = live.withLock { $0 }
        return stored.map { r in current[r.id]?.record.withLock { $0 } ?? r }
    }

    func usage(_ id: String) -> CgroupUsage? {
        guard let sb = liveSandbox(id) else { return nil }
        return sb.service.cgroup?.usage()
    }

    func runningExecs(_ id: String) -> Int { liveSandbox(id)?.runningExecs.withLock { $0 } ?? 0 }

    // MARK: Stop

    /// Stops one sandbox: every process is killed at once; the teardown (and sealing a
    /// persistent workspace) follows. Returns when its processes are gone.
    func stop(_ sb: LiveSandbox, reason: String, principal: String) async {
        // A reason is free text from the caller: kept and recorded only as this sandbox's
        // events would show it.
        let reason = sb.events.redact(reason)
        let first: Bool = sb.stopping.withLock { s in
            guard s == nil else { return false }
            s = reason
            return true
        }
        let recorded = first ? recording("control.sandbox.stop", sb.record.withLock { $0 }, principal: principal, [("airlock.stop_reason", .string(reason))]) : nil
        sb.service.stop()
        // Every process is dead once PID 1 is reaped; the teardown (cgroups, workspace, the
        // record's final usage) finishes in `finalize`, which shutdown waits for.
        await sb.service.processesEnded()
        sb.record.withLock { r in
            if r.state != .stopped {
                r.state = .stopped
                r.stopReason = sb.stopping.withLock { $0 } ?? reason
                r.stoppedAt = Date()
            }
        }
        await recorded?.value
    }

    func stop(id: String, reason: String, principal: String) async throws(Problem) -> SandboxRecord {
        guard let sb = liveSandbox(id) else {
            let r = try get(id)
            return r
        }
        await stop(sb, reason: reason, principal: principal)
        // A persistent workspace is sealed before the answer, which names it.
        if sb.record.withLock({ $0.persist }) { await sb.finished.wait() }
        return sb.record.withLock { $0 }
    }

    /// Which live sandboxes a kill selects.
    enum Selector: Sendable {
        case instance(String)
        case labels([String: String])
        case all

        func matches(_ r: SandboxRecord) -> Bool {
            switch self {
            case .instance(let id): r.id == id
            case .labels(let l): l.allSatisfy { r.labels[$0.key] == $0.value }
            case .all: true
            }
        }
    }

    /// Stops every matching sandbox, concurrently; returns their ids once all are dead.
    func kill(_ selector: Selector, reason: String, principal: String) async -> [String] {
        let targets = live.withLock { $0.values.filter { sb in selector.matches(sb.record.withLock { $0 }) } }
        // The scope and the reason are free text: redacted for the daemon and for every
        // sandbox they reach, whose secrets the daemon's own events do not know.
        var scope = audit.redact("\(selector)")
        var why = audit.redact(reason)
        for sb in targets {
            scope = sb.events.redact(scope)
            why = sb.events.redact(why)
        }
        emit("control.kill", nil, principal: principal, [
            ("airlock.kill.scope", .string(scope)), ("airlock.kill.count", .int(Int64(targets.count))), ("airlock.stop_reason", .string(why)),
        ], instance: "")
        await withTaskGroup(of: Void.self) { g in
            for sb in targets { g.addTask { await self.stop(sb, reason: reason, principal: principal) } }
        }
        return targets.map(\.id).sorted()
    }

    /// After the sandbox ended (asked or not): its gateway, its persistent workspace, its
    /// workspace area, its record.
    func finalize(_ sb: LiveSandbox) async {
        let end = await sb.service.ended()
        for w in end.warnings { logger.warning("\(sb.id): \(w)") }
        let reason = sb.stopping.withLock { s -> String in
            if let s { return s }
            let r = end.wallClock ? "ttl" : "exited"
            s = r
            return r
        }
        sb.egress?.stop()
        sb.launcher?.teardown()
        var record = sb.record.withLock { $0 }
        record.state = .stopped
        record.stopReason = reason
        record.stoppedAt = record.stoppedAt ?? Date()
        if let u = end.usage { record.usage = Self.usageJSON(u) }
        if record.persist, let area = sb.workspace {
            do {
                let sealed = try await seal(area: area, spec: sb.spec, sandbox: sb.id, kind: .workspace, meta: ["labels": record.labels])
                record.workspaceID = sealed.id
            } catch {
                logger.error("the workspace of \(sb.id) could not be sealed: \(error)")
                emit("control.workspace.seal_failed", record, principal: "airlock", [("airlock.error", .string("\(error)"))])
            }
        }
        sb.workspace?.remove()
        sb.record.withLock { $0 = record }
        try? store.updateSandbox(record)
        live.withLock { _ = $0.removeValue(forKey: sb.id) }
        // Through its own pipeline: it is no longer live, and the daemon's lacks its secrets.
        sb.events.emit(event("control.sandbox.stopped", record, principal: "airlock", [("airlock.stop_reason", .string(reason))], instance: nil))
        sb.finished.open()
    }

    static func usageJSON(_ u: CgroupUsage) -> String {
        var o: [String: Double] = [:]
        if let c = u.cpuNanos { o["cpu_seconds"] = Double(c) / 1e9 }
        if let m = u.memoryCurrentBytes { o["memory_bytes"] = Double(m) }
        if let m = u.memoryPeakBytes { o["memory_peak_bytes"] = Double(m) }
        if let p = u.pidsCurrent { o["pids"] = Double(p) }
        return json(o)
    }

    // MARK: Lifetimes

    /// Checks every sandbox's TTL and idle timeout, until cancelled.
    public func enforceLifetimes() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.tick)
            let now = Date()
            let due: [(LiveSandbox, String)] = live.withLock { all in
                all.values.compactMap { sb in
                    let r = sb.record.withLock { $0 }
                    guard r.state == .running, sb.stopping.withLock({ $0 }) == nil else { return nil }
                    if now >= r.createdAt.addingTimeInterval(r.ttlSeconds) { return (sb, "ttl") }
                    if let idle = r.idleTimeoutSeconds, sb.runningExecs.withLock({ $0 }) == 0,
                        now >= r.lastActivityAt.addingTimeInterval(idle)
                    {
                        return (sb, "idle")
                    }
                    return nil
                }
            }
            for (sb, reason) in due { Task { await self.stop(sb, reason: reason, principal: "airlock") } }
        }
    }

    /// Graceful shutdown: every sandbox is stopped (persistent workspaces sealed).
    public func shutdown() async {
        shuttingDown.set()
        await drainWarm()
        let all = live.withLock { Array($0.values) }
        await withTaskGroup(of: Void.self) { g in
            for sb in all {
                g.addTask {
                    await self.stop(sb, reason: "daemon_shutdown", principal: "airlock")
                    await sb.finished.wait()
                }
            }
        }
    }
}

/// Runs blocking work (a sandbox launch, a file copy) off Swift's cooperative threads.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            if !ThreadBox({ c.resume(returning: body()) }).start() { c.resume(returning: body()) }
        }
    }
}
