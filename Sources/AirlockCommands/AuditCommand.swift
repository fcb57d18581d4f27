import ArgumentParser
import AirlockAudit
import AirlockCore
#if canImport(Glibc)
import Glibc
#endif

/// `airlock audit`: verify, read and query the tamper-evident audit log.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Verify, read and query the tamper-evident audit log.",
        discussion: """
            DIR defaults to $AIRLOCK_AUDIT_DIR, else /var/lib/airlock/audit as root, else
            ~/.local/state/airlock/audit. See docs/audit.md.
            """,
        subcommands: [Verify.self, Tail.self, Query.self, Key.self])

    static func directory(_ explicit: String?) throws -> String {
        if let explicit { return absolute(explicit) }
        guard let d = LogFiles.defaultDirectory(environment: HostEnvironment.current()) else {
            throw fail(AirlockError(.usage, "no audit log directory: pass DIR or set AIRLOCK_AUDIT_DIR"))
        }
        return d
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = try? HostEnvironment.currentDirectory() else { return path }
        return cwd + "/" + path
    }

    static func requireLog(_ dir: String) throws {
        var st = stat()
        guard stat(dir, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw fail(AirlockError(.usage, "\(dir) is not an audit log directory (it does not exist)"))
        }
    }

    /// One record as a JSON line: `seq`, then the event's own fields. A record whose
    /// content does not match its own hash gets `"audit.integrity":"hash mismatch"` and a
    /// warning on stderr (the chain and signatures are `audit verify`'s job).
    static func render(_ r: LogRecord) -> String {
        let intact = LogRecord.chainHash(seq: r.seq, prev: r.prev, event: r.event) == r.hash
        if !intact {
            printError("airlock: warning: audit record seq \(r.seq) does not match its own hash: it was altered; run `airlock audit verify`")
        }
        guard case .object(let pairs)? = try? JSONParser.parse(r.event) else {
            let raw = JSONValue.string(String(decoding: r.event, as: UTF8.self))
            return JSONValue.object([("seq", .int(Int64(r.seq))), ("audit.integrity", .string(intact ? "unparsable event" : "hash mismatch")), ("raw", raw)]).encoded()
        }
        var out = pairs
        out.insert(("seq", .int(Int64(r.seq))), at: min(1, out.count))
        if !intact { out.insert(("audit.integrity", .string("hash mismatch")), at: min(2, out.count)) }
        return JSONValue.object(out).encoded()
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every hash, link and signature; report the first broken record.",
            discussion: """
                Exit status: 0 when the log verifies, 1 when it does not (the first problem is
                printed as SEGMENT, seq N, byte B: what is wrong), 64 on a usage error.
                """)

        @Argument(help: "The log directory.") var dir: String?
        @Option(name: .long, help: ArgumentHelp("Trust only this public key (ed25519:<hex>, or a file holding it, e.g. one exported with `airlock audit key`). Repeatable.", valueName: "KEY"))
        var key: [String] = []
        @Option(name: .long, help: ArgumentHelp("A record known to exist, as SEQ:HASH (e.g. a head shipped off-host), or a witness file of signed heads (one JSON head per line, as --audit-witness file:PATH writes): every one must be in the log unchanged, so a rollback below any of them fails. Repeatable.", valueName: "SEQ:HASH|FILE"))
        var anchor: [String] = []

        func run() throws {
            let dir = try AuditCommand.directory(dir)
            try AuditCommand.requireLog(dir)
            var v = AuditVerifier(directory: dir)
            for k in key {
                var text = k
                if !k.hasPrefix("ed25519:"), let bytes = try? LogFiles.readRegular(k, upTo: 4096, followSymlinks: true) { text = String(decoding: bytes, as: UTF8.self) }
                guard let pk = AuditPublicKey(text) else {
                    throw fail(AirlockError(.usage, "--key \(k): expected ed25519:<64 hex digits> or a file holding it (see `airlock audit key`)"))
                }
                v.trustedKeys.append(pk)
            }
            for a in anchor {
                let parts = a.split(separator: ":", maxSplits: 1)
                if parts.count == 2, let seq = UInt64(parts[0]), let h = Digest32(hex: String(parts[1])) {
                    v.anchors.append((seq, h))
                    continue
                }
                guard let bytes = try? LogFiles.readRegular(AuditCommand.absolute(a), upTo: 256 << 20, followSymlinks: true) else {
                    throw fail(AirlockError(.usage, "--anchor \(a): expected SEQ:HASH (e.g. 1042:<64 lowercase hex digits>) or a readable witness file of JSON heads"))
                }
                var n = 0
                for (i, line) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
                    guard let head = SignedHead(line: line) else {
                        throw fail(AirlockError(.usage, "--anchor \(a), line \(i + 1): not a signed head (expected {\"seq\":…,\"hash\":…,\"chain\":…,\"key\":…,\"signature\":…})"))
                    }
                    v.witnessedHeads.append(("\(a), line \(i + 1)", head))
                    n += 1
                }
                guard n > 0 else { throw fail(AirlockError(.usage, "--anchor \(a): the witness file holds no heads")) }
            }
            let r: AuditVerifier.Report
            do { r = try v.verify() } catch { throw fail(error) }
            if let p = r.problem {
                printError("airlock: audit log \(dir) does NOT verify")
                printError("  \(p)")
                throw ExitCode(1)
            }
            print("ok: \(r.records) records (seq \(r.firstSeq)–\(r.lastSeq)) in \(r.segments) segment(s), \(r.checkpoints) signed checkpoint(s)")
            for c in r.chains { print("chain \(c.id) from seq \(c.firstSeq), key \(c.key.id) (\(c.key))") }
            print("sealed: a signature covers every record" + (r.open ? " (a writer has the log open)" : ""))
            print("recoveries: \(r.recoveries.count)" + (r.recoveries.isEmpty ? "" : " (records no signature covered, cut by the next writer: either never acknowledged (a writer crashed mid-batch, or someone without the key appended them) or their signature was removed)"))
            for rec in r.recoveries { print("  recovered: \(rec)") }
            print("retentions: \(r.retentions.count)")
            for ret in r.retentions { print("  retention: \(ret)") }
            if !v.anchors.isEmpty || !v.witnessedHeads.isEmpty {
                print("anchors: \(v.anchors.count) SEQ:HASH and \(r.witnessedChecked) witnessed head(s) found unchanged" + (r.witnessedBeforeStart > 0 ? "; \(r.witnessedBeforeStart) older than the log's start (removed by signed retention)" : ""))
            } else {
                print("anchors: none; nothing here proves the log was not cut back to an earlier signature: verify with --anchor and the heads a witness kept")
            }
            print("head: \(r.lastSeq):\(r.lastHash)")
        }
    }

    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the newest records; with -f, keep printing new ones.")

        @Argument(help: "The log directory.") var dir: String?
        @Option(name: .short, help: "How many records to print first.") var n: Int = 10
        @Flag(name: .short, help: "Follow: wait for new records (Ctrl-C to stop).") var follow = false

        func run() throws {
            let dir = try AuditCommand.directory(dir)
            try AuditCommand.requireLog(dir)
            var reader = LogReader(directory: dir)
            do {
                func emit(_ records: [LogRecord]) {
                    guard !records.isEmpty else { return }
                    POSIXIO.writeAll(1, Array(records.map { AuditCommand.render($0) + "\n" }.joined().utf8))
                }
                emit(try reader.last(max(0, n)))
                while follow {
                    usleep(200_000)
                    emit(try reader.next())
                }
            } catch { throw fail(error) }
        }
    }

    struct Query: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find records through the index (rebuilt from the log when missing).",
            discussion: """
                Filters combine with AND; a value ending in * matches a prefix (--type 'process.*').
                Example: airlock audit query --instance sbx-3db49326401a3a2e --since 1h --decision deny
                """)

        @Argument(help: "The log directory.") var dir: String?
        @Option(name: .long, help: "Sandbox instance id (airlock.sandbox.id).") var instance: String?
        @Option(name: .long, help: "Event type, e.g. process.exited.") var type: String?
        @Option(name: .long, help: "Session id.") var session: String?
        @Option(name: .long, help: "Agent id.") var agent: String?
        @Option(name: .long, help: "Principal (enduser.id).") var principal: String?
        @Option(name: .long, help: "Decision verdict: allow, deny, redact, alert.") var decision: String?
        @Option(name: .long, help: ArgumentHelp("Only records newer than this: a duration (1h, 30m) or an RFC 3339 time.", valueName: "WHEN")) var since: String?
        @Option(name: .long, help: ArgumentHelp("Only records older than this: a duration ago or an RFC 3339 time.", valueName: "WHEN")) var until: String?
        @Option(name: .long, help: "At most this many (the newest).") var limit: Int?

        func run() throws {
            let dir = try AuditCommand.directory(dir)
            try AuditCommand.requireLog(dir)
            var q = AuditIndex.Query()
            q.instance = instance
            q.type = type
            q.session = session
            q.agent = agent
            q.principal = principal
            q.decision = decision
            q.limit = limit
            q.since = try since.map { try Self.when($0, "--since") }
            q.until = try until.map { try Self.when($0, "--until") }
            do {
                let index = try AuditIndex(logDirectory: dir)
                // Every hit is checked against the record it reads; an index that answers with
                // a record the filter did not ask for (or one that is not there) was altered:
                // it is rebuilt from the segments and asked again.
                func answer() throws(AirlockError) -> [LogRecord]? {
                    var out: [LogRecord] = []
                    for hit in try index.query(q) {
                        guard let r = index.record(hit), AuditIndex.matches(r, q) else { return nil }
                        out.append(r)
                    }
                    return out
                }
                var records = try answer()
                if records == nil {
                    printError("airlock: warning: the audit index did not match the log (altered or stale); rebuilt it from the segments")
                    try index.rebuild()
                    records = try answer()
                }
                guard let records else {
                    throw AirlockError(.system, "the audit index of \(dir) still does not match the log after a rebuild; run `airlock audit verify \(dir)`")
                }
                for r in records { print(AuditCommand.render(r)) }
            } catch let e as AirlockError { throw fail(e) }
        }

        static func when(_ text: String, _ flag: String) throws -> Int64 {
            if let t = Clock.parseRFC3339(text) { return t }
            if let d = try? Units.parseDuration(text) { return Clock.realtimeNanos() - d.nanoseconds }
            throw fail(AirlockError(.usage, "\(flag) \(text): expected a duration such as 1h or 30m, or an RFC 3339 time such as 2026-11-23T10:00:00Z"))
        }
    }

    struct Key: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the log's public key (ed25519:<hex>), for `audit verify --key` elsewhere.",
            discussion: """
                Derived from the signing key (audit.key) when it is readable, i.e. when run as the log's writer: \
                anyone who can write the directory can replace audit.pub. Otherwise audit.pub is printed, with a warning.
                """)

        @Argument(help: "The log directory.") var dir: String?

        func run() throws {
            let dir = try AuditCommand.directory(dir)
            let pubPath = dir + "/" + LogFiles.publicKeyFile
            let keyPath = dir + "/" + LogFiles.keyFile
            let published = (try? LogFiles.readRegular(pubPath, upTo: 4096)).flatMap { AuditPublicKey(String(decoding: $0, as: UTF8.self)) }
            if access(keyPath, R_OK) == 0 {
                // The writer's own key: what signs the log, whatever audit.pub says.
                let signing: AuditSigningKey?
                do { signing = try AuditSigningKey.load(at: keyPath) } catch { throw fail(error) }
                if let key = signing?.publicKey {
                    if published != key {
                        printError(
                            "airlock: warning: \(pubPath) holds \(published.map(\.description) ?? "no valid key"), not the public half of \(keyPath): "
                                + "someone who can write the directory replaced it (or it was never written). Printed: the key derived from \(keyPath)")
                    }
                    print(key)
                    return
                }
            }
            guard let key = published else {
                throw fail(AirlockError(.usage, "\(dir) has no readable \(LogFiles.publicKeyFile) (and \(keyPath) is not readable here): has anything been logged there yet? Run this as the log's writer (e.g. root) to derive the key from \(keyPath)"))
            }
            printError(
                "airlock: warning: \(keyPath) is not readable here, so this is \(pubPath) as found: it is only as trustworthy as the directory "
                    + "(anyone who can write it can replace it). Run `airlock audit key` as the log's writer to derive the key from the signing key")
            print(key)
        }
    }
}
