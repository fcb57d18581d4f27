import AirlockEvents
import AirlockCore
import AirlockDLP
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Limits that keep one misbehaving client from hurting anyone else's traffic.
public struct GatewayLimits: Sendable {
    /// Largest request head (request line and headers).
    public var maxHeaderBytes = 32 * 1024
    /// Largest request body the gateway buffers for DLP before forwarding (413 beyond).
    public var maxRequestBody = 8 * 1024 * 1024
    /// Time a client has to send a complete request head (slowloris), and the idle time
    /// after which a kept-alive client connection is closed.
    public var headerTimeout: Duration = .seconds(15)
    /// Time without a byte from the client while it sends a body, or from upstream while
    /// it sends a response.
    public var idleTimeout: Duration = .seconds(120)
    public var connectTimeout: Duration = .seconds(10)
    /// Client connections open at once for one sandbox.
    public var maxConnections = 512

    public init() {}
}

public struct GatewayConfiguration: Sendable {
    public var instance: String
    public var network: NetworkSpec
    /// Every secret of the sandbox: DLP blocks their values; bound ones are injected.
    public var secrets: [GatewaySecret]
    public var limits: GatewayLimits
    /// Event loop threads (one is plenty for one sandbox).
    public var threads: Int

    public init(instance: String, network: NetworkSpec, secrets: [GatewaySecret] = [], limits: GatewayLimits = .init(), threads: Int = 1) {
        self.instance = instance
        self.network = network
        self.secrets = secrets
        self.limits = limits
        self.threads = threads
    }
}

/// Everything a connection's handlers share: the compiled policy, DLP, budgets, TLS and
/// the event queue. One per gateway, that is one per sandbox.
final class GatewayContext: Sendable {
    let configuration: GatewayConfiguration
    let policy: EgressPolicy
    let dlp: DLPScanner
    /// Only the injected secrets: responses to requests that carried one are checked for it.
    let injectedDLP: DLPScanner?
    let injector: CredentialInjector
    let budget: EgressBudget
    let events: EgressEvents
    let resolver: any EgressResolver
    let pinned: [String: [IPAddress]]
    let ca: SandboxCA?
    let upstreamTLS: NIOSSLContext
    let open = Mutex<[ObjectIdentifier: any Channel]>([:])

    var limits: GatewayLimits { configuration.limits }
    /// Large transfers move in big reads and writes, and backpressure toggles reading
    /// once per megabyte rather than per 64 KiB (fewer epoll_ctl calls).
    static let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024)
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16 * 1024, maximum: 256 * 1024)
    var dlpAction: DLPAction { configuration.network.dlp }

    init(
        configuration: GatewayConfiguration, policy: EgressPolicy, events: EgressEvents, resolver: any EgressResolver,
        pinned: [String: [IPAddress]], ca: SandboxCA?, upstreamTLS: NIOSSLContext
    ) throws(AirlockError) {
        self.configuration = configuration
        self.policy = policy
        self.dlp = DLPScanner(secrets: configuration.secrets.map { Secret(name: $0.name, value: $0.value) })
        self.injector = try CredentialInjector(configuration.secrets)
        let injected = configuration.secrets.filter { $0.inject != nil }.map { Secret(name: $0.name, value: $0.value) }
        self.injectedDLP = injected.isEmpty ? nil : DLPScanner(secrets: injected, patterns: [])
        self.budget = EgressBudget(configuration.network.budgets)
        self.events = events
        self.resolver = resolver
        self.pinned = pinned
        self.ca = ca
        self.upstreamTLS = upstreamTLS
    }

    /// The handlers of a client connection speaking HTTP/1.1 (the proxy itself, or the
    /// inside of an inspected tunnel).
    func httpServerHandlers(origin: TunnelOrigin?) -> [any ChannelHandler] {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = self.limits.maxHeaderBytes
        limits.maxHeaderFieldSize = self.limits.maxHeaderBytes
        limits.maxHeaderFieldCount = 256
        var encoder = HTTPResponseEncoder.Configuration()
        encoder.automaticallySetFramingHeaders = false
        return [
            HTTPResponseEncoder(configuration: encoder),
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: limits)),
            HTTPServerPipelineHandler(),
            HTTPServerProtocolErrorHandler(),
            ProxyFrontHandler(gateway: self, origin: origin),
        ]
    }
}

/// The egress gateway of one sandbox: an HTTP/1.1 forward proxy and CONNECT tunnel
/// server on a Unix socket (the sandbox's airlock socket), deciding every connection and
/// request under the sandbox's network policy (docs/egress.md).
public final class EgressGateway: Sendable {
    private let context: GatewayContext
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let server = Mutex<(any Channel)?>(nil)
    private let socketPath = Mutex<String?>(nil)

    /// The sandbox CA's certificate (PEM) when the policy inspects any host.
    public var caCertificatePEM: String? { context.ca?.certificatePEM }

    public init(
        _ configuration: GatewayConfiguration, events: any EventSink, resolver: any EgressResolver = SystemResolver(),
        group: (any EventLoopGroup)? = nil
    ) throws(AirlockError) {
        let network = configuration.network
        let policy = try EgressPolicy(network)
        var pinned: [String: [IPAddress]] = [:]
        for (name, addresses) in network.hosts {
            let host: HostName
            do { host = try HostName.parse(name) } catch {
                throw AirlockError(.policy, "network.hosts: \(name): \(error.message)")
            }
            guard case .name(let canonical) = host else {
                throw AirlockError(.policy, "network.hosts: \(name) is an address; pin host names only")
            }
            pinned[canonical] = try addresses.map { (a: String) throws(AirlockError) -> IPAddress in
                guard let ip = IPAddress(literal: a) else {
                    throw AirlockError(.policy, "network.hosts: \(name): \(a) is not an IP address")
                }
                return ip
            }
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.applicationProtocols = ["http/1.1"]
        tls.minimumTLSVersion = .tlsv12
        // Many servers never answer close_notify; do not hold a closing connection for long.
        tls.shutdownTimeout = .milliseconds(250)
        if let file = network.upstreamCAFile {
            do { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file)) } catch {
                throw AirlockError(.policy, "network.upstream_ca \(file): cannot read the CA certificates: \(error)")
            }
        }
        let upstreamTLS: NIOSSLContext
        do { upstreamTLS = try NIOSSLContext(configuration: tls) } catch {
            throw AirlockError(.sandboxSetup, "cannot set up TLS to upstream servers: \(error)")
        }
        let ca = network.inspectTLS.isEmpty ? nil : try SandboxCA(instance: configuration.instance)
        context = try GatewayContext(
            configuration: configuration, policy: policy, events: EgressEvents(instance: configuration.instance, sink: events),
            resolver: resolver, pinned: pinned, ca: ca, upstreamTLS: upstreamTLS)
        if let group {
            self.group = group
            ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
            ownsGroup = true
        }
    }

    /// Listens on a new Unix socket at `path` (mode 0666: the sandbox's uid must be able to
    /// connect; the directory holding it is what keeps others out).
    public func start(socketPath path: String) throws(AirlockError) {
        let context = self.context
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.writeBufferWaterMark, value: GatewayContext.waterMark)
            .childChannelOption(.recvAllocator, value: GatewayContext.receiveAllocator)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let admitted: Bool = context.open.withLock { open in
                        guard open.count < context.limits.maxConnections else { return false }
                        open[ObjectIdentifier(channel)] = channel
                        return true
                    }
                    guard admitted else {
                        context.events.emit(
                            "egress.refused", decision: Decision("deny", reason: "too many connections (\(context.limits.maxConnections))"),
                            [("airlock.egress.kind", .string("connection"))])
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { _ in
                        _ = context.open.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
                    }
                    try channel.pipeline.syncOperations.addHandlers(context.httpServerHandlers(origin: nil))
                }
            }
        let channel: any Channel
        do {
            channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false).wait()
        } catch {
            throw AirlockError(.sandboxSetup, "the egress gateway cannot listen on \(path): \(error)")
        }
        guard chmod(path, 0o666) == 0 else {
            let e = errno
            channel.close(promise: nil)
            throw AirlockError(.sandboxSetup, "cannot chmod the egress socket \(path)", cause: String(cString: strerror(e)))
        }
        server.withLock { $0 = channel }
        socketPath.withLock { $0 = path }
    }

    /// Stops listening, closes every connection, delivers the remaining events and erases
    /// the sandbox CA's key. Blocking: call it from a thread, not from an event loop.
    public func stop() {
        if let channel = server.withLock({ s -> (any Channel)? in defer { s = nil }; return s }) {
            try? channel.close().wait()
        }
        let open = context.open.withLock { open -> [any Channel] in defer { open.removeAll() }; return Array(open.values) }
        for c in open { try? c.close().wait() }
        if ownsGroup { try? group.syncShutdownGracefully() }
        context.events.drain()
        context.ca?.erase()
        if let path = socketPath.withLock({ p -> String? in defer { p = nil }; return p }) { unlink(path) }
    }

    /// True once ``stop()`` has dropped the sandbox CA's private key (nil: no CA).
    public var isCAErased: Bool? { context.ca?.isErased }

    /// Bytes sent and received through the gateway so far.
    public var totals: (out: UInt64, in: UInt64) { context.budget.totals }
}

/// The destination of an inspected tunnel: every request inside goes there, to the
/// addresses already checked when the tunnel was opened.
struct TunnelOrigin: Sendable {
    var host: HostName
    var port: Int
    var addresses: [IPAddress]
}
