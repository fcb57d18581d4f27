import AirlockAudit
import AirlockCore
import AirlockTelemetry
import Foundation
import Synchronization
import Testing

@Suite(.serialized) struct OTLPTraceSinkTests {
    static let t0: Int64 = 1_800_000_000_000_000_000
    static func at(_ ms: Int64) -> Int64 { t0 + ms * 1_000_000 }

    /// A stopped run with a network request, a warning, an alert and a teardown
    /// warning, then a plain run on a second instance.
    static func events() -> [AuditEvent] {
        let a = Identity(instance: "sbx-aaaaaaaaaaaaaaaa", session: "sess-1", agent: "agent-7", principal: "alice")
        let b = Identity(instance: "sbx-bbbbbbbbbbbbbbbb")
        return [
            AuditEvent(
                type: "sandbox.created", identity: a,
                attributes: [("airlock.profile", .string("default")), ("airlock.limits.cpus", .double(2.0)), ("airlock.cgroup", .null)],
                timeNanos: at(0)),
            AuditEvent(
                type: "process.started", identity: a,
                attributes: [("process.vpid", .int(2)), ("process.command_args", .array([.string("sleep"), .string("10")]))],
                timeNanos: at(1)),
            AuditEvent(
                type: "network.request", identity: a, decision: Decision("allow", reason: "host allowed", rule: "egress.pypi"),
                attributes: [
                    ("server.address", .string("pypi.org")), ("server.port", .int(443)), ("http.request.method", .string("GET")),
                    ("url.path", .string("/simple/")), ("airlock.bytes_out", .int(120)), ("airlock.bytes_in", .int(4096)),
                    ("airlock.duration_ms", .int(2)),
                ],
                timeNanos: at(5)),
            AuditEvent(
                type: "network.connection", identity: a, decision: Decision("deny", reason: "169.254.169.254 is cloud metadata", rule: "ssrf"),
                attributes: [("server.address", .string("169.254.169.254")), ("server.port", .int(80))],
                timeNanos: at(5) + 500),
            AuditEvent(type: "sandbox.warning", identity: a, attributes: [("airlock.warning", .string("1 fork refused"))], timeNanos: at(6)),
            AuditEvent(
                type: "alert.fired", identity: a, decision: Decision("alert", reason: "secret read", rule: "secrets"),
                attributes: [("airlock.alert.rule", .string("secrets"))], timeNanos: at(7)),
            AuditEvent(
                type: "limit.reached", identity: a,
                attributes: [("airlock.limit", .string("wall_clock")), ("airlock.reason", .string("wall-clock limit 1s reached"))],
                timeNanos: at(8)),
            AuditEvent(
                type: "process.exited", identity: a,
                attributes: [("airlock.exit.signal", .int(9)), ("airlock.stop_reason", .string("wall_clock"))], timeNanos: at(9)),
            AuditEvent(type: "sandbox.destroyed", identity: a, attributes: [("airlock.outcome", .string("stopped"))], timeNanos: at(10)),
            AuditEvent(type: "sandbox.warning", identity: a, attributes: [("airlock.warning", .string("cgroup left behind"))], timeNanos: at(11)),

            AuditEvent(type: "sandbox.created", identity: b, attributes: [("airlock.profile", .string("strict"))], timeNanos: at(20)),
            AuditEvent(type: "process.started", identity: b, attributes: [("process.vpid", .int(2))], timeNanos: at(21)),
            AuditEvent(type: "process.exited", identity: b, attributes: [("process.exit.code", .int(0))], timeNanos: at(22)),
            AuditEvent(type: "sandbox.destroyed", identity: b, attributes: [("airlock.outcome", .string("exited"))], timeNanos: at(23)),
        ]
    }

    @Test func exportsOneTracePerSandboxToARealOTLPReceiver() async throws {
        let receiver = try OTLPReceiver()
        defer { receiver.stop() }
        let errors = Mutex<[String]>([])
        let sink = try #require(
            try OTLPTraceSink.fromEnvironment(
                [
                    "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                    "OTEL_SERVICE_NAME": "airlock-test",
                    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci,team=a%20b",
                    "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cret",
                ],
                onError: { message in errors.withLock { $0.append(message) } }))
        for event in Self.events() { sink.emit(event) }
        await shutdownOffPool(sink, timeout: .seconds(15))

        let spans = try receiver.spans()
        #expect(spans.allSatisfy { $0["error"] == nil }, "\(spans)")
        #expect(errors.withLock { $0 } == [])
        #expect(spans.count == 7, "\(spans.map { $0["name"] ?? "?" })")

        func span(_ name: String, _ instance: String) throws -> [String: Any] {
            try #require(
                spans.first { $0["name"] as? String == name && attributes($0)["airlock.sandbox.id"] as? String == instance },
                "no span \(name) for \(instance)")
        }
        func attributes(_ span: [String: Any]) -> [String: Any] { span["attributes"] as? [String: Any] ?? [:] }
        func nanos(_ span: [String: Any], _ key: String) -> Int64? { (span[key] as? NSNumber)?.int64Value }
        func status(_ span: [String: Any]) -> Int? { (span["status"] as? [String: Any])?["code"] as? Int }

        let a = "sbx-aaaaaaaaaaaaaaaa"
        let root = try span("airlock.sandbox", a)
        let traceID = try #require(root["trace_id"] as? String)
        let rootID = try #require(root["span_id"] as? String)
        #expect(root["parent_span_id"] as? String == "")
        #expect(nanos(root, "start_time_unix_nano") == Self.at(0))
        #expect(nanos(root, "end_time_unix_nano") == Self.at(10))
        #expect(status(root) == 2)  // STATUS_CODE_ERROR: stopped by Airlock
        let rootAttributes = attributes(root)
        #expect(rootAttributes["session.id"] as? String == "sess-1")
        #expect(rootAttributes["gen_ai.agent.id"] as? String == "agent-7")
        #expect(rootAttributes["enduser.id"] as? String == "alice")
        #expect(rootAttributes["airlock.profile"] as? String == "default")
        #expect(rootAttributes["airlock.limits.cpus"] as? Double == 2.0)
        #expect(rootAttributes["airlock.outcome"] as? String == "stopped")
        #expect(rootAttributes["airlock.cgroup"] == nil)

        let resource = root["resource"] as? [String: Any] ?? [:]
        #expect(resource["service.name"] as? String == "airlock-test")
        #expect(resource["deployment.environment"] as? String == "ci")
        #expect(resource["team"] as? String == "a b")
        #expect(root["path"] as? String == "/v1/traces")
        #expect((root["headers"] as? [String: Any])?["x-api-key"] as? String == "s3cret")

        let events = root["events"] as? [[String: Any]] ?? []
        #expect(events.map { $0["name"] as? String } == ["sandbox.warning", "alert.fired", "limit.reached"])
        #expect(events.map { ($0["time_unix_nano"] as? NSNumber)?.int64Value } == [Self.at(6), Self.at(7), Self.at(8)])
        let alert = events.first { $0["name"] as? String == "alert.fired" }?["attributes"] as? [String: Any] ?? [:]
        #expect(alert["airlock.alert.rule"] as? String == "secrets")
        #expect(alert["airlock.decision"] as? String == "alert")
        #expect(alert["airlock.decision.rule"] as? String == "secrets")

        let process = try span("process.exec", a)
        #expect(process["trace_id"] as? String == traceID)
        #expect(process["parent_span_id"] as? String == rootID)
        #expect(nanos(process, "start_time_unix_nano") == Self.at(1))
        #expect(nanos(process, "end_time_unix_nano") == Self.at(9))
        #expect(status(process) == 2)
        #expect(attributes(process)["process.vpid"] as? Int == 2)
        #expect(attributes(process)["process.command_args"] as? [String] == ["sleep", "10"])
        #expect(attributes(process)["airlock.exit.signal"] as? Int == 9)

        let request = try span("network.request", a)
        #expect(request["trace_id"] as? String == traceID)
        #expect(request["parent_span_id"] as? String == rootID)
        #expect(request["kind"] as? Int == 3)  // SPAN_KIND_CLIENT
        #expect(nanos(request, "start_time_unix_nano") == Self.at(3))
        #expect(nanos(request, "end_time_unix_nano") == Self.at(5))
        #expect(attributes(request)["server.address"] as? String == "pypi.org")
        #expect(attributes(request)["server.port"] as? Int == 443)
        #expect(attributes(request)["airlock.bytes_in"] as? Int == 4096)
        #expect(attributes(request)["airlock.decision"] as? String == "allow")
        #expect(attributes(request)["airlock.decision.rule"] as? String == "egress.pypi")

        let denied = try span("network.connection", a)
        #expect(denied["parent_span_id"] as? String == rootID)
        #expect(status(denied) == 2)  // a deny is an error status
        #expect(attributes(denied)["airlock.decision"] as? String == "deny")
        #expect(attributes(denied)["airlock.decision.reason"] as? String == "169.254.169.254 is cloud metadata")

        let teardown = try span("sandbox.warning", a)
        #expect(teardown["trace_id"] as? String == traceID)
        #expect(teardown["parent_span_id"] as? String == rootID)
        #expect(nanos(teardown, "start_time_unix_nano") == Self.at(11))
        #expect(attributes(teardown)["airlock.warning"] as? String == "cgroup left behind")

        let b = "sbx-bbbbbbbbbbbbbbbb"
        let rootB = try span("airlock.sandbox", b)
        let processB = try span("process.exec", b)
        #expect(rootB["trace_id"] as? String != traceID)
        #expect(processB["trace_id"] as? String == rootB["trace_id"] as? String)
        #expect(processB["parent_span_id"] as? String == rootB["span_id"] as? String)
        #expect(status(rootB) == 0)
        #expect(status(processB) == 0)
        #expect(attributes(processB)["process.exit.code"] as? Int == 0)
    }

    @Test func shutdownEndsSpansStillOpen() async throws {
        let receiver = try OTLPReceiver()
        defer { receiver.stop() }
        let sink = try OTLPTraceSink(configuration: OTLPTraceConfiguration(endpoint: receiver.endpoint + "/v1/traces"))
        let id = Identity(instance: "sbx-cccccccccccccccc")
        sink.emit(AuditEvent(type: "sandbox.created", identity: id, timeNanos: Self.at(0)))
        sink.emit(AuditEvent(type: "process.started", identity: id, timeNanos: Self.at(4)))
        await shutdownOffPool(sink, timeout: .seconds(15))
        sink.emit(AuditEvent(type: "sandbox.destroyed", identity: id, timeNanos: Self.at(9)))  // dropped

        let spans = try receiver.spans()
        #expect(Set(spans.compactMap { $0["name"] as? String }) == ["airlock.sandbox", "process.exec"])
        for span in spans {
            #expect((span["end_time_unix_nano"] as? NSNumber)?.int64Value == Self.at(4))
        }
    }

    @Test func anUnreachableCollectorNeitherBlocksNorThrowsAndIsReportedOnce() async throws {
        // Port 9 (discard) on loopback: nothing listens, so the connection is refused.
        let errors = Mutex<[String]>([])
        let sink = try OTLPTraceSink(
            configuration: OTLPTraceConfiguration(endpoint: "http://127.0.0.1:9/v1/traces"),
            onError: { message in errors.withLock { $0.append(message) } })
        let clock = ContinuousClock()
        let emitting = clock.measure {
            for event in Self.events() { sink.emit(event) }
        }
        #expect(emitting < .milliseconds(500))
        let t0 = clock.now
        await shutdownOffPool(sink, timeout: .seconds(3))
        let shuttingDown = clock.now - t0
        #expect(shuttingDown < .seconds(5))
        #expect(errors.withLock { $0.count } == 1, "\(errors.withLock { $0 })")
    }
}

@Suite struct OTLPConfigurationTests {
    @Test func notConfiguredOrDisabledGivesNil() throws {
        let endpoint = ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"]
        #expect(try OTLPTraceConfiguration.fromEnvironment([:]) == nil)
        #expect(try OTLPTraceConfiguration.fromEnvironment(["OTEL_SERVICE_NAME": "x"]) == nil)
        #expect(try OTLPTraceConfiguration.fromEnvironment(endpoint.merging(["OTEL_SDK_DISABLED": "TRUE"]) { $1 }) == nil)
        #expect(try OTLPTraceConfiguration.fromEnvironment(endpoint.merging(["OTEL_TRACES_EXPORTER": "none"]) { $1 }) == nil)
        #expect(try OTLPTraceSink.fromEnvironment(["OTEL_SDK_DISABLED": "true"]) == nil)
        #expect(try OTLPTraceConfiguration.fromEnvironment(endpoint.merging(["OTEL_SDK_DISABLED": "false"]) { $1 }) != nil)
    }

    @Test func endpointsFollowTheOTLPHTTPRules() throws {
        let base = try #require(try OTLPTraceConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"]))
        #expect(base.endpoint == "http://collector:4318/v1/traces")
        #expect(base.serviceName == "airlock")
        #expect(base.wireProtocol == .httpProtobuf)
        #expect(base.timeout == .seconds(10))
        let slash = try #require(try OTLPTraceConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp/"]))
        #expect(slash.endpoint == "https://c/otlp/v1/traces")
        let specific = try #require(
            try OTLPTraceConfiguration.fromEnvironment([
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9999/custom",
            ]))
        #expect(specific.endpoint == "http://b:9999/custom")
    }

    @Test func serviceResourceHeadersAndTimeout() throws {
        let config = try #require(
            try OTLPTraceConfiguration.fromEnvironment([
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-resource, host.name=h%2C1",
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-shared=1",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=t1",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            ]))
        #expect(config.serviceName == "from-resource")
        #expect(config.resourceAttributes == ["service.name": "from-resource", "host.name": "h,1"])
        #expect(config.headers.map { "\($0.0)=\($0.1)" } == ["x-tenant=t1"])
        #expect(config.timeout == .milliseconds(2500))
        #expect(config.wireProtocol == .httpJSON)
        #expect(config.gzip)
        let named = try #require(
            try OTLPTraceConfiguration.fromEnvironment([
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SERVICE_NAME": "svc",
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=other", "OTEL_EXPORTER_OTLP_HEADERS": "a=1, b = 2",
            ]))
        #expect(named.serviceName == "svc")
        #expect(named.headers.map { "\($0.0)=\($0.1)" } == ["a=1", "b=2"])
    }

    @Test(arguments: [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTLP/gRPC is not built into Airlock"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=thrift is not supported"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "give a positive number of milliseconds"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization", "OTEL_EXPORTER_OTLP_HEADERS must be"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "use gzip or none"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "otlp only"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "must start with http:// or https://"),
    ])
    func unsupportedValuesAreClearUsageErrors(variable: String, value: String, expected: String) throws {
        var env = ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"]
        env[variable] = value
        let error = #expect(throws: AirlockError.self) { try OTLPTraceConfiguration.fromEnvironment(env) }
        #expect(error?.code == .usage)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }

    @Test func headerValuesNeverAppearInErrors() throws {
        let env = ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%zzsecret"]
        let error = #expect(throws: AirlockError.self) { try OTLPTraceConfiguration.fromEnvironment(env) }
        #expect(error?.description.contains("secret") == false)
    }
}

/// `shutdown` blocks its thread while the flush runs on the cooperative pool, so
/// tests (which run on that pool) call it from a thread of its own.
func shutdownOffPool(_ sink: OTLPTraceSink, timeout: Duration) async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        Thread {
            sink.shutdown(timeout: timeout)
            c.resume()
        }.start()
    }
}
