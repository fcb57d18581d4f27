import AirlockCore

/// What `airlock run` asks for: a profile, the command, and the operator's overrides.
///
/// Values arrive parsed (``RunRequest/parseMount(_:)``, ``RunRequest/parseEnvironment(_:)``,
/// ``RunRequest/parseWorkspace(_:)`` read the flag syntax); the resolver validates them and
/// names the flag in its errors: `--profile`, `--workspace`, `--mount`, `--env`,
/// `--allow-host`, `--timeout`, `--memory`, `--cpus`, `--pids`, `--disk`.
public struct RunRequest: Sendable {
    /// The profile to run, from the policy file or built in.
    public var profile: String
    /// The policy file given with `--policy`; nil for the built-in profiles only.
    public var policy: PolicyDocument?
    public var command: [String]
    /// Host directory for `/workspace`, already absolute; nil means ``currentDirectory``.
    public var workspace: String?
    /// `.ro` / `.rw` from `--workspace DIR:ro`; nil keeps the profile's.
    public var workspaceMode: WorkspaceMode?
    /// From `--mount SRC:DST[:ro|rw]`; checked with the same rules as a profile's mounts. A mount
    /// to a target the profile already mounts replaces the profile's.
    public var mounts: [MountGrant]
    /// From `--env K=V`; set last, so they win. Any name is accepted: the operator typed the value.
    public var env: [EnvironmentVariable]
    /// From `--allow-host HOST[:PORT[,PORT]]` (``RunRequest/parseAllowHost(_:)``): added to the
    /// profile's `network.allow`. On a profile with network mode `none` they switch the run to
    /// `proxied` and are then the only hosts allowed; the profile's other network settings
    /// (deny rules, budgets, DLP, pinned hosts, proxy port) still apply.
    public var allowHosts: [EgressRule]
    public var wallClock: Duration?
    public var memory: UInt64?
    public var cpus: Double?
    public var pids: Int?
    /// Size of `/tmp`.
    public var disk: UInt64?
    /// The caller's working directory (absolute).
    public var currentDirectory: String
    /// The caller's environment; only the profile's `environment.pass` names are read from it
    /// (and `HOME`, to refuse a workspace that is or contains the home directory).
    public var hostEnvironment: [String: String]

    public init(
        profile: String = "default", policy: PolicyDocument? = nil, command: [String], workspace: String? = nil,
        workspaceMode: WorkspaceMode? = nil, mounts: [MountGrant] = [], env: [EnvironmentVariable] = [],
        allowHosts: [EgressRule] = [], wallClock: Duration? = nil, memory: UInt64? = nil, cpus: Double? = nil, pids: Int? = nil,
        disk: UInt64? = nil, currentDirectory: String, hostEnvironment: [String: String] = [:]
    ) {
        self.profile = profile
        self.policy = policy
        self.command = command
        self.workspace = workspace
        self.workspaceMode = workspaceMode
        self.mounts = mounts
        self.env = env
        self.allowHosts = allowHosts
        self.wallClock = wallClock
        self.memory = memory
        self.cpus = cpus
        self.pids = pids
        self.disk = disk
        self.currentDirectory = currentDirectory
        self.hostEnvironment = hostEnvironment
    }
}

/// Turns a ``RunRequest`` into the ``SandboxSpec`` the runtime builds. Pure: it reads no file
/// and no environment of its own; the caller checks that mount sources and the workspace exist
/// (and re-checks their resolved paths with ``PathRules``).
public enum Resolver {
    /// The search path inside every sandbox.
    public static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// Defaults for a setting no profile in the chain gives (see ``Policy``).
    static let defaultWorkspace = WorkspaceMode.ro

    public static func resolve(_ r: RunRequest) throws(AirlockError) -> SandboxSpec {
        guard !r.command.isEmpty, !(r.command.first ?? "").isEmpty else {
            throw AirlockError(.usage, "no command to run: give one after '--', e.g. airlock run --profile \(r.profile) -- bash")
        }
        guard r.policy?.profiles[r.profile] != nil || Policy.builtins.profiles[r.profile] != nil else {
            let names = Policy.profileNames(in: r.policy).map(\.name).joined(separator: ", ")
            throw AirlockError(.usage, "--profile: there is no profile '\(r.profile)'; available profiles: \(names)")
        }
        let profile: Profile
        switch Policy.flatten(r.profile, in: r.policy) {
        case .success(let p): profile = p
        case .failure(let failure): throw failure.airlockError
        }
        try checkProfile(profile, name: r.profile)

        var usage: [String] = []
        let workspace = resolveWorkspace(r, profile: profile, problems: &usage)
        let mounts = resolveMounts(r, profile: profile, problems: &usage)
        let limits = resolveLimits(r, profile: profile, problems: &usage)
        let network = resolveNetwork(r, profile: profile, problems: &usage)
        for v in r.env where !PathRules.isValidEnvironmentName(v.name) {
            usage.append(
                "--env: '\(v.name.escapedForMessage)' is not a valid environment variable name; names use ASCII letters, digits and '_' and do not start with a digit"
            )
        }
        for v in r.env where v.value.unicodeScalars.contains("\0") {
            usage.append("--env: the value of \(v.name) contains a NUL character, which no environment can hold")
        }
        guard usage.isEmpty else { throw AirlockError(.usage, usage.joined(separator: "\n")) }
        let monitor = try resolveMonitor(profile, name: r.profile, limits: limits)

        let user = profile.user ?? .agent
        var filesystem = FilesystemSpec(workspace: workspace, mounts: mounts)
        filesystem.tmpSize = r.disk ?? profile.diskBudget ?? filesystem.tmpSize
        filesystem.etcEntries = Profile.adding(FilesystemSpec.defaultEtc, profile.filesystem.etc) ?? FilesystemSpec.defaultEtc

        return SandboxSpec(
            profile: r.profile,
            runtime: profile.runtime ?? .namespace,
            command: r.command,
            environment: environment(r, profile: profile, user: user, network: network),
            workingDirectory: workspace == nil ? user.home : "/workspace",
            user: user,
            hostname: "airlock",
            filesystem: filesystem,
            network: network,
            limits: limits,
            syscalls: profile.syscalls ?? .default,
            landlock: profile.landlock ?? .bestEffort,
            cgroups: profile.cgroups ?? .bestEffort,
            monitor: monitor,
            secrets: profile.secrets ?? [])
    }

    /// The alert rules against the limits that take effect (the profile's or the flags'): a
    /// percentage of the memory limit needs one, and a CPU percentage above the CPU quota
    /// could never be reached.
    static func resolveMonitor(_ p: Profile, name: String, limits: Limits) throws(AirlockError) -> MonitorSpec {
        let rules = p.alerts ?? []
        var problems: [String] = []
        for rule in rules {
            switch rule.condition {
            case .memory(.percent(let pct), _) where limits.memoryBytes == nil:
                problems.append(
                    "alert '\(rule.name)': memory above \(PolicyReader.formatPercent(pct)) is a share of the memory limit, and this run has none; give limits.memory (or --memory), or write the threshold as a size, e.g. above: 1G"
                )
            case .cpu(let pct, _) where pct > 100 && limits.cpus != nil:
                problems.append(
                    "alert '\(rule.name)': cpu above \(PolicyReader.formatPercent(pct)) can never fire: the percentage is of the CPU quota (limits.cpus), which the sandbox cannot exceed; use at most 100%"
                )
            default: break
            }
        }
        guard problems.isEmpty else {
            throw AirlockError(.policy, problems.map { "profile '\(name)': \($0)" }.joined(separator: "\n"))
        }
        return MonitorSpec(interval: p.monitorInterval ?? MonitorSpec.defaultInterval, alerts: rules)
    }

    // MARK: Parts

    static func resolveWorkspace(_ r: RunRequest, profile: Profile, problems: inout [String]) -> WorkspaceGrant? {
        let profileMode = profile.filesystem.workspace ?? defaultWorkspace
        let mode: WorkspaceMode
        switch (r.workspaceMode, r.workspace, profileMode) {
        case (WorkspaceMode.none?, .some, _):
            problems.append(
                "--workspace: a directory was given together with mode 'none'; give the directory with :ro or :rw, or no --workspace")
            return nil
        case (let m?, _, _): mode = m
        // An explicit --workspace grants a workspace even when the profile has none, read-only
        // unless the operator says :rw.
        case (nil, .some, WorkspaceMode.none): mode = .ro
        case (nil, _, let m): mode = m
        }
        if mode == WorkspaceMode.none { return nil }
        let path = r.workspace ?? r.currentDirectory
        let flag = r.workspace == nil ? "the current directory (the default workspace; choose another with --workspace DIR)" : "--workspace"
        if let problem = PathRules.workspaceProblem(path, hostHome: r.hostEnvironment["HOME"]) {
            problems.append("\(flag): \(problem)")
            return nil
        }
        let deny = Profile.adding(WorkspaceGrant.mandatoryDeny, profile.filesystem.deny) ?? WorkspaceGrant.mandatoryDeny
        return WorkspaceGrant(hostPath: path, readOnly: mode == .ro, denyWrite: deny)
    }

    static func resolveMounts(_ r: RunRequest, profile: Profile, problems: inout [String]) -> [MountGrant] {
        var mounts = profile.filesystem.mounts ?? []
        var fromFlags: Set<String> = []
        for m in r.mounts {
            let flag = "--mount \(m.source.escapedForMessage):\(m.destination.escapedForMessage)"
            var ok = true
            if let p = PathRules.mountSourceProblem(m.source) {
                problems.append("\(flag): \(p)")
                ok = false
            }
            if let p = PathRules.mountTargetProblem(m.destination) {
                problems.append("\(flag): \(p)")
                ok = false
            }
            if fromFlags.contains(m.destination) {
                problems.append("\(flag): another --mount already has the target \(m.destination); each target may be mounted only once")
                ok = false
            }
            guard ok else { continue }
            fromFlags.insert(m.destination)
            // The operator's mount replaces the profile's mount of the same target.
            mounts.removeAll { $0.destination == m.destination }
            mounts.append(m)
        }
        return mounts
    }

    /// The profile's network, with `--allow-host` rules added. A run whose mode stays `none`
    /// gets the plain ``NetworkSpec/Mode/none`` spec: nothing else in it would have an effect.
    static func resolveNetwork(_ r: RunRequest, profile: Profile, problems: inout [String]) -> NetworkSpec {
        for rule in r.allowHosts {
            for p in EgressRules.ruleProblems(rule) { problems.append("--allow-host \(rule.label.escapedForMessage): \(p)") }
        }
        let n = profile.network
        let profileMode = n.mode ?? NetworkSpec.Mode.none
        let mode = profileMode == .none && !r.allowHosts.isEmpty ? .proxied : profileMode
        guard mode == .proxied else { return NetworkSpec(mode: .none) }
        // Under mode none, allow and inspect_tls rules (which only a parent can have left there)
        // have no effect, so that --allow-host opens exactly the hosts it names.
        let proxiedProfile = profileMode == .proxied
        var allow = proxiedProfile ? n.allow ?? [] : []
        for rule in r.allowHosts where !allow.contains(rule) { allow.append(rule) }
        return NetworkSpec(
            mode: .proxied, allow: allow, deny: n.deny ?? [], inspectTLS: proxiedProfile ? n.inspectTLS ?? [] : [],
            budgets: n.budgets, dlp: n.dlp ?? .block, hosts: n.hosts ?? [:], upstreamCAFile: n.upstreamCAFile,
            proxyPort: n.proxyPort ?? NetworkSpec.defaultProxyPort)
    }

    static func resolveLimits(_ r: RunRequest, profile: Profile, problems: inout [String]) -> Limits {
        let p = profile.limits
        if let w = r.wallClock, let p = LimitBounds.wallClockProblem(w) { problems.append("--timeout \(p)") }
        if let m = r.memory, let p = LimitBounds.memoryProblem(m) { problems.append("--memory \(p)") }
        if let c = r.cpus, let p = LimitBounds.cpusProblem(c) { problems.append("--cpus \(p)") }
        if let n = r.pids, let p = LimitBounds.pidsProblem(n) { problems.append("--pids \(p)") }
        if let d = r.disk, let p = LimitBounds.diskProblem(d) { problems.append("--disk \(p)") }
        return Limits(
            wallClock: r.wallClock ?? p.wallClock,
            memoryBytes: r.memory ?? p.memory,
            cpus: r.cpus ?? p.cpus,
            pids: r.pids ?? p.pids,
            openFiles: p.openFiles ?? Limits().openFiles,
            fileSize: p.fileSize)
    }

    /// PATH, HOME, USER, LOGNAME, SHELL; then the passed-through host values; then, for a
    /// proxied run, the proxy variables (and, when the gateway inspects TLS, the CA variables);
    /// then `set`; then a placeholder for each injected secret; then `--env`. A later value
    /// replaces an earlier one in place, so each name appears once.
    static func environment(_ r: RunRequest, profile: Profile, user: SandboxUser, network: NetworkSpec) -> [EnvironmentVariable] {
        var env: [EnvironmentVariable] = [
            .init("PATH", path), .init("HOME", user.home), .init("USER", user.name),
            .init("LOGNAME", user.name), .init("SHELL", "/bin/sh"),
        ]
        for name in profile.environment.pass ?? [] {
            if let value = r.hostEnvironment[name] { env.upsert(.init(name, value)) }
        }
        if network.mode == .proxied {
            for v in EgressEnvironment.proxyVariables(port: network.proxyPort) { env.upsert(v) }
            if !network.inspectTLS.isEmpty {
                for v in EgressEnvironment.caVariables { env.upsert(v) }
            }
        }
        for v in profile.environment.set ?? [] { env.upsert(v) }
        for b in profile.secrets ?? [] where b.inject != nil { env.upsert(.init(b.name, Placeholder.value(for: b.name))) }
        for v in r.env { env.upsert(v) }
        return env
    }

    /// The profile rules again, on the flattened profile: a ``PolicyDocument`` can be built in
    /// code without the reader, and the spec must never carry what a policy file could not.
    static func checkProfile(_ p: Profile, name: String) throws(AirlockError) {
        var problems: [String] = []
        for m in p.filesystem.mounts ?? [] {
            if let s = PathRules.mountSourceProblem(m.source) { problems.append(s) }
            if let t = PathRules.mountTargetProblem(m.destination) { problems.append(t) }
        }
        let targets = (p.filesystem.mounts ?? []).map(\.destination)
        if Set(targets).count != targets.count { problems.append("two mounts share a target; each target may be mounted only once") }
        for d in p.filesystem.deny ?? [] { if let s = PathRules.denyEntryProblem(d) { problems.append(s) } }
        for e in p.filesystem.etc ?? [] { if let s = PathRules.etcEntryProblem(e) { problems.append(s) } }
        for n in p.environment.pass ?? [] { if let s = PathRules.passThroughProblem(n) { problems.append("environment.pass: \(s)") } }
        for v in p.environment.set ?? [] where !PathRules.isValidEnvironmentName(v.name) {
            problems.append("environment.set: '\(v.name.escapedForMessage)' is not a valid environment variable name")
        }
        var ruleNames: Set<String> = []
        for rule in p.alerts ?? [] {
            if !PolicyReader.isValidProfileName(rule.name) || !ruleNames.insert(rule.name).inserted {
                problems.append("alert name '\(rule.name.escapedForMessage)' is invalid or used twice")
            }
            switch rule.condition {
            case .cpu(let pct, let d) where !(pct > 0 && pct <= PolicyReader.maximumCPUPercent) || d < .zero:
                problems.append("alert '\(rule.name)': cpu.above must be greater than 0% and at most 102400%")
            case .memory(.percent(let pct), let d) where !(pct > 0 && pct <= 100) || d < .zero:
                problems.append("alert '\(rule.name)': memory.above must be greater than 0% and at most 100%")
            case .memory(.bytes(0), _):
                problems.append("alert '\(rule.name)': memory.above must be greater than zero")
            case .pidsAbove(let n, let d) where n < 1 || d < .zero:
                problems.append("alert '\(rule.name)': pids.above must be at least 1")
            case .pidsIncrease(let n, let w) where n < 1 || w <= .zero:
                problems.append("alert '\(rule.name)': pids.increase must be at least 1 within a window greater than zero")
            case .exec(let allow) where allow.contains { !$0.hasPrefix("/") || $0.unicodeScalars.contains("\0") }:
                problems.append("alert '\(rule.name)': exec.allow patterns must be absolute paths")
            default: break
            }
        }
        if let i = p.monitorInterval, !MonitorSpec.intervalRange.contains(i) {
            problems.append("monitor.interval must be from 100ms to 1m")
        }
        problems += NetworkChecks.specProblems(p)
        guard problems.isEmpty else {
            throw AirlockError(.policy, problems.map { "profile '\(name)': \($0)" }.joined(separator: "\n"))
        }
    }
}

// MARK: Flag syntax

extension RunRequest {
    /// `SRC:DST[:ro|rw]` as written after `--mount` (read-only unless `:rw`). The paths are
    /// checked by ``Resolver/resolve(_:)``.
    public static func parseMount(_ text: String) throws(AirlockError) -> MountGrant {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let usage = "--mount '\(text.escapedForMessage)': write SRC:DST or SRC:DST:ro or SRC:DST:rw, e.g. --mount /srv/data:/data:ro"
        switch parts.count {
        case 2 where !parts[0].isEmpty && !parts[1].isEmpty:
            return MountGrant(source: parts[0], destination: parts[1], readOnly: true)
        case 3 where !parts[0].isEmpty && !parts[1].isEmpty && (parts[2] == "ro" || parts[2] == "rw"):
            return MountGrant(source: parts[0], destination: parts[1], readOnly: parts[2] == "ro")
        default:
            throw AirlockError(.usage, usage)
        }
    }

    /// `NAME=VALUE` as written after `--env` (the value may contain `=` and be empty).
    public static func parseEnvironment(_ text: String) throws(AirlockError) -> EnvironmentVariable {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw AirlockError(.usage, "--env '\(text.escapedForMessage)': write NAME=VALUE, e.g. --env DEBUG=1")
        }
        let name = String(text[..<eq])
        guard PathRules.isValidEnvironmentName(name) else {
            throw AirlockError(
                .usage,
                "--env: '\(name.escapedForMessage)' is not a valid environment variable name; names use ASCII letters, digits and '_' and do not start with a digit"
            )
        }
        return EnvironmentVariable(name, String(text[text.index(after: eq)...]))
    }

    /// `HOST[:PORT[,PORT…]]` as written after `--allow-host`: a host pattern as in a profile's
    /// `network.allow` (`api.example.com`, `*.example.com`, `10.0.0.5`, `10.0.0.0/8`) and,
    /// optionally, its ports (80 and 443 when none are given). An IPv6 address goes in
    /// brackets: `[::1]`, `[::1]:443`, `[fd00::/8]:443`.
    public static func parseAllowHost(_ text: String) throws(AirlockError) -> EgressRule {
        let usage =
            "write HOST or HOST:PORT[,PORT…], e.g. --allow-host api.example.com or --allow-host api.example.com:443,8443 ([::1]:443 for an IPv6 address)"
        func fail(_ why: String) -> AirlockError { AirlockError(.usage, "--allow-host '\(text.escapedForMessage)': \(why); \(usage)") }
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("the '[' of an IPv6 address has no ']'") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if rest.hasPrefix(":") {
                portText = rest.dropFirst()
            } else if !rest.isEmpty {
                throw fail("'\(String(rest).escapedForMessage)' follows the ']'; write [ADDRESS] or [ADDRESS]:PORT")
            }
            if !host.contains(":") { throw fail("brackets are only for IPv6 addresses; write \(String(host).escapedForMessage) without them") }
        } else {
            if text.filter({ $0 == ":" }).count > 1 {
                throw fail("an IPv6 address goes in brackets, e.g. [::1] or [::1]:443")
            }
            if let colon = text.firstIndex(of: ":") {
                host = text[..<colon]
                portText = text[text.index(after: colon)...]
            } else {
                host = text[...]
            }
        }
        if host.isEmpty { throw fail(portText == nil ? "no host given" : "there is no host before the ':'") }
        if let p = EgressRules.hostPatternProblem(String(host)) { throw fail(p) }
        var ports: [Int]?
        if let portText {
            if portText.isEmpty { throw fail("there is no port after the ':'") }
            var list: [Int] = []
            for part in portText.split(separator: ",", omittingEmptySubsequences: false) {
                guard !part.isEmpty, part.utf8.count <= 5, part.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let n = Int(part) else {
                    throw fail("'\(String(part).escapedForMessage)' is not a port number")
                }
                if let p = EgressRules.portProblem(n) { throw fail(p) }
                if !list.contains(n) { list.append(n) }
            }
            ports = list
        }
        return EgressRule(host: String(host), ports: ports)
    }

    /// `DIR[:ro|rw]` as written after `--workspace`. A directory whose name itself ends in
    /// `:ro` can be given as `DIR:ro:rw`.
    public static func parseWorkspace(_ text: String) -> (path: String, mode: WorkspaceMode?) {
        for mode in [WorkspaceMode.ro, .rw] where text.hasSuffix(":" + mode.rawValue) && text.count > 3 {
            return (String(text.dropLast(3)), mode)
        }
        return (text, nil)
    }
}
