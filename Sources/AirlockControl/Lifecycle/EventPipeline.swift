import AirlockAudit
import AirlockCore
import AirlockDLP

/// The one way an event is recorded, for `airlock run` and `airlock serve` alike: stamped
/// with the identity it belongs to, redacted, then fanned out to the audit log and the
/// other sinks (events file, OTLP, metrics). Nothing reaches a sink without passing here,
/// so a guarantee about what the record holds is proven once for both entry points.
///
/// Redaction removes the sandbox's declared secrets in every encoding the DLP scanner knows
/// (raw, base64, hex, percent-encoded) and every credential shape it recognises (GitHub
/// tokens, cloud keys, private keys, …), in every string of the event: attributes, the
/// decision's reason and rule, and the identity fields.
///
/// A daemon holds one pipeline for its own events and derives one per sandbox
/// (`sandbox(identity:secrets:)`) that adds that sandbox's secrets and identity.
public struct EventPipeline: EventSink {
    /// Filled into each event where the event leaves a field empty.
    public let identity: Identity
    public let scanner: DLPScanner
    /// The tamper-evident log, if this pipeline records to one.
    public let log: AuditLog?
    /// Every other sink (events file, telemetry), after redaction.
    public let sinks: [any EventSink]

    public init(identity: Identity = Identity(instance: ""), secrets: [Secret] = [], log: AuditLog?, sinks: [any EventSink] = []) {
        self.init(identity: identity, scanner: DLPScanner(secrets: secrets), log: log, sinks: sinks)
    }

    init(identity: Identity, scanner: DLPScanner, log: AuditLog?, sinks: [any EventSink]) {
        self.identity = identity
        self.scanner = scanner
        self.log = log
        self.sinks = sinks
    }

    /// The pipeline of one sandbox: the same sinks, its identity stamped, its secrets
    /// redacted as well as every credential shape. Without secrets the scanner is shared.
    public func sandbox(identity: Identity, secrets: [Secret]) -> EventPipeline {
        EventPipeline(identity: identity, scanner: secrets.isEmpty ? scanner : DLPScanner(secrets: secrets), log: log, sinks: sinks)
    }

    /// Declared secrets too short to be told apart from ordinary text: not redacted.
    public var ignoredSecrets: [String] { scanner.ignoredSecrets }

    /// `text` as a sink would see it.
    public func redact(_ text: String) -> String { scanner.redact(text) }

    /// Every credential shape redacted, for text that belongs to no sandbox (token names
    /// written by the CLI).
    public static let credentialRedaction: @Sendable (String) -> String = { [scanner = DLPScanner(secrets: [])] in scanner.redact($0) }

    /// The event as the sinks receive it: stamped, then redacted.
    public func prepare(_ event: AuditEvent) -> AuditEvent {
        var e = event
        if e.identity.instance.isEmpty { e.identity.instance = identity.instance }
        e.identity.session = e.identity.session ?? identity.session
        e.identity.workflow = e.identity.workflow ?? identity.workflow
        e.identity.agent = e.identity.agent ?? identity.agent
        e.identity.principal = e.identity.principal ?? identity.principal
        let scanner = self.scanner
        return e.redacted { scanner.redact($0) }
    }

    public func emit(_ event: AuditEvent) {
        let e = prepare(event)
        log?.emit(e)
        for sink in sinks { sink.emit(e) }
    }

    /// Records the event and returns once the audit log holds it durably (at once when this
    /// pipeline has no log). The other sinks receive it before this returns.
    public func record(_ event: AuditEvent) async throws {
        let e = prepare(event)
        for sink in sinks { sink.emit(e) }
        if let log { _ = try await log.append(e) }
    }
}
