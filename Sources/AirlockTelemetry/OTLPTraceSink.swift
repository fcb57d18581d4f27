import AirlockEvents
import AirlockCore
import Dispatch
import Logging
import OTel
import ServiceLifecycle
import Synchronization
import Tracing

/// Turns Airlock's events into OpenTelemetry spans and exports them over OTLP/HTTP
/// with swift-otel's tracing backend, driven without the process-global bootstrap.
///
/// One trace per sandbox instance: a root span `airlock.sandbox`, a child
/// `process.exec`, one child per `network.*` event, and the other events as span
/// events on the root (docs/telemetry.md). Spans carry the events' own timestamps.
///
/// `emit` never blocks on the network and never fails: spans are queued to swift-otel's
/// batch processor, and the first export error is reported once through `onError`.
/// Call `shutdown(timeout:)` before the process exits; it flushes what is queued.
public final class OTLPTraceSink: EventSink, Sendable {
    public static let rootSpanName = "airlock.sandbox"
    public static let processSpanName = "process.exec"

    private let tracer: any Tracer
    private let group: ServiceGroup
    private let runner: Task<Void, Never>
    private let reporter: ErrorReporter
    private let state = Mutex(State())

    private struct Run {
        var root: any Span
        var process: (any Span)?
        var lastNanos: Int64
    }

    private struct State {
        var runs: [String: Run] = [:]
        /// Root contexts of recently destroyed sandboxes, for teardown warnings that
        /// arrive after `sandbox.destroyed` (kept bounded, oldest dropped first).
        var ended: [(instance: String, context: ServiceContext)] = []
        var isShutDown = false
    }

    private static let endedCapacity = 64

    /// - Parameter onError: called at most once, with a message for the operator,
    ///   the first time the exporter reports a problem (an unreachable collector, a
    ///   rejected request, a flush that timed out).
    public init(configuration: OTLPTraceConfiguration, onError: @escaping @Sendable (String) -> Void = { _ in }) throws(AirlockError) {
        let reporter = ErrorReporter(onError)
        var otel = OTel.Configuration.default
        otel.serviceName = configuration.serviceName
        otel.resourceAttributes = configuration.resourceAttributes
        otel.diagnosticLogger = .custom(Logger(label: "airlock.telemetry.otlp") { _ in ReportingLogHandler(reporter: reporter) })
        otel.diagnosticLogLevel = .warning
        otel.propagators = [.none]
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.traces.enabled = true
        otel.traces.exporter = .otlp
        otel.traces.sampler = .alwaysOn
        otel.traces.otlpExporter.endpoint = configuration.endpoint
        otel.traces.otlpExporter.headers = configuration.headers
        otel.traces.otlpExporter.timeout = configuration.timeout
        otel.traces.otlpExporter.compression = configuration.gzip ? .gzip : .none
        switch configuration.wireProtocol {
        case .httpProtobuf: otel.traces.otlpExporter.protocol = .httpProtobuf
        case .httpJSON: otel.traces.otlpExporter.protocol = .httpJSON
        }

        let backend: (factory: any Tracer, service: any Service)
        do {
            let made = try OTel.makeTracingBackend(configuration: otel)
            backend = (made.factory, made.service)
        } catch {
            throw AirlockError(.usage, "the OpenTelemetry trace exporter could not be configured", cause: String(describing: error))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: backend.service)],
                logger: Logger(label: "airlock.telemetry.otlp") { _ in ReportingLogHandler(reporter: reporter) }))
        self.tracer = backend.factory
        self.group = group
        self.reporter = reporter
        self.runner = Task {
            do {
                try await group.run()
            } catch {
                reporter.report("the OpenTelemetry exporter stopped: \(error)")
            }
        }
    }

    /// A sink configured from `OTEL_*` variables, or nil when trace export is not
    /// configured (see `OTLPTraceConfiguration.fromEnvironment`).
    public static func fromEnvironment(
        _ env: [String: String], onError: @escaping @Sendable (String) -> Void = { _ in }
    ) throws(AirlockError) -> OTLPTraceSink? {
        guard let configuration = try OTLPTraceConfiguration.fromEnvironment(env) else { return nil }
        return try OTLPTraceSink(configuration: configuration, onError: onError)
    }

    public func emit(_ event: AuditEvent) {
        state.withLock { state in
            guard !state.isShutDown else { return }
            record(event, in: &state)
        }
    }

    /// Ends every span still open (at the time of its sandbox's last event), flushes
    /// the queue to the collector and stops the exporter, waiting at most `timeout`.
    /// Later events are dropped. Call it from synchronous code (the CLI's exit path):
    /// it blocks the calling thread while the export runs on the concurrency pool.
    /// Ends the spans still open and flushes, blocking the calling thread up to
    /// `timeout`. Call it from a thread outside Swift's cooperative pool (the CLI's
    /// main thread): the flush itself runs on that pool.
    public func shutdown(timeout: Duration = .seconds(5)) {
        guard endOpenRuns() else { return }
        let done = DispatchSemaphore(value: 0)
        let group = self.group
        let runner = self.runner
        Task {
            await group.triggerGracefulShutdown()
            await runner.value
            done.signal()
        }
        let nanos = max(0, timeout.nanoseconds)
        if done.wait(timeout: .now() + .nanoseconds(Int(nanos))) == .timedOut {
            reporter.report("the OpenTelemetry export did not finish within \(timeout); spans not yet sent are lost")
            runner.cancel()
        }
    }

    /// Ends every open span; false when already shut down.
    private func endOpenRuns() -> Bool {
        state.withLock { state in
            defer { state.isShutDown = true }
            guard !state.isShutDown else { return false }
            for (_, run) in state.runs {
                let end = Self.instant(run.lastNanos)
                run.process?.end(at: end)
                run.root.end(at: end)
            }
            state.runs.removeAll()
            return true
        }
    }

    // MARK: Mapping

    private func record(_ event: AuditEvent, in state: inout State) {
        let at = Self.instant(event.timeNanos)
        let attributes = Self.attributes(of: event)

        guard var run = state.runs[event.instance] ?? startRun(event, ended: state.ended) else {
            // After `sandbox.destroyed`: a zero-length child of the ended root.
            if let parent = state.ended.last(where: { $0.instance == event.instance })?.context {
                let span = tracer.startSpan(event.type, context: parent, ofKind: .internal, at: at)
                span.updateAttributes { $0.merge(attributes) }
                span.end(at: at)
            }
            return
        }
        run.lastNanos = max(run.lastNanos, event.timeNanos)

        switch event.type {
        case "sandbox.created":
            run.root.updateAttributes { $0.merge(attributes) }

        case "process.started":
            run.process?.end(at: at)
            let span = tracer.startSpan(Self.processSpanName, context: run.root.context, ofKind: .internal, at: at)
            span.updateAttributes { $0.merge(attributes) }
            run.process = span

        case "process.exited":
            let span = run.process ?? tracer.startSpan(Self.processSpanName, context: run.root.context, ofKind: .internal, at: at)
            span.updateAttributes { $0.merge(attributes) }
            if let reason = event.stringAttribute("airlock.stop_reason") {
                span.setStatus(SpanStatus(code: .error, message: "stopped by Airlock: \(reason)"))
            }
            span.end(at: at)
            run.process = nil

        case "network.request", "network.connection":
            let start = event.intAttribute("airlock.duration_ms").map { Self.instant(event.timeNanos - $0 * 1_000_000) } ?? at
            let span = tracer.startSpan(event.type, context: run.root.context, ofKind: .client, at: start)
            span.updateAttributes { $0.merge(attributes) }
            if let decision = event.decision, decision.verdict == "deny" {
                span.setStatus(SpanStatus(code: .error, message: "denied: \(decision.reason)"))
            }
            span.end(at: at)

        case "sandbox.destroyed":
            run.root.updateAttributes { $0.merge(attributes) }
            switch event.stringAttribute("airlock.outcome") {
            case "setup_failed":
                let why = event.stringAttribute("airlock.error") ?? "the sandbox could not be built"
                run.root.setStatus(SpanStatus(code: .error, message: why))
            case "stopped":
                run.root.setStatus(SpanStatus(code: .error, message: "stopped by Airlock"))
            default:
                break
            }
            run.process?.end(at: at)
            run.root.end(at: at)
            state.runs[event.instance] = nil
            state.ended.append((event.instance, run.root.context))
            if state.ended.count > Self.endedCapacity { state.ended.removeFirst() }
            return

        default:
            // limit.reached, sandbox.warning, alert.fired and anything new.
            run.root.addEvent(SpanEvent(name: event.type, at: at, attributes: attributes))
        }
        state.runs[event.instance] = run
    }

    /// The root span starts at a sandbox's first event, which is `sandbox.created`
    /// unless host warnings came before it. Nil for an instance already destroyed.
    private func startRun(_ event: AuditEvent, ended: [(instance: String, context: ServiceContext)]) -> Run? {
        if ended.contains(where: { $0.instance == event.instance }) { return nil }
        let root = tracer.startSpan(Self.rootSpanName, context: .topLevel, ofKind: .internal, at: Self.instant(event.timeNanos))
        root.updateAttributes { $0.merge(Self.identityAttributes(event.identity)) }
        return Run(root: root, process: nil, lastNanos: event.timeNanos)
    }

    static func instant(_ nanos: Int64) -> DefaultTracerClock.Timestamp {
        DefaultTracerClock.Timestamp(nanosecondsSinceEpoch: UInt64(max(0, nanos)))
    }

    static func identityAttributes(_ identity: Identity) -> SpanAttributes {
        var out = SpanAttributes()
        out.set("airlock.sandbox.id", value: .string(identity.instance))
        if let v = identity.session { out.set("session.id", value: .string(v)) }
        if let v = identity.workflow { out.set("airlock.workflow.id", value: .string(v)) }
        if let v = identity.agent { out.set("gen_ai.agent.id", value: .string(v)) }
        if let v = identity.principal { out.set("enduser.id", value: .string(v)) }
        return out
    }

    /// An event's identity, decision and payload as span attributes.
    static func attributes(of event: AuditEvent) -> SpanAttributes {
        var out = identityAttributes(event.identity)
        if let decision = event.decision {
            out.set("airlock.decision", value: .string(decision.verdict))
            out.set("airlock.decision.reason", value: .string(decision.reason))
            if let rule = decision.rule { out.set("airlock.decision.rule", value: .string(rule)) }
        }
        for (key, value) in event.attributes {
            if let converted = spanAttribute(value) { out.set(key, value: converted) }
        }
        return out
    }

    /// Scalars map to their OTel type, homogeneous arrays to typed arrays; `null` is
    /// dropped and anything else (objects, mixed arrays) becomes its JSON text.
    static func spanAttribute(_ value: JSONValue) -> SpanAttribute? {
        switch value {
        case .string(let s): return .string(s)
        case .int(let i): return .int64(i)
        case .double(let d): return .double(d)
        case .bool(let b): return .bool(b)
        case .null: return nil
        case .object: return .string(value.encoded())
        case .array(let items):
            let strings = items.compactMap { item -> String? in if case .string(let s) = item { return s }; return nil }
            if strings.count == items.count { return .stringArray(strings) }
            let ints = items.compactMap { item -> Int64? in if case .int(let i) = item { return i }; return nil }
            if ints.count == items.count { return .int64Array(ints) }
            let doubles = items.compactMap { item -> Double? in if case .double(let d) = item { return d }; return nil }
            if doubles.count == items.count { return .doubleArray(doubles) }
            let bools = items.compactMap { item -> Bool? in if case .bool(let b) = item { return b }; return nil }
            if bools.count == items.count { return .boolArray(bools) }
            return .string(value.encoded())
        }
    }
}

extension AuditEvent {
    func stringAttribute(_ key: String) -> String? {
        for (k, v) in attributes where k == key {
            if case .string(let s) = v { return s }
        }
        return nil
    }

    func intAttribute(_ key: String) -> Int64? {
        for (k, v) in attributes where k == key {
            if case .int(let i) = v { return i }
        }
        return nil
    }
}

/// Calls the user's error callback once, for the first problem reported.
final class ErrorReporter: Sendable {
    private let callback: @Sendable (String) -> Void
    private let reported = Mutex(false)

    init(_ callback: @escaping @Sendable (String) -> Void) { self.callback = callback }

    func report(_ message: String) {
        let first = reported.withLock { done in
            defer { done = true }
            return !done
        }
        if first { callback(message) }
    }
}

/// swift-otel's diagnostic logger: warnings and errors go to the `ErrorReporter`.
struct ReportingLogHandler: LogHandler {
    let reporter: ErrorReporter
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .warning

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= .warning else { return }
        var text = "OpenTelemetry export: \(event.message)"
        if let error = event.error {
            text += " (\(error))"
        } else if let error = event.metadata?["error"] ?? metadata["error"] {
            text += " (\(error))"
        }
        reporter.report(text)
    }
}
