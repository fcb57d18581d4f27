import NIOCore
import NIOHTTP1
import NIOPosix

extension GatewayContext {
    /// The addresses `host` may be reached at for `port`: an IP literal as is, a pinned name
    /// from `network.hosts`, anything else from the resolver; then every address checked
    /// (private, loopback, metadata… refused unless a rule names that address). Fails with
    /// a ``Refusal`` when none is left.
    func checkedAddresses(host: HostName, port: Int, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        let candidates: EventLoopFuture<[IPAddress]>
        switch host {
        case .address(let a):
            candidates = loop.makeSucceededFuture([a])
        case .name(let name):
            if let pinned = pinned[name] {
                candidates = loop.makeSucceededFuture(pinned)
            } else {
                candidates = resolver.resolve(name, on: loop).flatMapErrorThrowing { error in
                    throw Refusal(
                        status: .badGateway, reason: "\(error)",
                        hint: "the gateway resolves names with the host's resolver; check the name, or pin it with network.hosts",
                        verdict: "error")
                }
            }
        }
        let policy = self.policy
        return candidates.flatMapThrowing { addresses in
            var allowed: [IPAddress] = []
            var refused: EgressDecision?
            for a in addresses {
                let d = policy.checkAddress(a, host: host, port: port)
                if d.allowed { allowed.append(a) } else if refused == nil { refused = d }
            }
            if allowed.isEmpty, let refused { throw Refusal(refused) }
            guard !allowed.isEmpty else { throw Refusal(status: .badGateway, reason: "\(host) has no addresses", verdict: "error") }
            return allowed
        }
    }

    /// Connects to the first of `addresses` that answers, on `loop` (the client's loop, so
    /// both ends of a relay share one thread). Only checked addresses are ever passed here.
    func connect(
        _ addresses: ArraySlice<IPAddress>, port: Int, on loop: any EventLoop,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) -> EventLoopFuture<(any Channel, IPAddress)> {
        guard let address = addresses.first else {
            return loop.makeFailedFuture(Refusal(status: .badGateway, reason: "no address to connect to", verdict: "error"))
        }
        let socketAddress: SocketAddress
        do { socketAddress = try address.socketAddress(port: port) } catch {
            return loop.makeFailedFuture(Refusal(status: .badGateway, reason: "bad address \(address): \(error)", verdict: "error"))
        }
        let timeout = TimeAmount.nanoseconds(Int64(limits.connectTimeout.components.seconds) * 1_000_000_000)
        return ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.writeBufferWaterMark, value: GatewayContext.waterMark)
            .channelOption(.recvAllocator, value: GatewayContext.receiveAllocator)
            .channelInitializer(initializer)
            .connect(to: socketAddress)
            .map { ($0, address) }
            .flatMapError { error in
                if addresses.count > 1 {
                    return self.connect(addresses.dropFirst(), port: port, on: loop, initializer: initializer)
                }
                let status: HTTPResponseStatus = error is ChannelError ? .gatewayTimeout : .badGateway
                return loop.makeFailedFuture(Refusal(
                    status: status, reason: "cannot connect to \(address) port \(port): \(error)", verdict: "error"))
            }
    }
}

/// Receives an upstream server's response and hands it to the client's handler.
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let front: NIOLoopBound<ProxyFrontHandler>

    init(front: NIOLoopBound<ProxyFrontHandler>) { self.front = front }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        front.value.upstreamRead(unwrapInboundIn(data), from: context.channel)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        front.value.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        front.value.upstreamClosed(context.channel)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            front.value.upstreamFailed(context.channel, Refusal(status: .gatewayTimeout, reason: "upstream sent nothing for too long", verdict: "error"))
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        front.value.upstreamFailed(context.channel, Refusal(status: .badGateway, reason: "upstream failed: \(error)", verdict: "error"))
        context.close(promise: nil)
    }
}
