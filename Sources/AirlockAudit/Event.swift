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

/// One boundary event. Field names follow OpenTelemetry conventions where they
/// exist (`process.pid`, `process.exit.code`, …); Airlock's own are under `airlock.`.
/// See docs/events.md for every type and field.
public struct AuditEvent: Sendable {
    public var type: String
    public var instance: String
    public var attributes: [(String, JSONValue)]

    public init(type: String, instance: String, attributes: [(String, JSONValue)] = []) {
        self.type = type
        self.instance = instance
        self.attributes = attributes
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
            var pairs: [(String, JSONValue)] = [
                ("time", .string(Self.timestamp())), ("seq", .int(Int64(seq))), ("type", .string(event.type)),
                ("airlock.sandbox.id", .string(event.instance)),
            ]
            pairs.append(contentsOf: event.attributes)
            var line = JSONValue.object(pairs).encoded()
            line += "\n"
            POSIXIO.writeAll(fd, Array(line.utf8))
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let ns = String(ts.tv_nsec)
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T"
            + "\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2))."
            + String(repeating: "0", count: 9 - ns.count) + ns + "Z"
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
