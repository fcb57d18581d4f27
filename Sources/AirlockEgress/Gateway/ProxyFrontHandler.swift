import AirlockEvents
import AirlockCore
import AirlockDLP
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The client side of one connection from a sandbox: decides each request, forwards the
/// allowed ones and streams the responses back (docs/egress.md, "Requests").
///
/// At the proxy itself a request must be absolute-form (`GET http://host/path`) or a
/// `CONNECT host:port`; inside an inspected tunnel (`origin` set) requests are
/// origin-form and all go to the tunnel's host. One request is handled at a time
/// (`HTTPServerPipelineHandler` holds pipelined ones back); the upstream connection is
/// kept for the next request to the same destination.
final class ProxyFrontHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let gateway: GatewayContext
    private let origin: TunnelOrigin?

    private struct Pending {
        var record: EgressRecord
        var host: HostName
        var port: Int
        var head: HTTPRequestHead
        var body: ByteBuffer?
        var keepAlive: Bool
        var isHead: Bool
        var responded = false
        var upstreamKeepAlive = true
        var injected: [String] = []
        var rule: String?
        /// Sent on a kept-alive upstream connection; if that closes before answering (it
        /// timed out between requests), the request is sent once more on a new one.
        var sentOnReused = false
        var retried = false
        var dispatched = false
    }
    private var pending: Pending?
    /// Set after a refusal: the rest of the request is ignored and the connection closes.
    private var discarding = false
    private var upstream: (key: String, channel: any Channel)?
    private var deadline: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    /// A CONNECT in progress: the tunnel opens once its decision is made *and* the
    /// request's end has been read (the decoder must not hand HTTP parts to the tunnel).
    private struct TunnelPlan {
        var origin: TunnelOrigin
        var inspect: Bool
        var rule: String?
        var record: EgressRecord
    }
    private var connecting = false
    private var connectEnded = false
    private var tunnelPlan: TunnelPlan?

    init(gateway: GatewayContext, origin: TunnelOrigin?) {
        self.gateway = gateway
        self.origin = origin
    }

    // MARK: client side

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        armDeadline(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if discarding { return }
        switch part {
        case .head(let head):
            deadline?.cancel()
            deadline = nil
            if origin == nil, head.method == .CONNECT {
                startTunnel(head, context: context)
            } else {
                startRequest(head, context: context)
                if pending != nil { armDeadline(context: context, timeout: gateway.limits.idleTimeout) }
            }
        case .body(var chunk):
            guard var p = pending else { return }
            // A body that stalls is cut like a slow head: the deadline restarts per chunk.
            armDeadline(context: context, timeout: gateway.limits.idleTimeout)
            let limit = gateway.limits.maxRequestBody
            if (p.body?.readableBytes ?? 0) + chunk.readableBytes > limit {
                refuse(Refusal(
                    status: .payloadTooLarge,
                    reason: "request body larger than \(limit) bytes: the gateway inspects bodies whole before forwarding",
                    verdict: "deny"), record: p.record, context: context)
                return
            }
            // One owner of the body while it grows (`pending` and `p` would share it, and each
            // chunk would copy everything received so far).
            pending = nil
            if var body = p.body {
                p.body = nil
                body.writeBuffer(&chunk)
                p.body = body
            } else {
                p.body = chunk
            }
            pending = p
        case .end:
            if connecting {
                connectEnded = true
                if let plan = tunnelPlan { becomeTunnel(plan, context: context) }
                return
            }
            guard pending != nil else { return }
            deadline?.cancel()
            deadline = nil
            finishRequest(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        if var p = pending {
            p.record.status = p.record.status ?? 499
            let decision = p.dispatched
                ? Decision("allow", reason: "client closed the connection before the response ended", rule: p.rule)
                : Decision("error", reason: "client closed the connection before the request was complete; nothing was sent", rule: p.rule)
            gateway.events.emit("egress.request", decision: decision, p.record.attributes())
            pending = nil
        }
        upstream?.channel.close(promise: nil)
        upstream = nil
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Backpressure: read from upstream only as fast as the client takes it.
        upstream?.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            // The protocol error handler has answered 400; the record says why.
            var record = pending?.record ?? EgressRecord(kind: origin == nil ? "http" : "https", host: "-", port: 0)
            record.status = 400
            gateway.events.emit(
                "egress.request", decision: Decision("deny", reason: "malformed request: \(error)", rule: "http"), record.attributes())
            pending = nil
        }
        context.close(promise: nil)
    }

    private func armDeadline(context: ChannelHandlerContext, timeout: Duration? = nil) {
        deadline?.cancel()
        let timeout = timeout ?? gateway.limits.headerTimeout
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanoseconds))) {
            channel.close(promise: nil)
        }
    }

    // MARK: requests

    private func startRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        var record = EgressRecord(kind: origin == nil ? "http" : "https", host: "-", port: 0)
        record.method = head.method.rawValue
        let target: RequestTarget
        do { target = try RequestTarget(head, origin: origin) } catch {
            refuse(error, record: record, context: context)
            return
        }
        record.host = target.host.description
        record.port = target.port
        record.path = target.path
        if head.method == .TRACE || head.method.rawValue == "TRACK" {
            refuse(Refusal(
                status: .methodNotAllowed, reason: "\(head.method.rawValue) is refused: it echoes the request, credentials included, back",
                rule: "method"), record: record, context: context)
            return
        }
        if let r = gateway.budget.admitRequest() {
            refuse(r, record: record, context: context)
            return
        }
        let decision = gateway.policy.decide(host: target.host, port: target.port, method: head.method.rawValue, path: target.path)
        guard decision.allowed else {
            refuse(Refusal(decision), record: record, context: context)
            return
        }
        var upstreamHead = HTTPRequestHead(version: .http1_1, method: head.method, uri: target.originForm)
        upstreamHead.headers = Self.forwardHeaders(head.headers)
        upstreamHead.headers.replaceOrAdd(name: "Host", value: target.authority)

        // DLP on what the sandbox sent: the request line and every header.
        if let finding = gateway.dlp.firstFinding(Self.headText(head.method.rawValue + " " + head.uri, head.headers)) {
            record.findings.append(finding.rule)
            switch gateway.dlpAction {
            case .block:
                refuse(Self.dlpRefusal(finding, where: "the URL or headers"), record: record, context: context)
                return
            case .redact:
                upstreamHead.uri = gateway.dlp.redact(upstreamHead.uri)
                var redacted = HTTPHeaders()
                for (n, v) in upstreamHead.headers { redacted.add(name: n, value: gateway.dlp.redact(v)) }
                upstreamHead.headers = redacted
                // What cannot be redacted in place (the host, a header name) is refused; the
                // redacted path is decided again.
                if let left = gateway.dlp.firstFinding(Self.headText(upstreamHead.uri, upstreamHead.headers)) {
                    refuse(Self.dlpRefusal(left, where: "a part of the request that cannot be redacted (host or header name)"), record: record, context: context)
                    return
                }
                let path = upstreamHead.uri.firstIndex(of: "?").map { String(upstreamHead.uri[..<$0]) } ?? upstreamHead.uri
                let again = gateway.policy.decide(host: target.host, port: target.port, method: head.method.rawValue, path: path)
                guard again.allowed else {
                    refuse(Refusal(again), record: record, context: context)
                    return
                }
            }
        }
        let codings = head.headers["Content-Encoding"].flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaces.lowercased() }
        if let encoding = codings.first(where: { $0 != "identity" && !$0.isEmpty }),
            head.headers.first(name: "Content-Length").map({ $0 != "0" }) ?? head.headers.contains(name: "Transfer-Encoding")
        {
            refuse(Refusal(
                status: .unsupportedMediaType,
                reason: "request body is compressed (Content-Encoding: \(encoding)); the gateway cannot inspect it for secrets",
                hint: "send the body uncompressed"), record: record, context: context)
            return
        }
        pending = Pending(
            record: record, host: target.host, port: target.port, head: upstreamHead, body: nil,
            keepAlive: head.isKeepAlive, isHead: head.method == .HEAD, rule: decision.rule)
    }

    private func finishRequest(context: ChannelHandlerContext) {
        guard var p = pending else { return }
        if var body = p.body, body.readableBytes > 0 {
            let finding = body.withUnsafeReadableBytes { gateway.dlp.firstFinding($0) }
            if let finding {
                p.record.findings.append(finding.rule)
                switch gateway.dlpAction {
                case .block:
                    refuse(Self.dlpRefusal(finding, where: "the body"), record: p.record, context: context)
                    return
                case .redact:
                    guard let text = body.readString(length: body.readableBytes), !text.contains("\u{FFFD}") else {
                        refuse(Self.dlpRefusal(finding, where: "a binary body that cannot be redacted"), record: p.record, context: context)
                        return
                    }
                    var redacted = context.channel.allocator.buffer(capacity: text.utf8.count)
                    redacted.writeString(gateway.dlp.redact(text))
                    p.body = redacted
                }
            }
        }
        // Credentials: the real value only for the bound host; placeholders elsewhere are noted.
        // Real credentials travel only inside TLS the gateway verified (an inspected tunnel),
        // never in clear text. The request's text is only built when there are placeholders.
        let visible: (String) -> Bool
        if gateway.injector.placeholders.isEmpty {
            visible = { _ in false }
        } else {
            let text = Self.headText(p.head.uri, p.head.headers) + (p.body.map { String(buffer: $0) } ?? "")
            visible = { text.contains($0) }
        }
        let (injected, stray) = gateway.injector.apply(host: p.host, encrypted: origin != nil, headers: &p.head.headers, visible: visible)
        p.injected = injected
        for name in stray {
            gateway.events.emit(
                "egress.placeholder",
                decision: Decision("allow", reason: "the placeholder of secret \(name) was sent to \(p.record.host), which it is not bound to; it was not replaced"),
                [("airlock.secret.name", .string(name)), ("server.address", .string(p.record.host))])
        }
        let bodyBytes = p.body?.readableBytes ?? 0
        if bodyBytes > 0 || p.head.method == .POST || p.head.method == .PUT || p.head.method == .PATCH {
            p.head.headers.replaceOrAdd(name: "Content-Length", value: String(bodyBytes))
        } else {
            p.head.headers.remove(name: "Content-Length")
        }
        let headBytes = p.head.uri.utf8.count + p.head.headers.reduce(16) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        p.record.bytesOut = headBytes + bodyBytes
        if !gateway.budget.addOut(p.record.bytesOut) {
            refuse(Refusal(
                status: .forbidden, reason: "byte budget spent: bytes_out used up for this sandbox", rule: "budgets.bytes_out",
                hint: "raise network.budgets.bytes_out in the profile"), record: p.record, context: context)
            return
        }
        pending = p
        dispatch(context: context)
    }

    /// Sends the pending request on the kept upstream connection, or opens one.
    private func dispatch(context: ChannelHandlerContext) {
        guard let p = pending else { return }
        pending?.dispatched = true
        let tls = origin != nil
        let key = (tls ? "https://" : "http://") + p.record.destination
        if let up = upstream, up.key == key, up.channel.isActive {
            pending?.sentOnReused = true
            send(on: up.channel)
            return
        }
        pending?.sentOnReused = false
        upstream?.channel.close(promise: nil)
        upstream = nil
        let loop = context.eventLoop
        let addresses: EventLoopFuture<[IPAddress]>
        if let origin { addresses = loop.makeSucceededFuture(origin.addresses) }
        else { addresses = gateway.checkedAddresses(host: p.host, port: p.port, on: loop) }
        let front = NIOLoopBound(self, eventLoop: loop)
        let gateway = self.gateway
        let host = p.host
        let idle = gateway.limits.idleTimeout
        addresses.flatMap { list in
            gateway.connect(ArraySlice(list), port: p.port, on: loop) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if tls {
                        let hostname: String? = if case .name(let n) = host { n } else { nil }
                        try ops.addHandler(try NIOSSLClientHandler(context: gateway.upstreamTLS, serverHostname: hostname))
                    }
                    try ops.addHTTPClientHandlers()
                    try ops.addHandler(IdleStateHandler(readTimeout: .nanoseconds(Int64(idle.nanoseconds))))
                    try ops.addHandler(UpstreamHandler(front: front))
                }
            }
        }.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let (channel, address)):
                self.upstream = (key, channel)
                self.pending?.record.address = address.description
                if self.pending == nil || self.context == nil {
                    channel.close(promise: nil)
                    return
                }
                self.send(on: channel)
            case .failure(let error):
                guard let ctx = self.context, let p = self.pending else { return }
                let refusal = error as? Refusal ?? Refusal(status: .badGateway, reason: "\(error)", verdict: "error")
                self.refuse(refusal, record: p.record, context: ctx)
            }
        }
    }

    private func send(on channel: any Channel) {
        guard let p = pending else { return }
        if pending?.record.address == nil, let peer = channel.remoteAddress?.ipAddress { pending?.record.address = peer }
        channel.write(HTTPClientRequestPart.head(p.head), promise: nil)
        if let body = p.body, body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    // MARK: upstream side (called by UpstreamHandler on this loop)

    func upstreamRead(_ part: HTTPClientResponsePart, from channel: any Channel) {
        guard let context, upstream?.channel === channel, var p = pending else { return }
        switch part {
        case .head(var head):
            p.body = nil
            p.record.status = Int(head.status.code)
            p.upstreamKeepAlive = head.isKeepAlive
            head.headers = Self.forwardHeaders(head.headers, response: true)
            // Framing is ours: any transfer coding upstream used is decoded by now, so the
            // client gets exactly `chunked` or none (never a coding name we would not apply).
            let hadCoding = head.headers.contains(name: "Transfer-Encoding")
            head.headers.remove(name: "Transfer-Encoding")
            if hadCoding, !p.isHead, head.status.mayHaveResponseBody {
                head.headers.remove(name: "Content-Length")
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
            }
            if !p.injected.isEmpty, let scanner = gateway.injectedDLP {
                if scanner.firstFinding(Self.headText("", head.headers)) != nil { return cutEcho(p, upstream: channel, context: context) }
            }
            let framed = head.headers.contains(name: "Content-Length") || head.headers.contains(name: "Transfer-Encoding")
            if !framed, !p.isHead, head.status.mayHaveResponseBody {
                // Close-delimited: the client can only see the end if we close too.
                p.keepAlive = false
            }
            head.headers.replaceOrAdd(name: "Connection", value: p.keepAlive ? "keep-alive" : "close")
            head.version = .http1_1
            p.responded = true
            p.record.bytesIn += head.headers.reduce(16) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
            pending = p
            context.write(wrapOutboundOut(.head(head)), promise: nil)
        case .body(let buffer):
            p.record.bytesIn += buffer.readableBytes
            pending = p
            if !p.injected.isEmpty, let scanner = gateway.injectedDLP,
                buffer.withUnsafeReadableBytes({ scanner.firstFinding($0) }) != nil
            {
                return cutEcho(p, upstream: channel, context: context)
            }
            if !gateway.budget.addIn(buffer.readableBytes) {
                gateway.events.emit(
                    "egress.request", decision: Decision("deny", reason: "byte budget spent: bytes_in used up; transfer cut", rule: "budgets.bytes_in"),
                    p.record.attributes())
                pending = nil
                channel.close(promise: nil)
                context.close(promise: nil)
                return
            }
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            if !context.channel.isWritable { channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in } }
        case .end(let trailers):
            pending = nil
            let attrs = p.record.attributes()
            var reason = "allowed by \(p.rule ?? "an allow rule")"
            if !p.injected.isEmpty { reason += "; injected \(p.injected.joined(separator: ", "))" }
            gateway.events.emit("egress.request", decision: Decision("allow", reason: reason, rule: p.rule), attrs)
            if !p.upstreamKeepAlive {
                channel.close(promise: nil)
                upstream = nil
            }
            let keepAlive = p.keepAlive
            let promise = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: promise)
            if keepAlive {
                // A pipelined request may already have started during the write above.
                if pending == nil, !connecting { armDeadline(context: context) }
            } else {
                let ctxChannel = context.channel
                promise.futureResult.whenComplete { _ in ctxChannel.close(promise: nil) }
            }
        }
    }

    /// The upstream sent an injected credential back (an echo endpoint): the response
    /// must not reach the sandbox. Both connections are cut.
    private func cutEcho(_ p: Pending, upstream channel: any Channel, context: ChannelHandlerContext) {
        gateway.events.emit(
            "egress.request",
            decision: Decision("deny", reason: "the response contains an injected credential (\(p.injected.joined(separator: ", "))); cut before it reached the sandbox", rule: "dlp:injected"),
            p.record.attributes())
        pending = nil
        discarding = true
        channel.close(promise: nil)
        upstream = nil
        context.close(promise: nil)
    }

    func upstreamReadComplete() {
        context?.flush()
    }

    func upstreamClosed(_ channel: any Channel) {
        guard upstream?.channel === channel else { return }
        upstream = nil
        guard let context, let p = pending, p.dispatched else { return }
        if p.responded {
            // Cut mid-response: the client must not take a truncated body for a whole one.
            gateway.events.emit("egress.request", decision: Decision("error", reason: "upstream closed the connection mid-response"), p.record.attributes())
            pending = nil
            context.close(promise: nil)
        } else if p.sentOnReused, !p.retried, [.GET, .HEAD, .OPTIONS, .PUT, .DELETE].contains(p.head.method) {
            pending?.retried = true
            dispatch(context: context)
        } else {
            refuse(Refusal(status: .badGateway, reason: "upstream closed the connection without a response", verdict: "error"), record: p.record, context: context)
        }
    }

    func upstreamFailed(_ channel: any Channel, _ refusal: Refusal) {
        guard upstream?.channel === channel, let context, let p = pending, p.dispatched else { return }
        upstream = nil
        if p.responded {
            gateway.events.emit("egress.request", decision: Decision("error", reason: refusal.reason), p.record.attributes())
            pending = nil
            context.close(promise: nil)
        } else {
            refuse(refusal, record: p.record, context: context)
        }
    }

    // MARK: refusals

    /// Answers with the refusal, records it, and closes the connection once written.
    private func refuse(_ refusal: Refusal, record: EgressRecord, context: ChannelHandlerContext) {
        var record = record
        record.status = Int(refusal.status.code)
        let type = record.kind == "connect" ? "egress.connection" : "egress.request"
        gateway.events.emit(type, decision: Decision(refusal.verdict, reason: refusal.reason, rule: refusal.rule), record.attributes())
        pending = nil
        discarding = true
        upstream?.channel.close(promise: nil)
        upstream = nil
        let (head, body) = refusal.response(destination: record.destination, allocator: context.channel.allocator)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    private static func dlpRefusal(_ finding: DLPFinding, where place: String) -> Refusal {
        Refusal(
            status: .forbidden,
            reason: "data loss prevention: \(place) contains \(finding.rule) (\(finding.encoding))",
            rule: "dlp:\(finding.rule)",
            hint: "do not send credentials; use a secret bound to this host (secrets[].inject) so the gateway adds it")
    }

    // MARK: tunnels

    private func startTunnel(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        var record = EgressRecord(kind: "connect", host: "-", port: 0)
        record.method = "CONNECT"
        let host: HostName
        let port: Int
        do { (host, port) = try RequestTarget.authority(head.uri, defaultPort: nil) } catch {
            refuse(error, record: record, context: context)
            return
        }
        record.host = host.description
        record.port = port
        if let r = gateway.budget.admitRequest() {
            refuse(r, record: record, context: context)
            return
        }
        if let finding = gateway.dlp.firstFinding(head.uri) {
            record.findings.append(finding.rule)
            refuse(Self.dlpRefusal(finding, where: "the CONNECT target"), record: record, context: context)
            return
        }
        let decision = gateway.policy.decide(host: host, port: port)
        guard decision.allowed else {
            refuse(Refusal(decision), record: record, context: context)
            return
        }
        let inspect = gateway.ca != nil && gateway.policy.inspects(host: host)
        if !inspect, gateway.policy.needsRequestView(host: host, port: port) {
            refuse(Refusal(
                status: .forbidden,
                reason: "the rules for \(host) restrict methods or paths, which an uninspected TLS tunnel cannot show",
                rule: decision.rule, hint: "add \(host) to network.inspect_tls"), record: record, context: context)
            return
        }
        let gateway = self.gateway
        connecting = true
        gateway.checkedAddresses(host: host, port: port, on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard let ctx = self.context else { return }
            switch result {
            case .failure(let error):
                self.refuse(error as? Refusal ?? Refusal(status: .badGateway, reason: "\(error)", verdict: "error"), record: record, context: ctx)
            case .success(let addresses):
                let plan = TunnelPlan(
                    origin: TunnelOrigin(host: host, port: port, addresses: addresses), inspect: inspect, rule: decision.rule,
                    record: record)
                self.tunnelPlan = plan
                if self.connectEnded { self.becomeTunnel(plan, context: ctx) }
            }
        }
    }

    /// Answers 200 and hands the connection to a ``ClientHelloGate``: from here on the
    /// client speaks TLS (or, on ports other than 443, whatever it likes).
    private func becomeTunnel(_ plan: TunnelPlan, context: ChannelHandlerContext) {
        tunnelPlan = nil
        let response = "HTTP/1.1 200 Connection established\r\n\r\n"
        let pipeline = context.pipeline.syncOperations
        let gate = ClientHelloGate(gateway: gateway, origin: plan.origin, inspect: plan.inspect, rule: plan.rule, record: plan.record)
        do {
            try pipeline.addHandler(gate)
            // Everything HTTP goes; the decoder last, so the bytes it holds reach the gate.
            if let encoder = try? pipeline.handler(type: HTTPResponseEncoder.self) { pipeline.removeHandler(encoder, promise: nil) }
            if let p = try? pipeline.handler(type: HTTPServerPipelineHandler.self) { pipeline.removeHandler(p, promise: nil) }
            if let e = try? pipeline.handler(type: HTTPServerProtocolErrorHandler.self) { pipeline.removeHandler(e, promise: nil) }
            var buffer = context.channel.allocator.buffer(capacity: response.utf8.count)
            buffer.writeString(response)
            context.channel.writeAndFlush(buffer, promise: nil)
            pipeline.removeHandler(context: context, promise: nil)
            if let d = try? pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) { pipeline.removeHandler(d, promise: nil) }
        } catch {
            context.close(promise: nil)
        }
    }

    // MARK: headers

    /// A request or response head as the DLP scanner reads it: the first line, then one
    /// `name: value` line per header (names are scanned too).
    static func headText(_ firstLine: String, _ headers: HTTPHeaders) -> String {
        var text = firstLine + "\n"
        for (name, value) in headers { text += name + ": " + value + "\n" }
        return text
    }

    /// Hop-by-hop headers (RFC 9110 §7.6.1) and anything named in `Connection` are not
    /// forwarded, nor are the proxy's own credentials.
    static func forwardHeaders(_ headers: HTTPHeaders, response: Bool = false) -> HTTPHeaders {
        var drop: Set<String> = [
            "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer",
            "upgrade",
        ]
        if !response { drop.insert("transfer-encoding") }
        for v in headers["Connection"] {
            for token in v.split(separator: ",") { drop.insert(token.trimmingSpaces.lowercased()) }
        }
        var out = HTTPHeaders()
        for (name, value) in headers where !drop.contains(name.lowercased()) { out.add(name: name, value: value) }
        return out
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
