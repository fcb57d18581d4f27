import AirlockCore
import Crypto
import Testing

@testable import AirlockAudit

#if canImport(Glibc)
    import Glibc
#endif

/// Every way of rewriting history the issue lists, each caught at the right place.
@Suite struct TamperTests {
    /// A sealed log of 30 events (checkpoint every 10) in 4 KiB segments.
    func sealedLog() throws -> TempDir {
        let t = TempDir("tamper")
        try writeLog(t.log, events: 30, checkpointEvery: 10, maxSegmentBytes: 4096)
        let r = try verify(t.log)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        #expect(segments(t.log).count >= 3)
        return t
    }

    /// The segment holding `seq`, and the index of its line there.
    func locate(_ dir: String, _ seq: UInt64) -> (String, Int) {
        for name in segments(dir) {
            for (i, l) in lines(dir + "/" + name).enumerated() {
                if case .success(let r) = LogRecord.parse(l[...]), r.seq == seq { return (dir + "/" + name, i) }
            }
        }
        fatalError("seq \(seq) not found")
    }

    /// Re-chains every record after an edit, as an attacker without the key would:
    /// sequence numbers kept, hashes and links recomputed.
    func rechain(_ dir: String) {
        var prev = Digest32.zero
        var first = true
        for name in segments(dir) {
            var out: [[UInt8]] = []
            for l in lines(dir + "/" + name) {
                guard case .success(var r) = LogRecord.parse(l[...]) else { continue }
                if !first { r.prev = prev }
                first = false
                r.hash = LogRecord.chainHash(seq: r.seq, prev: r.prev, event: r.event)
                prev = r.hash
                var line: [UInt8] = []
                r.write(into: &line)
                out.append(Array(line.dropLast()))
            }
            writeLines(dir + "/" + name, out)
        }
    }

    func replaceEvent(_ dir: String, seq: UInt64, _ edit: (String) -> String) {
        let (path, i) = locate(dir, seq)
        var ls = lines(path)
        guard case .success(var r) = LogRecord.parse(ls[i][...]) else { fatalError() }
        r.event = Array(edit(String(decoding: r.event, as: UTF8.self)).utf8)
        var line: [UInt8] = []
        r.write(into: &line)
        ls[i] = Array(line.dropLast())
        writeLines(path, ls)
    }

    func problem(_ dir: String, keys: [AuditPublicKey] = [], anchors: [(UInt64, Digest32)] = []) throws -> AuditVerifier.Problem {
        let r = try verify(dir, keys: keys, anchors: anchors)
        guard let p = r.problem else {
            Issue.record("tampering went undetected")
            return AuditVerifier.Problem(segment: "", message: "")
        }
        return p
    }

    @Test func tornTail() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let last = t.log + "/" + segments(t.log).last!
        let bytes = readFile(last)
        let lastSeq = records(t.log).last!.seq
        writeFile(last, Array(bytes.dropLast(25)))
        let p = try problem(t.log)
        #expect(p.message.contains("torn record"))
        #expect(p.seq == lastSeq - 1 && p.segment == segments(t.log).last!)
        #expect(p.byteOffset != nil)
    }

    @Test func truncatedAtARecordBoundary() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let last = t.log + "/" + segments(t.log).last!
        var ls = lines(last)
        ls.removeLast(1)  // the last batch's signature
        writeLines(last, ls)
        let p = try problem(t.log)
        #expect(p.message.contains("not covered by a signature"))
        #expect(p.message.contains("either a writer crashed just now, or someone appended records or removed the signature that covered them"))
        #expect(p.message.contains("--anchor"))
    }

    @Test func editedPayload() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        replaceEvent(t.log, seq: 7) { $0.replacing("\"n\":", with: "\"n\":1") }
        let p = try problem(t.log)
        #expect(p.seq == 7 && p.message.contains("hash mismatch"))
    }

    @Test func editedPayloadWithTheHashRecomputed() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let (path, i) = locate(t.log, 7)
        var ls = lines(path)
        var r = try LogRecord.parse(ls[i][...]).get()
        r.event = Array(String(decoding: r.event, as: UTF8.self).replacing("\"n\":", with: "\"n\":1").utf8)
        r.hash = LogRecord.chainHash(seq: r.seq, prev: r.prev, event: r.event)
        var line: [UInt8] = []
        r.write(into: &line)
        ls[i] = Array(line.dropLast())
        writeLines(path, ls)
        let p = try problem(t.log)
        #expect(p.seq == 8 && p.message.contains("prev does not match the hash of seq 7"))
    }

    @Test func editedAndFullyRechainedIsCaughtByTheCheckpoint() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        replaceEvent(t.log, seq: 7) { $0.replacing("\"n\":", with: "\"n\":1") }
        rechain(t.log)
        let p = try problem(t.log)
        // The next checkpoint signed the old hash of the record before it.
        #expect(p.message.contains("checkpoint"))
        #expect(p.seq! > 7)
    }

    @Test func deletedRecord() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let (path, i) = locate(t.log, 12)
        var ls = lines(path)
        ls.remove(at: i)
        writeLines(path, ls)
        let p = try problem(t.log)
        #expect(p.seq == 13 && p.message.contains("record 12 is missing"))
    }

    @Test func insertedRecord() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let (path, i) = locate(t.log, 12)
        var ls = lines(path)
        let prev = try LogRecord.parse(ls[i - 1][...]).get()
        let forged = Array(#"{"time":"2026-01-01T00:00:00.000000000Z","type":"process.started","airlock.sandbox.id":"sbx-forged"}"#.utf8)
        let r = LogRecord(seq: 12, prev: prev.hash, hash: LogRecord.chainHash(seq: 12, prev: prev.hash, event: forged), event: forged)
        var line: [UInt8] = []
        r.write(into: &line)
        ls.insert(Array(line.dropLast()), at: i)
        writeLines(path, ls)
        let p = try problem(t.log)
        #expect(p.seq == 12 && p.message.contains("seq 12 follows seq 12"))
    }

    @Test func swappedRecords() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let (path, i) = locate(t.log, 15)
        var ls = lines(path)
        ls.swapAt(i, i + 1)
        writeLines(path, ls)
        let p = try problem(t.log)
        #expect(p.seq == 16 && p.message.contains("records 15–15") == false)
        #expect(p.message.contains("missing") || p.message.contains("reordered"))
    }

    @Test func forgedCheckpointSignature() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let cp = records(t.log).first { eventJSON($0)["type"]?.stringValue == "audit.checkpoint" }!
        let forger = Curve25519.Signing.PrivateKey()
        let message = CheckpointMessage.bytes(chain: eventJSON(cp)["audit.chain.id"]!.stringValue!, seq: cp.seq - 1, hash: cp.prev)
        let forged = Hex.string(try forger.signature(for: message))
        let original = eventJSON(cp)["audit.signature"]!.stringValue!
        replaceEvent(t.log, seq: cp.seq) { $0.replacing(original, with: forged) }
        rechain(t.log)
        let p = try problem(t.log)
        #expect(p.seq == cp.seq && p.message.contains("signature does not verify"))
    }

    @Test func segmentRemovedFromTheMiddle() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let segs = segments(t.log)
        unlink(t.log + "/" + segs[1])
        let p = try problem(t.log)
        #expect(p.segment == segs[2] && p.message.contains("a segment was removed"))
    }

    @Test func replacedKey() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let trusted = try verify(t.log).chains[0].key
        // The attacker rewrites the whole log under a key of their own, consistently.
        let forger = Curve25519.Signing.PrivateKey()
        let fake = AuditPublicKey(raw: Array(forger.publicKey.rawRepresentation))
        for r in records(t.log) {
            let e = eventJSON(r)
            if e["audit.key.public"] != nil {
                replaceEvent(t.log, seq: r.seq) {
                    $0.replacing(trusted.description, with: fake.description).replacing(trusted.id, with: fake.id)
                }
            }
        }
        rechain(t.log)
        let checkpointSeqs = records(t.log).filter { eventJSON($0)["type"]?.stringValue == "audit.checkpoint" }.map(\.seq)
        for seq in checkpointSeqs {
            let r = records(t.log).first { $0.seq == seq }!
            let e = eventJSON(r)
            let sig = Hex.string(try forger.signature(for: CheckpointMessage.bytes(chain: e["audit.chain.id"]!.stringValue!, seq: r.seq - 1, hash: r.prev)))
            replaceEvent(t.log, seq: r.seq) {
                $0.replacing(e["audit.signature"]!.stringValue!, with: sig).replacing(trusted.id, with: fake.id)
                    .replacing(e["audit.checkpoint.hash"]!.stringValue!, with: r.prev.description)
            }
            rechain(t.log)
        }
        // Self-consistent…
        let unpinned = try verify(t.log)
        #expect(unpinned.ok, "\(unpinned.problem.map(\.description) ?? "")")
        // …but not signed by the key the verifier trusts.
        let p = try problem(t.log, keys: [trusted])
        #expect(p.seq == 1 && p.message.contains("not a trusted key"))

        // Replacing only the header's key breaks the hash.
        let t2 = try sealedLog()
        defer { t2.cleanup() }
        let own = try verify(t2.log).chains[0].key
        replaceEvent(t2.log, seq: 1) { $0.replacing(own.description, with: fake.description) }
        #expect(try problem(t2.log).message.contains("hash mismatch"))
    }

    @Test func rollbackToAnEarlierCheckpointIsCaughtByAnAnchor() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let head = try verify(t.log)
        // Cut back to the first checkpoint: locally consistent and sealed…
        let cp = records(t.log).first { eventJSON($0)["type"]?.stringValue == "audit.checkpoint" }!
        let (path, i) = locate(t.log, cp.seq)
        writeLines(path, Array(lines(path).prefix(i + 1)))
        for name in segments(t.log) where LogFiles.firstSeq(ofSegment: name)! > cp.seq { unlink(t.log + "/" + name) }
        let local = try verify(t.log)
        #expect(local.ok)
        // …but the head shipped off-host is gone.
        let p = try problem(t.log, anchors: [(head.lastSeq, head.lastHash)])
        #expect(p.message.contains("rolled back"))
    }

    @Test func aCrashedWritersTornTailIsCutAndRecordedOnReopen() throws {
        let t = try sealedLog()
        defer { t.cleanup() }
        let last = t.log + "/" + segments(t.log).last!
        var bytes = readFile(last)
        bytes += Array(#"{"seq":99,"prev":"00"#.utf8)  // half a record
        writeFile(last, bytes)
        let log = try openLog(t.log)
        #expect(log.openReport.contains { $0.contains("cut what followed the last signature") && $0.contains("20 bytes") })
        try log.close()
        let r = try verify(t.log)
        #expect(r.ok, "\(r.problem.map(\.description) ?? "")")
        let recovered = records(t.log).first { eventJSON($0)["type"]?.stringValue == "audit.recovered" }
        #expect(recovered.map { eventJSON($0)["audit.recovered.cut_bytes"]?.intValue } == Int64(20))
    }
}
