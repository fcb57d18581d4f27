import AirlockEvents
import AirlockCore
@testable import AirlockEgress
import AirlockTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing

/// The gateway itself, in process, on a real Unix socket, against a real upstream on
/// loopback: the cases that need control a sandbox cannot give (a resolver that changes
/// its answer, a server on port 443, many hostile clients at once).
@Suite("egress gateway", .serialized)
struct GatewayTests {
    /// Collects the gateway's events.
    final class Events: EventSink {
        let all = Mutex<[AuditEvent]>([])
        func emit(_ event: AuditEvent) { all.withLock { $0.append(event) } }
        var types: [String] { all.withLock { $0.map(\.type) } }
    }

    /// Answers from a script, counting lookups.
    final class ScriptedResolver: EgressResolver {
        let answers: [[IPAddress]]
        let calls = Atomic<Int>(0)
        init(_ answers: [[IPAddress]]) { self.answers = answers }
        func resolve(_ name: String, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
            let n = calls.wrappingAdd(1, ordering: .relaxed).oldValue
            return loop.makeSucceededFuture(answers[min(n, answers.count - 1)])
        }
    }

    struct Harness {
        let dir: String
        let gateway: EgressGateway
        let events: Events
        var socket: String { dir + "/egress.sock" }
    }

    static func withGateway(
        _ network: NetworkSpec, limits: GatewayLimits = .init(), resolver: (any EgressResolver)? = nil,
        _ body: (Harness) throws -> Void
    ) throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let events = Events()
        let gateway = try EgressGateway(
            GatewayConfiguration(instance: "sbx-test", network: network, limits: limits), events: events,
            resolver: resolver ?? SystemResolver())
        try gateway.start(socketPath: dir + "/egress.sock")
        defer { gateway.stop() }
        try body(Harness(dir: dir, gateway: gateway, events: events))
    }

    /// A real upstream (Tests/Tools/upstream.py) and a scratch directory for one test.
    static func withUpstream(_ body: (TestUpstream, String) throws -> Void) throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let up = try TestUpstream(directory: dir)
        defer { up.stop() }
        try body(up, dir)
    }

    /// A directory for one test's upstream log and socket, removed by the caller.
    static func scratchDirectory() throws -> String {
        let dir = "/var/tmp/airlock-gw-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func network(_ allow: [EgressRule], hosts: [String: [String]] = [:], inspect: [String] = []) -> NetworkSpec {
        NetworkSpec(mode: .proxied, allow: allow, inspectTLS: inspect, hosts: hosts)
    }

    @Test func aRebindingAnswerNeverReachesLoopback() throws {
        try Self.withUpstream { up, dir in
            // First answer: a public address (checked, allowed; unreachable from this offline
            // machine); any later answer: loopback, where the upstream listens.
            let resolver = ScriptedResolver([[IPAddress(literal: "93.184.215.14")!], [IPAddress(literal: "127.0.0.1")!]])
            var limits = GatewayLimits()
            limits.connectTimeout = .seconds(2)
            try Self.withGateway(Self.network([EgressRule(host: "rebind.example", ports: [up.httpPort])]), limits: limits, resolver: resolver) { h in
                var c = try UnixClient(h.socket)
                let response = try c.request("GET http://rebind.example:\(up.httpPort)/x HTTP/1.1\r\nHost: rebind.example\r\n\r\n")
                #expect(response.status != 200, "\(response)")
                #expect(resolver.calls.load(ordering: .relaxed) == 1, "the gateway must resolve once and connect to what it checked")
                #expect(up.requests().isEmpty)
            }
        }
    }

    @Test func hostileClientsDoNotHarmAWellBehavedOne() throws {
        try Self.withUpstream { up, dir in
            var limits = GatewayLimits()
            limits.headerTimeout = .seconds(2)
            let net = Self.network(
                [EgressRule(host: "up.test", ports: [up.httpPort]), EgressRule(host: "127.0.0.1", ports: [up.httpPort])],
                hosts: ["up.test": ["127.0.0.1"]])
            try Self.withGateway(net, limits: limits) { h in
                // A slowloris client: one byte of a request head every 100 ms.
                let slow = try UnixClient(h.socket)
                let slowThread = Thread {
                    let s = slow
                    for b in Array("GET http://up.test:\(up.httpPort)/slow HTTP/1.1\r\nX-Drip: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 200) {
                        if !s.sendRaw([b]) { break }
                        usleep(100_000)
                    }
                }
                slowThread.start()
                var malformed = try UnixClient(h.socket)
                let bad = try malformed.request("GARBAGE\u{1}\r\n\r\n")
                #expect(bad.status == 400 || bad.status == 0)
                var big = try UnixClient(h.socket)
                let huge = "GET http://up.test:\(up.httpPort)/big HTTP/1.1\r\nX-Big: \(String(repeating: "b", count: 64 * 1024))\r\n\r\n"
                let oversized = try big.request(huge)
                #expect(oversized.status != 200)
                // Meanwhile a normal client gets 30 answers on one kept-alive connection.
                var good = try UnixClient(h.socket)
                for i in 0..<30 {
                    let r = try good.request("GET http://up.test:\(up.httpPort)/ok\(i) HTTP/1.1\r\nHost: up.test\r\n\r\n")
                    #expect(r.status == 200)
                }
                // The slowloris connection is closed at the header deadline, well before it finishes.
                let start = Date()
                var s = slow
                let closed = s.waitClosed(timeout: 10)
                #expect(closed, "slowloris connection still open")
                #expect(Date().timeIntervalSince(start) < 10)
                #expect(!up.requests().contains { ($0["path"] as? String) == "/slow" })
                // The malformed and the oversized requests are recorded as refused.
                var malformedEvents = 0
                for _ in 0..<200 {
                    malformedEvents = h.events.all.withLock { $0.filter { $0.decision?.reason.hasPrefix("malformed request") == true }.count }
                    if malformedEvents >= 2 { break }
                    usleep(10_000)
                }
                #expect(malformedEvents >= 2)
            }
        }
    }

    @Test func pipelinedAndChunkedRequestsAreAnsweredInOrder() throws {
        try Self.withUpstream { up, dir in
            let net = Self.network([EgressRule(host: "127.0.0.1", ports: [up.httpPort])])
            try Self.withGateway(net) { h in
                var c = try UnixClient(h.socket)
                let base = "http://127.0.0.1:\(up.httpPort)"
                _ = c.sendRaw(Array((
                    "POST \(base)/one HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    + "GET \(base)/two HTTP/1.1\r\nHost: x\r\n\r\n").utf8))
                let one = try c.readResponse()
                let two = try c.readResponse()
                #expect(one.status == 200 && one.body.contains("\"path\": \"/one\""), "\(one)")
                #expect(one.body.contains("\"body\": \"hello world\""), "\(one)")
                #expect(two.status == 200 && two.body.contains("\"path\": \"/two\""), "\(two)")
            }
        }
    }

    @Test func largeDownloadsStreamThroughPlainAndTunnel() throws {
        try Self.withUpstream { up, dir in
            let net = Self.network([EgressRule(host: "127.0.0.1", ports: [up.httpPort])])
            try Self.withGateway(net) { h in
                let n = 48 << 20
                var c = try UnixClient(h.socket)
                let r = try c.request("GET http://127.0.0.1:\(up.httpPort)/big?n=\(n) HTTP/1.1\r\nHost: x\r\n\r\n", countOnly: true)
                #expect(r.status == 200)
                #expect(r.bodyCount == n)
                // The same bytes through a CONNECT tunnel (not TLS, not port 443: relayed as is).
                var t = try UnixClient(h.socket)
                let established = try t.request("CONNECT 127.0.0.1:\(up.httpPort) HTTP/1.1\r\nHost: x\r\n\r\n", headOnly: true)
                #expect(established.status == 200)
                let r2 = try t.request("GET /big?n=\(n) HTTP/1.1\r\nHost: x\r\n\r\n", countOnly: true)
                #expect(r2.bodyCount == n)
                let totals = h.gateway.totals
                #expect(totals.in >= UInt64(2 * n))
            }
        }
    }

    @Test func aTunnelCarriesAHalfCloseBothWays() throws {
        let echo = try EchoAfterEOFServer()
        defer { echo.close() }
        try Self.withGateway(Self.network([EgressRule(host: "127.0.0.1", ports: [echo.port])])) { h in
            var c = try UnixClient(h.socket)
            let ok = try c.request("CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\nHost: x\r\n\r\n", headOnly: true)
            #expect(ok.status == 200)
            let payload = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let back = c.sendAndReadToEOF(payload)
            #expect(back.count == payload.count)
            #expect(back.elementsEqual(payload), "the echo differs from what was sent")
        }
    }

    /// Port 443 must carry TLS; port 80 too (plain HTTP goes as proxy requests, where the
    /// Host header cannot pick another site on the same address).
    @Test(arguments: [443, 80])
    func plainTextThroughATunnelToAWebPortIsRefused(port: Int) throws {
        // A real server on 127.0.0.1:<port> that counts the connections it accepts.
        let server = try TCPListener(port: port)
        defer { server.close() }
        let net = Self.network(
            [EgressRule(host: "plain.test", ports: [port]), EgressRule(host: "127.0.0.1", ports: [port])],
            hosts: ["plain.test": ["127.0.0.1"]])
        try Self.withGateway(net) { h in
            var c = try UnixClient(h.socket)
            let ok = try c.request("CONNECT plain.test:\(port) HTTP/1.1\r\nHost: plain.test:\(port)\r\n\r\n", headOnly: true)
            #expect(ok.status == 200)
            _ = c.sendRaw(Array("GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n".utf8))
            let closed = c.waitClosed(timeout: 5)
            #expect(closed)
            #expect(server.accepted() == 0)
            // Events reach the sink off the event loop: wait for the refusal's.
            var denied: AuditEvent?
            for _ in 0..<200 where denied == nil {
                denied = h.events.all.withLock { $0.first { $0.type == "egress.connection" && $0.decision?.verdict == "deny" } }
                if denied == nil { usleep(10_000) }
            }
            #expect(denied?.decision?.reason.contains("not TLS") == true, "\(String(describing: denied?.decision))")
        }
    }

    @Test func redactModeForwardsWithTheSecretReplacedAndCompressedBodiesAreRefused() throws {
        try Self.withUpstream { up, dir in
            var net = Self.network([EgressRule(host: "127.0.0.1", ports: [up.httpPort])])
            net.dlp = .redact
            let secret = "hunter2-\(UInt64.random(in: 1 << 40 ... 1 << 50))"
            let events = Events()
            let gateway = try EgressGateway(
                GatewayConfiguration(instance: "sbx-redact", network: net, secrets: [GatewaySecret(name: "PW", value: secret)]), events: events)
            let socket = dir + "/egress.sock"
            try gateway.start(socketPath: socket)
            defer { gateway.stop() }
            var c = try UnixClient(socket)
            let body = "{\"password\": \"\(secret)\"}"
            let r = try c.request(
                "POST http://127.0.0.1:\(up.httpPort)/login?pw=\(secret) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
            #expect(r.status == 200, "\(r)")
            let seen = try #require(up.requests().first)
            #expect(seen["query"] as? String == "pw=[REDACTED:secret:PW]")
            #expect(seen["body"] as? String == "{\"password\": \"[REDACTED:secret:PW]\"}")
            #expect(!String(describing: up.requests()).contains(secret))
            // A gzip body cannot be inspected: refused, never forwarded.
            var z = try UnixClient(socket)
            let gz = try z.request(
                "POST http://127.0.0.1:\(up.httpPort)/gz HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd")
            #expect(gz.status == 415)
            #expect(gz.body.contains("compressed"))
            // An `identity` first does not hide a second coding.
            var z2 = try UnixClient(socket)
            let gz2 = try z2.request(
                "POST http://127.0.0.1:\(up.httpPort)/gz2 HTTP/1.1\r\nHost: x\r\nContent-Encoding: identity\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd")
            #expect(gz2.status == 415)
            // TRACE would echo the request (injected credentials included) back.
            var t = try UnixClient(socket)
            let trace = try t.request("TRACE http://127.0.0.1:\(up.httpPort)/ HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(trace.status == 405)
            #expect(up.requests().count == 1)
            gateway.stop()
            let recorded = events.all.withLock { $0 }
            #expect(recorded.contains { $0.type == "egress.request" && $0.decision?.verdict == "allow" })
            #expect(!recorded.contains { String(describing: $0.attributes).contains(secret) })
        }
    }

    @Test func encryptedClientHelloIsRefusedOnAnUninspectedTunnel() throws {
        let server = try TCPListener()
        defer { server.close() }
        let net = Self.network(
            [EgressRule(host: "public.test", ports: [server.port]), EgressRule(host: "127.0.0.1", ports: [server.port])],
            hosts: ["public.test": ["127.0.0.1"]])
        try Self.withGateway(net) { h in
            var c = try UnixClient(h.socket)
            let ok = try c.request("CONNECT public.test:\(server.port) HTTP/1.1\r\nHost: public.test\r\n\r\n", headOnly: true)
            #expect(ok.status == 200)
            // The outer name matches the CONNECT host; the real one would be encrypted.
            let hello = TLSBuilder.clientHello([TLSBuilder.serverName([(0, "public.test")]), TLSBuilder.extensionBlock(0xfe0d, [0, 1, 2])])
            _ = c.sendRaw(TLSBuilder.records(hello, size: 16_384))
            let closed = c.waitClosed(timeout: 5)
            #expect(closed)
            #expect(server.accepted() == 0)
        }
    }

    @Test func aSpentInboundByteBudgetCutsTheTransferAndRefusesTheNextRequest() throws {
        try Self.withUpstream { up, _ in
            var net = Self.network([EgressRule(host: "127.0.0.1", ports: [up.httpPort])])
            net.budgets = EgressBudgets(bytesIn: 1 << 20)
            try Self.withGateway(net) { h in
                var c = try UnixClient(h.socket)
                let big = try c.request("GET http://127.0.0.1:\(up.httpPort)/big?n=\(8 << 20) HTTP/1.1\r\nHost: x\r\n\r\n", countOnly: true)
                #expect(big.bodyCount < 8 << 20, "the transfer was not cut")
                var next = try UnixClient(h.socket)
                let refused = try next.request("GET http://127.0.0.1:\(up.httpPort)/after HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(refused.status == 403)
                #expect(refused.body.contains("bytes_in"))
                #expect(!up.requests().contains { ($0["path"] as? String) == "/after" })
            }
        }
    }

    @Test func aStalledRequestBodyIsCut() throws {
        try Self.withUpstream { up, _ in
            var limits = GatewayLimits()
            limits.idleTimeout = .seconds(1)
            try Self.withGateway(Self.network([EgressRule(host: "127.0.0.1", ports: [up.httpPort])]), limits: limits) { h in
                var c = try UnixClient(h.socket)
                _ = c.sendRaw(Array("POST http://127.0.0.1:\(up.httpPort)/stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789".utf8))
                let start = Date()
                let closed = c.waitClosed(timeout: 10)
                #expect(closed)
                #expect(Date().timeIntervalSince(start) < 5)
                #expect(up.requests().isEmpty)
            }
        }
    }

    @Test func theSandboxCAIsErasedWhenTheGatewayStops() throws {
        let events = Events()
        let gateway = try EgressGateway(
            GatewayConfiguration(instance: "sbx-ca", network: Self.network([EgressRule(host: "api.test")], inspect: ["api.test"])), events: events)
        #expect(gateway.caCertificatePEM?.contains("BEGIN CERTIFICATE") == true)
        #expect(gateway.caCertificatePEM?.contains("PRIVATE") == false)
        #expect(gateway.isCAErased == false)
        gateway.stop()
        #expect(gateway.isCAErased == true)
    }
}
