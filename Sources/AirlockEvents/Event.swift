#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import Synchronization

/// A JSON value with a deterministic encoding (keys in insertion order), so an
/// event's bytes are stable: the audit log hashes them.
private let hexDigits = Array("0123456789abcdef".utf8)

public indirect enum JSONValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.encoded() == b.encoded() }

    public func encoded() -> String {
        var out: [UInt8] = []
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the encoding as UTF-8 bytes: the audit log's canonical form.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .string(let s): JSONValue.quote(s, into: &out)
        case .int(let i): JSONValue.writeInt(i, into: &out)
        case .double(let d): out.append(contentsOf: (d.isFinite ? String(d) : "null").utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .null: out.append(contentsOf: "null".utf8)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, v) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let pairs):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in pairs.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.quote(k, into: &out)
                out.append(UInt8(ascii: ":"))
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    public static func writeInt(_ v: Int64, into out: inout [UInt8]) {
        if v < 0 {
            out.append(UInt8(ascii: "-"))
            if v == .min { out.append(contentsOf: "9223372036854775808".utf8); return }
        }
        var u = UInt64(v.magnitude)
        let start = out.count
        repeat {
            out.append(UInt8(truncatingIfNeeded: u % 10) + 0x30)
            u /= 10
        } while u > 0
        out[start...].reverse()
    }

    static func quote(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        let clean = s.withUTF8 { buf -> Bool in
            for c in buf where c < 0x20 || c == 0x22 || c == 0x5C { return false }
            out.append(contentsOf: buf)
            return true
        }
        if clean {
            out.append(0x22)
            return
        }
        for c in s.utf8 {
            switch c {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            case 0..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hexDigits[Int(c >> 4)], hexDigits[Int(c & 0xF)]])
            default: out.append(c)
            }
        }
        out.append(0x22)
    }

    /// The same value with every string (keys excepted) passed through `transform`.
    public func mapStrings(_ transform: (String) -> String) -> JSONValue {
        switch self {
        case .string(let s): .string(transform(s))
        case .array(let items): .array(items.map { $0.mapStrings(transform) })
        case .object(let pairs): .object(pairs.map { ($0.0, $0.1.mapStrings(transform)) })
        default: self
        }
    }
}

/// Who an event is bound to: the sandbox instance, and the session, workflow and
/// agent it belongs to, and the human or service principal behind them. Only
/// `instance` is always known; the rest are set by whoever started the run.
public struct Identity: Sendable, Equatable {
    public var instance: String
    public var session: String?
    public var workflow: String?
    public var agent: String?
    public var principal: String?

    public init(instance: String, session: String? = nil, workflow: String? = nil, agent: String? = nil, principal: String? = nil) {
        self.instance = instance
        self.session = session
        self.workflow = workflow
        self.agent = agent
        self.principal = principal
    }

    /// The encoded field names, in order (docs/events.md).
    var fields: [(String, JSONValue)] {
        var out: [(String, JSONValue)] = instance.isEmpty ? [] : [("airlock.sandbox.id", .string(instance))]
        if let session { out.append(("session.id", .string(session))) }
        if let workflow { out.append(("airlock.workflow.id", .string(workflow))) }
        if let agent { out.append(("gen_ai.agent.id", .string(agent))) }
        if let principal { out.append(("enduser.id", .string(principal))) }
        return out
    }
}

/// A policy decision an event records: what was decided, why, and by which rule.
public struct Decision: Sendable, Equatable {
    /// `allow`, `deny`, `redact` or `alert`.
    public var verdict: String
    public var reason: String
    public var rule: String?

    public init(_ verdict: String, reason: String, rule: String? = nil) {
        self.verdict = verdict
        self.reason = reason
        self.rule = rule
    }

    var fields: [(String, JSONValue)] {
        var out: [(String, JSONValue)] = [("airlock.decision", .string(verdict)), ("airlock.decision.reason", .string(reason))]
        if let rule { out.append(("airlock.decision.rule", .string(rule))) }
        return out
    }
}

/// One boundary event: when, what, bound to whom, what was decided, and a payload.
/// Field names follow OpenTelemetry conventions where they exist (`process.pid`,
/// `gen_ai.tool.name`, …); Airlock's own are under `airlock.`.
/// See docs/events.md for every type and field.
public struct AuditEvent: Sendable {
    /// Wall-clock time the event was created, nanoseconds since the Unix epoch.
    public var timeNanos: Int64
    public var type: String
    public var identity: Identity
    public var decision: Decision?
    public var attributes: [(String, JSONValue)]

    public var instance: String { identity.instance }

    public init(type: String, identity: Identity, decision: Decision? = nil, attributes: [(String, JSONValue)] = [], timeNanos: Int64? = nil) {
        self.timeNanos = timeNanos ?? Clock.realtimeNanos()
        self.type = type
        self.identity = identity
        self.decision = decision
        self.attributes = attributes
    }

    public init(type: String, instance: String, attributes: [(String, JSONValue)] = []) {
        self.init(type: type, identity: Identity(instance: instance), attributes: attributes)
    }

    /// The same event with every string value passed through `transform` (used to
    /// redact secrets before anything is written).
    public func redacted(_ transform: (String) -> String) -> AuditEvent {
        var e = self
        e.identity.session = identity.session.map(transform)
        e.identity.workflow = identity.workflow.map(transform)
        e.identity.agent = identity.agent.map(transform)
        e.identity.principal = identity.principal.map(transform)
        e.decision = decision.map { Decision($0.verdict, reason: transform($0.reason), rule: $0.rule.map(transform)) }
        e.attributes = attributes.map { ($0.0, $0.1.mapStrings(transform)) }
        return e
    }

    /// Writes `encodedObject(seq: nil)`'s bytes directly, without building the object.
    public func write(into out: inout [UInt8]) {
        out.append(contentsOf: #"{"time":"#.utf8)
        out.append(0x22)
        Clock.writeRFC3339(timeNanos, into: &out)
        out.append(contentsOf: #"","type":"#.utf8)
        JSONValue.quote(type, into: &out)
        func field(_ k: String, _ v: JSONValue) {
            out.append(UInt8(ascii: ","))
            JSONValue.quote(k, into: &out)
            out.append(UInt8(ascii: ":"))
            v.write(into: &out)
        }
        for (k, v) in identity.fields { field(k, v) }
        if let decision { for (k, v) in decision.fields { field(k, v) } }
        for (k, v) in attributes { field(k, v) }
        out.append(UInt8(ascii: "}"))
    }

    /// The envelope and payload as one flat object, in a fixed order: `time`, then
    /// `seq` when given, `type`, the identity, the decision, the attributes.
    public func encodedObject(seq: UInt64?) -> JSONValue {
        var pairs: [(String, JSONValue)] = [("time", .string(Clock.rfc3339(timeNanos)))]
        if let seq { pairs.append(("seq", .int(Int64(seq)))) }
        pairs.append(("type", .string(type)))
        pairs.append(contentsOf: identity.fields)
        if let decision { pairs.append(contentsOf: decision.fields) }
        pairs.append(contentsOf: attributes)
        return .object(pairs)
    }
}

/// Receives events as they happen.
public protocol EventSink: Sendable {
    func emit(_ event: AuditEvent)
}

/// Appends one JSON object per line to a file (created owner-only), each with
/// `time` (RFC 3339, UTC, nanoseconds), `seq` (monotonic per sink), `type`,
/// `airlock.sandbox.id` and the event's attributes. Each line is written with a
/// single `write(2)` on an `O_APPEND` descriptor, so concurrent writers never interleave.
public final class JSONLinesSink: EventSink, Sendable {
    private let fd: Int32
    private let seq = Mutex<UInt64>(0)

    public init(path: String) throws(AirlockError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw systemError("open", errno, "cannot open the events file \(path)") }
        self.fd = fd
    }

    deinit { close(fd) }

    public func emit(_ event: AuditEvent) {
        seq.withLock { seq in
            seq += 1
            var line: [UInt8] = []
            event.encodedObject(seq: seq).write(into: &line)
            line.append(0x0A)
            POSIXIO.writeAll(fd, line)
        }
    }
}

/// Discards events.
public struct NullSink: EventSink {
    public init() {}
    public func emit(_ event: AuditEvent) {}
}

/// Sends every event to each of several sinks, in order.
public struct FanOutSink: EventSink {
    public let sinks: [any EventSink]
    public init(_ sinks: [any EventSink]) { self.sinks = sinks }
    public func emit(_ event: AuditEvent) {
        for sink in sinks { sink.emit(event) }
    }
}
