import AirlockAudit
import AirlockTelemetry
import Foundation
import Testing

@Suite struct MetricsSinkTests {
    struct Sample: Decodable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// The exposition as parsed by prometheus_client's own parser.
    static func parse(_ exposition: String) throws -> [Sample] {
        try JSONDecoder().decode([Sample].self, from: PythonTool.run("parse_prometheus.py", input: exposition))
    }

    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }

    static func feed(_ sink: MetricsSink) {
        func run(_ instance: String, outcome: String, stop: String? = nil) {
            sink.emit(AuditEvent(type: "sandbox.created", instance: instance))
            if let stop {
                sink.emit(AuditEvent(type: "limit.reached", instance: instance, attributes: [("airlock.limit", .string(stop))]))
            }
            sink.emit(AuditEvent(type: "sandbox.destroyed", instance: instance, attributes: [("airlock.outcome", .string(outcome))]))
        }
        run("sbx-1", outcome: "exited")
        run("sbx-2", outcome: "exited")
        run("sbx-3", outcome: "stopped", stop: "wall_clock")
        run("sbx-4", outcome: "setup_failed")
        sink.emit(AuditEvent(type: "sandbox.created", instance: "sbx-5"))  // still running
        sink.emit(AuditEvent(type: "sandbox.created", instance: "sbx-5"))  // counted once

        let id = Identity(instance: "sbx-5")
        sink.emit(
            AuditEvent(
                type: "network.request", identity: id, decision: Decision("allow", reason: "ok"),
                attributes: [("airlock.bytes_out", .int(100)), ("airlock.bytes_in", .int(5000))]))
        sink.emit(
            AuditEvent(
                type: "network.connection", identity: id, decision: Decision("allow", reason: "ok"),
                attributes: [("airlock.bytes_out", .int(20)), ("airlock.bytes_in", .int(30))]))
        sink.emit(AuditEvent(type: "network.request", identity: id, decision: Decision("deny", reason: "not allowed")))
        sink.emit(
            AuditEvent(
                type: "alert.fired", identity: id, decision: Decision("alert", reason: "secret", rule: "secrets"),
                attributes: [("airlock.alert.rule", .string("secrets"))]))
        sink.emit(AuditEvent(type: "alert.fired", identity: id, decision: Decision("alert", reason: "x", rule: "exfil")))
        sink.recordAuditCommit(records: 3, latenciesNanos: [200_000, 3_000_000, 2_000_000_000])
        sink.recordAuditCommit(records: 2, latenciesNanos: [])
    }

    @Test func metricsFromEventsParseWithPrometheusClient() throws {
        let sink = MetricsSink()
        Self.feed(sink)
        let s = try Self.parse(sink.exposition())
        #expect(Self.value(s, "airlock_sandboxes_started_total") == 5)
        #expect(Self.value(s, "airlock_sandboxes_running") == 1)
        #expect(Self.value(s, "airlock_sandboxes_stopped_total", ["reason": "exited"]) == 2)
        #expect(Self.value(s, "airlock_sandboxes_stopped_total", ["reason": "wall_clock"]) == 1)
        #expect(Self.value(s, "airlock_sandboxes_stopped_total", ["reason": "setup_failed"]) == 1)
        #expect(Self.value(s, "airlock_policy_decisions_total", ["verdict": "allow"]) == 2)
        #expect(Self.value(s, "airlock_policy_decisions_total", ["verdict": "deny"]) == 1)
        #expect(Self.value(s, "airlock_policy_decisions_total", ["verdict": "alert"]) == 2)
        #expect(Self.value(s, "airlock_gateway_requests_total", ["verdict": "allow"]) == 2)
        #expect(Self.value(s, "airlock_gateway_requests_total", ["verdict": "deny"]) == 1)
        #expect(Self.value(s, "airlock_gateway_bytes_total", ["direction": "out"]) == 120)
        #expect(Self.value(s, "airlock_gateway_bytes_total", ["direction": "in"]) == 5030)
        #expect(Self.value(s, "airlock_alerts_total", ["rule": "secrets"]) == 1)
        #expect(Self.value(s, "airlock_alerts_total", ["rule": "exfil"]) == 1)
        #expect(Self.value(s, "airlock_audit_records_written_total") == 5)

        let histogram = "airlock_audit_write_latency_seconds"
        #expect(Self.value(s, histogram + "_count") == 3)
        #expect(abs((Self.value(s, histogram + "_sum") ?? 0) - 2.0032) < 1e-9)
        #expect(Self.value(s, histogram + "_bucket", ["le": "0.0001"]) == 0)
        #expect(Self.value(s, histogram + "_bucket", ["le": "0.00025"]) == 1)
        #expect(Self.value(s, histogram + "_bucket", ["le": "0.005"]) == 2)
        #expect(Self.value(s, histogram + "_bucket", ["le": "1.0"]) == 2)
        #expect(Self.value(s, histogram + "_bucket", ["le": "+Inf"]) == 3)
    }

    @Test func eachSinkHasItsOwnRegistry() throws {
        let busy = MetricsSink()
        Self.feed(busy)
        let quiet = MetricsSink()
        let s = try Self.parse(quiet.exposition())
        #expect(Self.value(s, "airlock_sandboxes_started_total") == 0)
        #expect(Self.value(s, "airlock_sandboxes_running") == 0)
        #expect(Self.value(s, "airlock_sandboxes_stopped_total", ["reason": "exited"]) == nil)
    }

    @Test func textfileIsReplacedAtomically() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("airlock-metrics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("airlock.prom").path
        try "stale".write(toFile: path, atomically: false, encoding: .utf8)

        let sink = MetricsSink()
        Self.feed(sink)
        try sink.writeTextfile(path: path)
        let written = try String(contentsOfFile: path, encoding: .utf8)
        #expect(written == sink.exposition())
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["airlock.prom"])
        #expect(Self.value(try Self.parse(written), "airlock_sandboxes_started_total") == 5)

        #expect(throws: (any Error).self) { try sink.writeTextfile(path: directory.path + "/missing/airlock.prom") }
    }
}
