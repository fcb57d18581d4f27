import Foundation

/// The control plane's durable state: tokens, sandboxes and sealed objects (persisted
/// workspaces and snapshots, with their wrapped keys).
///
/// One protocol, so that a PostgreSQL backend can serve several hosts: every record says
/// which host runs it (`SandboxRecord.host`), every write is one transaction, and nothing
/// above this layer speaks SQL. ``SQLiteStore`` (GRDB, WAL) is the embedded default.
public protocol ControlStore: Sendable {
    func insertToken(_ token: TokenRecord) throws
    func token(id: String) throws -> TokenRecord?
    func tokens() throws -> [TokenRecord]
    /// Marks a token revoked; false if there is no such token.
    func revokeToken(id: String, at: Date) throws -> Bool

    func insertSandbox(_ sandbox: SandboxRecord) throws
    func updateSandbox(_ sandbox: SandboxRecord) throws
    /// Removes the record of a sandbox that never came to be (its creation failed).
    func deleteSandbox(id: String) throws
    func sandbox(id: String) throws -> SandboxRecord?
    /// Every sandbox of `host` (all hosts when nil), newest first.
    func sandboxes(host: String?) throws -> [SandboxRecord]

    func insertSealed(_ object: SealedRecord) throws
    func sealed(id: String) throws -> SealedRecord?
    func sealedObjects(kind: SealedRecord.Kind) throws -> [SealedRecord]
    /// Deletes the record and with it the only copy of its wrapped key, so that nothing in
    /// the store can decrypt the object afterwards (the deleted bytes are overwritten and
    /// the write-ahead log truncated). Returns the deleted record.
    func eraseSealed(id: String) throws -> SealedRecord?
}

public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    case viewer
    case `operator`
    case admin

    var rank: Int {
        switch self {
        case .viewer: 0
        case .operator: 1
        case .admin: 2
        }
    }

    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

public struct TokenRecord: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var role: Role
    /// SHA-256 of the whole token; the token itself is never stored.
    public var hash: Data
    public var createdAt: Date
    public var expiresAt: Date
    public var revokedAt: Date?
    /// Who created it (`local`, `token:<id>`, `cli:uid=0`).
    public var createdBy: String

    public init(id: String, name: String, role: Role, hash: Data, createdAt: Date, expiresAt: Date, revokedAt: Date? = nil, createdBy: String) {
        self.id = id
        self.name = name
        self.role = role
        self.hash = hash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.createdBy = createdBy
    }
}

public enum SandboxState: String, Codable, Sendable {
    case running
    /// Contained: every process frozen, kept for inspection until deleted.
    case frozen
    case stopped
}

public struct SandboxRecord: Codable, Sendable, Equatable {
    public var id: String
    /// The host that runs it (this daemon's hostname).
    public var host: String
    public var profile: String
    public var labels: [String: String]
    public var state: SandboxState
    public var stopReason: String?
    public var createdAt: Date
    public var stoppedAt: Date?
    public var ttlSeconds: Double
    public var idleTimeoutSeconds: Double?
    public var maxExecs: Int?
    public var execCount: Int
    public var lastActivityAt: Date
    /// The resolved `SandboxSpec`, JSON (no secret values).
    public var spec: String
    /// The sandbox's workspace on the host (a tmpfs mount when the daemon runs as root).
    public var workspacePath: String?
    public var workspaceMounted: Bool
    /// The sandbox's airlock directory (egress socket), when its network is proxied.
    public var airlockDirectory: String?
    /// Its cgroup directories, for recovery after a crash.
    public var cgroupDirectories: [String]
    public var helperPID: Int32?
    public var persist: Bool
    /// The sealed workspace it was started from or sealed into.
    public var workspaceID: String?
    /// Who created it.
    public var principal: String
    /// The last usage sample (JSON object), kept when it stops.
    public var usage: String?

    public init(
        id: String, host: String, profile: String, labels: [String: String], state: SandboxState, stopReason: String? = nil,
        createdAt: Date, stoppedAt: Date? = nil, ttlSeconds: Double, idleTimeoutSeconds: Double? = nil, maxExecs: Int? = nil,
        execCount: Int = 0, lastActivityAt: Date, spec: String, workspacePath: String? = nil, workspaceMounted: Bool = false,
        airlockDirectory: String? = nil, cgroupDirectories: [String] = [], helperPID: Int32? = nil, persist: Bool = false,
        workspaceID: String? = nil, principal: String, usage: String? = nil
    ) {
        self.id = id
        self.host = host
        self.profile = profile
        self.labels = labels
        self.state = state
        self.stopReason = stopReason
        self.createdAt = createdAt
        self.stoppedAt = stoppedAt
        self.ttlSeconds = ttlSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxExecs = maxExecs
        self.execCount = execCount
        self.lastActivityAt = lastActivityAt
        self.spec = spec
        self.workspacePath = workspacePath
        self.workspaceMounted = workspaceMounted
        self.airlockDirectory = airlockDirectory
        self.cgroupDirectories = cgroupDirectories
        self.helperPID = helperPID
        self.persist = persist
        self.workspaceID = workspaceID
        self.principal = principal
        self.usage = usage
    }
}

/// An encrypted object at rest: a persisted workspace or a forensic snapshot. The data key
/// is wrapped (AES key wrap, RFC 3394) by the daemon's master key and lives only here.
public struct SealedRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case workspace
        case snapshot
    }

    public var id: String
    public var kind: Kind
    public var sandbox: String
    public var createdAt: Date
    /// Size of the plaintext archive.
    public var size: Int64
    public var wrappedKey: Data
    /// The ciphertext file, relative to the state directory.
    public var path: String
    /// Kind-specific details, JSON (a snapshot's reason, processes, links, revocations).
    public var meta: String

    public init(id: String, kind: Kind, sandbox: String, createdAt: Date, size: Int64, wrappedKey: Data, path: String, meta: String) {
        self.id = id
        self.kind = kind
        self.sandbox = sandbox
        self.createdAt = createdAt
        self.size = size
        self.wrappedKey = wrappedKey
        self.path = path
        self.meta = meta
    }
}
