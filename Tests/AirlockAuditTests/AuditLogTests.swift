import AirlockCore
import Testing

@testable import AirlockAudit

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct AuditLogTests {
    @Test func appendsChainsCheckpointsAndSeals() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let log = try openLog(t.log, checkpointEvery: 10)
        var seqs: [UInt64] = []
        for i in 0..<25 { seqs.append(try log.appendAndWait(event(i))) }
        // Live: open, not yet sealed, still verifies.
        let live = try verify(t.log)
        #expect(live.ok, "\(live.problem.map(\.description) ?? "")")
        #expect(live.open)
        try log.close()

        let r = try verify(t.log)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        #expect(!r.open && r.sealed)
        let all = records(t.log)
        #expect(all.map(\.seq) == Array(1...UInt64(all.count)))
        // seq 1 is the chain header; each event got a distinct, increasing seq.
        #expect(seqs == seqs.sorted() && Set(seqs).count == 25)
        #expect(eventJSON(all[0])["type"]?.stringValue == "audit.chain.started")
        let types = all.map { eventJSON($0)["type"]?.stringValue ?? "" }
        // One signature for the new segment's header, then one per batch (here: per append).
        #expect(types.filter { $0 == "audit.checkpoint" }.count == 26)
        #expect(types.last == "audit.checkpoint")
        #expect(eventJSON(all[1])["audit.checkpoint.reason"]?.stringValue == "segment")
        for s in seqs {
            #expect(eventJSON(all[Int(s) - 1])["n"] != nil)
            #expect(eventJSON(all[Int(s)])["audit.checkpoint.reason"]?.stringValue == "batch")  // acknowledged = signed
        }
        #expect(r.checkpoints == 26 && r.chains.count == 1)
    }

    @Test func keyAndLogFilesAreOwnerOnly() throws {
        let t = TempDir()
        defer { t.cleanup() }
        try writeLog(t.log, events: 1)
        for name in [LogFiles.keyFile] + segments(t.log) {
            var st = stat()
            #expect(stat(t.log + "/" + name, &st) == 0)
            #expect(st.st_mode & 0o077 == 0, "\(name) mode \(String(st.st_mode & 0o777, radix: 8))")
        }
        var st = stat()
        stat(t.log, &st)
        #expect(st.st_mode & 0o077 == 0)
        // A key others can read is refused, with what to do.
        chmod(t.log + "/" + LogFiles.keyFile, 0o644)
        #expect(throws: AirlockError.self) { try openLog(t.log) }
        do { _ = try openLog(t.log) } catch { #expect("\(error)".contains("chmod 600")) }
        // The exported public key matches the one in the log.
        chmod(t.log + "/" + LogFiles.keyFile, 0o600)
        let pub = AuditPublicKey(String(decoding: readFile(t.log + "/" + LogFiles.publicKeyFile), as: UTF8.self))
        let chainKey = try verify(t.log).chains.first?.key
        #expect(pub != nil && pub == chainKey)
    }

    @Test func aKeySomeoneElseControlsIsRefused() throws {
        let t = TempDir()
        defer { t.cleanup() }
        try writeLog(t.log, events: 1)
        let key = t.log + "/" + LogFiles.keyFile
        let original = readFile(key)
        // Owned by another user (as root: hand it to nobody). Mode 0600 does not make it ours.
        if geteuid() == 0 {
            #expect(chown(key, 65534, 65534) == 0)
            do {
                _ = try openLog(t.log)
                Issue.record("a key owned by uid 65534 was used")
            } catch { #expect("\(error)".contains("belongs to uid 65534")) }
            chown(key, 0, 0)
        }
        // A symlink to a key elsewhere is not followed (O_NOFOLLOW), so it cannot be swapped in.
        let elsewhere = t.path + "/planted.key"
        writeFile(elsewhere, original)
        unlink(key)
        symlink(elsewhere, key)
        #expect(throws: AirlockError.self) { _ = try openLog(t.log) }
        // Nothing was written with it.
        #expect(try verify(t.log).records == UInt64(records(t.log).count))
        #expect(records(t.log).last.map { eventJSON($0)["type"]?.stringValue } == "audit.checkpoint")
    }

    @Test func asyncConcurrentWritersAllAcknowledgedAndDurable() async throws {
        let t = TempDir()
        defer { t.cleanup() }
        let log = try openLog(t.log, checkpointEvery: 500)
        let seqs = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for w in 0..<8 {
                group.addTask {
                    var out: [UInt64] = []
                    for i in 0..<250 { out.append(try await log.append(event(w * 1000 + i))) }
                    return out
                }
            }
            var all: [UInt64] = []
            for try await s in group { all += s }
            return all
        }
        try log.close()
        #expect(Set(seqs).count == 2000)
        let byseq = Dictionary(uniqueKeysWithValues: records(t.log).map { ($0.seq, $0) })
        for s in seqs { #expect(byseq[s].map { eventJSON($0)["type"]?.stringValue } == "process.started") }
        let ok = try verify(t.log).ok
        #expect(ok)
    }

    @Test func rotatesBySizeAndVerifiesAcrossSegments() throws {
        let t = TempDir()
        defer { t.cleanup() }
        try writeLog(t.log, events: 200, maxSegmentBytes: 4096)
        let segs = segments(t.log)
        #expect(segs.count > 5)
        let r = try verify(t.log)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        #expect(r.segments == segs.count && r.chains.count == 1)
        // Each segment after the first opens with a header naming its predecessor.
        for (i, name) in segs.enumerated().dropFirst() {
            let head = eventJSON(records(t.log).first { LogFiles.segmentName(firstSeq: $0.seq) == name }!)
            #expect(head["type"]?.stringValue == "audit.segment.opened")
            #expect(head["audit.segment.previous"]?.stringValue == segs[i - 1])
        }
    }

    @Test func rotatesByAgeAndRetentionKeepsVerificationWhole() throws {
        let t = TempDir()
        defer { t.cleanup() }
        try writeLog(t.log, events: 50, maxSegmentBytes: 2048)
        let before = segments(t.log)
        #expect(before.count >= 4)
        // Age the oldest segments, then let a writer with a retention of 1 h remove them.
        for name in before.prefix(2) {
            var times = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
            utimensat(AT_FDCWD, t.log + "/" + name, &times, 0)
        }
        let log = try openLog(t.log, maxSegmentBytes: 2048) { $0.retention = .seconds(3600); $0.maxSegmentAge = .seconds(3600) }
        try log.appendAndWait(event(99))
        try log.close()
        let after = segments(t.log)
        #expect(!after.contains(before[0]) && !after.contains(before[1]))
        let r = try verify(t.log)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        #expect(r.firstSeq > 1)
        // Removing another segment from the start without a retention record is caught.
        unlink(t.log + "/" + after[0])
        let bad = try verify(t.log)
        #expect(bad.problem?.message.contains("no signed audit.retention record accounts for") == true)

        // Age: a segment older than maxSegmentAge is rotated on the next write.
        let t2 = TempDir()
        defer { t2.cleanup() }
        let young = try openLog(t2.log) { $0.maxSegmentAge = .milliseconds(50) }
        try young.appendAndWait(event(1))
        usleep(80_000)
        try young.appendAndWait(event(2))
        try young.close()
        #expect(segments(t2.log).count == 2)
        let ok2 = try verify(t2.log).ok
        #expect(ok2)
    }

    @Test func everyAcknowledgedBatchIsAlreadySigned() async throws {
        let t = TempDir()
        defer { t.cleanup() }
        let log = try openLog(t.log, checkpointEvery: 1_000_000)
        let seqs = try await log.append(contentsOf: (0..<100).map { event($0) })
        // Acknowledged, the writer still open: a signature already covers every record.
        let last = records(t.log).last!
        #expect(eventJSON(last)["type"]?.stringValue == "audit.checkpoint" && last.seq == seqs.last! + 1)
        let r = try verify(t.log)
        #expect(r.ok && r.sealed, "\(r.problem.map(\.description) ?? "")")
        // The head names the last record the signature covers, and verifies with the key.
        let head = try #require(log.head)
        #expect(head.seq == seqs.last! && head.hash == records(t.log)[Int(head.seq) - 1].hash)
        #expect(head.isSigned(by: log.publicKey) && SignedHead(line: Array(head.line.utf8)) == head)
        try log.close()
    }

    @Test func aKeyChangeStartsANewLinkedChain() throws {
        let t = TempDir()
        defer { t.cleanup() }
        try writeLog(t.log, events: 5)
        let oldKey = try verify(t.log).chains[0].key
        unlink(t.log + "/" + LogFiles.keyFile)
        let log = try openLog(t.log)
        #expect(log.openReport.contains { $0.contains("signing key changed") })
        try log.appendAndWait(event(6))
        try log.close()
        let r = try verify(t.log)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        #expect(r.chains.count == 2 && r.chains[0].key == oldKey && r.chains[1].key != oldKey)
        let start = records(t.log).first { eventJSON($0)["type"]?.stringValue == "audit.chain.started" && $0.seq > 1 }!
        #expect(eventJSON(start)["audit.chain.previous"]?["audit.key.id"]?.stringValue == oldKey.id)
        // Pinning the old key flags the new chain.
        let pinned = try verify(t.log, keys: [oldKey])
        #expect(pinned.problem?.message.contains("not a trusted key") == true)
        #expect(pinned.problem?.seq == start.seq)
    }

    @Test func redactsBeforeWriting() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let secret = "hunter2-very-secret-value"
        let log = try openLog(t.log) { o in
            o.redact = { s in s.replacing(secret, with: "[REDACTED:secret:PW]") }
        }
        try log.appendAndWait(event(1, extra: [("process.command_args", .array([.string("--password=\(secret)")]))]))
        try log.close()
        for name in segments(t.log) {
            let text = String(decoding: readFile(t.log + "/" + name), as: UTF8.self)
            #expect(!text.contains(secret))
            #expect(text.contains("[REDACTED:secret:PW]"))
        }
    }

    @Test func aFullDiskFailsTheAppendInsteadOfLosingIt() throws {
        // /dev/full: every write fails with ENOSPC. The append must throw, not acknowledge.
        let t = TempDir()
        defer { t.cleanup() }
        let log = try openLog(t.log)
        try log.appendAndWait(event(1))
        try log.close()
        let seg = t.log + "/" + segments(t.log).last!
        unlink(seg)
        symlink("/dev/full", seg)
        #expect(throws: AirlockError.self) { _ = try openLog(t.log) }
    }
}
