import AirlockCore
import Crypto
import Synchronization
import Testing

@testable import AirlockAudit

#if canImport(Glibc)
    import Glibc
#endif

/// The three attacks of issue 13, each by someone who can write the log directory but
/// does not hold the signing key, followed by what an honest operator does next: a
/// writer opens the log, then `verify` runs with the key pinned (and the head
/// anchored). The writer must never sign the forgery, and verify must either fail or
/// report exactly which range was cut as unsigned.
@Suite struct AttackTests {
    /// Two runs, each a writer that opens the log, appends and closes. Returns the
    /// key and the last seq of the first run.
    func twoRuns(_ dir: String, maxSegmentBytes: Int = 64 << 20) throws -> (AuditPublicKey, UInt64) {
        let first = try openLog(dir, maxSegmentBytes: maxSegmentBytes)
        for i in 0..<20 { try first.appendAndWait(event(i, instance: "sbx-run-1")) }
        try first.close()
        let end = records(dir).last!.seq
        let second = try openLog(dir, maxSegmentBytes: maxSegmentBytes)
        for i in 0..<10 { try second.appendAndWait(event(i, instance: "sbx-run-2")) }
        try second.close()
        let r = try verify(dir)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        return (r.chains[0].key, end)
    }

    /// Writes `recs` as the log's records from `from` on (same segment layout for those
    /// kept), re-chained: what an attacker without the key can do.
    func rewrite(_ dir: String, keeping keep: (LogRecord) -> Bool, then extra: [[UInt8]]) {
        var prev = Digest32.zero
        var lastSeq: UInt64 = 0
        let segs = segments(dir)
        var kept: [String: [[UInt8]]] = [:]
        for name in segs {
            var out: [[UInt8]] = []
            for l in lines(dir + "/" + name) {
                guard case .success(var r) = LogRecord.parse(l[...]), keep(r) else { continue }
                r.seq = lastSeq + 1
                r.prev = prev
                r.hash = LogRecord.chainHash(seq: r.seq, prev: r.prev, event: r.event)
                prev = r.hash
                lastSeq = r.seq
                var line: [UInt8] = []
                r.write(into: &line)
                out.append(Array(line.dropLast()))
            }
            kept[name] = out
        }
        for e in extra {
            let r = LogRecord(seq: lastSeq + 1, prev: prev, hash: LogRecord.chainHash(seq: lastSeq + 1, prev: prev, event: e), event: e)
            var line: [UInt8] = []
            r.write(into: &line)
            kept[segs.last!, default: []].append(Array(line.dropLast()))
            prev = r.hash
            lastSeq = r.seq
        }
        for name in segs { writeLines(dir + "/" + name, kept[name] ?? []) }
    }

    func forged(_ text: String) -> [UInt8] {
        Array(#"{"time":"2026-12-07T10:00:00.000000000Z","type":"process.started","airlock.sandbox.id":"\#(text)"}"#.utf8)
    }

    func cutFiles(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name.hasPrefix("cut-") { out.append(name) }
        }
        return out.sorted()
    }

    /// B2: records whose signature an attacker removed were acknowledged: the recovery
    /// record must not claim they never were.
    @Test func aRemovedSignatureIsNotCalledNeverAcknowledged() throws {
        let t = TempDir("attack-strip")
        defer { t.cleanup() }
        try writeLog(t.log, events: 5)
        let seg = t.log + "/" + segments(t.log).last!
        writeLines(seg, Array(lines(seg).dropLast()))  // the last checkpoint: acknowledged records now unsigned
        let log = try openLog(t.log)
        try log.close()
        let recovered = try #require(records(t.log).first { eventJSON($0)["type"]?.stringValue == "audit.recovered" })
        let reason = eventJSON(recovered)["audit.recovered.reason"]?.stringValue ?? ""
        #expect(reason.contains("either never acknowledged") && reason.contains("their signature was removed"), "\(reason)")
        #expect(!reason.contains("so never acknowledged"))
        #expect(log.openReport.contains { $0.contains("its signature was removed") }, "\(log.openReport)")
    }

    /// W4: a cut made while the log is open (someone appended between two batches) is
    /// reported through `onReport`, as `airlock run` prints it, not only cuts found at open.
    @Test func aCutDuringARunIsReported() throws {
        let t = TempDir("attack-cut-during-run")
        defer { t.cleanup() }
        let reports = Mutex<[String]>([])
        let log = try openLog(t.log) { o in o.onReport = { line in reports.withLock { $0.append(line) } } }
        try log.appendAndWait(event(1))
        #expect(log.openReport.isEmpty && reports.withLock { $0 }.isEmpty)
        let seg = t.log + "/" + segments(t.log).last!
        writeFile(seg, readFile(seg) + Array("appended by someone without the key\n".utf8))
        try log.appendAndWait(event(2))
        try log.close()
        let lines = reports.withLock { $0 }
        #expect(lines.count == 1 && lines[0].contains("cut what followed the last signature"), "\(lines)")
        #expect(log.openReport.isEmpty)
        #expect(try verify(t.log).recoveries.count == 1)
    }

    /// W1: an unsigned record appended while a process holds `writers` shared (a fake
    /// live writer) must fail verify, not pass as "a writer has it open".
    @Test func aFakeLiveWriterDoesNotMakeUnsignedRecordsPass() throws {
        let t = TempDir("attack-fake-writer")
        defer { t.cleanup() }
        try writeLog(t.log, events: 5)
        let last = records(t.log).last!
        let e = forged("sbx-forged")
        let r = LogRecord(seq: last.seq + 1, prev: last.hash, hash: LogRecord.chainHash(seq: last.seq + 1, prev: last.hash, event: e), event: e)
        var line: [UInt8] = []
        r.write(into: &line)
        let seg = t.log + "/" + segments(t.log).last!
        writeFile(seg, readFile(seg) + line)
        let fd = open(t.log + "/" + LogFiles.writersFile, O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0 && flock(fd, LOCK_SH) == 0)
        defer { close(fd) }
        let report = try verify(t.log)
        #expect(report.open)  // it looks live…
        #expect(!report.ok)  // …and still fails
        #expect(report.problem?.message.contains("not covered by a signature") == true, "\(report.problem.map(\.description) ?? "ok")")
    }

    @Test func rewritingTheLastRunIsCutNotSigned() throws {
        let t = TempDir("attack-rewrite")
        defer { t.cleanup() }
        let (key, firstRunEnd) = try twoRuns(t.log)
        // Rewriting signed records, even re-chained, is caught by the signatures over them.
        let signed = TempDir("attack-rewrite-signed")
        defer { signed.cleanup() }
        _ = try twoRuns(signed.log)
        for name in segments(signed.log) {
            let path = signed.log + "/" + name
            writeFile(path, Array(String(decoding: readFile(path), as: UTF8.self).replacing("sbx-run-2", with: "sbx-forged").utf8))
        }
        rewrite(signed.log, keeping: { _ in true }, then: [])
        #expect(try verify(signed.log).problem?.message.contains("checkpoint") == true)
        // The attack: drop the second run's signatures, rewrite its records, re-chain.
        rewrite(
            t.log,
            keeping: { r in r.seq <= firstRunEnd || eventJSON(r)["type"]?.stringValue != "audit.checkpoint" },
            then: [])
        for name in segments(t.log) {
            let path = t.log + "/" + name
            writeFile(path, Array(String(decoding: readFile(path), as: UTF8.self).replacing("sbx-run-2", with: "sbx-forged").utf8))
        }
        rewrite(t.log, keeping: { _ in true }, then: [])
        let forgedRange = records(t.log).filter { $0.seq > firstRunEnd }.map(\.seq)
        #expect(forgedRange.count == 10)  // the second run's 10 events, none signed now
        // Before anyone writes: verify refuses the unsigned records and says what that means.
        let before = try verify(t.log, keys: [key])
        #expect(before.problem?.message.contains("not covered by a signature") == true, "\(before.problem.map(\.description) ?? "ok")")
        #expect(before.problem?.message.contains("someone appended records") == true)
        #expect(before.problem?.message.contains("airlock run") == false)
        // The next writer: it cuts them, moves them aside and records the cut, signed.
        let next = try openLog(t.log)
        #expect(next.openReport.contains { $0.contains("cut what followed the last signature (seq \(firstRunEnd))") })
        try next.appendAndWait(event(1, instance: "sbx-run-3"))
        try next.close()
        let r = try verify(t.log, keys: [key])
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        let cut = try #require(r.recoveries.last)
        #expect(!cut.legacy && cut.afterSeq == firstRunEnd)
        #expect(cut.cutFirstSeq == Int64(forgedRange.first!) && cut.cutLastSeq == Int64(forgedRange.last!) && cut.cutRecords == 10)
        // The forgery is nowhere in the log, and nothing the writer signed contains it…
        for name in segments(t.log) { #expect(!String(decoding: readFile(t.log + "/" + name), as: UTF8.self).contains("sbx-forged")) }
        // …but it is kept as evidence, owner-only, with the hash the signed record states.
        let files = cutFiles(t.log)
        #expect(files == [cut.cutFile!])
        let evidence = readFile(t.log + "/" + files[0])
        #expect(String(decoding: evidence, as: UTF8.self).contains("sbx-forged"))
        #expect(Digest32(SHA256.hash(data: evidence)).description == cut.cutSHA256)
        var st = stat()
        stat(t.log + "/" + files[0], &st)
        #expect(st.st_mode & 0o777 == 0o600)
    }

    @Test func aForgedRunAppendedAfterTheLastSignatureIsCut() throws {
        let t = TempDir("attack-append")
        defer { t.cleanup() }
        let (key, _) = try twoRuns(t.log)
        let honest = try verify(t.log)
        // Appended, re-chained, and topped with a checkpoint the attacker cannot sign.
        var fake = Array(#"{"time":"2026-12-07T10:00:00.000000000Z","type":"audit.checkpoint","audit.chain.id":"x","audit.key.id":"y","audit.checkpoint.seq":0,"audit.checkpoint.hash":"z","audit.checkpoint.reason":"batch","audit.signature":""#.utf8)
        fake += Array(String(repeating: "ab", count: 64).utf8) + Array(#""}"#.utf8)
        rewrite(t.log, keeping: { _ in true }, then: [forged("sbx-appended-1"), forged("sbx-appended-2"), forged("sbx-appended-3"), fake])
        let tampered = try verify(t.log, keys: [key])
        #expect(tampered.ok == false)
        // The next writer, with the honest head anchored afterwards.
        let next = try openLog(t.log)
        try next.close()
        let r = try verify(t.log, keys: [key], anchors: [(honest.lastSeq, honest.lastHash)])
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        let cut = try #require(r.recoveries.last)
        #expect(cut.afterSeq == honest.lastSeq)
        #expect(cut.cutFirstSeq == Int64(honest.lastSeq + 1) && cut.cutLastSeq == Int64(honest.lastSeq + 4) && cut.cutRecords == 4)
        #expect(records(t.log).allSatisfy { !String(decoding: $0.event, as: UTF8.self).contains("sbx-appended") })
    }

    @Test func erasingTheFirstSegmentWithAForgedRetentionRecordFails() throws {
        let t = TempDir("attack-erase")
        defer { t.cleanup() }
        let (key, _) = try twoRuns(t.log, maxSegmentBytes: 4096)
        let segs = segments(t.log)
        #expect(segs.count >= 3)
        // Delete the first segment and claim it with an audit.retention record of one's own.
        let firstKept = try LogRecord.parse(lines(t.log + "/" + segs[1])[0][...]).get()
        unlink(t.log + "/" + segs[0])
        let claim = Array(
            #"{"time":"2026-12-07T10:00:00.000000000Z","type":"audit.retention","audit.retention.segments":["\#(segs[0])"],"audit.retention.through_seq":\#(firstKept.seq - 1),"audit.retention.through_hash":"\#(firstKept.prev)"}"#.utf8)
        // Appended after the last record, chained to it (no key needed for that).
        let last = records(t.log).last!
        let rec = LogRecord(seq: last.seq + 1, prev: last.hash, hash: LogRecord.chainHash(seq: last.seq + 1, prev: last.hash, event: claim), event: claim)
        var line: [UInt8] = []
        rec.write(into: &line)
        let tailPath = t.log + "/" + segments(t.log).last!
        writeFile(tailPath, readFile(tailPath) + line)
        // verify refuses an unsigned retention record.
        let before = try verify(t.log, keys: [key])
        #expect(before.problem?.message.contains("no signed audit.retention record accounts for") == true, "\(before.problem.map(\.description) ?? "ok")")
        #expect(before.problem?.message.contains("not covered by a signature") == true)
        // The next writer cuts the claim instead of signing it; verify still fails.
        let next = try openLog(t.log, maxSegmentBytes: 4096)
        try next.appendAndWait(event(1))
        try next.close()
        let after = try verify(t.log, keys: [key])
        #expect(after.problem?.message.contains("no signed audit.retention record accounts for records 1–\(firstKept.seq - 1)") == true, "\(after.problem.map(\.description) ?? "ok")")
        let retained = records(t.log).filter { eventJSON($0)["type"]?.stringValue == "audit.retention" }
        #expect(retained.isEmpty)
        let cutClaim = records(t.log).contains { eventJSON($0)["audit.recovered.cut_first_seq"]?.intValue == Int64(rec.seq) }
        #expect(cutClaim)
    }

    @Test func aRetentionTheWriterSignedIsListed() throws {
        let t = TempDir("retention-signed")
        defer { t.cleanup() }
        try writeLog(t.log, events: 50, maxSegmentBytes: 2048)
        let before = segments(t.log)
        for name in before.prefix(2) {
            var times = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
            utimensat(AT_FDCWD, t.log + "/" + name, &times, 0)
        }
        let log = try openLog(t.log, maxSegmentBytes: 2048) { $0.retention = .seconds(3600) }
        try log.close()
        let r = try verify(t.log)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        #expect(r.retentions.count == 1 && r.retentions[0].segments == Array(before.prefix(2)))
        #expect(r.retentions[0].throughSeq + 1 == r.firstSeq)
    }
}
