#if canImport(Glibc)
import Glibc
#endif
import AirlockCore

/// A JSON value with a deterministic encoding (keys in insertion order), so an
/// event's bytes are stable: the audit log hashes them.
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
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .string(let s): JSONValue.quote(s, into: &out)
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? String(d) : "null"
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let items):
            out += "["
            for (i, v) in items.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let pairs):
            out += "{"
            for (i, (k, v)) in pairs.enumerated() {
                if i > 0 { out += "," }
                JSONValue.quote(k, into: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
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
        var out: [(String, JSONValue)] = [("airlock.sandbox.id", .string(instance))]
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

/// Wall-clock helpers shared by the sinks and the log.
public enum Clock {
    public static func realtimeNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-23T19:43:38.159334906Z`.
    public static func rfc3339(_ nanos: Int64) -> String {
        var t = time_t(nanos / 1_000_000_000)
        let ns = Int(nanos % 1_000_000_000)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var out = ""
        out.reserveCapacity(30)
        func pad(_ v: Int, _ w: Int) {
            let s = String(v)
            for _ in s.count..<w { out += "0" }
            out += s
        }
        pad(Int(tmv.tm_year) + 1900, 4); out += "-"; pad(Int(tmv.tm_mon) + 1, 2); out += "-"; pad(Int(tmv.tm_mday), 2)
        out += "T"; pad(Int(tmv.tm_hour), 2); out += ":"; pad(Int(tmv.tm_min), 2); out += ":"; pad(Int(tmv.tm_sec), 2)
        out += "."; pad(ns, 9); out += "Z"
        return out
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
public final class JSONLinesSink: EventSink, @unchecked Sendable {
    private let fd: Int32
    private var seq: UInt64 = 0
    private let lock = PThreadMutex()

    public init(path: String) throws(AirlockError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw systemError("open", errno, "cannot open the events file \(path)") }
        self.fd = fd
    }

    deinit { close(fd) }

    public func emit(_ event: AuditEvent) {
        lock.locked {
            seq += 1
            var line = event.encodedObject(seq: seq).encoded()
            line += "\n"
            POSIXIO.writeAll(fd, Array(line.utf8))
        }
    }
}

/// Discards events.
public struct NullSink: EventSink {
    public init() {}
    public func emit(_ event: AuditEvent) {}
}

final class PThreadMutex: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}

/// Sends every event to each of several sinks, in order.
public struct FanOutSink: EventSink {
    public let sinks: [any EventSink]
    public init(_ sinks: [any EventSink]) { self.sinks = sinks }
    public func emit(_ event: AuditEvent) {
        for sink in sinks { sink.emit(event) }
    }
}
