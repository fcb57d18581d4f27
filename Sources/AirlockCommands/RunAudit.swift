import AirlockAudit
import AirlockControl
import AirlockCore
import AirlockTelemetry
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where a run's events go: the shared `EventPipeline` (stamped with who started it,
/// redacted, fanned out) over the audit log, the `--events` file and the telemetry
/// exporters. The audit log is on by default and fails closed: a run whose
/// events cannot be recorded does not start.
final class RunAudit {
    let sink: EventPipeline
    private let log: AuditLog?
    private let witness: AuditWitness?
    private let traces: OTLPTraceSink?
    private let metrics: MetricsSink?
    private let metricsFile: String?
    private let failures = FailureCounter()

    struct Settings {
        var auditDirectory: String?
        var noAudit = false
        /// `--audit-witness`, else `$AIRLOCK_AUDIT_WITNESS`.
        var auditWitness: String?
        var eventsFile: String?
        /// Prometheus text exposition written here when the run ends (textfile collector).
        var metricsFile: String?
        var identity: Identity
        var environment: [String: String]
    }

    init(_ s: Settings) throws(AirlockError) {
        var sinks: [any EventSink] = []
        metricsFile = s.metricsFile
        let metrics = s.metricsFile == nil ? nil : MetricsSink()
        self.metrics = metrics
        // OTLP traces, when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces one) is set.
        traces = try OTLPTraceSink.fromEnvironment(s.environment) { message in
            printError("airlock: warning: OpenTelemetry export: \(message)")
        }
        if s.noAudit {
            printError("airlock: warning: --no-audit: this run is NOT recorded in the tamper-evident audit log")
            log = nil
            witness = nil
        } else {
            guard let dir = s.auditDirectory ?? LogFiles.defaultDirectory(environment: s.environment) else {
                throw AirlockError(.usage, "no audit log directory: set AIRLOCK_AUDIT_DIR or pass --audit-dir (or --no-audit to run unrecorded)")
            }
            var o = AuditLog.Options(directory: dir)
            if let text = s.auditWitness ?? s.environment["AIRLOCK_AUDIT_WITNESS"], !text.isEmpty {
                let w = AuditWitness(target: try AuditWitness.Target.parse(text)) { printError("airlock: warning: \($0)") }
                o.onHead = { w.publish($0) }
                witness = w
            } else {
                witness = nil
            }
            if let metrics { o.onCommit = { n, latencies in metrics.recordAuditCommit(records: n, latenciesNanos: latencies) } }
            let failures = self.failures
            o.onError = { error in
                failures.add()
                printError("airlock: error: the audit log could not record an event: \(error)")
            }
            // A recovery while the run goes on (another process left an unsigned tail) is
            // reported like one found at open.
            o.onReport = { printError("airlock: audit: \($0)") }
            let opened: AuditLog
            do { opened = try AuditLog.open(o) } catch {
                throw AirlockError(
                    .sandboxSetup,
                    "cannot open the audit log \(dir): \(error.message); fix it, choose another with --audit-dir or AIRLOCK_AUDIT_DIR, or pass --no-audit to run unrecorded",
                    cause: error.cause)
            }
            for line in opened.openReport { printError("airlock: audit: \(line)") }
            log = opened
        }
        if let file = s.eventsFile {
            do { sinks.append(try JSONLinesSink(path: file)) } catch {
                try? log?.close()
                throw AirlockError(.usage, "--events \(file): \(error.description)")
            }
        }
        if let traces { sinks.append(traces) }
        if let metrics { sinks.append(metrics) }
        // The run's sandbox derives its own pipeline from this one (SandboxLauncher), adding
        // its secrets.
        sink = EventPipeline(identity: s.identity, log: log, sinks: sinks)
    }

    /// Closes the log (every batch is already signed) and publishes its last head to the
    /// witness. Returns false if anything could not be recorded.
    func finish() -> Bool {
        var ok = true
        do { try log?.close() } catch {
            printError("airlock: error: the audit log could not be sealed: \(error)")
            ok = false
        }
        // The run's last head, off the host before airlock exits (a failure was reported).
        witness?.close(timeout: .seconds(10))
        traces?.shutdown(timeout: .seconds(5))
        if let metrics, let metricsFile {
            do { try metrics.writeTextfile(path: metricsFile) } catch {
                printError("airlock: error: --metrics-file: \(error)")
                ok = false
            }
        }
        return ok && failures.count == 0
    }
}

/// Events the audit log could not record during this run.
final class FailureCounter: Sendable {
    private let n = Atomic<Int>(0)
    func add() { n.add(1, ordering: .relaxed) }
    var count: Int { n.load(ordering: .relaxed) }
}
