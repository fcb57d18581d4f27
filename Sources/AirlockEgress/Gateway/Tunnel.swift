import AirlockEvents
import AirlockCore
import NIOCore
import NIOPosix
import NIOSSL

/// The first handler of an accepted CONNECT tunnel. It holds the client's first bytes
/// until it can read the TLS ClientHello, then:
/// - refuses a server name (SNI) other than the CONNECT host, a missing one for a named
///   host, and anything that is not TLS on port 443 (domain fronting, bare-IP tunnels
///   smuggling a named host, plain protocols through the HTTPS port);
/// - for an inspected host, terminates TLS with a certificate from the sandbox CA and
///   hands the plaintext to a ``ProxyFrontHandler`` bound to the tunnel's origin;
/// - otherwise connects to the checked address and relays bytes both ways.
final class ClientHelloGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let gateway: GatewayContext
    private let origin: TunnelOrigin
    private let inspect: Bool
    private let rule: String?
    private var record: EgressRecord
    private var buffered: ByteBuffer?
    private var decided = false
    private var deadline: Scheduled<Void>?
    static let maxClientHello = 16 * 1024
    static let maxPendingWhileConnecting = 2 * 1024 * 1024

    init(gateway: GatewayContext, origin: TunnelOrigin, inspect: Bool, rule: String?, record: EgressRecord) {
        self.gateway = gateway
        self.origin = origin
        self.inspect = inspect
        self.rule = rule
        self.record = record
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(gateway.limits.headerTimeout.nanoseconds))) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) { deadline?.cancel() }

    /// `chunk` added to what is buffered; returns the buffer.
    private func append(_ chunk: inout ByteBuffer) -> ByteBuffer {
        if var b = buffered {
            buffered = nil  // one owner, so the write does not copy the buffer
            b.writeBuffer(&chunk)
            buffered = b
            return b
        }
        buffered = chunk
        return chunk
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        if decided {
            // Bytes that arrive while the upstream connection is being made: reading is
            // paused then, so this is at most what one read burst already had in flight
            // (4 reads of up to 256 KiB); bounded all the same.
            let pending = append(&chunk)
            if pending.readableBytes > Self.maxPendingWhileConnecting { context.close(promise: nil) }
            return
        }
        let bytes = append(&chunk).readableBytesView
        switch ClientHello.inspect(bytes) {
        case .needMore:
            if bytes.count > Self.maxClientHello { deny("TLS ClientHello larger than \(Self.maxClientHello) bytes", context: context) }
        case .notTLS:
            // Plain protocols only on ports a rule names other than the web ports: plain
            // HTTP must use the proxy form, where every request is decided and scanned
            // (a raw tunnel to port 80 would reach any site sharing the address by Host).
            if origin.port == 443 || origin.port == 80 || inspect {
                deny("not TLS: a tunnel to port \(origin.port) must carry TLS (send plain HTTP as a proxy request, GET http://host/...)", context: context)
            } else {
                proceed(sni: nil, context: context)
            }
        case .malformed(let why):
            deny("malformed TLS ClientHello: \(why)", context: context)
        case .clientHello(let info):
            if info.offersEncryptedClientHello, !inspect {
                deny("the ClientHello offers Encrypted Client Hello, which hides the real server name", context: context)
                return
            }
            guard let sni = info.serverName else {
                if case .name = origin.host {
                    deny("the TLS ClientHello names no server, but the tunnel is for \(origin.host)", context: context)
                } else {
                    proceed(sni: nil, context: context)
                }
                return
            }
            record.sni = sni
            let matches = (try? HostName.parse(sni)).map { $0 == origin.host } ?? false
            if matches {
                proceed(sni: sni, context: context)
            } else {
                deny("TLS server name \(RequestTarget.printable(sni)) does not match the CONNECT host \(origin.host) (domain fronting)", context: context)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !decided {
            decided = true
            record.status = 499
            gateway.events.emit("egress.connection", decision: Decision("deny", reason: "client closed the tunnel before sending a TLS ClientHello", rule: rule), record.attributes())
        }
        context.fireChannelInactive()
    }

    private func deny(_ reason: String, context: ChannelHandlerContext) {
        decided = true
        buffered = nil
        gateway.events.emit("egress.connection", decision: Decision("deny", reason: reason, rule: rule), record.attributes())
        context.close(promise: nil)
    }

    private func proceed(sni: String?, context: ChannelHandlerContext) {
        decided = true
        deadline?.cancel()
        if inspect {
            terminate(context: context)
        } else {
            relay(context: context)
        }
    }

    /// Inspected: TLS ends here; requests inside go through a ``ProxyFrontHandler``.
    private func terminate(context: ChannelHandlerContext) {
        guard let ca = gateway.ca else { return deny("no CA for inspection", context: context) }
        do {
            let tls = try ca.serverContext(for: origin.host)
            let ops = context.pipeline.syncOperations
            var handlers: [any ChannelHandler] = [NIOSSLServerHandler(context: tls)]
            handlers.append(contentsOf: gateway.httpServerHandlers(origin: origin))
            try ops.addHandlers(handlers, position: .after(self))
            gateway.events.emit(
                "egress.connection", decision: Decision("allow", reason: "TLS inspected with the sandbox CA", rule: rule), record.attributes())
            if let b = buffered {
                buffered = nil
                context.fireChannelRead(wrapInboundOut(b))
                context.fireChannelReadComplete()
            }
            ops.removeHandler(context: context, promise: nil)
        } catch {
            deny("cannot inspect: \(error)", context: context)
        }
    }

    /// Not inspected: connect to the checked address and relay.
    private func relay(context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let client = context.channel
        // Hold the client back until the relay is in place: nothing piles up meanwhile.
        client.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        let gateway = self.gateway
        let clientGlue = GlueHandler(direction: .out, budget: gateway.budget)
        let clientGlueBound = NIOLoopBound(clientGlue, eventLoop: loop)
        let stats = TunnelStats(record: record, rule: rule, events: gateway.events)
        clientGlue.stats = stats
        let statsBound = NIOLoopBound(stats, eventLoop: loop)
        gateway.connect(ArraySlice(origin.addresses), port: origin.port, on: loop) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upstreamGlue = GlueHandler(direction: .in, budget: gateway.budget)
                upstreamGlue.stats = statsBound.value
                GlueHandler.pair(clientGlueBound.value, upstreamGlue)
                try channel.pipeline.syncOperations.addHandler(upstreamGlue)
            }
        }.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let (channel, address)):
                stats.record.address = address.description
                guard client.isActive else {
                    stats.record.status = 499
                    gateway.events.emit(
                        "egress.connection", decision: Decision("deny", reason: "client closed the tunnel while it was being connected", rule: self.rule),
                        stats.record.attributes())
                    channel.close(promise: nil)
                    return
                }
                do {
                    let ops = context.pipeline.syncOperations
                    try ops.addHandler(clientGlue, position: .after(self))
                    if var b = self.buffered, b.readableBytes > 0 {
                        self.buffered = nil
                        stats.record.bytesOut += b.readableBytes
                        guard gateway.budget.addOut(b.readableBytes) else {
                            stats.cutReason = "byte budget spent: bytes_out used up; tunnel cut"
                            channel.close(promise: nil)
                            client.close(promise: nil)
                            return
                        }
                        channel.writeAndFlush(b.readSlice(length: b.readableBytes)!, promise: nil)
                    }
                    ops.removeHandler(context: context, promise: nil)
                    client.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
                } catch {
                    channel.close(promise: nil)
                    client.close(promise: nil)
                }
            case .failure(let error):
                let refusal = error as? Refusal ?? Refusal(status: .badGateway, reason: "\(error)", verdict: "error")
                self.record.status = Int(refusal.status.code)
                gateway.events.emit("egress.connection", decision: Decision(refusal.verdict, reason: refusal.reason, rule: self.rule), self.record.attributes())
                client.close(promise: nil)
            }
        }
    }
}

/// The byte counts and the single event of one relayed tunnel.
final class TunnelStats {
    var record: EgressRecord
    let rule: String?
    let events: EgressEvents
    private var open = 2
    var cutReason: String?

    init(record: EgressRecord, rule: String?, events: EgressEvents) {
        self.record = record
        self.rule = rule
        self.events = events
        self.record.status = 200
    }

    /// Each side calls this once when it closes; the second call records the tunnel.
    func sideClosed() {
        open -= 1
        guard open == 0 else { return }
        if let cutReason {
            events.emit("egress.connection", decision: Decision("deny", reason: cutReason, rule: rule.map { _ in "budgets" }), record.attributes())
        } else {
            events.emit("egress.connection", decision: Decision("allow", reason: "tunnel relayed", rule: rule), record.attributes())
        }
    }
}

/// Relays bytes to a partner channel with backpressure (a read is only asked for when
/// the partner can take more), half-closes with the partner, counts bytes against the
/// sandbox's budget, and cuts the tunnel when the budget is spent.
final class GlueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Direction { case out, `in` }
    let direction: Direction
    let budget: EgressBudget
    var stats: TunnelStats?
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var closedReported = false

    init(direction: Direction, budget: EgressBudget) {
        self.direction = direction
        self.budget = budget
    }

    static func pair(_ a: GlueHandler, _ b: GlueHandler) {
        a.partner = b
        b.partner = a
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ data: ByteBuffer) { context?.write(wrapOutboundOut(data), promise: nil) }
    private func partnerFlush() { context?.flush() }
    /// Half-close towards this side once every byte already relayed has been written.
    private func partnerWriteEOF() {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
    }

    /// Close this side once every byte already relayed has been written.
    private func partnerCloseAfterFlush() {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func partnerCloseFull() { context?.close(promise: nil) }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let n = buffer.readableBytes
        let withinBudget: Bool
        switch direction {
        case .out:
            stats?.record.bytesOut += n
            withinBudget = budget.addOut(n)
        case .in:
            stats?.record.bytesIn += n
            withinBudget = budget.addIn(n)
        }
        guard withinBudget else {
            stats?.cutReason = "byte budget spent: \(direction == .out ? "bytes_out" : "bytes_in") used up; tunnel cut"
            context.close(promise: nil)
            partner?.partnerCloseFull()
            return
        }
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.partnerFlush() }

    func channelInactive(context: ChannelHandlerContext) {
        if !closedReported {
            closedReported = true
            stats?.sideClosed()
        }
        partner?.partnerCloseAfterFlush()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, case .inputClosed = e {
            partner?.partnerWriteEOF()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
