#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import GRDB

/// The query index: one row per record (sequence number, where it is, and the
/// fields queries filter on) in `index.sqlite` next to the segments. It is only a
/// cache of the log: every query first catches it up from the segments, a log that
/// no longer matches it (rewritten, replaced) makes it rebuild, and a missing or
/// unreadable index file is rebuilt from scratch. Answers are read back from the
/// segments, so the index never holds an event's payload.
///
/// The index is not authenticated: someone who can write it can make a query miss records
/// (`audit verify` and `audit tail` read the segments themselves). What it can no longer do:
/// point a query outside the log (a hit names a segment, checked to be one), show a record
/// the filter did not ask for (every hit is checked against the record it reads), hide
/// records by deleting rows (a gap in the sequence numbers makes it rebuild), or make the
/// writer follow a link (a non-regular index file is removed, not opened).
public final class AuditIndex {
    public struct Query: Sendable {
        public var instance: String?
        public var type: String?
        public var session: String?
        public var agent: String?
        public var principal: String?
        public var decision: String?
        /// Nanoseconds since the epoch.
        public var since: Int64?
        public var until: Int64?
        public var limit: Int?
        public init() {}
    }

    /// A record found by a query.
    public struct Hit: Sendable {
        public var seq: UInt64
        public var segment: String
        public var offset: Int
        public var length: Int
    }

    public let directory: String
    private let db: DatabaseQueue
    /// What the last `catchUp` did, for `--verbose` output and tests.
    public private(set) var lastCatchUp = (indexed: 0, rebuilt: false)

    public init(logDirectory: String) throws(AirlockError) {
        directory = logDirectory
        let path = logDirectory + "/" + LogFiles.indexFile
        // SQLite follows symlinks and would block on a FIFO: anything but a regular file
        // under the index's names is removed first (it is only a cache). This narrows, but
        // does not close, a race with someone who can write the directory.
        for name in [path, path + "-wal", path + "-shm", path + "-journal"] {
            var st = stat()
            if lstat(name, &st) == 0, st.st_mode & S_IFMT != S_IFREG { unlink(name) }
        }
        do {
            db = try Self.openDatabase(path)
        } catch {
            // Unreadable or not SQLite: it is only a cache. Start over.
            unlink(path)
            unlink(path + "-wal")
            unlink(path + "-shm")
            do { db = try Self.openDatabase(path) } catch {
                throw AirlockError(.system, "cannot create the audit index \(path): \(error)")
            }
        }
    }

    private static func openDatabase(_ path: String) throws -> DatabaseQueue {
        let q = try DatabaseQueue(path: path)
        try q.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS records (
                    seq INTEGER PRIMARY KEY, segment TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
                    hash TEXT NOT NULL, time INTEGER, type TEXT, instance TEXT, session TEXT, agent TEXT,
                    principal TEXT, decision TEXT);
                CREATE INDEX IF NOT EXISTS records_instance ON records(instance);
                CREATE INDEX IF NOT EXISTS records_type ON records(type);
                CREATE INDEX IF NOT EXISTS records_time ON records(time);
                CREATE INDEX IF NOT EXISTS records_decision ON records(decision);
                """)
        }
        chmod(path, 0o600)
        return q
    }

    /// Indexes every record written since the last call. Returns how many.
    @discardableResult
    public func catchUp() throws(AirlockError) -> Int {
        let segments = try LogFiles.segments(in: directory)
        do {
            return try db.write { db -> Int in
                var rebuilt = false
                var resume: (segment: String, offset: Int)?
                if let row = try Row.fetchOne(db, sql: "SELECT seq, segment, offset, length, hash FROM records ORDER BY seq DESC LIMIT 1") {
                    let segment: String = row["segment"]
                    let offset: Int = row["offset"]
                    let length: Int = row["length"]
                    let hash: String = row["hash"]
                    let seqs = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, MIN(seq) AS lo, MAX(seq) AS hi FROM records")
                    let n: Int64 = seqs?["n"] ?? 0
                    let lo: Int64 = seqs?["lo"] ?? 0
                    let hi: Int64 = seqs?["hi"] ?? 0
                    // Rows deleted from the middle (records hidden from queries) leave a gap.
                    let contiguous = n == hi - lo + 1
                    if contiguous, LogFiles.firstSeq(ofSegment: segment) != nil,
                        Self.recordHash(directory + "/" + segment, offset: offset, length: length) == hash
                    {
                        resume = (segment, offset + length + 1)
                    } else {
                        try db.execute(sql: "DELETE FROM records")
                        rebuilt = true
                    }
                }
                // Segments removed by retention take their rows with them.
                if let oldest = segments.first.flatMap(LogFiles.firstSeq(ofSegment:)) {
                    try db.execute(sql: "DELETE FROM records WHERE seq < ?", arguments: [Int64(oldest)])
                }
                var count = 0
                for name in segments {
                    var start = 0
                    if let r = resume {
                        guard let a = LogFiles.firstSeq(ofSegment: name), let b = LogFiles.firstSeq(ofSegment: r.segment), a >= b else { continue }
                        if name == r.segment { start = r.offset }
                    }
                    // Only what follows the last indexed record is read.
                    guard let bytes = LogFiles.read(directory + "/" + name, from: start), !bytes.isEmpty else { continue }
                    let stmt = try db.cachedStatement(sql: """
                        INSERT OR REPLACE INTO records (seq, segment, offset, length, hash, time, type, instance, session, agent, principal, decision)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """)
                    for (offset, line) in SegmentLines(bytes: bytes) {
                        guard case .success(let r) = LogRecord.parse(line), let e = try? JSONParser.parse(r.event) else { break }
                        try stmt.execute(arguments: [
                            Int64(r.seq), name, start + offset, line.count, r.hash.description,
                            e["time"]?.stringValue.flatMap(Clock.parseRFC3339), e["type"]?.stringValue,
                            e["airlock.sandbox.id"]?.stringValue, e["session.id"]?.stringValue, e["gen_ai.agent.id"]?.stringValue,
                            e["enduser.id"]?.stringValue, e["airlock.decision"]?.stringValue,
                        ])
                        count += 1
                    }
                }
                lastCatchUp = (count, rebuilt)
                return count
            }
        } catch let e as AirlockError {
            throw e
        } catch {
            throw AirlockError(.system, "cannot update the audit index in \(directory): \(error)")
        }
    }

    /// Forgets every row: the next query indexes the whole log again.
    public func rebuild() throws(AirlockError) {
        do { try db.write { try $0.execute(sql: "DELETE FROM records") } } catch {
            throw AirlockError(.system, "cannot rebuild the audit index in \(directory): \(error)")
        }
    }

    /// Records matching `q`, oldest first (the newest `limit` when a limit is given).
    public func query(_ q: Query) throws(AirlockError) -> [Hit] {
        try catchUp()
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        func eq(_ column: String, _ v: String?) {
            guard let v else { return }
            if v.hasSuffix("*") {
                clauses.append("\(column) LIKE ? ESCAPE '\\'")
                let escaped = v.dropLast().replacing("\\", with: "\\\\").replacing("%", with: "\\%").replacing("_", with: "\\_")
                args.append(escaped + "%")
            } else {
                clauses.append("\(column) = ?")
                args.append(v)
            }
        }
        eq("instance", q.instance)
        eq("type", q.type)
        eq("session", q.session)
        eq("agent", q.agent)
        eq("principal", q.principal)
        eq("decision", q.decision)
        if let s = q.since { clauses.append("time >= ?"); args.append(s) }
        if let u = q.until { clauses.append("time <= ?"); args.append(u) }
        var sql = "SELECT seq, segment, offset, length FROM records"
        if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
        sql += " ORDER BY seq DESC"
        if let limit = q.limit { sql += " LIMIT \(max(0, limit))" }
        do {
            let rows = try db.read { db in try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)) }
            return rows.reversed().map { Hit(seq: UInt64($0["seq"] as Int64), segment: $0["segment"], offset: $0["offset"], length: $0["length"]) }
        } catch {
            throw AirlockError(.system, "audit index query failed: \(error)")
        }
    }

    /// The record a hit points at, read from its segment (only ever a segment of this log).
    public func record(_ hit: Hit) -> LogRecord? {
        guard LogFiles.firstSeq(ofSegment: hit.segment) != nil, (1...(16 << 20)).contains(hit.length), hit.offset >= 0,
            let line = Self.readLine(directory + "/" + hit.segment, offset: hit.offset, length: hit.length),
            case .success(let r) = LogRecord.parse(line[...]), r.seq == hit.seq
        else { return nil }
        return r
    }

    /// Whether the record's event has the values `q` filters on: a hit from an index row
    /// that was edited does not.
    public static func matches(_ r: LogRecord, _ q: Query) -> Bool {
        guard let e = try? JSONParser.parse(r.event) else { return false }
        func ok(_ key: String, _ want: String?) -> Bool {
            guard let want else { return true }
            guard let have = e[key]?.stringValue else { return false }
            return want.hasSuffix("*") ? have.hasPrefix(String(want.dropLast())) : have == want
        }
        let time = e["time"]?.stringValue.flatMap(Clock.parseRFC3339)
        if let s = q.since, (time ?? Int64.min) < s { return false }
        if let u = q.until, (time ?? Int64.max) > u { return false }
        return ok("airlock.sandbox.id", q.instance) && ok("type", q.type) && ok("session.id", q.session) && ok("gen_ai.agent.id", q.agent)
            && ok("enduser.id", q.principal) && ok("airlock.decision", q.decision)
    }

    static func readLine(_ path: String, offset: Int, length: Int) -> [UInt8]? {
        guard let fd = try? LogFiles.openRegular(path, O_RDONLY) else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: length)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(offset)) }
        return n == length ? buf : nil
    }

    static func recordHash(_ path: String, offset: Int, length: Int) -> String? {
        guard let line = readLine(path, offset: offset, length: length), case .success(let r) = LogRecord.parse(line[...]) else { return nil }
        return r.hash.description
    }
}
