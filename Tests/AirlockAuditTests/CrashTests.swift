import AirlockCore
import Foundation
import Testing

@testable import AirlockAudit

/// SIGKILL the writer in the middle of heavy concurrent writing, again and again:
/// every record it acknowledged must be there, intact, and the chain must verify
/// once the log has been reopened; what the crash left unsigned (a partial batch) is
/// cut, never signed, and the cut range is reported, after every acknowledged record.
@Suite struct CrashTests {
    static let writer: String = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return exe.deletingLastPathComponent().appendingPathComponent("airlock-bench").path
    }()

    /// Starts the crash writer, lets it write for `millis`, kills it; returns the acknowledged lines.
    func writeAndKill(_ dir: String, millis: UInt32) throws -> [(UInt64, Int, Int)] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.writer)
        p.arguments = ["audit-crash-writer", dir]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        // Read concurrently so the pipe never blocks the writer.
        nonisolated(unsafe) var data = Data()
        let reader = Thread { data = out.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        usleep(millis * 1000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        #expect(p.terminationReason == .uncaughtSignal)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.hasPrefix("ready\n"), "the writer did not start: \(text.prefix(200))")
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: " ")
            // The last line may be cut by the kill: it was not fully printed, so not counted.
            guard f.count == 3, let s = UInt64(f[0]), let w = Int(f[1]), let i = Int(f[2]) else { return nil }
            return (s, w, i)
        }
    }

    @Test func noAcknowledgedRecordIsLostToSIGKILL() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.writer), "build airlock-bench first (swift build)")
        let t = TempDir("crash")
        defer { t.cleanup() }
        var acknowledged: [(UInt64, Int, Int)] = []
        for round in 0..<4 {
            let acks = try writeAndKill(t.log, millis: UInt32(300 + 150 * round))
            #expect(acks.count > 100, "round \(round): only \(acks.count) acknowledged")
            acknowledged += acks
            // Unless the kill happened to land right after a checkpoint, the log is now
            // unsealed or torn, and reopening must repair it and record the repair.
            func recoveries() -> Int { records(t.log).filter { eventJSON($0)["type"]?.stringValue == "audit.recovered" }.count }
            let last = t.log + "/" + segments(t.log).last!
            let torn = readFile(last).last != 0x0A
            let sealed = !torn && records(t.log).last.map { eventJSON($0)["type"]?.stringValue == "audit.checkpoint" } == true
            let before = recoveries()
            // Reopening repairs and seals; then everything acknowledged must be there.
            let log = try openLog(t.log)
            try log.close()
            let r = try verify(t.log)
            #expect(r.ok, "round \(round): \(r.problem.map(\.description) ?? "")")
            let bySeq = Dictionary(records(t.log).map { ($0.seq, $0) }, uniquingKeysWith: { a, _ in a })
            var missing = 0
            for (seq, w, i) in acknowledged {
                guard let rec = bySeq[seq] else { missing += 1; continue }
                let e = eventJSON(rec)
                #expect(e["bench.writer"]?.intValue == Int64(w) && e["bench.i"]?.intValue == Int64(i), "seq \(seq) holds another event")
            }
            #expect(missing == 0, "round \(round): \(missing) acknowledged records missing")
            #expect(recoveries() == before + (sealed ? 0 : 1), "round \(round): torn \(torn), sealed \(sealed)")
            if !sealed {
                // verify reports the cut, and it lies entirely after every acknowledged record.
                let cut = try #require(r.recoveries.last)
                #expect(!cut.legacy && cut.cutBytes.map { $0 > 0 } == true, "\(cut)")
                let after = cut.afterSeq ?? 0
                #expect(acks.allSatisfy { $0.0 <= after }, "round \(round): an acknowledged record was after the cut at seq \(after)")
                #expect(cut.cutFirstSeq.map { $0 == Int64(after + 1) } ?? true)
                print("round \(round): \(acks.count) acknowledged; recovery: \(cut)")
            }
        }
    }
}

/// What a SIGKILL in the middle of `write(2)` leaves is a prefix of the batch being
/// written: cut it at many points of a real batch and reopen. Whatever the cut, every
/// acknowledged record is there, nothing of the interrupted batch is signed by the
/// next writer, and the recovered range is exactly what the crash left.
@Suite struct TornBatchTests {
    @Test func aBatchTornAnywhereIsCutReportedAndLosesNothingAcknowledged() async throws {
        let t = TempDir("torn-batch")
        defer { t.cleanup() }
        let log = try openLog(t.log, checkpointEvery: 1_000_000)
        let acknowledged = try await log.append(contentsOf: (0..<50).map { event($0) })
        let seg = segments(t.log)[0]
        let signedEnd = readFile(t.log + "/" + seg).count
        let lastSigned = records(t.log).last!.seq
        _ = try await log.append(contentsOf: (50..<100).map { event($0) })  // the batch the crash interrupts
        try log.close()
        let full = readFile(t.log + "/" + seg)
        let batch = full.count - signedEnd
        #expect(batch > 1000)
        for cut in [1, 100, batch / 3, batch / 2, batch - 400, batch - 2, batch - 1] {
            let c = TempDir("torn-batch-copy")
            defer { c.cleanup() }
            mkdir(c.log, 0o700)
            for f in [LogFiles.keyFile, LogFiles.publicKeyFile] { writeFile(c.log + "/" + f, readFile(t.log + "/" + f)) }
            let prefix = Array(full[..<(signedEnd + cut)])
            writeFile(c.log + "/" + seg, prefix)
            let leftLines = prefix[signedEnd...].split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().count
            let next = try openLog(c.log)
            try next.close()
            let r = try verify(c.log)
            #expect(r.ok, "cut at \(cut): \(r.problem.map(\.description) ?? "")")
            let have = Set(records(c.log).filter { eventJSON($0)["n"] != nil }.map(\.seq))
            #expect(acknowledged.allSatisfy { have.contains($0) }, "cut at \(cut): an acknowledged record is missing")
            let rec = try #require(r.recoveries.last, "cut at \(cut): no recovery reported")
            #expect(rec.afterSeq == lastSigned && rec.cutBytes == Int64(cut) && rec.cutRecords == Int64(leftLines), "cut at \(cut): \(rec)")
            if leftLines > 0 { #expect(rec.cutFirstSeq == Int64(lastSigned + 1) && rec.cutLastSeq == Int64(lastSigned) + Int64(leftLines)) }
            // None of the interrupted batch's events is in the log any more.
            #expect(records(c.log).allSatisfy { (eventJSON($0)["n"]?.intValue ?? 0) < 50 }, "cut at \(cut)")
        }
    }
}
