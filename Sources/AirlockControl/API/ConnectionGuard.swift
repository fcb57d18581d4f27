import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Bounds what a client can hold of the daemon on one connection, below the router:
///
/// - a request head must arrive complete within ``Limits/head`` of the connection opening or
///   of the previous answer (a head trickled a byte at a time is cut off there);
/// - a body must keep arriving: ``Limits/bodyIdle`` without a byte of it ends the connection;
/// - an answer to a request that asked `Connection: close`, or an error answered before its
///   body was read (an early 401 or 413), ends the connection once it is written (with
///   `Connection: close` on it): the server neither waits for the client to hang up nor reads
///   a body nobody will use.
///
/// Nothing is timed while a request is being answered (an exec may run for minutes).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    struct Limits: Sendable {
        var head: TimeAmount = .seconds(30)
        var bodyIdle: TimeAmount = .seconds(30)
    }

    private let limits: Limits
    private var timer: Scheduled<Void>?
    /// A request head was read and its end not yet.
    private var readingBody = false
    /// Requests read and not yet answered.
    private var pending = 0
    private var closeAfterAnswer = false

    init(_ limits: Limits = Limits()) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context, limits.head) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context, limits.head)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            pending += 1
            readingBody = true
            if head.headerFields[.connection]?.lowercased() == "close" { closeAfterAnswer = true }
            arm(context, limits.bodyIdle)
        case .body:
            if readingBody { arm(context, limits.bodyIdle) }
        case .end:
            readingBody = false
            disarm()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var response):
            // An error answered before the body was all read: the rest is not worth reading.
            if readingBody, response.status.code >= 400 { closeAfterAnswer = true }
            guard closeAfterAnswer else { break }
            response.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(response)), promise: promise)
            return
        case .body:
            break
        case .end:
            pending = max(0, pending - 1)
            if closeAfterAnswer {
                disarm()
                context.writeAndFlush(data, promise: promise)
                context.close(promise: nil)
                return
            }
            if pending == 0, !readingBody { arm(context, limits.head) }
        }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext, _ after: TimeAmount) {
        disarm()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: after) { [weak self] in
            guard let self else { return }
            self.timer = nil
            context.close(promise: nil)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}
