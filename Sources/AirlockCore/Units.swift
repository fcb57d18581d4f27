/// Byte sizes and durations as people write them in policies and on the command line.
///
/// Sizes: an integer with an optional binary suffix `K`, `M`, `G`, `T` (powers of
/// 1024; `KiB`/`MiB`/… and `KB`/`MB` spellings are accepted and mean the same),
/// e.g. `512M`, `1G`, `65536`. Durations: an integer or decimal with a unit `ms`,
/// `s`, `m`, `h`, e.g. `30s`, `1.5h`, `250ms`. A bare number is seconds.
public enum Units {
    public static func parseBytes(_ text: String) throws(AirlockError) -> UInt64 {
        let s = text.trimmingSpaces()
        var digits = ""
        var suffix = ""
        for ch in s {
            if suffix.isEmpty, ch.isASCII, ch.isNumber { digits.append(ch) } else { suffix.append(ch) }
        }
        guard !digits.isEmpty, let n = UInt64(digits) else {
            throw AirlockError(.usage, "'\(text)' is not a size: write a whole number with an optional unit K, M, G or T (powers of 1024), e.g. 512M")
        }
        let shift: UInt64
        switch suffix.uppercased() {
        case "", "B": shift = 0
        case "K", "KB", "KIB": shift = 10
        case "M", "MB", "MIB": shift = 20
        case "G", "GB", "GIB": shift = 30
        case "T", "TB", "TIB": shift = 40
        default:
            throw AirlockError(.usage, "'\(text)' has unknown size unit '\(suffix)': allowed units are K, M, G, T (powers of 1024)")
        }
        let (value, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { throw AirlockError(.usage, "'\(text)' is too large") }
        return value
    }

    public static func parseDuration(_ text: String) throws(AirlockError) -> Duration {
        let s = text.trimmingSpaces()
        var number = ""
        var unit = ""
        for ch in s {
            if unit.isEmpty, ch.isASCII, ch.isNumber || ch == "." { number.append(ch) } else { unit.append(ch) }
        }
        guard let value = Double(number), value.isFinite, value >= 0 else {
            throw AirlockError(.usage, "'\(text)' is not a duration: write a number with a unit ms, s, m or h, e.g. 30s")
        }
        let seconds: Double
        switch unit.lowercased() {
        case "ms": seconds = value / 1000
        case "", "s": seconds = value
        case "m", "min": seconds = value * 60
        case "h": seconds = value * 3600
        default:
            throw AirlockError(.usage, "'\(text)' has unknown duration unit '\(unit)': allowed units are ms, s, m, h")
        }
        guard seconds <= 366 * 86400 else { throw AirlockError(.usage, "'\(text)' is longer than a year") }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// `536870912` → `512 MiB`; used in messages so people see the unit they wrote.
    public static func formatBytes(_ n: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where n >= size && n % size == 0 { return "\(n / size) \(name)" }
        for (size, name) in units where n >= size {
            let v = Double(n) / Double(size)
            return "\((v * 10).rounded() / 10) \(name)"
        }
        return "\(n) B"
    }

    /// `30s`, `1m30s`, `250ms`.
    public static func formatDuration(_ d: Duration) -> String {
        let ms = d.milliseconds
        if ms % 1000 != 0 { return ms < 1000 ? "\(ms)ms" : "\(Double(ms) / 1000)s" }
        var s = ms / 1000
        if s < 60 { return "\(s)s" }
        var out = ""
        if s >= 3600 { out += "\(s / 3600)h"; s %= 3600 }
        if s >= 60 { out += "\(s / 60)m"; s %= 60 }
        if s > 0 { out += "\(s)s" }
        return out
    }
}

extension Duration {
    public var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }

    public var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs.
    public func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
