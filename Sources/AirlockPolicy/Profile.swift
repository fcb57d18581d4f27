import AirlockCore

/// How the workspace is granted: read-write, read-only, or not at all.
public enum WorkspaceMode: String, Sendable, Equatable, CaseIterable {
    case rw
    case ro
    case none
}

/// One profile as written in a policy file: every field optional, so that `extends`
/// can tell "not given" (inherit) from "given". See ``Policy`` for the format.
public struct Profile: Sendable, Equatable {
    /// One line for `airlock profiles`. Not inherited.
    public var description: String?
    /// The profile this one is based on. A flattened profile (``Policy/flatten(_:in:)``) has none.
    public var extends: String?
    public var runtime: RuntimeTier?
    /// ``SandboxUser/agent`` or ``SandboxUser/root``.
    public var user: SandboxUser?
    public var filesystem: Filesystem
    public var network: Network
    public var environment: Environment
    public var limits: Limits
    public var syscalls: SyscallProfile?
    public var landlock: Enforcement?
    public var cgroups: Enforcement?
    /// Alert rules, in the order written. A child's rules add to its parent's; a child rule
    /// with the name of a parent's rule replaces it (in the parent's place).
    public var alerts: [AlertRule]?
    /// Time between two resource samples (`monitor.interval`).
    public var monitorInterval: Duration?
    /// Credentials bound to the sandbox, in the order written. A child's bindings add to its
    /// parent's; a child binding with the name of a parent's replaces it (in the parent's place).
    public var secrets: [SecretBinding]?

    public init(
        description: String? = nil, extends: String? = nil, runtime: RuntimeTier? = nil,
        user: SandboxUser? = nil, filesystem: Filesystem = .init(), network: Network = .init(),
        environment: Environment = .init(), limits: Limits = .init(), syscalls: SyscallProfile? = nil,
        landlock: Enforcement? = nil, cgroups: Enforcement? = nil, alerts: [AlertRule]? = nil,
        monitorInterval: Duration? = nil, secrets: [SecretBinding]? = nil
    ) {
        self.description = description
        self.extends = extends
        self.runtime = runtime
        self.user = user
        self.filesystem = filesystem
        self.network = network
        self.environment = environment
        self.limits = limits
        self.syscalls = syscalls
        self.landlock = landlock
        self.cgroups = cgroups
        self.alerts = alerts
        self.monitorInterval = monitorInterval
        self.secrets = secrets
    }

    public struct Filesystem: Sendable, Equatable {
        public var workspace: WorkspaceMode?
        /// Added to ``WorkspaceGrant/mandatoryDeny`` (never replacing it); adds to the parent's.
        public var deny: [String]?
        /// Replaces the parent's list.
        public var mounts: [MountGrant]?
        /// The scratch budget in bytes (`/tmp`, `$HOME` and `/dev/shm` together); the same
        /// budget as ``Limits/disk``.
        public var tmpSize: UInt64?
        /// Added to ``FilesystemSpec/defaultEtc``; adds to the parent's.
        public var etc: [String]?

        public init(
            workspace: WorkspaceMode? = nil, deny: [String]? = nil, mounts: [MountGrant]? = nil,
            tmpSize: UInt64? = nil, etc: [String]? = nil
        ) {
            self.workspace = workspace
            self.deny = deny
            self.mounts = mounts
            self.tmpSize = tmpSize
            self.etc = etc
        }
    }

    /// The `network:` section (docs/policy.md, "Network").
    public struct Network: Sendable, Equatable {
        public var mode: NetworkSpec.Mode?
        /// Adds to the parent's.
        public var allow: [EgressRule]?
        /// Adds to the parent's.
        public var deny: [EgressRule]?
        /// Adds to the parent's.
        public var inspectTLS: [String]?
        /// Each budget the child gives overrides the parent's.
        public var budgets: EgressBudgets
        public var dlp: DLPAction?
        /// Merged name by name; the child's addresses for a name replace the parent's.
        public var hosts: [String: [String]]?
        public var upstreamCAFile: String?
        public var proxyPort: Int?

        public init(
            mode: NetworkSpec.Mode? = nil, allow: [EgressRule]? = nil, deny: [EgressRule]? = nil, inspectTLS: [String]? = nil,
            budgets: EgressBudgets = .init(), dlp: DLPAction? = nil, hosts: [String: [String]]? = nil,
            upstreamCAFile: String? = nil, proxyPort: Int? = nil
        ) {
            self.mode = mode
            self.allow = allow
            self.deny = deny
            self.inspectTLS = inspectTLS
            self.budgets = budgets
            self.dlp = dlp
            self.hosts = hosts
            self.upstreamCAFile = upstreamCAFile
            self.proxyPort = proxyPort
        }
    }

    public struct Environment: Sendable, Equatable {
        /// Names copied from the host environment when set there. Replaces the parent's list.
        public var pass: [String]?
        /// Fixed values, in the order written; a child's keys override the parent's.
        public var set: [EnvironmentVariable]?

        public init(pass: [String]? = nil, set: [EnvironmentVariable]? = nil) {
            self.pass = pass
            self.set = set
        }
    }

    public struct Limits: Sendable, Equatable {
        public var wallClock: Duration?
        public var memory: UInt64?
        public var cpus: Double?
        public var pids: Int?
        /// Size of `/tmp` in bytes; the same budget as ``Filesystem/tmpSize``.
        public var disk: UInt64?
        public var openFiles: Int?
        public var fileSize: UInt64?

        public init(
            wallClock: Duration? = nil, memory: UInt64? = nil, cpus: Double? = nil, pids: Int? = nil,
            disk: UInt64? = nil, openFiles: Int? = nil, fileSize: UInt64? = nil
        ) {
            self.wallClock = wallClock
            self.memory = memory
            self.cpus = cpus
            self.pids = pids
            self.disk = disk
            self.openFiles = openFiles
            self.fileSize = fileSize
        }
    }

    /// The `/tmp` budget, from whichever of `limits.disk` and `filesystem.tmp_size` is given.
    public var diskBudget: UInt64? { limits.disk ?? filesystem.tmpSize }

    /// `child` laid over `parent`, field by field: a field the child gives wins; mappings merge
    /// key by key; lists replace, except `filesystem.deny`, `filesystem.etc`, `network.allow`,
    /// `network.deny` and `network.inspect_tls`, which add to the parent's, and `alerts` and
    /// `secrets`, which add to the parent's by name. `description` is the child's alone and
    /// `extends` is dropped (the result is flat).
    public static func merge(parent: Profile, child: Profile) -> Profile {
        var m = Profile()
        m.description = child.description
        m.extends = nil
        m.runtime = child.runtime ?? parent.runtime
        m.user = child.user ?? parent.user
        m.network = Network.merge(parent: parent.network, child: child.network)
        m.secrets = mergingSecrets(parent.secrets, child.secrets)
        m.syscalls = child.syscalls ?? parent.syscalls
        m.landlock = child.landlock ?? parent.landlock
        m.cgroups = child.cgroups ?? parent.cgroups
        m.alerts = mergingRules(parent.alerts, child.alerts)
        m.monitorInterval = child.monitorInterval ?? parent.monitorInterval

        let (pf, cf) = (parent.filesystem, child.filesystem)
        m.filesystem.workspace = cf.workspace ?? pf.workspace
        m.filesystem.deny = adding(pf.deny, cf.deny)
        m.filesystem.mounts = cf.mounts ?? pf.mounts
        m.filesystem.etc = adding(pf.etc, cf.etc)

        m.environment.pass = child.environment.pass ?? parent.environment.pass
        m.environment.set = overriding(parent.environment.set, child.environment.set)

        let (pl, cl) = (parent.limits, child.limits)
        m.limits.wallClock = cl.wallClock ?? pl.wallClock
        m.limits.memory = cl.memory ?? pl.memory
        m.limits.cpus = cl.cpus ?? pl.cpus
        m.limits.pids = cl.pids ?? pl.pids
        m.limits.openFiles = cl.openFiles ?? pl.openFiles
        m.limits.fileSize = cl.fileSize ?? pl.fileSize
        // `disk` and `tmp_size` are two names for one budget: whichever the child gives
        // overrides whichever the parent gave, and the flat profile carries it under both.
        let disk = child.diskBudget ?? parent.diskBudget
        m.limits.disk = disk
        m.filesystem.tmpSize = disk
        return m
    }

    static func adding<T: Equatable>(_ parent: [T]?, _ child: [T]?) -> [T]? {
        guard parent != nil || child != nil else { return nil }
        var out: [T] = []
        for item in (parent ?? []) + (child ?? []) where !out.contains(item) { out.append(item) }
        return out
    }

    /// The parent's bindings, each replaced by the child's binding of the same name, then the child's others.
    static func mergingSecrets(_ parent: [SecretBinding]?, _ child: [SecretBinding]?) -> [SecretBinding]? {
        guard let child else { return parent }
        var out = parent ?? []
        for b in child {
            if let i = out.firstIndex(where: { $0.name == b.name }) { out[i] = b } else { out.append(b) }
        }
        return out
    }

    /// The parent's rules, each replaced by the child's rule of the same name, then the child's others.
    static func mergingRules(_ parent: [AlertRule]?, _ child: [AlertRule]?) -> [AlertRule]? {
        guard let child else { return parent }
        var out = parent ?? []
        for rule in child {
            if let i = out.firstIndex(where: { $0.name == rule.name }) { out[i] = rule } else { out.append(rule) }
        }
        return out
    }

    static func overriding(_ parent: [EnvironmentVariable]?, _ child: [EnvironmentVariable]?) -> [EnvironmentVariable]? {
        guard let child else { return parent }
        var out = parent ?? []
        for v in child { out.upsert(v) }
        return out
    }
}

extension Profile.Network {
    /// Mode and the other single values: the child's when given. `allow`, `deny` and
    /// `inspect_tls` add to the parent's; budgets override one by one; `hosts` merge name by name.
    public static func merge(parent p: Profile.Network, child c: Profile.Network) -> Profile.Network {
        var m = Profile.Network()
        m.mode = c.mode ?? p.mode
        m.allow = Profile.adding(p.allow, c.allow)
        m.deny = Profile.adding(p.deny, c.deny)
        m.inspectTLS = Profile.adding(p.inspectTLS, c.inspectTLS)
        m.budgets = EgressBudgets(
            bytesOut: c.budgets.bytesOut ?? p.budgets.bytesOut, bytesIn: c.budgets.bytesIn ?? p.budgets.bytesIn,
            requestsPerMinute: c.budgets.requestsPerMinute ?? p.budgets.requestsPerMinute)
        m.dlp = c.dlp ?? p.dlp
        if p.hosts != nil || c.hosts != nil {
            m.hosts = (p.hosts ?? [:]).merging(c.hosts ?? [:]) { _, child in child }
        }
        m.upstreamCAFile = c.upstreamCAFile ?? p.upstreamCAFile
        m.proxyPort = c.proxyPort ?? p.proxyPort
        return m
    }
}

extension Array where Element == EnvironmentVariable {
    /// Replaces the value of a variable already present (keeping its place) or appends it.
    mutating func upsert(_ v: EnvironmentVariable) {
        if let i = firstIndex(where: { $0.name == v.name }) {
            self[i].value = v.value
        } else {
            append(v)
        }
    }
}
