#if canImport(Glibc)
import Glibc
#endif

/// The clocks Airlock reads: wall-clock time for records, monotonic time for
/// durations and deadlines, and the one timestamp format events use.
public enum Clock {
    /// CLOCK_MONOTONIC in nanoseconds.
    public static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

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
        var out: [UInt8] = []
        writeRFC3339(nanos, into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
