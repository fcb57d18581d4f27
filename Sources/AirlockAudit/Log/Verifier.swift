#if canImport(Glibc)
import Glibc
#endif
import AirlockCore

/// Checks a log directory: every record's hash and link, sequence continuity within
/// and across segments, segment headers, every checkpoint's signature, key changes,
/// retention claims (only signed ones count), witnessed heads, and that a signature
/// covers the last record. It stops at the first broken record and says exactly where
/// and what; on success it lists every recovery cut and every retention.
///
/// It reads a consistent snapshot: the segments and their sizes are taken under a
/// shared lock on `lock`, so a writer's batch is never seen half-written.
public struct AuditVerifier {
    public struct Problem: Sendable, CustomStringConvertible {
        public var segment: String
        /// The record's sequence number, or for a torn or unreadable line the last good one before it.
        public var seq: UInt64?
        public var byteOffset: Int?
        public var message: String

        public var description: String {
            var where_ = segment
            if let seq { where_ += ", seq \(seq)" }
            if let byteOffset { where_ += ", byte \(byteOffset)" }
            return "\(where_): \(message)"
        }
    }

    public struct Report: Sendable {
        public var segments = 0
        public var records: UInt64 = 0
        public var firstSeq: UInt64 = 0
        public var lastSeq: UInt64 = 0
        public var checkpoints = 0
        public var lastCheckpointSeq: UInt64 = 0
        /// Chains in order: id, key, first sequence number.
        public var chains: [(id: String, key: AuditPublicKey, firstSeq: UInt64)] = []
        /// Whether the last record is a checkpoint.
        public var sealed = false
        /// Whether a writer currently has the log open.
        public var open = false
        public var lastHash: Digest32 = .zero
        /// Every `audit.recovered` record, oldest first.
        public var recoveries: [Recovery] = []
        /// Every signed `audit.retention` record, oldest first.
        public var retentions: [Retention] = []
        /// Witnessed heads found in the log unchanged, and those older than its start
        /// (removed by a signed retention, so not checkable).
        public var witnessedChecked = 0
        public var witnessedBeforeStart = 0
        public var problem: Problem?

        public var ok: Bool { problem == nil }
    }

    /// A writer found records no signature covered and moved them aside.
    public struct Recovery: Sendable, CustomStringConvertible {
        /// The `audit.recovered` record.
        public var seq: UInt64
        public var time: String
        public var segment: String
        /// The last signed record before the cut.
        public var afterSeq: UInt64?
        public var cutRecords: Int64?
        public var cutFirstSeq: Int64?
        public var cutLastSeq: Int64?
        public var cutBytes: Int64?
        public var cutSHA256: String?
        public var cutFile: String?
        /// Written by an Airlock before signed batches: it sealed the unsigned records
        /// with a `recovery` checkpoint instead of cutting them.
        public var legacy: Bool

        public var description: String {
            if legacy {
                let torn = cutBytes.map { ", cut a torn record of \($0) bytes" } ?? ""
                return "seq \(seq) at \(time) in \(segment): an earlier Airlock signed records up to seq \(afterSeq.map(String.init) ?? "?") that its previous writer had left unsigned\(torn) (they are signed by the recovering writer, not by their own)"
            }
            let range = cutFirstSeq.map { "records \($0)–\(cutLastSeq ?? $0) (\(cutRecords ?? 0) records)" } ?? "no complete record"
            return "seq \(seq) at \(time) in \(segment): cut \(range) and \(cutBytes ?? 0) bytes after seq \(afterSeq.map(String.init) ?? "?"), unsigned, moved to \(cutFile ?? "?") (sha256 \(cutSHA256 ?? "?"))"
        }
    }

    /// A writer deleted old segments, accounted for by a signed record.
    public struct Retention: Sendable, CustomStringConvertible {
        public var seq: UInt64
        public var time: String
        public var segments: [String]
        public var throughSeq: UInt64

        public var description: String {
            "seq \(seq) at \(time): deleted \(segments.count) segment(s) holding records up to seq \(throughSeq) (\(segments.joined(separator: ", ")))"
        }
    }

    public var directory: String
    /// When non-empty, every chain must be signed with one of these keys.
    public var trustedKeys: [AuditPublicKey] = []
    /// Known-good (seq, hash) pairs, e.g. checkpoints shipped off-host: the log must
    /// still contain each, unchanged. This is what catches a rollback to an earlier checkpoint.
    public var anchors: [(UInt64, Digest32)] = []
    /// Heads a witness kept (e.g. the lines of a witness file), each with where it came
    /// from: the log must contain each head's record unchanged, and each signature must
    /// verify with the key of the head's chain. A rollback below any of them fails.
    public var witnessedHeads: [(source: String, head: SignedHead)] = []

    public init(directory: String) { self.directory = directory }

    /// The segments and their sizes, taken under a shared lock so that no batch is
    /// half-written in what is read.
    func snapshot() throws(AirlockError) -> [(String, Int)] {
        // Opened like every file of the directory (no symlink, no FIFO: `verify` must not
        // hang or lock something elsewhere). A log without one has had no writer yet.
        let lockPath = directory + "/" + LogFiles.lockFile
        var fd: Int32 = -1
        var st = stat()
        if lstat(lockPath, &st) == 0 { fd = try LogFiles.openRegular(lockPath, O_RDONLY) }
        if fd >= 0 {
            while flock(fd, LOCK_SH) != 0 && errno == EINTR {}
        }
        defer {
            if fd >= 0 {
                flock(fd, LOCK_UN)
                close(fd)
            }
        }
        var out: [(String, Int)] = []
        for name in try LogFiles.segments(in: directory) {
            guard lstat(directory + "/" + name, &st) == 0 else { throw systemError("lstat", errno, "cannot inspect \(directory)/\(name)") }
            out.append((name, Int(st.st_size)))
        }
        return out
    }

    public func verify() throws(AirlockError) -> Report {
        var report = Report()
        let snapshot = try snapshot()
        let segments = snapshot.map(\.0)
        report.segments = segments.count
        guard !segments.isEmpty else {
            report.problem = Problem(segment: directory, message: "no segments (seg-*.log): this is not an audit log, or every segment was removed")
            return report
        }
        var state = State()
        for (name, size) in snapshot {
            var bytes: [UInt8]
            do { bytes = try LogFiles.readRegular(directory + "/" + name, upTo: size) } catch {
                report.problem = Problem(segment: name, message: "cannot be read: \(error.message); if a writer removed it by retention just now, verify again")
                return report
            }
            if bytes.count > size { bytes.removeLast(bytes.count - size) }
            if let p = check(segment: name, bytes: bytes, state: &state, report: &report) {
                report.problem = p
                return report
            }
        }
        report.lastSeq = state.expected - 1
        report.lastHash = state.prevHash
        report.open = Self.writerIsLive(directory)
        report.sealed = state.lastType == "audit.checkpoint"
        let last = segments.last!
        if report.firstSeq > 1 {
            let covered = state.retention.contains { $0.0 + 1 == report.firstSeq && $0.1 == state.firstPrev }
            if !covered {
                let unsigned = state.unsignedRetention.first { $0.0 + 1 == report.firstSeq && $0.1 == state.firstPrev }
                report.problem = Problem(
                    segment: segments[0], seq: report.firstSeq,
                    message: "the log starts at seq \(report.firstSeq), but no signed audit.retention record accounts for records 1–\(report.firstSeq - 1): segments were removed from the start"
                        + (unsigned.map { " (the audit.retention record at seq \($0.2) that claims them is not covered by a signature: it was not written by the key's holder)" } ?? ""))
                return report
            }
        }
        for (seq, hash) in anchors {
            guard let found = state.anchorHits[seq] else {
                report.problem = Problem(
                    segment: last, seq: seq,
                    message: seq > report.lastSeq
                        ? "the anchor seq \(seq) is beyond the end of the log (seq \(report.lastSeq)): records were removed from the end (rolled back)"
                        : "the anchor seq \(seq) is not in the log (removed by retention?)")
                return report
            }
            if found != hash {
                report.problem = Problem(segment: last, seq: seq, message: "the record's hash \(found) differs from the anchor \(hash): the log was rewritten")
                return report
            }
        }
        for (source, head) in witnessedHeads {
            if head.seq < report.firstSeq {
                report.witnessedBeforeStart += 1  // removed by a signed retention (checked above)
                continue
            }
            guard let found = state.anchorHits[head.seq] else {
                report.problem = Problem(
                    segment: last, seq: head.seq,
                    message: "\(source): the witnessed head seq \(head.seq) is beyond the end of the log (seq \(report.lastSeq)): records were removed from the end (rolled back below a witnessed head)")
                return report
            }
            if found != head.hash {
                report.problem = Problem(
                    segment: last, seq: head.seq,
                    message: "\(source): the record's hash \(found) differs from the witnessed head's \(head.hash): the log was rewritten after it was witnessed")
                return report
            }
            guard let chain = report.chains.first(where: { $0.id == head.chain }), chain.key == head.key, head.isSigned(by: chain.key) else {
                report.problem = Problem(
                    segment: last, seq: head.seq,
                    message: "\(source): the witnessed head's signature does not verify with the key of chain \(head.chain) in the log: the witness holds a forged head, or the log's chain was replaced")
                return report
            }
            report.witnessedChecked += 1
        }
        if !report.sealed {
            report.problem = Problem(
                segment: last, seq: report.lastSeq,
                message: "records \(report.lastCheckpointSeq + 1)–\(report.lastSeq) are not covered by a signature (every acknowledged batch ends with one): "
                    + "either a writer crashed just now, or someone appended records or removed the signature that covered them. Do not trust them; compare the log with a head kept off this host "
                    + "(`airlock audit verify --anchor WITNESS-FILE`). The next writer moves them to a cut-*.log file and records the cut; it never signs them")
        }
        return report
    }

    private struct State {
        var expected: UInt64 = 0  // 0: nothing read yet
        var prevHash: Digest32 = .zero
        var firstPrev: Digest32 = .zero
        var chain: String?
        var key: AuditPublicKey?
        var lastType = ""
        var retention: [(UInt64, Digest32)] = []
        /// Retention claims no checkpoint has covered yet: (through seq, through hash, seq, record).
        var unsignedRetention: [(UInt64, Digest32, UInt64, Retention)] = []
        var unsignedRecoveries: [Recovery] = []
        var anchorHits: [UInt64: Digest32] = [:]
    }

    private func check(segment name: String, bytes: [UInt8], state: inout State, report: inout Report) -> Problem? {
        let lines = SegmentLines(bytes: bytes)
        var first = true
        let anchorSeqs = Set(anchors.map(\.0) + witnessedHeads.map(\.head.seq))
        for (offset, line) in lines {
            let before = state.expected > 0 ? state.expected - 1 : nil
            let record: LogRecord
            switch LogRecord.parse(line) {
            case .success(let r): record = r
            case .failure(let f):
                return Problem(segment: name, seq: before, byteOffset: offset, message: "malformed record after seq \(before.map(String.init) ?? "none"): \(f)")
            }
            let seq = record.seq
            if state.expected == 0 {
                report.firstSeq = seq
                state.firstPrev = record.prev
                if seq == 1 && record.prev != .zero {
                    return Problem(segment: name, seq: seq, byteOffset: offset, message: "the first record's prev is not zero")
                }
            } else if seq != state.expected {
                let msg: String
                if seq > state.expected {
                    let missing = seq - state.expected == 1 ? "record \(state.expected) is" : "records \(state.expected)–\(seq - 1) are"
                    msg = first
                        ? "the segment starts at seq \(seq) but the previous segment ended at seq \(state.expected - 1): \(missing) missing (a segment was removed or cut)"
                        : "\(missing) missing: seq \(seq) follows seq \(state.expected - 1) (records deleted)"
                } else {
                    msg = "seq \(seq) follows seq \(state.expected - 1): records were inserted, duplicated or reordered"
                }
                return Problem(segment: name, seq: seq, byteOffset: offset, message: msg)
            }
            if first, let claimed = LogFiles.firstSeq(ofSegment: name), claimed != seq {
                return Problem(segment: name, seq: seq, byteOffset: offset, message: "the segment's name says it starts at seq \(claimed), but its first record is seq \(seq)")
            }
            let computed = LogRecord.chainHash(seq: seq, prev: record.prev, event: record.event)
            if computed != record.hash {
                return Problem(segment: name, seq: seq, byteOffset: offset, message: "hash mismatch: the record's content was changed (stored \(record.hash), computed \(computed))")
            }
            if state.expected > 0, record.prev != state.prevHash {
                return Problem(
                    segment: name, seq: seq, byteOffset: offset,
                    message: "prev does not match the hash of seq \(seq - 1): seq \(seq - 1) or this record was replaced, or records were inserted or removed between them")
            }
            // Only the log's own records (and anything not in the writer's layout) are
            // parsed: their fields are checked. Every other event is covered by its hash.
            var event: JSONValue = .null
            var type = Self.fastType(record.event) ?? ""
            if type.isEmpty || type.hasPrefix("audit.") {
                do { event = try JSONParser.parse(record.event) } catch {
                    return Problem(segment: name, seq: seq, byteOffset: offset, message: "the event is not valid JSON: \(error)")
                }
                type = event["type"]?.stringValue ?? ""
            }
            if first {
                if let p = checkHeader(event, type: type, record: record, state: &state, report: &report, segment: name, offset: offset) { return p }
            } else if type == "audit.chain.started" || type == "audit.segment.opened" {
                return Problem(segment: name, seq: seq, byteOffset: offset, message: "\(type) in the middle of a segment")
            }
            if type == "audit.checkpoint" {
                guard let key = state.key, let chain = state.chain else {
                    return Problem(segment: name, seq: seq, byteOffset: offset, message: "a checkpoint before any chain header")
                }
                guard event["audit.checkpoint.seq"]?.intValue == Int64(seq - 1),
                    event["audit.checkpoint.hash"]?.stringValue == state.prevHash.description
                else {
                    return Problem(segment: name, seq: seq, byteOffset: offset, message: "the checkpoint does not cover the record before it (seq \(seq - 1))")
                }
                guard event["audit.chain.id"]?.stringValue == chain, event["audit.key.id"]?.stringValue == key.id else {
                    return Problem(segment: name, seq: seq, byteOffset: offset, message: "the checkpoint names another chain or key than the segment's (chain \(chain), key \(key.id))")
                }
                guard let sigHex = event["audit.signature"]?.stringValue, let sig = Hex.decode(sigHex),
                    key.isValidSignature(sig, for: CheckpointMessage.bytes(chain: chain, seq: seq - 1, hash: state.prevHash))
                else {
                    return Problem(segment: name, seq: seq, byteOffset: offset, message: "the checkpoint's signature does not verify with the chain's key \(key.id): forged or altered")
                }
                report.checkpoints += 1
                report.lastCheckpointSeq = seq
                // What a signature covers now counts.
                for (through, hash, _, r) in state.unsignedRetention {
                    state.retention.append((through, hash))
                    report.retentions.append(r)
                }
                state.unsignedRetention.removeAll()
                report.recoveries += state.unsignedRecoveries
                state.unsignedRecoveries.removeAll()
            } else if type == "audit.retention" {
                if let through = event["audit.retention.through_seq"]?.intValue, through >= 0, let h = event["audit.retention.through_hash"]?.stringValue,
                    let d = Digest32(hex: h)
                {
                    let names = event["audit.retention.segments"]?.arrayValue?.compactMap(\.stringValue) ?? []
                    let r = Retention(seq: seq, time: event["time"]?.stringValue ?? "", segments: names, throughSeq: UInt64(through))
                    state.unsignedRetention.append((UInt64(through), d, seq, r))
                }
            } else if type == "audit.recovered" {
                let legacy = event["audit.recovered.cut_sha256"] == nil
                let after = legacy ? event["audit.recovered.last_seq"]?.intValue : event["audit.recovered.after_seq"]?.intValue
                state.unsignedRecoveries.append(Recovery(
                    seq: seq, time: event["time"]?.stringValue ?? "", segment: event["audit.segment"]?.stringValue ?? name,
                    afterSeq: after.map { UInt64(max(0, $0)) }, cutRecords: event["audit.recovered.cut_records"]?.intValue,
                    cutFirstSeq: event["audit.recovered.cut_first_seq"]?.intValue, cutLastSeq: event["audit.recovered.cut_last_seq"]?.intValue,
                    cutBytes: event["audit.recovered.cut_bytes"]?.intValue, cutSHA256: event["audit.recovered.cut_sha256"]?.stringValue,
                    cutFile: event["audit.recovered.cut_file"]?.stringValue, legacy: legacy))
            }
            if anchorSeqs.contains(seq) { state.anchorHits[seq] = record.hash }
            state.lastType = type
            state.prevHash = record.hash
            state.expected = seq + 1
            report.records += 1
            first = false
        }
        if let torn = lines.tornTail {
            let before = state.expected > 0 ? state.expected - 1 : nil
            return Problem(
                segment: name, seq: before, byteOffset: torn.lowerBound,
                message: "torn record: \(torn.count) bytes after the last complete record (seq \(before.map(String.init) ?? "none")); the log was truncated mid-record or its writer crashed mid-write (opening the log for writing cuts and records it)")
        }
        if first {
            return Problem(segment: name, message: "the segment is empty")
        }
        return nil
    }

    private func checkHeader(
        _ event: JSONValue, type: String, record: LogRecord, state: inout State, report: inout Report, segment: String, offset: Int
    ) -> Problem? {
        let seq = record.seq
        guard type == "audit.chain.started" || type == "audit.segment.opened" else {
            return Problem(segment: segment, seq: seq, byteOffset: offset, message: "the segment does not start with a header (audit.chain.started or audit.segment.opened) but with \(type)")
        }
        guard let chain = event["audit.chain.id"]?.stringValue, let keyText = event["audit.key.public"]?.stringValue,
            let key = AuditPublicKey(keyText), event["audit.key.id"]?.stringValue == key.id
        else {
            return Problem(segment: segment, seq: seq, byteOffset: offset, message: "the segment header has no valid chain id and public key")
        }
        if type == "audit.chain.started" {
            if let prev = event["audit.chain.previous"] {
                guard state.expected > 0 else {
                    // The log's first remaining record (older ones removed by retention).
                    return adopt(chain: chain, key: key, seq: seq, state: &state, report: &report, segment: segment, offset: offset)
                }
                guard prev["audit.chain.id"]?.stringValue == state.chain, prev["audit.key.id"]?.stringValue == state.key?.id,
                    prev["audit.checkpoint.seq"]?.intValue == Int64(seq - 1), prev["audit.checkpoint.hash"]?.stringValue == state.prevHash.description
                else {
                    return Problem(segment: segment, seq: seq, byteOffset: offset, message: "a new chain claims to continue chain \(prev["audit.chain.id"]?.stringValue ?? "?") but does not link to the end of the current chain \(state.chain ?? "?")")
                }
            } else if seq != 1 && state.expected > 0 {
                return Problem(segment: segment, seq: seq, byteOffset: offset, message: "a new chain starts at seq \(seq) without linking to the previous chain \(state.chain ?? "?")")
            }
            return adopt(chain: chain, key: key, seq: seq, state: &state, report: &report, segment: segment, offset: offset)
        }
        if state.chain == nil {
            return adopt(chain: chain, key: key, seq: seq, state: &state, report: &report, segment: segment, offset: offset)
        }
        guard chain == state.chain, key == state.key else {
            return Problem(segment: segment, seq: seq, byteOffset: offset, message: "the segment header switches to chain \(chain) / key \(key.id) without starting a new linked chain (the key was replaced)")
        }
        return nil
    }

    private func adopt(chain: String, key: AuditPublicKey, seq: UInt64, state: inout State, report: inout Report, segment: String, offset: Int) -> Problem? {
        if !trustedKeys.isEmpty && !trustedKeys.contains(key) {
            return Problem(
                segment: segment, seq: seq, byteOffset: offset,
                message: "chain \(chain) is signed with key \(key.id), which is not a trusted key (trusted: \(trustedKeys.map(\.id).joined(separator: ", ")))")
        }
        state.chain = chain
        state.key = key
        report.chains.append((chain, key, seq))
        return nil
    }

    static let timePrefix = Array(#"{"time":""#.utf8)
    static let typePrefix = Array(#"","type":""#.utf8)

    /// The type of an event in the writer's layout (`{"time":"<30 bytes>","type":"…"`),
    /// or nil when the bytes are laid out otherwise.
    static func fastType(_ e: [UInt8]) -> String? {
        let typeStart = timePrefix.count + 30 + typePrefix.count
        guard e.count > typeStart, e[0..<timePrefix.count].elementsEqual(timePrefix),
            e[(timePrefix.count + 30)..<typeStart].elementsEqual(typePrefix)
        else { return nil }
        var i = typeStart
        while i < e.count, e[i] != 0x22 {
            guard e[i] != 0x5C, e[i] >= 0x20 else { return nil }
            i += 1
        }
        guard i < e.count, i > typeStart else { return nil }
        return String(decoding: e[typeStart..<i], as: UTF8.self)
    }

    /// Whether some process has the log open for writing.
    static func writerIsLive(_ dir: String) -> Bool {
        // Never blocks on a FIFO there; anything but a regular file means no writer.
        guard let fd = try? LogFiles.openRegular(dir + "/" + LogFiles.writersFile, O_RDONLY) else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }
}
