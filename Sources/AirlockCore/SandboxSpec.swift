/// Everything the runtime needs to build one sandbox, fully resolved.
///
/// The policy layer produces it (profile + command-line overrides), the runtime
/// consumes it, `airlock run --explain` prints it, and the `sandbox.created`
/// event records it. It holds no secret values.
public struct SandboxSpec: Sendable, Equatable, Codable {
    /// Name of the profile this spec was resolved from.
    public var profile: String
    /// Which isolation technology runs the sandbox ("the runtime is a policy decision").
    public var runtime: RuntimeTier
    /// Argument vector of the command to run; `command[0]` is resolved inside the sandbox's `PATH`.
    public var command: [String]
    /// The complete environment of the command. The host environment is never inherited.
    public var environment: [EnvironmentVariable]
    /// Working directory inside the sandbox.
    public var workingDirectory: String
    public var user: SandboxUser
    public var hostname: String
    public var filesystem: FilesystemSpec
    public var network: NetworkSpec
    public var limits: Limits
    public var syscalls: SyscallProfile
    /// Landlock is a second fence; `required` fails the run where the kernel lacks it.
    public var landlock: Enforcement
    /// cgroup limits; `required` fails the run where cgroups cannot be used (rootless without delegation).
    public var cgroups: Enforcement
    /// Resource sampling and the alert rules evaluated on it (none by default: no sampling).
    public var monitor: MonitorSpec
    /// Credentials bound to the sandbox (placeholders in its environment, real values
    /// injected by the egress gateway).
    public var secrets: [SecretBinding]

    public init(
        profile: String, runtime: RuntimeTier = .namespace, command: [String],
        environment: [EnvironmentVariable] = [], workingDirectory: String = "/workspace",
        user: SandboxUser = .agent, hostname: String = "airlock", filesystem: FilesystemSpec = .init(),
        network: NetworkSpec = .init(), limits: Limits = .init(), syscalls: SyscallProfile = .default,
        landlock: Enforcement = .bestEffort, cgroups: Enforcement = .bestEffort, monitor: MonitorSpec = .init(),
        secrets: [SecretBinding] = []
    ) {
        self.profile = profile
        self.runtime = runtime
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
        self.hostname = hostname
        self.filesystem = filesystem
        self.network = network
        self.limits = limits
        self.syscalls = syscalls
        self.landlock = landlock
        self.cgroups = cgroups
        self.monitor = monitor
        self.secrets = secrets
    }
}

public enum RuntimeTier: String, Sendable, Codable, CaseIterable {
    /// Linux namespaces, seccomp, Landlock, cgroups (this host's kernel).
    case namespace
    /// One VM per sandbox (not available in this build: refused with a clear error).
    case microvm
    /// A Pod on a Kubernetes cluster (not available in this build: refused with a clear error).
    case kubernetes
}

public enum Enforcement: String, Sendable, Codable, CaseIterable {
    /// Apply where the host supports it; where it does not, say so loudly and record it.
    case bestEffort = "best-effort"
    /// Refuse to run where the host cannot apply it.
    case required
}

public enum SyscallProfile: String, Sendable, Codable, CaseIterable {
    /// The reviewed deny table (docs/seccomp.md): dangerous calls fail with EPERM.
    case `default`
    /// The default table plus calls ordinary programs rarely need (e.g. `chroot`, `acct`, `vhangup`);
    /// used by the `untrusted` profile.
    case strict
}

public struct EnvironmentVariable: Sendable, Equatable, Codable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The identity the command runs as inside the sandbox.
public struct SandboxUser: Sendable, Equatable, Codable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var home: String

    public init(name: String, uid: UInt32, gid: UInt32, home: String) {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home
    }

    /// The default: an unprivileged `agent` user with its home on a tmpfs.
    public static let agent = SandboxUser(name: "agent", uid: 1000, gid: 1000, home: "/home/agent")
    /// Root inside the sandbox's user namespace (still no capability outside it). Only when a profile asks.
    public static let root = SandboxUser(name: "root", uid: 0, gid: 0, home: "/root")
}

public struct FilesystemSpec: Sendable, Equatable, Codable {
    /// The host directory mounted at `/workspace`, or nil for none.
    public var workspace: WorkspaceGrant?
    /// Extra bind mounts granted by the profile or `--mount`.
    public var mounts: [MountGrant]
    /// The disk budget of the sandbox: the size of the one scratch tmpfs that holds
    /// `/tmp`, `$HOME` and `/dev/shm` together.
    public var tmpSize: UInt64
    /// Host `/etc` entries made visible (read-only). Everything else in `/etc` is absent.
    public var etcEntries: [String]
    /// System trees bound read-only from the host (`/usr`, `/bin`, `/lib*`, `/sbin`, …).
    public var systemPaths: [String]

    public init(
        workspace: WorkspaceGrant? = nil, mounts: [MountGrant] = [], tmpSize: UInt64 = 1 << 30,
        etcEntries: [String] = FilesystemSpec.defaultEtc,
        systemPaths: [String] = FilesystemSpec.defaultSystemPaths
    ) {
        self.workspace = workspace
        self.mounts = mounts
        self.tmpSize = tmpSize
        self.etcEntries = etcEntries
        self.systemPaths = systemPaths
    }

    public static let defaultSystemPaths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"]

    /// What ordinary programs need from `/etc` to run: the dynamic loader's cache, name-service
    /// configuration without secrets, TLS roots, time zone, alternatives symlinks. No `shadow`,
    /// `gshadow`, `ssh`, `sudoers`, machine credentials or host-specific configuration.
    /// `passwd`, `group`, `hosts`, `hostname` and `resolv.conf` are generated for the sandbox.
    public static let defaultEtc = [
        "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl", "ca-certificates",
        "ca-certificates.conf", "localtime", "timezone", "nsswitch.conf", "host.conf", "gai.conf",
        "protocols", "services", "mime.types", "os-release", "debian_version", "lsb-release",
        "terminfo", "inputrc", "magic", "magic.mime", "profile", "bash.bashrc", "environment",
        "locale.alias", "locale.gen", "python3", "python3.11", "perl", "gitconfig.d", "xdg", "manpath.config",
    ]
}

public struct WorkspaceGrant: Sendable, Equatable, Codable {
    /// Absolute host path (resolved, no symlinks).
    public var hostPath: String
    public var readOnly: Bool
    /// Paths relative to the workspace that stay read-only even when it is writable.
    public var denyWrite: [String]

    public init(hostPath: String, readOnly: Bool, denyWrite: [String] = WorkspaceGrant.mandatoryDeny) {
        self.hostPath = hostPath
        self.readOnly = readOnly
        self.denyWrite = denyWrite
    }

    /// Top-level workspace entries a planted copy of which would run code later on the
    /// host: git metadata (`core.fsmonitor`, hooks, `commondir`, …: the whole `.git` is
    /// read-only, as in Codex's sandbox), shell start-up files, editor, dev-container and
    /// coding-agent configuration that executes commands, direnv, npm/yarn rc files.
    /// A name ending in `/` is a directory. Every entry that exists is bound read-only.
    /// Entries are top-level only: a bind on a nested path could be sidestepped by
    /// renaming its parent, but the workspace root is itself a mount and cannot be renamed.
    public static let mandatoryDeny = [
        ".git", ".gitmodules", ".gitconfig", ".envrc", ".npmrc", ".yarnrc", ".yarnrc.yml", ".pypirc",
        ".vscode/", ".idea/", ".devcontainer/", ".claude/", ".mcp.json", ".cursor/",
        ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc", ".zshenv",
        ".zprofile", ".zlogin", ".zlogout", ".cshrc", ".tcshrc", ".login", ".kshrc", ".inputrc",
        ".ssh/", ".gnupg/", ".config/", ".local/",
    ]

    /// Entries that tools run code from *in a project directory* (git, editors, dev
    /// containers, coding agents, direnv, npm/yarn). When one is missing, the runner
    /// creates an empty placeholder directory for it (git does not see empty
    /// directories; a directory where a file is expected still blocks the file) and
    /// binds that read-only, so the sandbox cannot plant it either; the last run using
    /// the workspace removes the placeholders. Shell start-up files and the like only
    /// matter in a home directory, which can never be a workspace, so they are
    /// protected when present and not pre-created.
    public static let protectEvenIfMissing: Set<String> = [
        ".git", ".envrc", ".npmrc", ".yarnrc", ".yarnrc.yml",
        ".vscode/", ".idea/", ".devcontainer/", ".claude/", ".mcp.json", ".cursor/",
    ]

    /// The entries the runner must pre-create when missing: the built-in set plus every
    /// entry a profile added to `deny`.
    public var placeholderEntries: [String] {
        denyWrite.filter { Self.protectEvenIfMissing.contains($0) || !Self.mandatoryDeny.contains($0) }
    }
}

public struct MountGrant: Sendable, Equatable, Codable {
    public var source: String
    public var destination: String
    public var readOnly: Bool

    public init(source: String, destination: String, readOnly: Bool) {
        self.source = source
        self.destination = destination
        self.readOnly = readOnly
    }
}

public struct NetworkSpec: Sendable, Equatable, Codable {
    public enum Mode: String, Sendable, Codable, CaseIterable {
        /// Loopback only; no route anywhere.
        case none
        /// Loopback only, plus the egress gateway: PID 1 listens on `127.0.0.1:<proxyPort>`
        /// (and `[::1]`) and forwards every connection to the gateway's airlock socket,
        /// which decides it under `allow`, `deny`, `inspectTLS`, `budgets` and DLP.
        case proxied
    }
    public var mode: Mode
    /// Destinations the gateway lets through; everything else is refused.
    public var allow: [EgressRule]
    /// Destinations refused even when an allow rule matches (deny wins).
    public var deny: [EgressRule]
    /// Host patterns whose HTTPS the gateway terminates with the sandbox's own CA, so that
    /// method and path rules, DLP of bodies and credential injection apply to them.
    public var inspectTLS: [String]
    public var budgets: EgressBudgets
    /// What a DLP hit does to a request.
    public var dlp: DLPAction
    /// Fixed name resolution for the gateway (like `/etc/hosts` or curl's `--resolve`):
    /// host name → addresses. Pinned names are not looked up in DNS. Address checks still apply.
    public var hosts: [String: [String]]
    /// A PEM file of CA certificates the gateway trusts for upstream TLS instead of the
    /// system trust store (a private PKI, or tests).
    public var upstreamCAFile: String?
    /// The port PID 1 listens on inside the sandbox's loopback.
    public var proxyPort: Int

    public init(
        mode: Mode = .none, allow: [EgressRule] = [], deny: [EgressRule] = [], inspectTLS: [String] = [],
        budgets: EgressBudgets = .init(), dlp: DLPAction = .block, hosts: [String: [String]] = [:],
        upstreamCAFile: String? = nil, proxyPort: Int = NetworkSpec.defaultProxyPort
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

    public static let defaultProxyPort = 3128
}

/// One allow or deny rule of the egress gateway (docs/egress.md, "Rules").
public struct EgressRule: Sendable, Equatable, Codable {
    /// `example.com` (exactly that host), `*.example.com` (any subdomain, never the apex),
    /// an IP literal (`10.0.0.5`, `::1`) or a CIDR block (`10.0.0.0/8`). Matching is
    /// case-insensitive and ignores a trailing dot; IP literals are canonicalised first.
    public var host: String
    /// Destination ports; nil means 80 and 443.
    public var ports: [Int]?
    /// HTTP methods (upper case); nil means any. Only decidable for plain HTTP and
    /// inspected HTTPS: a CONNECT to a host with method rules needs `inspect_tls`.
    public var methods: [String]?
    /// Path glob patterns (`*` matches within a segment, `**` across segments); nil means any.
    public var paths: [String]?

    public init(host: String, ports: [Int]? = nil, methods: [String]? = nil, paths: [String]? = nil) {
        self.host = host
        self.ports = ports
        self.methods = methods
        self.paths = paths
    }

    public static let defaultPorts = [80, 443]
    /// The rule as written in events and refusal messages (`host[:ports] [methods] [paths]`).
    public var label: String {
        var s = host
        if let ports { s += ":" + ports.map(String.init).joined(separator: ",") }
        if let methods { s += " " + methods.joined(separator: ",") }
        if let paths { s += " " + paths.joined(separator: ",") }
        return s
    }
}

public struct EgressBudgets: Sendable, Equatable, Codable {
    /// Request bytes (headers and bodies, tunnelled bytes included) sent upstream.
    public var bytesOut: UInt64?
    /// Response bytes received from upstream.
    public var bytesIn: UInt64?
    /// Requests (and CONNECT tunnels) in any sliding 60-second window.
    public var requestsPerMinute: Int?

    public init(bytesOut: UInt64? = nil, bytesIn: UInt64? = nil, requestsPerMinute: Int? = nil) {
        self.bytesOut = bytesOut
        self.bytesIn = bytesIn
        self.requestsPerMinute = requestsPerMinute
    }
}

public enum DLPAction: String, Sendable, Codable, CaseIterable {
    /// Refuse the request with 403 and record the finding (default).
    case block
    /// Replace each finding with `[REDACTED:<rule>]`, forward, and record it.
    case redact
}

/// A credential the sandbox may use without holding it (docs/egress.md, "Credentials").
/// The spec names where the value comes from, never the value.
public struct SecretBinding: Sendable, Equatable, Codable {
    /// The environment variable the sandbox sees.
    public var name: String
    /// `env:NAME` (airlock's environment) or `file:PATH` (first line of a file).
    public var source: String
    /// Where the gateway puts the real value. With an injection the sandbox sees only a
    /// placeholder; without one it sees the value itself, and the gateway's DLP refuses
    /// to let it leave.
    public var inject: SecretInjection?

    public init(name: String, source: String, inject: SecretInjection? = nil) {
        self.name = name
        self.source = source
        self.inject = inject
    }
}

public struct SecretInjection: Sendable, Equatable, Codable {
    /// Exact host (or `*.` pattern) the real value is sent to.
    public var host: String
    /// Header that carries it, e.g. `Authorization`.
    public var header: String
    /// The header's value, with `{}` standing for the secret, e.g. `Bearer {}`.
    public var format: String

    public init(host: String, header: String, format: String = "{}") {
        self.host = host
        self.header = header
        self.format = format
    }
}

public struct Limits: Sendable, Equatable, Codable {
    /// Wall-clock time after which the whole sandbox is killed.
    public var wallClock: Duration?
    /// Memory limit, swap included.
    public var memoryBytes: UInt64?
    /// CPU quota in cores (1.5 = one and a half cores).
    public var cpus: Double?
    /// Maximum number of processes and threads.
    public var pids: Int?
    /// Maximum open files per process (RLIMIT_NOFILE).
    public var openFiles: Int
    /// Largest file a process may write (RLIMIT_FSIZE), nil for unbounded.
    public var fileSize: UInt64?

    public init(
        wallClock: Duration? = nil, memoryBytes: UInt64? = nil, cpus: Double? = nil, pids: Int? = nil,
        openFiles: Int = 4096, fileSize: UInt64? = nil
    ) {
        self.wallClock = wallClock
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
        self.openFiles = openFiles
        self.fileSize = fileSize
    }
}

/// How a sandbox is watched while it runs: its cgroup sampled every `interval`, and each
/// sample checked against `alerts` (docs/policy.md, "alerts"). No rules, no sampling.
public struct MonitorSpec: Sendable, Equatable, Codable {
    /// Time between two samples.
    public var interval: Duration
    public var alerts: [AlertRule]

    public init(interval: Duration = MonitorSpec.defaultInterval, alerts: [AlertRule] = []) {
        self.interval = interval
        self.alerts = alerts
    }

    public static let defaultInterval: Duration = .seconds(1)
    /// The shortest and longest sampling intervals a profile may ask for.
    public static let intervalRange: ClosedRange<Duration> = .milliseconds(100) ... .seconds(60)
}

/// One alert rule: a condition on the sandbox's resource use, and what to do when it holds.
/// Each rule fires at most once per run.
public struct AlertRule: Sendable, Equatable, Codable {
    /// Unique within a profile; recorded as the decision's rule.
    public var name: String
    public var condition: AlertCondition
    public var action: AlertAction

    public init(name: String, condition: AlertCondition, action: AlertAction = .alert) {
        self.name = name
        self.condition = condition
        self.action = action
    }
}

public enum AlertAction: String, Sendable, Codable, CaseIterable {
    /// Record an `alert.fired` event; the sandbox keeps running.
    case alert
    /// Record the event, then end the run the way a limit does (exit status 124).
    case stop
}

public enum AlertCondition: Sendable, Equatable, Codable {
    /// CPU use above `percent` of the sandbox's CPU quota (`limits.cpus`; one core when the
    /// sandbox has no CPU limit), measured over each sampling interval, for at least `duration`.
    case cpu(percent: Double, for: Duration)
    /// Memory in use (the cgroup's count, page cache included) above the threshold for at least `duration`.
    case memory(MemoryThreshold, for: Duration)
    /// More than `count` processes and threads for at least `duration`.
    case pidsAbove(Int, for: Duration)
    /// The number of processes and threads grew by at least `count` within `window`.
    case pidsIncrease(Int, within: Duration)
    /// A process runs an executable whose path (as seen inside the sandbox) matches none of
    /// these glob patterns (`fnmatch` with `FNM_PATHNAME`: `*` does not cross `/`).
    case exec(allow: [String])

    /// The metric the condition reads: `cpu`, `memory`, `pids` or `exec`.
    public var metric: String {
        switch self {
        case .cpu: "cpu"
        case .memory: "memory"
        case .pidsAbove, .pidsIncrease: "pids"
        case .exec: "exec"
        }
    }
}

public enum MemoryThreshold: Sendable, Equatable, Codable {
    case bytes(UInt64)
    /// Percent of the sandbox's memory limit (a limit is then required).
    case percent(Double)
}
