/// Reads the server name (SNI) from the first bytes a TLS client sends.
///
/// The ClientHello may be split across several TLS records; they are reassembled up to
/// `maximumLength` bytes of handshake. Any input is safe: the parser reads only within the
/// bytes given, every step consumes input, and it never allocates more than the limit.
public enum ClientHello {
    public enum Result: Equatable, Sendable {
        /// The bytes so far are a valid beginning; the ClientHello is not complete yet.
        case needMore
        /// The stream does not start with a TLS handshake record (plain HTTP, SSH, SSLv2, …).
        case notTLS
        /// A complete ClientHello without a server_name extension.
        case noServerName
        case serverName(String)
        /// TLS, but not a well-formed ClientHello; the text says what is wrong.
        case malformed(String)
    }

    /// What a complete ClientHello says about where it is going.
    public struct Info: Equatable, Sendable {
        /// The host_name of the server_name extension, as sent (not lower-cased).
        public var serverName: String?
        /// The application protocols offered (ALPN), in the client's order.
        public var applicationProtocols: [String]
        /// The client offers Encrypted Client Hello: `serverName` is then only the outer,
        /// public name, and the real destination is encrypted.
        public var offersEncryptedClientHello: Bool
    }

    public enum Inspection: Equatable, Sendable {
        case needMore
        case notTLS
        case malformed(String)
        case clientHello(Info)
    }

    /// The largest ClientHello handshake message accepted (header included).
    public static let maximumLength = 16 * 1024

    /// The server name of the ClientHello at the start of `bytes`.
    public static func parse(_ bytes: some Collection<UInt8>) -> Result {
        switch inspect(bytes) {
        case .needMore: .needMore
        case .notTLS: .notTLS
        case .malformed(let why): .malformed(why)
        case .clientHello(let info): info.serverName.map(Result.serverName) ?? .noServerName
        }
    }

    /// The ClientHello at the start of `bytes`, with its server name, ALPN and ECH offer.
    public static func inspect(_ bytes: some Collection<UInt8>) -> Inspection {
        if let r = bytes.withContiguousStorageIfAvailable({ inspect(buffer: $0) }) { return r }
        // Enough for the largest ClientHello in one-byte records.
        let copy = Array(bytes.prefix(6 * maximumLength))
        return copy.withUnsafeBufferPointer { inspect(buffer: $0) }
    }

    static let handshakeRecord: UInt8 = 22
    static let clientHelloType: UInt8 = 1
    static let maximumRecordLength = 1 << 14

    static func inspect(buffer b: UnsafeBufferPointer<UInt8>) -> Inspection {
        var handshake: [UInt8] = []
        var needed: Int? = nil
        var offset = 0
        while needed.map({ handshake.count < $0 }) ?? true {
            let available = b.count - offset
            let first = offset == 0
            if available >= 1, b[offset] != handshakeRecord {
                return first ? .notTLS : .malformed("a record of type \(b[offset]) interrupts the ClientHello")
            }
            if available >= 2, b[offset + 1] != 3 {
                return first ? .notTLS : .malformed("a record has version \(b[offset + 1]).x instead of 3.x")
            }
            if available >= 3, b[offset + 2] > 4 {
                return first ? .notTLS : .malformed("a record has an unknown version 3.\(b[offset + 2])")
            }
            guard available >= 5 else { return .needMore }
            let length = Int(b[offset + 3]) << 8 | Int(b[offset + 4])
            if length == 0 { return .malformed("an empty handshake record") }
            if length > maximumRecordLength { return .malformed("a record longer than 16 KiB") }
            let take = min(length, available - 5, (needed ?? maximumLength) - handshake.count)
            handshake.append(contentsOf: UnsafeBufferPointer(rebasing: b[(offset + 5)..<(offset + 5 + take)]))
            if let type = handshake.first, type != clientHelloType {
                return .malformed("the first handshake message is of type \(type), not a ClientHello")
            }
            if needed == nil, handshake.count >= 4 {
                let total = 4 + (Int(handshake[1]) << 16 | Int(handshake[2]) << 8 | Int(handshake[3]))
                guard total <= maximumLength else { return .malformed("the ClientHello is longer than 16 KiB") }
                needed = total
                if handshake.count > total { handshake.removeSubrange(total...) }
            }
            if let needed, handshake.count >= needed { break }
            if take < length { return available - 5 < length ? .needMore : .malformed("the ClientHello is longer than 16 KiB") }
            offset += 5 + length
        }
        return handshake.withUnsafeBufferPointer { parseBody(UnsafeBufferPointer(rebasing: $0[4...])) }
    }

    /// The body of a ClientHello message (after its 4-byte header).
    static func parseBody(_ body: UnsafeBufferPointer<UInt8>) -> Inspection {
        var r = Reader(body)
        guard let version = r.u16(), version >> 8 == 3 else { return .malformed("the ClientHello's version is not 3.x") }
        guard r.skip(32) else { return .malformed("the ClientHello ends in its random") }
        guard let session = r.vector8(), session.count <= 32 else { return .malformed("bad session id") }
        guard let suites = r.vector16(), suites.count >= 2, suites.count % 2 == 0 else {
            return .malformed("bad cipher suite list")
        }
        guard let compression = r.vector8(), !compression.isEmpty else { return .malformed("bad compression method list") }
        var info = Info(serverName: nil, applicationProtocols: [], offersEncryptedClientHello: false)
        if r.isAtEnd { return .clientHello(info) }
        guard let extensions = r.vector16(), r.isAtEnd else {
            return .malformed("the extensions do not fill the rest of the ClientHello")
        }
        var e = Reader(extensions)
        var seen: Set<UInt16> = []
        while !e.isAtEnd {
            guard let type = e.u16(), let data = e.vector16() else { return .malformed("a truncated extension") }
            guard seen.insert(type).inserted else { return .malformed("extension \(type) appears twice") }
            switch type {
            case 0:
                switch serverName(data) {
                case .success(let name): info.serverName = name
                case .failure(let problem): return .malformed(problem.message)
                }
            case 16:
                guard let protocols = applicationProtocols(data) else { return .malformed("a malformed ALPN extension") }
                info.applicationProtocols = protocols
            case 0xfe0d:
                info.offersEncryptedClientHello = true
            default:
                break
            }
        }
        return .clientHello(info)
    }

    /// The server_name extension (RFC 6066): a list holding at most one host_name.
    static func serverName(_ data: UnsafeBufferPointer<UInt8>) -> Swift.Result<String?, Malformed> {
        var r = Reader(data)
        guard let list = r.vector16(), r.isAtEnd, !list.isEmpty else {
            return .failure(Malformed("a malformed server_name extension"))
        }
        var l = Reader(list)
        var name: String? = nil
        while !l.isAtEnd {
            guard let type = l.u8(), let value = l.vector16() else {
                return .failure(Malformed("a malformed server_name list"))
            }
            guard type == 0 else { continue }
            guard name == nil else { return .failure(Malformed("two host names in server_name")) }
            guard !value.isEmpty, value.count <= 255, value.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                return .failure(Malformed("the server name is empty, too long or not printable ASCII"))
            }
            name = String(decoding: value, as: UTF8.self)
        }
        return .success(name)
    }

    static func applicationProtocols(_ data: UnsafeBufferPointer<UInt8>) -> [String]? {
        var r = Reader(data)
        guard let list = r.vector16(), r.isAtEnd, !list.isEmpty else { return nil }
        var l = Reader(list)
        var out: [String] = []
        while !l.isAtEnd {
            guard let p = l.vector8(), !p.isEmpty else { return nil }
            out.append(String(decoding: p, as: UTF8.self))
        }
        return out
    }

    struct Malformed: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// Bounds-checked big-endian reads; every read either consumes bytes or fails.
    struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0
        init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        var isAtEnd: Bool { position == bytes.count }

        mutating func u8() -> UInt8? {
            guard position < bytes.count else { return nil }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func u16() -> UInt16? {
            guard bytes.count - position >= 2 else { return nil }
            defer { position += 2 }
            return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
        }

        mutating func skip(_ n: Int) -> Bool {
            guard bytes.count - position >= n else { return false }
            position += n
            return true
        }

        mutating func take(_ n: Int) -> UnsafeBufferPointer<UInt8>? {
            guard bytes.count - position >= n else { return nil }
            defer { position += n }
            return UnsafeBufferPointer(rebasing: bytes[position..<(position + n)])
        }

        mutating func vector8() -> UnsafeBufferPointer<UInt8>? { u8().flatMap { take(Int($0)) } }
        mutating func vector16() -> UnsafeBufferPointer<UInt8>? { u16().flatMap { take(Int($0)) } }
    }
}
