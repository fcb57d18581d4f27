import Foundation
import Testing

extension SandboxSuite {
    /// Telemetry out of a real run: OTLP/HTTP traces received and decoded by a real
    /// OTLP receiver (opentelemetry-proto), and the metrics file parsed by
    /// prometheus_client's own parser.
    @Suite("telemetry cli")
    struct TelemetryCLITests {
        static let tools = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tools")

        @Test func aRunIsExportedAsATraceAndCountedInMetrics() throws {
            try Fixture.with { f in
                let spansFile = f.path(".spans.jsonl")
                let receiver = Process()
                receiver.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                receiver.arguments = ["python3", Self.tools.appendingPathComponent("otlp_receiver.py").path, "--out", spansFile]
                let out = Pipe()
                receiver.standardOutput = out
                try receiver.run()
                defer {
                    // SIGKILL: the test runner blocks SIGTERM and the child inherits that mask.
                    kill(receiver.processIdentifier, SIGKILL)
                    receiver.waitUntilExit()
                }
                // "PORT <n>" once it listens.
                var line = Data()
                while !line.contains(0x0A) {
                    let b = out.fileHandleForReading.readData(ofLength: 1)
                    if b.isEmpty { break }
                    line.append(b)
                }
                let text = String(decoding: line, as: UTF8.self)
                let port = try #require(text.hasPrefix("PORT ") ? Int(text.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines)) : nil, "receiver said: \(text)")

                let r = try f.run(
                    ["run", "--metrics-file", "metrics.prom", "--agent", "agent-e2e", "--", "/bin/sh", "-c", "exit 3"],
                    environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(port)", "OTEL_SERVICE_NAME": "airlock-e2e"])
                #expect(r.status == 3, "\(r.stderr)")
                #expect(!r.stderr.contains("OpenTelemetry export"), "\(r.stderr)")

                // The trace: root span and the process span under it, same trace.
                let spans = ((try? String(contentsOfFile: spansFile, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
                let root = try #require(spans.first { $0["name"] as? String == "airlock.sandbox" }, "\(spans)")
                let process = try #require(spans.first { $0["name"] as? String == "process.exec" })
                #expect(process["trace_id"] as? String == root["trace_id"] as? String)
                #expect(process["parent_span_id"] as? String == root["span_id"] as? String)
                let attrs = process["attributes"] as? [String: Any] ?? [:]
                #expect(attrs["process.exit.code"] as? Int == 3)
                #expect(attrs["gen_ai.agent.id"] as? String == "agent-e2e")
                #expect((root["resource"] as? [String: Any])?["service.name"] as? String == "airlock-e2e")

                // The metrics, through prometheus_client.
                let parser = Process()
                parser.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                parser.arguments = ["python3", Self.tools.appendingPathComponent("parse_prometheus.py").path]
                parser.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: f.path("metrics.prom")))
                let parsed = Pipe()
                parser.standardOutput = parsed
                try parser.run()
                let json = parsed.fileHandleForReading.readDataToEndOfFile()
                parser.waitUntilExit()
                #expect(parser.terminationStatus == 0)
                let samples = try #require(try JSONSerialization.jsonObject(with: json) as? [[String: Any]])
                func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
                    samples.first { $0["name"] as? String == name && ($0["labels"] as? [String: String] ?? [:]) == labels }?["value"] as? Double
                }
                #expect(value("airlock_sandboxes_started_total") == 1)
                #expect(value("airlock_sandboxes_running") == 0)
                #expect(value("airlock_sandboxes_stopped_total", ["reason": "exited"]) == 1)
                // sandbox.created, process.started, process.exited, sandbox.destroyed (+ a first chain header).
                let written = try #require(value("airlock_audit_records_written_total"))
                #expect(written >= 4)
                #expect(value("airlock_audit_write_latency_seconds_count") == written)
            }
        }
    }
}
