// `airlock-bench audit`: the audit log's append throughput with hash chaining and
// durable group commit, its acknowledgement latency under a steady 10,000 events/s,
// and verification speed; side by side with two baselines on the same disk: a plain
// JSON-lines append with no chain and no sync (the cheapest possible log) and a
// naive durable log that syncs every record.
import AirlockAudit
import AirlockCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A typical event: what `process.exited` carries.
func benchEvent(_ writer: Int, _ i: Int) -> AuditEvent {
    AuditEvent(
        type: "process.exited", identity: Identity(instance: "sbx-\(String(writer, radix: 16))5f3a9c2e10b4", agent: "bench-agent", principal: "uid:0"),
        attributes: [
            ("bench.writer", .int(Int64(writer))), ("bench.i", .int(Int64(i))), ("process.exit.code", .int(0)),
            ("airlock.duration_ms", .int(33)), ("airlock.cpu.time_ns", .int(7_797_312)), ("airlock.memory.peak_bytes", .int(1_044_480)),
            ("process.command_args", .array([.string("/usr/bin/python3"), .string("-c"), .string("print('hello')")])),
        ])
}

/// Acknowledgement latencies and sync count, as the log reports them per commit.
final class LatencyRecorder: Sendable {
    private let state = Mutex<(latencies: [UInt64], batches: Int)>(([], 0))
    func add(_ l: [UInt64]) {
        state.withLock {
            $0.latencies += l
            $0.batches += 1
        }
    }
    func take() -> ([UInt64], Int) {
        state.withLock { s in
            defer { s = ([], 0) }
            return (s.latencies, s.batches)
        }
    }
}

func benchDir(_ tag: String) -> String {
    let base = "/var/tmp/airlock-bench-\(tag)-\(getpid())"
    _ = system("rm -rf '\(base)'")
    return base
}

/// Appends `total` events from `writers` concurrent tasks, each handing over
/// `batch` events at a time and waiting for them; returns events/s.
func throughput(_ log: AuditLog, writers: Int, batch: Int, total: Int) async throws -> Double {
    let per = total / writers / batch * batch
    let t0 = now()
    try await withThrowingTaskGroup(of: Void.self) { g in
        for w in 0..<writers {
            g.addTask {
                var i = 0
                while i < per {
                    if batch == 1 {
                        _ = try await log.append(benchEvent(w, i))
                    } else {
                        _ = try await log.append(contentsOf: (i..<(i + batch)).map { benchEvent(w, $0) })
                    }
                    i += batch
                }
            }
        }
        try await g.waitForAll()
    }
    return Double(per * writers) / (Double(now() - t0) / 1e9)
}

func auditBenchmark(events: Int) async -> Int32 {
    print("audit log benchmark: \(events) events of ~\(benchEvent(0, 0).encodedObject(seq: nil).encoded().utf8.count) bytes, disk: /var/tmp")
    do {
        // Baseline 1: no chain, no sync.
        let plainPath = benchDir("plain") + ".jsonl"
        let plain = try JSONLinesSink(path: plainPath)
        var t0 = now()
        for i in 0..<events { plain.emit(benchEvent(0, i)) }
        let plainRate = Double(events) / (Double(now() - t0) / 1e9)
        unlink(plainPath)

        // Baseline 2: a durable log that syncs every record (one writer).
        let naivePath = benchDir("naive") + ".jsonl"
        let fd = open(naivePath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        let naiveN = min(events, 2000)
        t0 = now()
        for i in 0..<naiveN {
            var line: [UInt8] = []
            benchEvent(0, i).write(into: &line)
            line.append(0x0A)
            POSIXIO.writeAll(fd, line)
            fdatasync(fd)
        }
        let naiveRate = Double(naiveN) / (Double(now() - t0) / 1e9)
        close(fd)
        unlink(naivePath)

        // Airlock: chained, signed, durable, group commit, concurrent writers.
        let recorder = LatencyRecorder()
        var o = AuditLog.Options(directory: benchDir("log"))
        o.onCommit = { _, l in recorder.add(l) }
        let log = try AuditLog.open(o)
        var rows: [(String, Double, Double, Double, Int)] = []
        for (writers, batch) in [(1, 1), (16, 1), (256, 1), (16, 64), (64, 64)] {
            let n = writers * batch < 64 ? min(events, 20000) : events
            let rate = try await throughput(log, writers: writers, batch: batch, total: n)
            let (lat, batches) = recorder.take()
            rows.append(("airlock, \(writers) writers x batch \(batch)", rate, percentile(lat, 0.5), percentile(lat, 0.99), batches))
        }
        print("")
        print("append throughput (events/s, higher is better)")
        print("  " + pad("", 34) + lpad("events/s", 12) + lpad("p50 ack ms", 12) + lpad("p99 ack ms", 12) + lpad("syncs", 8))
        for (name, rate, p50, p99, batches) in rows {
            print("  " + pad(name, 34) + lpad(fmt(rate, 0), 12) + lpad(fmt(p50, 3), 12) + lpad(fmt(p99, 3), 12) + lpad(String(batches), 8))
        }
        print("  " + pad("naive: fdatasync per record", 34) + lpad(fmt(naiveRate, 0), 12))
        print("  " + pad("plain JSON lines, no sync", 34) + lpad(fmt(plainRate, 0), 12))
        let best = rows.map(\.1).max() ?? 0
        print("  ratios: airlock (best) / naive durable = \(fmt(best / naiveRate, 1))x; airlock / plain unsynced = \(fmt(best / plainRate, 2))x")

        // Steady 10,000 events/s, open loop: latency from enqueue to acknowledgement.
        let rate = 10_000
        let seconds = 3
        let tick: UInt64 = 1_000_000  // 1 ms: 10 events per tick
        let start = now()
        await withTaskGroup(of: Void.self) { g in
            for k in 0..<(rate * seconds / 10) {
                let due = start + UInt64(k) * tick
                let n = now()
                if due > n { usleep(UInt32((due - n) / 1000)) }
                for j in 0..<10 {
                    g.addTask { _ = try? await log.append(benchEvent(j, k)) }
                }
            }
        }
        let (lat, batches) = recorder.take()
        print("")
        print("steady \(rate) events/s for \(seconds) s (open loop): \(lat.count) acknowledged in \(batches) syncs; ack latency p50 \(fmt(percentile(lat, 0.5), 3)) ms, p99 \(fmt(percentile(lat, 0.99), 3)) ms, max \(fmt(Double(lat.max() ?? 0) / 1e6, 3)) ms")
        try log.close()

        // Verification speed.
        t0 = now()
        let report = try AuditVerifier(directory: o.directory).verify()
        let secs = Double(now() - t0) / 1e9
        print("")
        print("verify: \(report.records) records, \(report.checkpoints) checkpoints in \(fmt(secs, 2)) s = \(fmt(Double(report.records) / secs, 0)) records/s (\(report.ok ? "ok" : "FAILED: \(report.problem!)"))")
        _ = system("rm -rf '\(o.directory)'")
        return report.ok ? 0 : 1
    } catch {
        print("audit benchmark failed: \(error)")
        return 1
    }
}

/// For the crash test: appends from 8 concurrent tasks until killed, printing
/// `SEQ WRITER I` for every acknowledged (durable and signed) event. Half the tasks
/// append one event at a time, half 100 at once, so that batches are large and a kill
/// often lands in the middle of one.
func auditCrashWriter(directory: String) async -> Int32 {
    do {
        var o = AuditLog.Options(directory: directory)
        o.checkpointEvery = 100
        let log = try AuditLog.open(o)
        POSIXIO.writeAll(1, Array("ready\n".utf8))
        await withTaskGroup(of: Void.self) { g in
            for w in 0..<8 {
                g.addTask {
                    var i = 0
                    while true {
                        let n = w < 4 ? 1 : 100
                        guard let seqs = try? await log.append(contentsOf: (i..<(i + n)).map { benchEvent(w, $0) }) else { return }
                        var lines = ""
                        for (k, seq) in seqs.enumerated() { lines += "\(seq) \(w) \(i + k)\n" }
                        POSIXIO.writeAll(1, Array(lines.utf8))
                        i += n
                    }
                }
            }
        }
        return 1
    } catch {
        printErr("crash writer: \(error)")
        return 1
    }
}

func printErr(_ s: String) { POSIXIO.writeAll(2, Array((s + "\n").utf8)) }
