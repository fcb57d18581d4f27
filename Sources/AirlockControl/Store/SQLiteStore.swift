import AirlockAudit
import Foundation
import GRDB

/// The embedded store: one SQLite file in the state directory, WAL, migrations, and
/// `secure_delete` so that an erased key leaves no bytes behind in the file.
public final class SQLiteStore: ControlStore {
    private let pool: DatabasePool

    public init(path: String) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA secure_delete = ON")
            // WAL + NORMAL: a commit survives the daemon's crash (kill -9); only a power loss
            // may roll back the last transactions, never corrupt the file. FULL would fsync
            // on every commit, which costs milliseconds per sandbox.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        config.busyMode = .timeout(5)
        pool = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(pool)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.create(table: "token") { t in
                t.primaryKey("id", .text)
                t.column("name", .text).notNull()
                t.column("role", .text).notNull()
                t.column("hash", .blob).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("expiresAt", .datetime).notNull()
                t.column("revokedAt", .datetime)
                t.column("createdBy", .text).notNull()
            }
            try db.create(table: "sandbox") { t in
                t.primaryKey("id", .text)
                t.column("host", .text).notNull().indexed()
                t.column("profile", .text).notNull()
                t.column("labels", .text).notNull()
                t.column("state", .text).notNull().indexed()
                t.column("stopReason", .text)
                t.column("createdAt", .datetime).notNull()
                t.column("stoppedAt", .datetime)
                t.column("ttlSeconds", .double).notNull()
                t.column("idleTimeoutSeconds", .double)
                t.column("maxExecs", .integer)
                t.column("execCount", .integer).notNull()
                t.column("lastActivityAt", .datetime).notNull()
                t.column("spec", .text).notNull()
                t.column("workspacePath", .text)
                t.column("workspaceMounted", .boolean).notNull()
                t.column("airlockDirectory", .text)
                t.column("cgroupDirectories", .text).notNull()
                t.column("helperPID", .integer)
                t.column("persist", .boolean).notNull()
                t.column("workspaceID", .text)
                t.column("principal", .text).notNull()
                t.column("usage", .text)
            }
            try db.create(table: "sealed") { t in
                t.primaryKey("id", .text)
                t.column("kind", .text).notNull().indexed()
                t.column("sandbox", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("size", .integer).notNull()
                t.column("wrappedKey", .blob).notNull()
                t.column("path", .text).notNull()
                t.column("meta", .text).notNull()
            }
        }
        return m
    }

    public func insertToken(_ token: TokenRecord) throws { try pool.write { try token.insert($0) } }
    public func token(id: String) throws -> TokenRecord? { try pool.read { try TokenRecord.fetchOne($0, key: id) } }
    public func tokens() throws -> [TokenRecord] {
        try pool.read { try TokenRecord.order(Column("createdAt").desc).fetchAll($0) }
    }
    public func revokeToken(id: String, at: Date) throws -> Bool {
        try pool.write { db in
            guard var t = try TokenRecord.fetchOne(db, key: id) else { return false }
            if t.revokedAt == nil {
                t.revokedAt = at
                try t.update(db)
            }
            return true
        }
    }

    public func insertSandbox(_ sandbox: SandboxRecord) throws { try pool.write { try sandbox.insert($0) } }
    public func updateSandbox(_ sandbox: SandboxRecord) throws { try pool.write { try sandbox.update($0) } }
    public func deleteSandbox(id: String) throws { _ = try pool.write { try SandboxRecord.deleteOne($0, key: id) } }
    public func sandbox(id: String) throws -> SandboxRecord? { try pool.read { try SandboxRecord.fetchOne($0, key: id) } }
    public func sandboxes(host: String?) throws -> [SandboxRecord] {
        try pool.read { db in
            var q = SandboxRecord.order(Column("createdAt").desc)
            if let host { q = q.filter(Column("host") == host) }
            return try q.fetchAll(db)
        }
    }

    public func insertSealed(_ object: SealedRecord) throws { try pool.write { try object.insert($0) } }
    public func sealed(id: String) throws -> SealedRecord? { try pool.read { try SealedRecord.fetchOne($0, key: id) } }
    public func sealedObjects(kind: SealedRecord.Kind) throws -> [SealedRecord] {
        try pool.read { try SealedRecord.filter(Column("kind") == kind.rawValue).order(Column("createdAt").desc).fetchAll($0) }
    }
    public func eraseSealed(id: String) throws -> SealedRecord? {
        let record = try pool.write { db -> SealedRecord? in
            guard let r = try SealedRecord.fetchOne(db, key: id) else { return nil }
            try r.delete(db)
            return r
        }
        // The WAL still holds the page with the key until a checkpoint copies the (zeroed)
        // page into the database file and the log is truncated.
        try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        return record
    }
}

extension TokenRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "token"
}

/// Written and read column by column rather than through `Codable` (which encoded every
/// field through a keyed container and was a visible part of a create's cost). The format is
/// the one `Codable` wrote: labels and cgroup directories as JSON text, dates as GRDB's
/// datetime text, the state as its raw value.
extension SandboxRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "sandbox"

    public init(row: Row) throws {
        let state: String = row["state"]
        guard let s = SandboxState(rawValue: state) else {
            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "sandbox \(row["id"] as String? ?? "?") has an unknown state '\(state)'")
        }
        self.init(
            id: row["id"], host: row["host"], profile: row["profile"], labels: try Self.stringMap(row["labels"]), state: s,
            stopReason: row["stopReason"], createdAt: row["createdAt"], stoppedAt: row["stoppedAt"], ttlSeconds: row["ttlSeconds"],
            idleTimeoutSeconds: row["idleTimeoutSeconds"], maxExecs: row["maxExecs"], execCount: row["execCount"],
            lastActivityAt: row["lastActivityAt"], spec: row["spec"], workspacePath: row["workspacePath"],
            workspaceMounted: row["workspaceMounted"], airlockDirectory: row["airlockDirectory"],
            cgroupDirectories: try Self.strings(row["cgroupDirectories"]), helperPID: row["helperPID"], persist: row["persist"],
            workspaceID: row["workspaceID"], principal: row["principal"], usage: row["usage"])
    }

    public func encode(to container: inout PersistenceContainer) {
        container["id"] = id
        container["host"] = host
        container["profile"] = profile
        container["labels"] = JSONValue.object(labels.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }).encoded()
        container["state"] = state.rawValue
        container["stopReason"] = stopReason
        container["createdAt"] = createdAt
        container["stoppedAt"] = stoppedAt
        container["ttlSeconds"] = ttlSeconds
        container["idleTimeoutSeconds"] = idleTimeoutSeconds
        container["maxExecs"] = maxExecs
        container["execCount"] = execCount
        container["lastActivityAt"] = lastActivityAt
        container["spec"] = spec
        container["workspacePath"] = workspacePath
        container["workspaceMounted"] = workspaceMounted
        container["airlockDirectory"] = airlockDirectory
        container["cgroupDirectories"] = JSONValue.array(cgroupDirectories.map { .string($0) }).encoded()
        container["helperPID"] = helperPID
        container["persist"] = persist
        container["workspaceID"] = workspaceID
        container["principal"] = principal
        container["usage"] = usage
    }

    static func stringMap(_ text: String) throws -> [String: String] {
        guard case .object(let pairs) = try JSONParser.parse(text) else { throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "labels are not a JSON object") }
        var out: [String: String] = [:]
        for (k, v) in pairs {
            guard case .string(let s) = v else { throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "label \(k) is not a string") }
            out[k] = s
        }
        return out
    }

    static func strings(_ text: String) throws -> [String] {
        guard case .array(let items) = try JSONParser.parse(text) else { throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "cgroup directories are not a JSON array") }
        return try items.map { v in
            guard case .string(let s) = v else { throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "a cgroup directory is not a string") }
            return s
        }
    }
}

extension SealedRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "sealed"
}
