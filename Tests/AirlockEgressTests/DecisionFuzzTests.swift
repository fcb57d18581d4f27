import AirlockCore
import AirlockTestSupport
import Testing

@testable import AirlockEgress

/// Seeded random inputs: nothing in the decision layer may crash, loop or contradict itself.
@Suite struct DecisionFuzzTests {
    static func randomBytes(_ count: Int, _ rng: inout SeededGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    @Test(arguments: 0..<4)
    func clientHelloNeverCrashesOnGarbage(seed: UInt64) {
        var rng = SeededGenerator(seed: 0xC11E_17 &+ seed)
        for _ in 0..<2000 {
            var bytes = Self.randomBytes(Int(rng.next() % 600), &rng)
            // Often a plausible record header, so the parser gets past the first bytes.
            if rng.next() % 2 == 0, bytes.count >= 5 {
                bytes[0] = 22
                bytes[1] = 3
                bytes[2] = UInt8(rng.next() % 5)
            }
            if rng.next() % 4 == 0, bytes.count >= 9 { bytes[5] = 1 }
            switch ClientHello.parse(bytes) {
            case .needMore, .notTLS, .noServerName, .malformed: break
            case .serverName(let name): #expect(!name.isEmpty && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f })
            }
        }
    }

    @Test(arguments: 0..<4)
    func mutatedClientHellosNeverCrash(seed: UInt64) {
        var rng = SeededGenerator(seed: 0x5A1 &+ seed)
        let message = TLSBuilder.handshake(of: CapturedHello.exampleCom)
        var results: [String: Int] = [:]
        for _ in 0..<1500 {
            var stream = TLSBuilder.records(message, size: 1 + Int(rng.next() % 600))
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let i = Int(rng.next() % UInt64(stream.count))
                switch rng.next() % 4 {
                case 0: stream[i] = UInt8(truncatingIfNeeded: rng.next())
                case 1: stream[i] ^= 1 << UInt8(rng.next() % 8)
                case 2: stream.removeSubrange(i..<min(stream.count, i + 1 + Int(rng.next() % 8)))
                default: stream.insert(contentsOf: Self.randomBytes(1 + Int(rng.next() % 4), &rng), at: i)
                }
                if stream.isEmpty { stream = [22] }
            }
            let key: String =
                switch ClientHello.parse(stream) {
                case .needMore: "needMore"
                case .notTLS: "notTLS"
                case .noServerName: "noServerName"
                case .serverName: "serverName"
                case .malformed: "malformed"
                }
            results[key, default: 0] += 1
        }
        // The mutations reach past the header: both well-formed and malformed outcomes occur.
        #expect(results["serverName", default: 0] > 0)
        #expect(results["malformed", default: 0] > 0)
    }

    @Test func hostsAndAddressesRoundTrip() {
        var rng = SeededGenerator(seed: 0x4057)
        let pieces = [
            "a", "Z", "0", "1", "7", "9", "x", "0x", "f", ".", ".", ":", "::", "[", "]", "%", "%25", "-", "_", "*", "255",
            "256", "127", "ffff", "1.2.3.4", "example", "com", " ", "\u{e9}", "\u{0}",
        ]
        var names = 0
        var addresses = 0
        for _ in 0..<20_000 {
            let raw = (0..<(1 + Int(rng.next() % 8))).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
            if let address = IPAddress(literal: raw) {
                #expect(IPAddress(literal: address.description) == address, "\(raw)")
                _ = address.addressClass
                _ = address.embeddedIPv4
            }
            guard let host = try? HostName.parse(raw) else { continue }
            // Canonical forms parse to themselves.
            #expect((try? HostName.parse(host.description)) == host, "\(raw)")
            #expect((try? HostName.parse(host.uriHost)) == host, "\(raw)")
            switch host {
            case .name(let n):
                names += 1
                #expect(IPAddress(literal: n) == nil, "\(raw)")
                #expect(n == n.lowercased() && !n.hasSuffix("."), "\(raw)")
            case .address: addresses += 1
            }
        }
        #expect(names > 100 && addresses > 100)
    }

    @Test func requestPathsNormaliseIdempotently() {
        var rng = SeededGenerator(seed: 0x9A7)
        let pieces = ["/", "/", "a", "B", ".", "..", "%2e", "%2E", "%2f", "%41", "%25", "%3b", ";", "~", "*", "?", "#", "%", "\\", "x y", "%zz"]
        var accepted = 0
        for _ in 0..<20_000 {
            let raw = "/" + (0..<Int(rng.next() % 10)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
            guard case .success(let path) = RequestPath.normalize(raw) else { continue }
            accepted += 1
            let again = RequestPath.normalize(path.text)
            #expect(again == .success(path), "\(raw) → \(path.text)")
            #expect(!path.text.contains("//") && !path.text.contains("/../") && !path.text.hasSuffix("/.."), "\(raw)")
        }
        #expect(accepted > 1000)
    }

    @Test func decisionsNeverCrashOnRandomRequests() throws {
        var rng = SeededGenerator(seed: 0xDEC1)
        let p = try makePolicy(
            allow: [
                EgressRule(host: "*.example.com", methods: ["GET"], paths: ["/v1/**", "/x/*/y"]), EgressRule(host: "example.org"),
                EgressRule(host: "10.0.0.0/8", ports: [5432]), EgressRule(host: "::1", ports: [8080]),
            ],
            deny: [EgressRule(host: "a.example.com", paths: ["/admin/**"]), EgressRule(host: "169.254.0.0/16")],
            inspect: ["*.example.com"])
        let hosts = ["a.example.com", "b.example.com", "example.org", "10.1.2.3", "[::1]", "169.254.169.254", "evil.net", "[::ffff:10.0.0.1]"]
        let pieces = ["/", "v1", "x", "y", "admin", "..", "%2e", "%2F", "?", "*", ";", "A", "%41"]
        for _ in 0..<5000 {
            let h = try HostName.parse(hosts[Int(rng.next() % UInt64(hosts.count))])
            let port = [80, 443, 5432, 8080, 22][Int(rng.next() % 5)]
            let path = (0..<Int(rng.next() % 6)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
            let connection = p.decide(host: h, port: port)
            let request = p.decide(host: h, port: port, method: ["GET", "POST", "get"][Int(rng.next() % 3)], path: path)
            // A request is never allowed where its connection is refused.
            if !connection.allowed { #expect(!request.allowed, "\(h):\(port) \(path)") }
            if request.allowed { #expect(connection.allowed) }
            _ = p.needsRequestView(host: h, port: port)
            _ = p.inspects(host: h)
            if case .address(let a) = h { _ = p.checkAddress(a, host: h, port: port) }
        }
    }
}
