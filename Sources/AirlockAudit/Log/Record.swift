import Crypto

/// One line of a segment file:
///
///     {"seq":N,"prev":"<64 hex>","hash":"<64 hex>","event":<event JSON>}\n
///
/// `hash` is SHA-256 over `airlock-audit/1\n<seq>\n<prev>\n<event JSON bytes>`: the
/// event bytes exactly as written (the encoder is deterministic), chained to the
/// previous record's hash. The first record of a log has a `prev` of 64 zeros.
/// Keeping the prefix fixed lets the verifier locate the event bytes without
/// re-encoding anything, so what is hashed is exactly what is on disk.
public struct LogRecord: Sendable {
    public var seq: UInt64
    public var prev: Digest32
    public var hash: Digest32
    /// The event's canonical JSON bytes.
    public var event: [UInt8]

    static let domain = Array("airlock-audit/1\n".utf8)

    public static func chainHash(seq: UInt64, prev: Digest32, event: some Collection<UInt8>) -> Digest32 {
        var header: [UInt8] = domain
        header.reserveCapacity(domain.count + 86)
        JSONValue.writeInt(Int64(bitPattern: seq), into: &header)
        header.append(0x0A)
        Hex.write(prev.bytes, into: &header)
        header.append(0x0A)
        var h = SHA256()
        h.update(data: header)
        event.withContiguousStorageIfAvailable { h.update(bufferPointer: UnsafeRawBufferPointer($0)) } ?? h.update(data: Array(event))
        return Digest32(h.finalize())
    }

    /// Appends the record's line, newline included.
    func write(into out: inout [UInt8]) {
        out.append(contentsOf: Self.seqPrefix)
        JSONValue.writeInt(Int64(bitPattern: seq), into: &out)
        out.append(contentsOf: Self.prevPrefix)
        Hex.write(prev.bytes, into: &out)
        out.append(contentsOf: Self.hashPrefix)
        Hex.write(hash.bytes, into: &out)
        out.append(contentsOf: Self.eventPrefix)
        out.append(contentsOf: event)
        out.append(UInt8(ascii: "}"))
        out.append(0x0A)
    }

    static let seqPrefix = Array(#"{"seq":"#.utf8)
    static let prevPrefix = Array(#","prev":""#.utf8)
    static let hashPrefix = Array(#"","hash":""#.utf8)
    static let eventPrefix = Array(#"","event":"#.utf8)

    /// Parses one line (without its newline). Returns a description of what is
    /// wrong when the line is not exactly a record.
    public static func parse(_ line: ArraySlice<UInt8>) -> Result<LogRecord, ParseFailure> {
        var i = line.startIndex
        func expect(_ lit: [UInt8], _ what: String) -> ParseFailure? {
            guard line.endIndex - i >= lit.count, line[i..<(i + lit.count)].elementsEqual(lit) else {
                return ParseFailure("expected \(what)")
            }
            i += lit.count
            return nil
        }
        if let f = expect(seqPrefix, "{\"seq\":") { return .failure(f) }
        var seq: UInt64 = 0
        let digitsStart = i
        while i < line.endIndex, (0x30...0x39).contains(line[i]) {
            let (m, o1) = seq.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(line[i] - 0x30))
            if o1 || o2 { return .failure(ParseFailure("sequence number overflows")) }
            seq = a
            i += 1
        }
        if i == digitsStart || (line[digitsStart] == 0x30 && i - digitsStart > 1) {
            return .failure(ParseFailure("invalid sequence number"))
        }
        if let f = expect(prevPrefix, "\"prev\"") { return .failure(f) }
        guard let prev = Digest32(hex: line[i..<min(i + 64, line.endIndex)]) else { return .failure(ParseFailure("invalid prev hash")) }
        i += 64
        if let f = expect(hashPrefix, "\"hash\"") { return .failure(f) }
        guard let hash = Digest32(hex: line[i..<min(i + 64, line.endIndex)]) else { return .failure(ParseFailure("invalid hash")) }
        i += 64
        if let f = expect(eventPrefix, "\"event\"") { return .failure(f) }
        guard line.endIndex - i >= 3, line[line.endIndex - 1] == UInt8(ascii: "}"), line[i] == UInt8(ascii: "{") else {
            return .failure(ParseFailure("invalid event object"))
        }
        return .success(LogRecord(seq: seq, prev: prev, hash: hash, event: Array(line[i..<(line.endIndex - 1)])))
    }

    public struct ParseFailure: Error, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }
}

/// A SHA-256 digest, printed as lowercase hex.
public struct Digest32: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]

    public static let zero = Digest32(bytes: [UInt8](repeating: 0, count: 32))

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32)
        self.bytes = bytes
    }

    init(_ d: SHA256.Digest) { self.bytes = Array(d) }

    public init?(hex: some Collection<UInt8>) {
        guard hex.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var hi: UInt8?
        for c in hex {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            default: return nil  // lowercase only: one spelling per digest
            }
            if let h = hi { out.append(h << 4 | v); hi = nil } else { hi = v }
        }
        self.bytes = out
    }

    public init?(hex: String) { self.init(hex: Array(hex.utf8)) }

    public var hexBytes: [UInt8] { Hex.encode(bytes) }
    public var description: String { String(decoding: hexBytes, as: UTF8.self) }
}

enum Hex {
    static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return out
    }

    static func write(_ bytes: [UInt8], into out: inout [UInt8]) {
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
    }

    static func string(_ bytes: some Sequence<UInt8>) -> String { String(decoding: encode(bytes), as: UTF8.self) }

    static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < u.count {
            guard let h = nibble(u[i]), let l = nibble(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
}
