import AirlockAudit
import Foundation

/// The API's JSON writer: objects with sorted keys, no escaped slashes, integral numbers
/// without a fraction — what `JSONSerialization` wrote, at a fraction of its cost (it sorts
/// keys with locale-aware `NSString` comparison and bridges every value, which was the
/// largest single cost of a request).
enum JSONResponse {
    static func encode(_ value: Any) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(value, into: &out)
        return out
    }

    static func write(_ value: Any, into out: inout [UInt8]) {
        // The most frequent types first: a failed cast from Any is not free.
        switch value {
        case let s as String: JSONValue.string(s).write(into: &out)
        case let i as Int: JSONValue.int(Int64(i)).write(into: &out)
        case let d as Double: number(d, into: &out)
        case let b as Bool: out.append(contentsOf: (b ? "true" : "false").utf8)
        case let o as [String: Any]:
            out.append(UInt8(ascii: "{"))
            // Byte order of the UTF-8 keys: stable, and what a reader diffing responses expects.
            for (i, key) in o.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.string(key).write(into: &out)
                out.append(UInt8(ascii: ":"))
                write(o[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case let a as [Any]:
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(v, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case is NSNull: out.append(contentsOf: "null".utf8)
        case let v as JSONValue:
            if case .double(let d) = v { number(d, into: &out) } else { v.write(into: &out) }
        case let i as Int64: JSONValue.int(i).write(into: &out)
        case let i as Int32: JSONValue.int(Int64(i)).write(into: &out)
        case let i as UInt64: out.append(contentsOf: String(i).utf8)
        case let i as UInt32: JSONValue.int(Int64(i)).write(into: &out)
        default:
            // Every value the API builds is one of the above; anything else is a bug, written
            // as its description rather than dropping the whole response.
            JSONValue.string(String(describing: value)).write(into: &out)
        }
    }

    /// Stored JSON (a record's usage, a sealed object's details) as values this writer takes:
    /// parsed by the audit log's parser, so no `NSNumber` (whose bool/int bridging is ambiguous)
    /// ever reaches a response. Unparseable text gives an empty object.
    static func object(_ text: String) -> [String: Any] {
        guard case .object(let pairs)? = try? JSONParser.parse(text) else { return [:] }
        var o: [String: Any] = [:]
        for (k, v) in pairs { o[k] = v }
        return o
    }

    /// Integral values below 2^53 without a fraction (as JSON readers expect counts);
    /// non-finite values (never produced) as null.
    static func number(_ d: Double, into out: inout [UInt8]) {
        guard d.isFinite else { out.append(contentsOf: "null".utf8); return }
        if d == d.rounded(), abs(d) < 9_007_199_254_740_992 {
            JSONValue.int(Int64(d)).write(into: &out)
        } else {
            out.append(contentsOf: String(d).utf8)
        }
    }
}
