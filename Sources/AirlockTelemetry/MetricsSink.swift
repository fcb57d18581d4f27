#if canImport(Glibc)
import Glibc
#endif
import AirlockEvents
import AirlockCore
import CoreMetrics
import Prometheus
import Synchronization

/// Prometheus metrics derived from Airlock's events, plus the audit log's commit
/// statistics. Each sink owns its registry and hands swift-metrics its factory
/// explicitly, so nothing touches the process-global `MetricsSystem` and several
/// sinks can live in one process. docs/telemetry.md lists every metric.
public final class MetricsSink: EventSink, Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let running: Meter
    private let started: CoreMetrics.Counter
    private let auditRecords: CoreMetrics.Counter
    private let auditLatency: CoreMetrics.Timer
    /// Per live instance: whether `sandbox.created` was seen, and why Airlock stopped it.
    private let live = Mutex([String: String?]())

    /// Buckets of `airlock_audit_write_latency_seconds`: 50 µs to 1 s.
    public static let auditLatencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["airlock_audit_write_latency_seconds"] = Self.auditLatencyBuckets
        self.factory = factory
        started = CoreMetrics.Counter(label: "airlock_sandboxes_started_total", factory: factory)
        running = Meter(label: "airlock_sandboxes_running", factory: factory)
        auditRecords = CoreMetrics.Counter(label: "airlock_audit_records_written_total", factory: factory)
        auditLatency = CoreMetrics.Timer(label: "airlock_audit_write_latency_seconds", factory: factory)
        running.set(0)
    }

    public func emit(_ event: AuditEvent) {
        if let decision = event.decision {
            count("airlock_policy_decisions_total", ("verdict", decision.verdict))
        }
        switch event.type {
        case "sandbox.created":
            let isNew = live.withLock { live in
                guard live[event.instance] == nil else { return false }
                live[event.instance] = .some(nil)
                return true
            }
            if isNew {
                started.increment()
                running.increment()
            }

        case "limit.reached", "process.exited":
            guard let reason = event.string(event.type == "limit.reached" ? "airlock.limit" : "airlock.stop_reason") else { break }
            live.withLock { live in
                if live[event.instance] != nil { live[event.instance] = .some(reason) }
            }

        case "sandbox.destroyed":
            let entry = live.withLock { $0.removeValue(forKey: event.instance) }
            if entry != nil { running.decrement() }
            let outcome = event.string("airlock.outcome") ?? "unknown"
            let reason = outcome == "stopped" ? (entry ?? nil) ?? "stopped" : outcome
            count("airlock_sandboxes_stopped_total", ("reason", reason))

        case "network.request", "network.connection":
            count("airlock_gateway_requests_total", ("verdict", event.decision?.verdict ?? "none"))
            if let out = event.int("airlock.bytes_out"), out > 0 {
                count("airlock_gateway_bytes_total", ("direction", "out"), by: out)
            }
            if let inbound = event.int("airlock.bytes_in"), inbound > 0 {
                count("airlock_gateway_bytes_total", ("direction", "in"), by: inbound)
            }

        case "alert.fired":
            let rule = event.string("airlock.alert.rule") ?? event.decision?.rule ?? "unknown"
            count("airlock_alerts_total", ("rule", rule))

        default:
            break
        }
    }

    /// Called by the audit log after each durable group commit: `records` records
    /// reached the disk, and `latenciesNanos` holds, per record, the time from its
    /// append to the commit's fsync.
    public func recordAuditCommit(records: Int, latenciesNanos: [UInt64]) {
        if records > 0 { auditRecords.increment(by: Int64(records)) }
        for nanos in latenciesNanos {
            auditLatency.recordNanoseconds(Int64(clamping: nanos))
        }
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    public func exposition() -> String {
        registry.emitToString()
    }

    /// Writes `exposition()` to `path` for node_exporter's textfile collector: to a
    /// temporary file beside it, flushed, then renamed over `path`, so a scrape never
    /// reads a partial file. The file is world-readable (0644).
    public func writeTextfile(path: String) throws(AirlockError) {
        let temporary = "\(path).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw systemError("open", errno, "cannot create the metrics file \(temporary)") }
        let writeErrno = POSIXIO.writeAll(fd, Array(exposition().utf8))
        let syncFailed = fsync(fd) != 0 ? errno : 0
        close(fd)
        if writeErrno != 0 || syncFailed != 0 {
            unlink(temporary)
            throw systemError(writeErrno != 0 ? "write" : "fsync", writeErrno != 0 ? writeErrno : syncFailed, "cannot write the metrics file \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw systemError("rename", e, "cannot replace the metrics file \(path)")
        }
    }

    private func count(_ name: String, _ label: (String, String), by amount: Int64 = 1) {
        CoreMetrics.Counter(label: name, dimensions: [label], factory: factory).increment(by: amount)
    }
}

extension AuditEvent {
    fileprivate func string(_ key: String) -> String? { stringAttribute(key) }
    fileprivate func int(_ key: String) -> Int64? { intAttribute(key) }
}
