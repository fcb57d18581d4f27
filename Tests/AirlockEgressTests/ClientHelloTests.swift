import AirlockTestSupport
import Testing

@testable import AirlockEgress

/// ClientHellos captured from Python's ssl module (OpenSSL 3.0) through a MemoryBIO.
enum CapturedHello {
    /// server_hostname="example.com", ALPN h2 and http/1.1, one 517-byte record.
    static let exampleCom = bytes(
        """
        1603010200010001fc030395e947ee5cf05ec1823ccc0ca6794d43a8b43397718cbb686d63e48cad01c5c52028b8dea2
        53d4e5edf100435b737cdfefe079c10be0ca00f537f7b73ba1a653290024130213031301c02cc030c02bc02fcca9cca8
        c024c028c023c027009f009e006b006700ff0100018f00000010000e00000b6578616d706c652e636f6d000b00040300
        0102000a00160014001d0017001e0019001801000101010201030104002300000010000e000c02683208687474702f31
        2e310016000000170000000d002a0028040305030603080708080809080a080b08040805080604010501060103030301
        0302040205020602002b00050403040303002d00020101003300260024001d00201cfdc12c3ba393f0b61cbe9b6d20ed
        bd4e55ef2219698810292a0636a65e1067001500d0000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000
        """)
    /// No server_hostname (no SNI extension), no ALPN.
    static let withoutServerName = bytes(
        """
        1603010200010001fc0303489a23d325c93e7e7ea0c1bc7587f1c89a80b7ea9568ba98c16962f171696390204b851e10
        73cbe49302b8546b6e132b4d5444d23922be191a225c5962fc8981ac0024130213031301c02cc030c02bc02fcca9cca8
        c024c028c023c027009f009e006b006700ff0100018f000b000403000102000a00160014001d0017001e001900180100
        0101010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b080408050806
        040105010601030303010302040205020602002b00050403040303002d00020101003300260024001d00205ca5f57688
        02c94e9642f0031909a71c0e0583854ea4637720f73aa9d9ac7427001500f60000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
        00000000000000000000000000000000000000000000000000000000000000000000000000
        """)

    static func bytes(_ hex: String) -> [UInt8] {
        let digits = hex.utf8.compactMap { IPAddress.hexValue($0) }
        return stride(from: 0, to: digits.count - 1, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }
}

/// Builds TLS records around handshake messages, and ClientHellos with chosen extensions.
enum TLSBuilder {
    static func u16(_ n: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)] }
    static func u24(_ n: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: n >> 16)] + u16(n) }

    /// `handshake` cut into records of `size` bytes (the last one shorter).
    static func records(_ handshake: [UInt8], size: Int, type: UInt8 = 22) -> [UInt8] {
        stride(from: 0, to: handshake.count, by: size).flatMap { start -> [UInt8] in
            let chunk = handshake[start..<min(start + size, handshake.count)]
            return [type, 3, 1] + u16(chunk.count) + chunk
        }
    }

    /// The handshake message (type, length, body) inside a single-record stream.
    static func handshake(of stream: [UInt8]) -> [UInt8] { Array(stream[5...]) }

    static func extensionBlock(_ type: Int, _ data: [UInt8]) -> [UInt8] { u16(type) + u16(data.count) + data }

    static func serverName(_ names: [(UInt8, String)]) -> [UInt8] {
        let list = names.flatMap { [$0.0] + u16($0.1.utf8.count) + Array($0.1.utf8) }
        return extensionBlock(0, u16(list.count) + list)
    }

    /// A ClientHello handshake message with these extensions (nil: no extensions block).
    static func clientHello(_ extensions: [[UInt8]]?, version: [UInt8] = [3, 3]) -> [UInt8] {
        var body = version + [UInt8](repeating: 7, count: 32) + [0] + u16(2) + [0x13, 0x01] + [1, 0]
        if let extensions {
            let all = extensions.flatMap { $0 }
            body += u16(all.count) + all
        }
        return [1] + u24(body.count) + body
    }
}

@Suite struct ClientHelloTests {
    @Test func capturedClientHello() {
        #expect(ClientHello.parse(CapturedHello.exampleCom) == .serverName("example.com"))
        #expect(
            ClientHello.inspect(CapturedHello.exampleCom)
                == .clientHello(.init(serverName: "example.com", applicationProtocols: ["h2", "http/1.1"], offersEncryptedClientHello: false)))
        #expect(ClientHello.parse(CapturedHello.withoutServerName) == .noServerName)
        // Bytes after the ClientHello (the client's next flight) do not matter.
        #expect(ClientHello.parse(CapturedHello.exampleCom + [23, 3, 3, 0, 5, 1, 2, 3]) == .serverName("example.com"))
        // Any collection, contiguous or not.
        #expect(ClientHello.parse(CapturedHello.exampleCom[...]) == .serverName("example.com"))
        #expect(ClientHello.parse(CapturedHello.exampleCom.lazy.map { $0 }) == .serverName("example.com"))
    }

    @Test func everyPrefixNeedsMore() {
        let hello = CapturedHello.exampleCom
        for cut in 0..<hello.count {
            #expect(ClientHello.parse(hello.prefix(cut)) == .needMore, "cut at \(cut)")
        }
    }

    @Test func splitIntoTwoRecordsAtEveryByteBoundary() {
        let message = TLSBuilder.handshake(of: CapturedHello.exampleCom)
        for cut in 1..<message.count {
            let stream =
                [22, 3, 1] + TLSBuilder.u16(cut) + message[..<cut] + [22, 3, 1] + TLSBuilder.u16(message.count - cut) + message[cut...]
            #expect(ClientHello.parse(stream.prefix(5 + cut)) == .needMore, "cut at \(cut)")
            #expect(ClientHello.parse(stream.prefix(5 + cut + 5)) == .needMore, "cut at \(cut)")
            #expect(ClientHello.parse(stream) == .serverName("example.com"), "cut at \(cut)")
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 50, 100, 255, 511, 512])
    func fragmentedIntoManyRecords(size: Int) {
        let stream = TLSBuilder.records(TLSBuilder.handshake(of: CapturedHello.exampleCom), size: size)
        #expect(ClientHello.parse(stream) == .serverName("example.com"))
        for cut in stride(from: 0, to: stream.count, by: max(1, size / 2)) {
            #expect(ClientHello.parse(stream.prefix(cut)) == .needMore, "cut at \(cut)")
        }
    }

    @Test(arguments: [
        Array("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".utf8), Array("SSH-2.0-OpenSSH_9.6\r\n".utf8),
        [0x80, 0x2e, 0x01, 0x00, 0x02], [0x16, 0x02], [0x16, 0x03, 0x05], [0x17, 0x03, 0x03, 0x00, 0x10], [0x00], [0xff, 0xff],
    ])
    func notTLS(_ bytes: [UInt8]) {
        #expect(ClientHello.parse(bytes) == .notTLS)
    }

    @Test func beginningsNeedMore() {
        #expect(ClientHello.parse([UInt8]()) == .needMore)
        #expect(ClientHello.parse([0x16]) == .needMore)
        #expect(ClientHello.parse([0x16, 0x03]) == .needMore)
        #expect(ClientHello.parse([0x16, 0x03, 0x01, 0x02]) == .needMore)
        #expect(ClientHello.parse([0x16, 0x03, 0x01, 0x00, 0x04, 0x01]) == .needMore)
    }

    @Test func malformed() {
        func isMalformed(_ bytes: [UInt8], _ mention: String, sourceLocation: SourceLocation = #_sourceLocation) {
            guard case .malformed(let why) = ClientHello.parse(bytes) else {
                Issue.record("\(ClientHello.parse(bytes)) instead of malformed", sourceLocation: sourceLocation)
                return
            }
            #expect(why.contains(mention), "\(why)", sourceLocation: sourceLocation)
        }
        let hello = TLSBuilder.handshake(of: CapturedHello.exampleCom)
        isMalformed([22, 3, 1, 0, 0], "empty")
        isMalformed([22, 3, 1, 0x40, 0x01], "longer than 16 KiB")
        isMalformed(TLSBuilder.records([2, 0, 0, 4, 3, 3, 0, 0], size: 100), "not a ClientHello")
        isMalformed([22, 3, 1, 0, 1, 2], "not a ClientHello")
        isMalformed(TLSBuilder.records([1, 0, 0x40, 0x00] + hello[4...], size: 1000), "longer than 16 KiB")
        // A record of another type, or another version, in the middle of the ClientHello.
        isMalformed(Array(TLSBuilder.records(hello, size: 100).prefix(105)) + [23, 3, 3, 0, 1, 0], "type 23")
        isMalformed(Array(TLSBuilder.records(hello, size: 100).prefix(105)) + [22, 2, 0, 0, 1, 0], "version")
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello(nil, version: [2, 0]), size: 500), "version")
        let sni = TLSBuilder.serverName([(0, "example.com")])
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello([sni, sni]), size: 500), "appears twice")
        let twoNames = TLSBuilder.serverName([(0, "a.com"), (0, "b.com")])
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello([twoNames]), size: 500), "two host names")
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello([TLSBuilder.serverName([(0, "")])]), size: 500), "empty")
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello([TLSBuilder.serverName([(0, "ex\u{e4}mple.com")])]), size: 500), "ASCII")
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello([TLSBuilder.serverName([(0, "a b")])]), size: 500), "ASCII")
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello([TLSBuilder.extensionBlock(0, [0, 9, 0])]), size: 500), "server_name")
        isMalformed(TLSBuilder.records(TLSBuilder.clientHello([[0, 0, 0, 9, 1]]), size: 500), "truncated extension")
        // The extensions block must fill the message exactly.
        var trailing = TLSBuilder.clientHello([sni])
        trailing += [0]
        trailing[3] += 1
        isMalformed(TLSBuilder.records(trailing, size: 500), "extensions")
    }

    @Test func craftedHellos() {
        func parse(_ extensions: [[UInt8]]?) -> ClientHello.Result {
            ClientHello.parse(TLSBuilder.records(TLSBuilder.clientHello(extensions), size: 16384))
        }
        #expect(parse(nil) == .noServerName)
        #expect(parse([]) == .noServerName)
        #expect(parse([TLSBuilder.extensionBlock(0xff01, [0])]) == .noServerName)
        #expect(parse([TLSBuilder.serverName([(0, "Example.COM.")])]) == .serverName("Example.COM."))
        // Unknown name types are skipped; one host_name is read.
        #expect(parse([TLSBuilder.serverName([(7, "ignored"), (0, "a.example")])]) == .serverName("a.example"))
        #expect(parse([TLSBuilder.serverName([(7, "ignored")])]) == .noServerName)
        let ech = ClientHello.inspect(
            TLSBuilder.records(
                TLSBuilder.clientHello([TLSBuilder.serverName([(0, "public.example")]), TLSBuilder.extensionBlock(0xfe0d, [0, 1, 2])]),
                size: 16384))
        #expect(ech == .clientHello(.init(serverName: "public.example", applicationProtocols: [], offersEncryptedClientHello: true)))
        // The largest accepted ClientHello: 16 KiB of handshake (padding extension), in two records.
        let padding = 16384 - TLSBuilder.clientHello([TLSBuilder.serverName([(0, "big.example")])]).count - 4
        let big = TLSBuilder.clientHello([
            TLSBuilder.serverName([(0, "big.example")]), TLSBuilder.extensionBlock(21, [UInt8](repeating: 0, count: padding)),
        ])
        #expect(big.count == ClientHello.maximumLength)
        #expect(ClientHello.parse(TLSBuilder.records(big, size: 16384 - 10)) == .serverName("big.example"))
        let tooBig = TLSBuilder.clientHello([
            TLSBuilder.serverName([(0, "big.example")]), TLSBuilder.extensionBlock(21, [UInt8](repeating: 0, count: padding + 1)),
        ])
        #expect(ClientHello.parse(TLSBuilder.records(tooBig, size: 16384)) == .malformed("the ClientHello is longer than 16 KiB"))
    }
}
