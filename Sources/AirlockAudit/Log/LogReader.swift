#if canImport(Glibc)
import Glibc
#endif
import AirlockCore

/// Reads records straight from the segments, for `airlock audit tail`: the newest
/// few, then whatever is appended (following rotation into new segments). It never
/// reads past the last complete line, so a record being written is not shown torn.
public struct LogReader {
    public let directory: String
    private var segment: String?
    private var offset = 0

    public init(directory: String) { self.directory = directory }

    /// The newest `n` records, oldest first; positions the reader after them.
    public mutating func last(_ n: Int) throws(AirlockError) -> [LogRecord] {
        let segments = try LogFiles.segments(in: directory)
        var out: [LogRecord] = []
        var end: (String, Int)?
        for name in segments.reversed() {
            guard let bytes = LogFiles.read(directory + "/" + name) else { continue }
            let whole = bytes.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
            if end == nil { end = (name, whole) }
            let recs = SegmentLines(bytes: Array(bytes[..<whole])).compactMap { try? LogRecord.parse($0.line).get() }
            out.insert(contentsOf: recs.suffix(n - out.count), at: 0)
            if out.count >= n { break }
        }
        if let (name, off) = end {
            segment = name
            offset = off
        }
        return out
    }

    /// Records appended since the last call.
    public mutating func next() throws(AirlockError) -> [LogRecord] {
        let segments = try LogFiles.segments(in: directory)
        var names = segments
        if let current = segment, let i = segments.firstIndex(of: current) { names = Array(segments[i...]) } else { offset = 0 }
        var out: [LogRecord] = []
        for name in names {
            if name != segment {
                segment = name
                offset = 0
            }
            guard let bytes = LogFiles.read(directory + "/" + name), offset < bytes.count else { continue }
            guard let lastNL = bytes.lastIndex(of: 0x0A), lastNL >= offset else { continue }
            out += SegmentLines(bytes: Array(bytes[offset...lastNL])).compactMap { try? LogRecord.parse($0.line).get() }
            offset = lastNL + 1
        }
        return out
    }
}
