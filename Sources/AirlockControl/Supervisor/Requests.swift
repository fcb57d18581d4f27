import AirlockCore
import CAirlockShim
import Foundation

/// A JSON request body, checked strictly: only the listed fields, each of the right type.
/// Unknown fields are refused (a typo must not silently become a default).
struct JSONBody {
    let object: [String: Any]
    let context: String

    init(_ bytes: [UInt8], allowed: Set<String>, context: String = "") throws(Problem) {
        let value: Any
        do { value = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) } catch {
            throw Problem.badRequest(
                bytes.isEmpty ? "the request body is empty; send a JSON object with Content-Type: application/json"
                    : "the request body is not valid JSON; send a JSON object with Content-Type: application/json")
        }
        guard let object = value as? [String: Any] else {
            throw Problem.badRequest("the request body must be a JSON object")
        }
        try self.init(object: object, allowed: allowed, context: context)
    }

    init(object: [String: Any], allowed: Set<String>, context: String) throws(Problem) {
        let unknown = object.keys.filter { !allowed.contains($0) }.sorted()
        if let first = unknown.first {
            let name = context.isEmpty ? first : "\(context).\(first)"
            throw Problem.validation(
                "unknown field '\(name)'; the fields here are: \(allowed.sorted().joined(separator: ", "))",
                errors: unknown.map { Problem.FieldError(field: context.isEmpty ? $0 : "\(context).\($0)", message: "unknown field") })
        }
        self.object = object
        self.context = context
    }

    func name(_ key: String) -> String { context.isEmpty ? key : "\(context).\(key)" }

    func has(_ key: String) -> Bool { object[key] != nil && !(object[key] is NSNull) }

    func string(_ key: String) throws(Problem) -> String? {
        guard has(key) else { return nil }
        guard let s = object[key] as? String else { throw Problem.field(name(key), "must be a string") }
        return s
    }

    func bool(_ key: String) throws(Problem) -> Bool? {
        guard has(key) else { return nil }
        guard let n = object[key] as? NSNumber, CFBooleanLike.isBool(n) else { throw Problem.field(name(key), "must be true or false") }
        return n.boolValue
    }

    func number(_ key: String) throws(Problem) -> Double? {
        guard has(key) else { return nil }
        guard let n = object[key] as? NSNumber, !CFBooleanLike.isBool(n), n.doubleValue.isFinite else {
            throw Problem.field(name(key), "must be a number")
        }
        return n.doubleValue
    }

    func integer(_ key: String, range: ClosedRange<Int>) throws(Problem) -> Int? {
        guard let d = try number(key) else { return nil }
        guard d == d.rounded(), d >= Double(range.lowerBound), d <= Double(range.upperBound) else {
            throw Problem.field(name(key), "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return Int(d)
    }

    func strings(_ key: String, max: Int) throws(Problem) -> [String]? {
        guard has(key) else { return nil }
        guard let a = object[key] as? [Any], let s = a as? [String], s.count == a.count else {
            throw Problem.field(name(key), "must be an array of strings")
        }
        guard s.count <= max else { throw Problem.field(name(key), "has \(s.count) entries; at most \(max)") }
        return s
    }

    func map(_ key: String) throws(Problem) -> [String: String]? {
        guard has(key) else { return nil }
        guard let o = object[key] as? [String: Any] else { throw Problem.field(name(key), "must be an object of strings") }
        var out: [String: String] = [:]
        for (k, v) in o {
            guard let s = v as? String else { throw Problem.field("\(name(key)).\(k)", "must be a string") }
            out[k] = s
        }
        return out
    }

    func nested(_ key: String, allowed: Set<String>) throws(Problem) -> JSONBody? {
        guard has(key) else { return nil }
        guard let o = object[key] as? [String: Any] else { throw Problem.field(name(key), "must be an object") }
        return try JSONBody(object: o, allowed: allowed, context: name(key))
    }

    /// A duration: "90s", "5m", "2h", "1d", "500ms", or a number of seconds.
    func duration(_ key: String) throws(Problem) -> Double? {
        guard has(key) else { return nil }
        if let n = object[key] as? NSNumber, !CFBooleanLike.isBool(n) {
            let d = n.doubleValue
            guard d.isFinite, d > 0, d <= 365 * 86400 else { throw Problem.field(name(key), "must be more than 0 and at most 365 days") }
            return d
        }
        guard let s = object[key] as? String else { throw Problem.field(name(key), "must be a duration such as \"90s\", \"5m\", \"2h\" or a number of seconds") }
        do {
            let seconds: Double
            if s.hasSuffix("d"), let days = Double(s.dropLast()), days.isFinite, !s.dropLast().isEmpty,
                s.dropLast().allSatisfy({ $0.isNumber || $0 == "." })
            {
                seconds = days * 86400
            } else {
                let d = try Units.parseDuration(s)
                seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            }
            guard seconds > 0, seconds <= 365 * 86400 else { throw Problem.field(name(key), "must be more than 0 and at most 365 days") }
            return seconds
        } catch let p as Problem {
            throw p
        } catch {
            throw Problem.field(name(key), "'\(s)' is not a duration; write e.g. \"90s\", \"5m\", \"2h\", \"1d\"")
        }
    }

    /// A size: "256M", "1G", or a number of bytes.
    func bytes(_ key: String) throws(Problem) -> UInt64? {
        guard has(key) else { return nil }
        if let n = object[key] as? NSNumber, !CFBooleanLike.isBool(n) {
            let d = n.doubleValue
            guard d.isFinite, d >= 1, d == d.rounded(), d < 1.8e19 else { throw Problem.field(name(key), "must be a whole number of bytes, at least 1") }
            return UInt64(d)
        }
        guard let s = object[key] as? String else { throw Problem.field(name(key), "must be a size such as \"256M\" or a number of bytes") }
        do {
            let v = try Units.parseBytes(s)
            guard v > 0 else { throw Problem.field(name(key), "must be more than zero") }
            return v
        } catch let p as Problem {
            throw p
        } catch {
            throw Problem.field(name(key), "'\(s)' is not a size; write e.g. \"256M\", \"1G\" or a number of bytes")
        }
    }
}

/// Foundation bridges JSON booleans to NSNumber; tell them apart from 0 and 1.
enum CFBooleanLike {
    static func isBool(_ n: NSNumber) -> Bool {
        let t = String(cString: n.objCType)
        return t == "c" || t == "B"
    }
}

/// What `POST /v1/sandboxes` asks for.
struct CreateRequest {
    var profile = "default"
    var labels: [String: String] = [:]
    var ttl: Double?
    var idleTimeout: Double?
    var maxExecs: Int?
    var memory: UInt64?
    var cpus: Double?
    var pids: Int?
    var disk: UInt64?
    var env: [String: String] = [:]
    var persist = false
    var workspace: String?

    static let fields: Set<String> = ["profile", "labels", "ttl", "idle_timeout", "max_execs", "limits", "env", "persist", "workspace"]
    static let limitFields: Set<String> = ["memory", "cpus", "pids", "disk"]

    init() {}

    init(_ bytes: [UInt8]) throws(Problem) {
        let b = try JSONBody(bytes.isEmpty ? Array("{}".utf8) : bytes, allowed: Self.fields)
        if let p = try b.string("profile") {
            guard !p.isEmpty, p.utf8.count <= 128 else { throw Problem.field("profile", "must be a profile name (see GET /v1/profiles)") }
            profile = p
        }
        labels = try b.map("labels") ?? [:]
        try Self.checkLabels(labels)
        ttl = try b.duration("ttl")
        idleTimeout = try b.duration("idle_timeout")
        maxExecs = try b.integer("max_execs", range: 1...1_000_000)
        if let l = try b.nested("limits", allowed: Self.limitFields) {
            // The same bounds as policies, flags and cgroups (LimitBounds).
            memory = try l.bytes("memory")
            if let m = memory, let p = LimitBounds.memoryProblem(m) { throw Problem.field("limits.memory", p) }
            cpus = try l.number("cpus")
            if let c = cpus, let p = LimitBounds.cpusProblem(c) { throw Problem.field("limits.cpus", p) }
            pids = try l.integer("pids", range: 0...Int(Int32.max))
            if let n = pids, let p = LimitBounds.pidsProblem(n) { throw Problem.field("limits.pids", p) }
            disk = try l.bytes("disk")
            if let d = disk, let p = LimitBounds.diskProblem(d) { throw Problem.field("limits.disk", p) }
        }
        env = try b.map("env") ?? [:]
        for (k, v) in env {
            guard Self.isEnvName(k) else {
                throw Problem.field("env.\(k)", "is not a valid environment variable name (ASCII letters, digits and '_', not starting with a digit)")
            }
            guard !v.utf8.contains(0) else { throw Problem.field("env.\(k)", "contains a NUL byte") }
        }
        persist = try b.bool("persist") ?? false
        if let w = try b.string("workspace") {
            guard Identifiers.isWorkspace(w) else { throw Problem.field("workspace", "must be a persisted workspace id (ws-…, see GET /v1/workspaces)") }
            workspace = w
        }
    }

    static func checkLabels(_ labels: [String: String]) throws(Problem) {
        guard labels.count <= 32 else { throw Problem.field("labels", "has \(labels.count) labels; at most 32") }
        for (k, v) in labels {
            guard Identifiers.isLabelKey(k) else {
                throw Problem.field("labels.\(k)", "label keys are 1-63 characters of a-z, 0-9, '_', '.', '-'")
            }
            guard v.utf8.count <= 256, !v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw Problem.field("labels.\(k)", "label values are at most 256 bytes with no control characters")
            }
        }
    }

    static func isEnvName(_ s: String) -> Bool {
        guard let f = s.utf8.first, !(48...57).contains(f), s.utf8.count <= 256 else { return false }
        return s.utf8.allSatisfy { (65...90).contains($0) || (97...122).contains($0) || (48...57).contains($0) || $0 == 95 }
    }
}

/// What `POST …/exec` asks for.
struct ExecParameters {
    var command: [String] = []
    var stdin: [UInt8] = []
    var env: [String: String] = [:]
    var cwd: String?
    var timeout: Double?

    static let fields: Set<String> = ["command", "stdin", "stdin_base64", "env", "cwd", "timeout"]

    init(command: [String]) { self.command = command }

    init(_ bytes: [UInt8]) throws(Problem) {
        let b = try JSONBody(bytes, allowed: Self.fields)
        guard let c = try b.strings("command", max: 4096), let first = c.first, !first.isEmpty else {
            throw Problem.field("command", "is required: the program and its arguments, e.g. [\"python3\", \"main.py\"]")
        }
        for a in c where a.utf8.contains(0) { throw Problem.field("command", "an argument contains a NUL byte") }
        command = c
        if b.has("stdin") && b.has("stdin_base64") { throw Problem.field("stdin", "give stdin or stdin_base64, not both") }
        if let s = try b.string("stdin") { stdin = Array(s.utf8) }
        if let s = try b.string("stdin_base64") {
            guard let d = Data(base64Encoded: s) else { throw Problem.field("stdin_base64", "is not valid base64") }
            stdin = [UInt8](d)
        }
        env = try b.map("env") ?? [:]
        for (k, v) in env {
            guard CreateRequest.isEnvName(k) else { throw Problem.field("env.\(k)", "is not a valid environment variable name") }
            guard !v.utf8.contains(0) else { throw Problem.field("env.\(k)", "contains a NUL byte") }
        }
        if let d = try b.string("cwd") {
            guard d.hasPrefix("/"), !d.utf8.contains(0), d.utf8.count <= 4096 else {
                throw Problem.field("cwd", "must be an absolute path inside the sandbox, e.g. /workspace")
            }
            cwd = d
        }
        timeout = try b.duration("timeout")
    }
}

enum Identifiers {
    static func random(_ prefix: String, bytes n: Int = 8) -> String {
        var b = [UInt8](repeating: 0, count: n)
        _ = b.withUnsafeMutableBytes { airlock_random($0.baseAddress, n) }
        return prefix + b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    static func isHex(_ s: Substring, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
    static func isSandbox(_ s: String) -> Bool { s.hasPrefix("sbx-") && isHex(s.dropFirst(4), count: 16) }
    static func isSnapshot(_ s: String) -> Bool { s.hasPrefix("snap-") && isHex(s.dropFirst(5), count: 16) }
    static func isWorkspace(_ s: String) -> Bool { s.hasPrefix("ws-") && isHex(s.dropFirst(3), count: 16) }
    static func isLabelKey(_ s: String) -> Bool {
        (1...63).contains(s.utf8.count)
            && s.utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 95 || $0 == 46 || $0 == 45 }
    }
}
