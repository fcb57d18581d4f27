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

    static func writeInt(_ v: Int64, into out: inout [UInt8]) {
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
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 0xF)]])
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

/// Wall-clock helpers shared by the sinks and the log.
public enum Clock {
    public static func realtimeNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Parses RFC 3339 in UTC (`Z`), with up to 9 fractional digits; nil otherwise.
    public static func parseRFC3339(_ text: String) -> Int64? {
        let u = Array(text.utf8)
        guard u.count >= 20, u[4] == 0x2D, u[7] == 0x2D, u[10] == 0x54 || u[10] == 0x20, u[13] == 0x3A, u[16] == 0x3A,
            u.last == UInt8(ascii: "Z")
        else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r {
                guard (0x30...0x39).contains(u[i]) else { return nil }
                v = v * 10 + Int(u[i] - 0x30)
            }
            return v
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16),
            let s = num(17..<19), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61
        else { return nil }
        var frac = 0
        if u.count > 20 {
            guard u[19] == 0x2E, u.count - 21 <= 9, u.count - 21 >= 1, let f = num(20..<(u.count - 1)) else { return nil }
            frac = f
            for _ in 0..<(9 - (u.count - 21)) { frac *= 10 }
        } else if u[19] != UInt8(ascii: "Z") {
            return nil
        }
        var tmv = tm()
        tmv.tm_year = Int32(y - 1900)
        tmv.tm_mon = Int32(mo - 1)
        tmv.tm_mday = Int32(d)
        tmv.tm_hour = Int32(h)
        tmv.tm_min = Int32(mi)
        tmv.tm_sec = Int32(s)
        return Int64(timegm(&tmv)) * 1_000_000_000 + Int64(frac)
    }

    /// Appends RFC 3339 (UTC, nanoseconds) as bytes.
    public static func writeRFC3339(_ nanos: Int64, into out: inout [UInt8]) {
        var t = time_t(nanos / 1_000_000_000)
        var ns = Int(nanos % 1_000_000_000)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func put(_ v: Int, _ w: Int) {
            var d = 1
            for _ in 1..<w { d *= 10 }
            var v = v
            while d > 0 {
                out.append(UInt8(v / d % 10) + 0x30)
                v %= d
                d /= 10
            }
        }
        put(Int(tmv.tm_year) + 1900, 4); out.append(0x2D); put(Int(tmv.tm_mon) + 1, 2); out.append(0x2D); put(Int(tmv.tm_mday), 2)
        out.append(0x54); put(Int(tmv.tm_hour), 2); out.append(0x3A); put(Int(tmv.tm_min), 2); out.append(0x3A); put(Int(tmv.tm_sec), 2)
        out.append(0x2E)
        if ns < 0 { ns = 0 }
        put(ns, 9)
        out.append(0x5A)
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
