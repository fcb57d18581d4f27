import Yams

/// YAML 1.1 resolution of *plain* (unquoted) scalars — bool, null, int, float, str —
/// with the same rules as Yams' default resolver, but without its regular expressions:
/// those are compiled through ICU on every parse and cost milliseconds on `airlock run`'s
/// start-up path. The parser runs with `Resolver.basic`; the reader asks this instead.
enum PlainScalar {
    static let bools: Set<String> = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ]
    static let nulls: Set<String> = ["", "~", "null", "Null", "NULL"]

    static func tag(of s: String) -> Tag.Name {
        if bools.contains(s) { return .bool }
        if nulls.contains(s) { return .null }
        if isInt(Array(s.utf8)) { return .int }
        if isFloat(Array(s.utf8)) { return .float }
        return .str
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    private static func every(_ b: ArraySlice<UInt8>, _ ok: (UInt8) -> Bool) -> Bool { !b.isEmpty && b.allSatisfy(ok) }

    static func isInt(_ b: [UInt8]) -> Bool {
        var s = b[...]
        if let f = s.first, f == UInt8(ascii: "+") || f == UInt8(ascii: "-") { s = s.dropFirst() }
        guard let first = s.first else { return false }
        let us = UInt8(ascii: "_")
        if s.starts(with: "0b".utf8) { return every(s.dropFirst(2)) { $0 == 48 || $0 == 49 || $0 == us } }
        if s.starts(with: "0x".utf8) {
            return every(s.dropFirst(2)) { isDigit($0) || ($0 >= 97 && $0 <= 102) || ($0 >= 65 && $0 <= 70) || $0 == us }
        }
        if s.starts(with: "0o".utf8) { return every(s.dropFirst(2)) { ($0 >= 48 && $0 <= 55) || $0 == us } }
        if first == 48 { return every(s.dropFirst()) { ($0 >= 48 && $0 <= 55) || $0 == us } || s.count == 1 }
        guard first >= 49 && first <= 57 else { return false }
        // decimal, or sexagesimal 1:30:00
        let parts = s.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        let headOK = every(parts[0]) { isDigit($0) || $0 == us }
        guard headOK else { return false }
        return parts.dropFirst().allSatisfy { p in (1...2).contains(p.count) && p.allSatisfy(isDigit) && (p.count == 1 || p[p.startIndex] <= 53) }
    }

    /// The five YAML 1.1 float forms, as in Yams' default rule:
    /// A `[-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?`, B `\.[0-9_]+([eE][-+][0-9]+)?`,
    /// C `[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`, D `[-+]?\.(inf|Inf|INF)`, E `\.(nan|NaN|NAN)`.
    static func isFloat(_ b: [UInt8]) -> Bool {
        let text = String(decoding: b, as: UTF8.self)
        if [".nan", ".NaN", ".NAN"].contains(text) { return true }  // E
        var s = b[...]
        let signed = s.first == UInt8(ascii: "+") || s.first == UInt8(ascii: "-")
        if signed { s = s.dropFirst() }
        if [".inf", ".Inf", ".INF"].contains(String(decoding: s, as: UTF8.self)) { return true }  // D
        let us = UInt8(ascii: "_"), dot = UInt8(ascii: "."), colon = UInt8(ascii: ":")
        var i = s.startIndex
        func digitsOrUnderscores() { while i < s.endIndex, isDigit(s[i]) || s[i] == us { i += 1 } }
        if let f = s.first, f == dot {  // B: no sign allowed, exponent sign mandatory
            guard !signed else { return false }
            i += 1
            let start = i
            digitsOrUnderscores()
            guard i > start else { return false }
            if i < s.endIndex, s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") {
                i += 1
                guard i < s.endIndex, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") else { return false }
                i += 1
                let e = i
                while i < s.endIndex, isDigit(s[i]) { i += 1 }
                guard i > e else { return false }
            }
            return i == s.endIndex
        }
        guard let f = s.first, isDigit(f) else { return false }
        i += 1
        digitsOrUnderscores()
        if i < s.endIndex, s[i] == colon {  // C: sexagesimal with a fraction
            while i < s.endIndex, s[i] == colon {
                i += 1
                let start = i
                while i < s.endIndex, isDigit(s[i]), i - start < 2 { i += 1 }
                let n = i - start
                guard n == 1 || (n == 2 && s[start] <= UInt8(ascii: "5")) else { return false }
            }
            guard i < s.endIndex, s[i] == dot else { return false }
            i += 1
            digitsOrUnderscores()
            return i == s.endIndex
        }
        if i < s.endIndex, s[i] == dot {  // A
            i += 1
            digitsOrUnderscores()
        }
        if i < s.endIndex, s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") {
            i += 1
            if i < s.endIndex, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") { i += 1 }
            let e = i
            while i < s.endIndex, isDigit(s[i]) { i += 1 }
            guard i > e else { return false }
        }
        return i == s.endIndex
    }
}
