// `airlock-bench egress`: the egress gateway side by side with tinyproxy on loopback.
//
// One process holds an upstream HTTP/1.1 server (SwiftNIO, one event loop thread),
// Airlock's gateway on a Unix socket (as a sandbox reaches it) and a tinyproxy child on
// a TCP port. One blocking client (POSIX sockets, its own thread, one request at a time)
// measures each path: small-request latency, one large download, the same through a
// CONNECT tunnel; then the per-request decision cost (policy + DLP) without I/O.
// Everything shares this machine's CPUs: read the ratios, not the absolute numbers.
import AirlockAudit
import AirlockCore
import AirlockDLP
import AirlockEgress
import NIOCore
import NIOHTTP1
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

struct EgressBenchError: Error, CustomStringConvertible {
    var description: String
    /// The peer closed a kept-alive connection before answering: reconnect and retry.
    var peerClosed = false

    init(_ description: String, peerClosed: Bool = false) {
        self.description = description
        self.peerClosed = peerClosed
    }

    static func errno(_ call: String) -> EgressBenchError {
        let e = Glibc.errno
        return EgressBenchError("\(call): \(String(cString: strerror(e)))", peerClosed: e == EPIPE || e == ECONNRESET)
    }
}

// MARK: - Upstream server

/// Answers every request with a 100-byte body, and `GET /big` with `size` bytes written in
/// 64 KiB chunks as fast as the connection takes them (never the whole body in memory).
final class BenchUpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let smallBody = 100
    static let chunkSize = 64 * 1024

    private let small: ByteBuffer
    private let chunk: ByteBuffer
    private let bigSize: Int
    private var isBig = false
    private var keepAlive = true
    /// Bytes of `/big` still to write; nonzero only while streaming.
    private var remaining = 0

    init(small: ByteBuffer, chunk: ByteBuffer, bigSize: Int) {
        self.small = small
        self.chunk = chunk
        self.bigSize = bigSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            isBig = head.uri.hasSuffix("/big")
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            respond(context: context)
        }
    }

    private func respond(context: ChannelHandlerContext) {
        let length = isBig ? bigSize : small.readableBytes
        var headers = HTTPHeaders([("Content-Length", String(length)), ("Content-Type", "application/octet-stream")])
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        if isBig {
            remaining = bigSize
            pump(context: context)
        } else {
            context.write(wrapOutboundOut(.body(.byteBuffer(small))), promise: nil)
            finish(context: context)
        }
    }

    /// Writes chunks while the channel is writable; `channelWritabilityChanged` resumes.
    private func pump(context: ChannelHandlerContext) {
        while remaining > 0, context.channel.isWritable {
            let n = min(remaining, chunk.readableBytes)
            let part = n == chunk.readableBytes ? chunk : chunk.getSlice(at: chunk.readerIndex, length: n) ?? chunk
            context.write(wrapOutboundOut(.body(.byteBuffer(part))), promise: nil)
            remaining -= n
        }
        if remaining == 0 { finish(context: context) } else { context.flush() }
    }

    private func finish(context: ChannelHandlerContext) {
        isBig = false
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if remaining > 0, context.channel.isWritable { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// The upstream server on 127.0.0.1, on an event loop group of its own (one thread).
struct BenchUpstream {
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    let port: Int
    /// CPU clock of the server's one thread, so its work can be told apart from the gateway's.
    let cpuClock: clockid_t

    static func start(bigSize: Int) throws -> BenchUpstream {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var small = ByteBufferAllocator().buffer(capacity: BenchUpstreamHandler.smallBody)
        small.writeRepeatingByte(UInt8(ascii: "s"), count: BenchUpstreamHandler.smallBody)
        var chunk = ByteBufferAllocator().buffer(capacity: BenchUpstreamHandler.chunkSize)
        chunk.writeRepeatingByte(UInt8(ascii: "b"), count: BenchUpstreamHandler.chunkSize)
        let smallBody = small
        let chunkBody = chunk
        do {
            let channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 * 1024, high: 1024 * 1024))
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let ops = channel.pipeline.syncOperations
                        try ops.configureHTTPServerPipeline(withErrorHandling: true)
                        try ops.addHandler(BenchUpstreamHandler(small: smallBody, chunk: chunkBody, bigSize: bigSize))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            guard let port = channel.localAddress?.port else { throw EgressBenchError("the upstream server has no port") }
            let thread = try group.next().submit { pthread_self() }.wait()
            var clock = clockid_t()
            guard pthread_getcpuclockid(thread, &clock) == 0 else { throw EgressBenchError("pthread_getcpuclockid failed") }
            return BenchUpstream(group: group, channel: channel, port: port, cpuClock: clock)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

// MARK: - Blocking client

/// One way to the upstream server.
struct EgressRoute: Sendable {
    enum Endpoint: Sendable {
        case tcp(port: Int)
        case unix(path: String)
    }
    /// Where the proxy's CPU time is read: nowhere (direct), a child process, or this
    /// process minus the upstream server's thread and the client's own thread.
    enum CPUMeter: Sendable {
        case none
        case process(pid_t)
        case inProcess(upstream: clockid_t)
    }
    var name: String
    var endpoint: Endpoint
    /// Absolute-form request targets (`GET http://127.0.0.1:PORT/`), as a proxy client sends.
    var absoluteForm = false
    /// Open a CONNECT tunnel to the upstream first, then speak origin-form inside it.
    var tunnel = false
    var meter: CPUMeter = .none
}

/// A blocking HTTP/1.1 client on one connection: keep-alive, one request at a time, the
/// whole response read. It reconnects when the server closes (tinyproxy does after every
/// request) and counts the connections it opened.
final class EgressClient {
    let route: EgressRoute
    let authority: String
    private var fd: Int32 = -1
    private let base: UnsafeMutableRawPointer
    private let capacity = 256 * 1024
    private var start = 0
    private var end = 0
    private(set) var connects = 0
    private var requests: [String: [UInt8]] = [:]

    init(route: EgressRoute, upstreamPort: Int) {
        self.route = route
        self.authority = "127.0.0.1:\(upstreamPort)"
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        disconnect()
        base.deallocate()
    }

    func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        start = 0
        end = 0
    }

    /// GETs `path` and reads the whole response; returns the body's length.
    @discardableResult
    func get(_ path: String) throws -> Int {
        var retried = false
        while true {
            if fd >= 0, peerHasClosed() { disconnect() }
            let reused = fd >= 0
            do {
                if fd < 0 { try connect() }
                try send(request(path))
                let head = try readHead()
                guard head.status == 200 else { throw EgressBenchError("\(route.name): GET \(path) answered \(head.status)") }
                guard let length = head.contentLength else {
                    throw EgressBenchError("\(route.name): the response to GET \(path) has no Content-Length")
                }
                try discardBody(length)
                if head.close { disconnect() }
                return length
            } catch let e as EgressBenchError where e.peerClosed && reused && !retried {
                retried = true
                disconnect()
            }
        }
    }

    /// Opens the connection now (and the tunnel, for CONNECT routes), so that a timing
    /// can leave connection set-up out.
    func connectIfNeeded() throws { if fd < 0 { try connect() } }

    private func request(_ path: String) -> [UInt8] {
        if let r = requests[path] { return r }
        let target = route.absoluteForm ? "http://\(authority)\(path)" : path
        let r = Array("GET \(target) HTTP/1.1\r\nHost: \(authority)\r\nUser-Agent: airlock-bench\r\nAccept: */*\r\n\r\n".utf8)
        requests[path] = r
        return r
    }

    private func connect() throws {
        disconnect()
        switch route.endpoint {
        case .tcp(let port):
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw EgressBenchError.errno("socket") }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else { throw EgressBenchError.errno("connect 127.0.0.1:\(port)") }
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw EgressBenchError.errno("socket") }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw EgressBenchError("socket path too long: \(path)") }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
                raw[bytes.count] = 0
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { throw EgressBenchError.errno("connect \(path)") }
        }
        connects += 1
        if route.tunnel {
            try send(Array("CONNECT \(authority) HTTP/1.1\r\nHost: \(authority)\r\nUser-Agent: airlock-bench\r\n\r\n".utf8))
            let head = try readHead()
            guard head.status == 200 else { throw EgressBenchError("\(route.name): CONNECT \(authority) answered \(head.status)") }
        }
    }

    /// True when the server has closed the connection since the last response (a
    /// zero-timeout poll: costs every path the same one system call).
    private func peerHasClosed() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN) | Int16(0x2000 /* POLLRDHUP */), revents: 0)
        guard poll(&p, 1, 0) == 1 else { return false }
        return p.revents & (Int16(0x2000 /* POLLRDHUP */) | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    private func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { buf -> Int in
                guard let b = buf.baseAddress else { return 0 }
                return Glibc.send(fd, b + off, buf.count - off, Int32(MSG_NOSIGNAL))
            }
            if n < 0, Glibc.errno == EINTR { continue }
            guard n > 0 else { throw EgressBenchError.errno("send") }
            off += n
        }
    }

    /// Reads into the buffer after `end`, at most `limit` bytes; 0 at end of stream.
    private func fill(limit: Int = .max) throws -> Int {
        if start == end {
            start = 0
            end = 0
        } else if end == capacity {
            guard start > 0 else { throw EgressBenchError("\(route.name): response head larger than \(capacity) bytes") }
            base.copyMemory(from: base + start, byteCount: end - start)
            end -= start
            start = 0
        }
        while true {
            let n = read(fd, base + end, min(capacity - end, limit))
            if n < 0, Glibc.errno == EINTR { continue }
            if n < 0 { throw EgressBenchError.errno("read") }
            end += n
            return n
        }
    }

    struct Head {
        var status: Int
        var contentLength: Int?
        var close: Bool
    }

    private func readHead() throws -> Head {
        while true {
            let bytes = UnsafeRawBufferPointer(start: base + start, count: end - start)
            if let at = Self.headEnd(bytes) {
                let head = try parseHead(UnsafeRawBufferPointer(rebasing: bytes[0..<at]))
                start += at + 4
                return head
            }
            let had = end - start
            if try fill() == 0 {
                throw EgressBenchError("\(route.name): the server closed the connection before a response", peerClosed: had == 0)
            }
        }
    }

    private static func headEnd(_ b: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        while i + 3 < b.count {
            if b[i] == 13, b[i + 1] == 10, b[i + 2] == 13, b[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }

    private func parseHead(_ b: UnsafeRawBufferPointer) throws -> Head {
        let text = String(decoding: b, as: UTF8.self)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.first ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw EgressBenchError("\(route.name): not an HTTP response: \(statusLine.prefix(80))")
        }
        var head = Head(status: status, contentLength: nil, close: parts[0] == "HTTP/1.0")
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters().lowercased()
            switch name {
            case "content-length": head.contentLength = Int(value)
            case "connection", "proxy-connection":
                if value.contains("close") { head.close = true } else if value.contains("keep-alive") { head.close = false }
            case "transfer-encoding":
                throw EgressBenchError("\(route.name): Transfer-Encoding \(value) is not supported by the bench client")
            default: break
            }
        }
        return head
    }

    private func discardBody(_ length: Int) throws {
        var left = length
        let buffered = min(left, end - start)
        start += buffered
        left -= buffered
        while left > 0 {
            start = 0
            end = 0
            let n = try fill(limit: left)
            if n == 0 { throw EgressBenchError("\(route.name): the response body ended \(left) bytes early") }
            left -= n
            start = end
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}

// MARK: - CPU accounting and threads

private func cpuNanos(_ clock: clockid_t) -> UInt64 {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// utime + stime of a process (every thread, living or gone), in nanoseconds (clock-tick resolution).
private func processCPUNanos(_ pid: pid_t) -> UInt64 {
    let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    guard let bytes = POSIXIO.readAll(fd, upTo: 4096) else { return 0 }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let paren = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: paren)...].split(separator: " ")
    // After the command: state(3) … utime(14) stime(15).
    guard fields.count > 12, let u = UInt64(fields[11]), let s = UInt64(fields[12]) else { return 0 }
    return (u + s) * 1_000_000_000 / UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
}

/// The CPU time the route's proxy has used so far; call it from the client thread.
private func proxyCPU(_ meter: EgressRoute.CPUMeter) -> UInt64 {
    switch meter {
    case .none: 0
    case .process(let pid): processCPUNanos(pid)
    case .inProcess(let upstream):
        // Everything in this process but the upstream server and this client thread: the
        // gateway's event loop and its event-delivery queue (the main thread is waiting).
        cpuNanos(CLOCK_PROCESS_CPUTIME_ID) &- cpuNanos(upstream) &- cpuNanos(CLOCK_THREAD_CPUTIME_ID)
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Where a dedicated thread leaves its answer; `pthread_join` orders the write before the read.
private final class ThreadResult<T> {
    var value: T?
}

/// Runs `body` on a new thread of its own (not the cooperative pool, not an event loop)
/// and waits for it; on the calling thread if no thread can be made.
func onDedicatedThread<T>(_ body: @escaping () -> T) -> T {
    let result = ThreadResult<T>()
    let box = Unmanaged.passRetained(ThreadBody { result.value = body() }).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        guard let arg else { return nil }
        Unmanaged<ThreadBody>.fromOpaque(arg).takeRetainedValue().run()
        return nil
    }, box)
    if rc == 0 {
        pthread_join(thread, nil)
    } else {
        Unmanaged<ThreadBody>.fromOpaque(box).takeRetainedValue().run()
    }
    guard let value = result.value else { preconditionFailure("the dedicated thread returned without a result") }
    return value
}

// MARK: - Measurements

struct LatencyResult: Sendable {
    var samples: [UInt64] = []
    var connects = 0
    var cpu: UInt64 = 0
}

struct DownloadResult: Sendable {
    var rates: [Double] = []  // bytes per second
    var cpuPerByte: [Double] = []  // ns of proxy CPU per byte
}

struct EgressRun: Sendable {
    var latency: [LatencyResult]
    var downloads: [DownloadResult]
}

/// Every network measurement, from one client thread. Latency paths alternate in rounds
/// (rotating which goes first), so a noisy moment does not land on one path only.
func runEgressClient(routes: [EgressRoute], upstreamPort: Int, requests: Int, warmup: Int, size: Int, downloads: Int) throws -> EgressRun {
    let clients = routes.map { EgressClient(route: $0, upstreamPort: upstreamPort) }
    for c in clients {
        for _ in 0..<warmup { try c.get("/") }
    }
    var latency = Array(repeating: LatencyResult(), count: routes.count)
    let round = 250
    var done = 0
    var r = 0
    while done < requests {
        let n = min(round, requests - done)
        for k in 0..<clients.count {
            let j = (k + r) % clients.count
            let c = clients[j]
            let connects0 = c.connects
            let cpu0 = proxyCPU(routes[j].meter)
            for _ in 0..<n {
                let t0 = Clock.monotonicNanos()
                try c.get("/")
                latency[j].samples.append(Clock.monotonicNanos() - t0)
            }
            latency[j].cpu &+= proxyCPU(routes[j].meter) &- cpu0
            latency[j].connects += c.connects - connects0
        }
        done += n
        r += 1
    }
    for c in clients { c.disconnect() }

    var results = Array(repeating: DownloadResult(), count: routes.count)
    for i in 0..<downloads {
        for k in 0..<routes.count {
            let j = (k + i) % routes.count
            let c = EgressClient(route: routes[j], upstreamPort: upstreamPort)
            try c.connectIfNeeded()
            let cpu0 = proxyCPU(routes[j].meter)
            let t0 = Clock.monotonicNanos()
            let got = try c.get("/big")
            let dt = Clock.monotonicNanos() - t0
            let cpu = proxyCPU(routes[j].meter) &- cpu0
            guard got == size else { throw EgressBenchError("\(routes[j].name): /big was \(got) bytes, not \(size)") }
            results[j].rates.append(Double(size) / (Double(dt) / 1e9))
            results[j].cpuPerByte.append(Double(cpu) / Double(size))
        }
    }
    return EgressRun(latency: latency, downloads: results)
}

// MARK: - tinyproxy

struct Tinyproxy {
    let pid: pid_t
    let port: Int
    let version: String

    static func start(directory: String, upstreamPort: Int) throws -> Tinyproxy {
        guard let binary = which("tinyproxy") else {
            throw EgressBenchError("tinyproxy is not installed (apt-get install tinyproxy)")
        }
        let port = try freePort()
        let conf = directory + "/tinyproxy.conf"
        let text = """
            Port \(port)
            Listen 127.0.0.1
            Timeout 600
            MaxClients 100
            LogLevel Critical
            Allow 127.0.0.1
            DisableViaHeader Yes
            ConnectPort \(upstreamPort)

            """
        let fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw EgressBenchError.errno("open \(conf)") }
        let rc = POSIXIO.writeAll(fd, Array(text.utf8))
        close(fd)
        guard rc == 0 else { throw EgressBenchError("cannot write \(conf)") }

        let log = directory + "/tinyproxy.log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = [binary, "-d", "-c", conf].map { (s: String) in strdup(s) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = ["PATH=/usr/bin:/bin"].map { (s: String) in strdup(s) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, binary, &actions, nil, argv, envp)
        guard spawned == 0 else { throw EgressBenchError("cannot start tinyproxy: \(String(cString: strerror(spawned)))") }
        let proxy = Tinyproxy(pid: pid, port: port, version: Self.version(binary))
        // Ready once it accepts a connection (up to 5 s).
        for _ in 0..<100 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let out = (try? String(decoding: readFile(log), as: UTF8.self)) ?? ""
                throw EgressBenchError("tinyproxy exited at start-up (status \(status)): \(out)")
            }
            if canConnect(port: port) { return proxy }
            usleep(50_000)
        }
        proxy.stop()
        throw EgressBenchError("tinyproxy did not listen on 127.0.0.1:\(port) within 5 s")
    }

    func stop() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    private static func version(_ binary: String) -> String {
        guard let f = popen("'\(binary)' -v 2>&1", "r") else { return "tinyproxy" }
        defer { pclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), f) != nil else { return "tinyproxy" }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: "\n").first.map(String.init) ?? "tinyproxy"
    }
}

private func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw EgressBenchError.errno("open \(path)") }
    defer { close(fd) }
    return POSIXIO.readAll(fd, upTo: 1 << 20) ?? []
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
private func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw EgressBenchError.errno("socket") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw EgressBenchError.errno("bind 127.0.0.1:0") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

private func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

// MARK: - Decision microbenchmark

/// A policy of 50 rules as a coding agent's profile might hold: package registries and
/// APIs by exact name, CDNs by wildcard, internal blocks by CIDR, a few APIs narrowed to
/// methods and paths, and deny rules on top.
func benchPolicySpec() -> NetworkSpec {
    let deny = [
        EgressRule(host: "169.254.169.254"),
        EgressRule(host: "*.internal.example.com"),
        EgressRule(host: "10.99.0.0/16"),
        EgressRule(host: "api.github.com", methods: ["DELETE"]),
        EgressRule(host: "registry.npmjs.org", paths: ["/-/user/**"]),
    ]
    var allow: [EgressRule] = [
        "pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "api.github.com", "github.com",
        "objects.githubusercontent.com", "proxy.golang.org", "sum.golang.org", "crates.io", "static.crates.io",
        "index.crates.io", "rubygems.org", "repo.maven.apache.org", "dl.google.com", "api.openai.com",
        "api.anthropic.com", "deb.debian.org", "security.debian.org", "archive.ubuntu.com", "hub.docker.com",
    ].map { EgressRule(host: $0) }
    allow += [
        "*.githubusercontent.com", "*.docker.io", "*.amazonaws.com", "*.cloudfront.net", "*.googleapis.com",
        "*.npmjs.org", "*.pythonhosted.org", "*.gitlab.com", "*.bitbucket.org", "*.example.com",
    ].map { EgressRule(host: $0) }
    allow += [
        EgressRule(host: "10.0.0.0/8", ports: [8080]),
        EgressRule(host: "192.168.1.0/24", ports: [80, 443, 8443]),
        EgressRule(host: "172.16.0.0/12", ports: [5432]),
        EgressRule(host: "fd00::/8", ports: [443]),
        EgressRule(host: "100.64.0.0/10", ports: [443]),
    ]
    allow += [
        EgressRule(host: "api.example.com", methods: ["GET", "HEAD"], paths: ["/v1/**"]),
        EgressRule(host: "api.example.com", methods: ["POST"], paths: ["/v1/projects/*/widgets"]),
        EgressRule(host: "uploads.example.com", methods: ["PUT"], paths: ["/bucket/**"]),
        EgressRule(host: "hooks.slack.com", methods: ["POST"], paths: ["/services/**"]),
        EgressRule(host: "api.stripe.com", methods: ["GET"], paths: ["/v1/charges", "/v1/customers/*"]),
        EgressRule(host: "api.twilio.com", methods: ["POST"], paths: ["/2010-04-01/Accounts/*/Messages.json"]),
        EgressRule(host: "sentry.io", methods: ["POST"], paths: ["/api/*/envelope/"]),
        EgressRule(host: "api.linear.app", methods: ["POST"], paths: ["/graphql"]),
        EgressRule(host: "gitlab.com", methods: ["GET"], paths: ["/api/v4/projects/**"]),
        EgressRule(host: "bitbucket.org", methods: ["GET", "HEAD"], paths: ["/**/*.git/**"]),
    ]
    return NetworkSpec(mode: .proxied, allow: allow, deny: deny)
}

struct DecisionCase {
    var label: String
    var host: String
    var parsed: HostName
    var port: Int
    var method: String
    var path: String
}

/// ~600 bytes: the request line and headers of an ordinary API call, in the form the
/// gateway scans them (`METHOD URI` and `Name: value` lines).
func benchRequestHead() -> String {
    var text = "POST http://api.example.com/v1/projects/acme/widgets?page=2&per_page=50&sort=updated HTTP/1.1\n"
    for h in [
        "Host: api.example.com", "User-Agent: python-requests/2.31.0", "Accept: application/json",
        "Accept-Encoding: gzip, deflate, br", "Content-Type: application/json; charset=utf-8",
        "Content-Length: 1024", "Connection: keep-alive", "X-Request-Id: 7f3c9a52-1e4b-4d8f-9c2a-5b6e7d8f9a0b",
        "Cache-Control: no-cache", "Accept-Language: en-US,en;q=0.9", "X-Client-Version: 4.12.1 (linux; x86_64)",
        "Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "Cookie: session=placeholder; theme=dark; locale=en-US",
    ] {
        text += h + "\n"
    }
    return text
}

struct DecisionNumbers {
    var rules: Int
    var cases: [(String, Bool, Double)]
    var parseNs: Double
    var decideNs: Double
    var dlpNs: Double
    var headBytes: Int
    var iterations: Int
}

/// Nanoseconds per call of `body`, over `iterations` calls after a warm-up.
private func nanosPerCall(_ iterations: Int, _ body: (Int) -> Int) -> Double {
    var sink = 0
    for i in 0..<max(1, iterations / 20) { sink &+= body(i) }
    let t0 = Clock.monotonicNanos()
    for i in 0..<iterations { sink &+= body(i) }
    let dt = Clock.monotonicNanos() - t0
    if sink == Int.min { print("") }  // keeps the work observable
    return Double(dt) / Double(iterations)
}

func runDecisionBench(iterations: Int) throws -> DecisionNumbers {
    let spec = benchPolicySpec()
    let policy = try EgressPolicy(spec)
    let raw: [(String, String, Int, String, String)] = [
        ("exact host", "pypi.org", 443, "GET", "/simple/requests/"),
        ("wildcard host", "raw.githubusercontent.com", 443, "GET", "/acme/widgets/main/README.md"),
        ("path rule, POST", "api.example.com", 443, "POST", "/v1/projects/acme/widgets"),
        ("path rule, GET + query", "api.example.com", 443, "GET", "/v1/projects/acme/widgets?page=2"),
        ("CIDR", "10.1.2.3", 8080, "GET", "/metrics"),
        ("deny rule, method", "api.github.com", 443, "DELETE", "/repos/acme/widgets"),
        ("deny rule, path", "registry.npmjs.org", 443, "PUT", "/-/user/org.couchdb.user:mallory"),
        ("no rule (default deny)", "evil.example.net", 443, "GET", "/collect"),
    ]
    var cases: [DecisionCase] = []
    for (label, host, port, method, path) in raw {
        cases.append(DecisionCase(label: label, host: host, parsed: try HostName.parse(host), port: port, method: method, path: path))
    }
    let secrets = [
        Secret(name: "GITHUB_TOKEN", value: "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
        Secret(name: "OPENAI_API_KEY", value: "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"),
        Secret(name: "DB_PASSWORD", value: "correct horse battery staple"),
        Secret(name: "AWS_SECRET_ACCESS_KEY", value: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ]
    let scanner = DLPScanner(secrets: secrets)
    let head = benchRequestHead()
    guard scanner.firstFinding(head) == nil else { throw EgressBenchError("the benchmark's request head has a DLP finding") }

    var perCase: [(String, Bool, Double)] = []
    for c in cases {
        let allowed = policy.decide(host: c.parsed, port: c.port, method: c.method, path: c.path).allowed
        let ns = nanosPerCall(iterations / 5) { _ in
            policy.decide(host: c.parsed, port: c.port, method: c.method, path: c.path).allowed ? 1 : 0
        }
        perCase.append((c.label, allowed, ns))
    }
    let mask = cases.count - 1  // 8 cases
    let decide = nanosPerCall(iterations) { i in
        let c = cases[i & mask]
        return policy.decide(host: c.parsed, port: c.port, method: c.method, path: c.path).allowed ? 1 : 0
    }
    let parse = nanosPerCall(iterations) { i in
        (try? HostName.parse(cases[i & mask].host)) == nil ? 0 : 1
    }
    let dlp = nanosPerCall(iterations) { _ in scanner.firstFinding(head) == nil ? 0 : 1 }
    return DecisionNumbers(
        rules: spec.allow.count + spec.deny.count, cases: perCase, parseNs: parse, decideNs: decide, dlpNs: dlp,
        headBytes: head.utf8.count, iterations: iterations)
}

// MARK: - The benchmark

private func makeTempDirectory() throws -> String {
    var template = Array("/tmp/airlock-bench-egress-XXXXXX".utf8CString)
    let made: String? = template.withUnsafeMutableBufferPointer { buf in
        guard let base = buf.baseAddress, let p = mkdtemp(base) else { return nil }
        return String(cString: p)
    }
    guard let made else { throw EgressBenchError.errno("mkdtemp") }
    return made
}

private func mbps(_ bytesPerSecond: Double) -> String { whole(bytesPerSecond / 1e6) }

private func whole(_ v: Double) -> String { v.isFinite ? String(Int(v.rounded())) : "-" }

private func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? .nan : s[s.count / 2]
}

func egressBenchmark(requests: Int, size: Int, downloads: Int = 3) -> Int32 {
    let warmup = 500
    let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
    var directory: String?
    var upstream: BenchUpstream?
    var tinyproxy: Tinyproxy?
    var gateway: EgressGateway?
    defer {
        gateway?.stop()
        tinyproxy?.stop()
        upstream?.stop()
        if let directory { _ = system("rm -rf '\(directory)'") }
    }
    do {
        let dir = try makeTempDirectory()
        directory = dir
        let up = try BenchUpstream.start(bigSize: size)
        upstream = up
        let tp = try Tinyproxy.start(directory: dir, upstreamPort: up.port)
        tinyproxy = tp
        let network = NetworkSpec(mode: .proxied, allow: [EgressRule(host: "127.0.0.1", ports: [up.port])])
        let gw = try EgressGateway(GatewayConfiguration(instance: "bench", network: network), events: NullSink())
        gateway = gw
        let socketPath = dir + "/egress.sock"
        try gw.start(socketPath: socketPath)

        let gatewayCPU = EgressRoute.CPUMeter.inProcess(upstream: up.cpuClock)
        let routes = [
            EgressRoute(name: "direct", endpoint: .tcp(port: up.port)),
            EgressRoute(name: "tinyproxy", endpoint: .tcp(port: tp.port), absoluteForm: true, meter: .process(tp.pid)),
            EgressRoute(name: "airlock gateway", endpoint: .unix(path: socketPath), absoluteForm: true, meter: gatewayCPU),
            EgressRoute(name: "tinyproxy, CONNECT", endpoint: .tcp(port: tp.port), tunnel: true, meter: .process(tp.pid)),
            EgressRoute(name: "airlock gateway, CONNECT", endpoint: .unix(path: socketPath), tunnel: true, meter: gatewayCPU),
        ]
        print("egress benchmark: loopback, \(cpus) CPUs; upstream SwiftNIO HTTP/1.1 on 127.0.0.1:\(up.port) (1 thread);")
        print("  \(tp.version) on 127.0.0.1:\(tp.port); airlock gateway on a Unix socket (1 event loop, NullSink events)")
        print("  one blocking client thread, one request at a time, keep-alive wherever the proxy keeps the connection")

        let upstreamPort = up.port
        let outcome: Result<EgressRun, EgressBenchError> = onDedicatedThread {
            do {
                return .success(try runEgressClient(
                    routes: routes, upstreamPort: upstreamPort, requests: requests, warmup: warmup, size: size, downloads: downloads))
            } catch let e as EgressBenchError {
                return .failure(e)
            } catch {
                return .failure(EgressBenchError("\(error)"))
            }
        }
        let run = try outcome.get()

        print("")
        print("small GET (\(BenchUpstreamHandler.smallBody) B body): \(requests) requests per path after \(warmup) warm-up, paths alternating")
        print("  " + pad("path", 26) + lpad("p50 ms", 9) + lpad("p99 ms", 9) + lpad("+p50 ms", 9) + lpad("connects", 10) + lpad("proxy CPU µs/req", 18))
        let directP50 = percentile(run.latency[0].samples, 0.5)
        var added: [Double] = []
        for (i, route) in routes.enumerated() {
            let l = run.latency[i]
            let p50 = percentile(l.samples, 0.5)
            added.append(p50 - directP50)
            let cpu = i == 0 ? "-" : fmt(Double(l.cpu) / 1000 / Double(max(1, l.samples.count)), 1)
            print(
                "  " + pad(route.name, 26) + lpad(fmt(p50, 3), 9) + lpad(fmt(percentile(l.samples, 0.99), 3), 9)
                    + lpad(i == 0 ? "-" : fmt(added[i], 3), 9) + lpad(String(l.connects), 10) + lpad(cpu, 18))
        }
        print("  connects: connections opened while measuring (tinyproxy closes the client's after every response)")
        print("  proxy CPU: tinyproxy's utime+stime; the gateway's, this process less the upstream and client threads")

        print("")
        print("large download: GET /big, \(size) B (\(Units.formatBytes(UInt64(size)))) in 64 KiB chunks, median of \(downloads) per path")
        print("  " + pad("path", 26) + lpad("MB/s", 9) + lpad("vs direct", 11) + lpad("vs tinyproxy", 14) + lpad("proxy CPU s/GB", 16))
        let rates = run.downloads.map { median($0.rates) }
        for (i, route) in routes.enumerated() {
            let tinyIndex = route.tunnel ? 3 : 1
            let vsTiny = i == 0 ? "-" : fmt(rates[i] / rates[tinyIndex]) + "x"
            let cpu = i == 0 ? "-" : fmt(median(run.downloads[i].cpuPerByte), 2)  // ns/B = s/GB
            print(
                "  " + pad(route.name, 26) + lpad(mbps(rates[i]), 9) + lpad(fmt(rates[i] / rates[0]) + "x", 11) + lpad(vsTiny, 14)
                    + lpad(cpu, 16))
        }

        gw.stop()
        gateway = nil
        tp.stop()
        tinyproxy = nil

        let d = try runDecisionBench(iterations: 1_000_000)
        print("")
        print("decision per request, no I/O: \(d.rules)-rule policy (exact, wildcard, CIDR, method/path, deny), \(d.iterations) iterations")
        print("  " + pad("case", 44) + lpad("ns", 9))
        for (label, allowed, ns) in d.cases {
            print("  " + pad("  decide: \(label) (\(allowed ? "allowed" : "refused"))", 44) + lpad(whole(ns), 9))
        }
        print("  " + pad("policy.decide, the 8 cases in turn", 44) + lpad(whole(d.decideNs), 9))
        print("  " + pad("DLP firstFinding, \(d.headBytes) B request head, clean", 44) + lpad(whole(d.dlpNs), 9))
        let decisionNs = d.decideNs + d.dlpNs
        print("  " + pad("decide + DLP", 44) + lpad(whole(decisionNs), 9))
        print("  " + pad("(HostName.parse, not in the sum)", 44) + lpad(whole(d.parseNs), 9))

        print("")
        print("targets")
        func verdict(_ ok: Bool) -> String { ok ? "PASS" : "FAIL" }
        let rows: [(String, String, Bool)] = [
            ("gateway added p50 over direct < 0.3 ms (HTTP)", fmt(added[2], 3) + " ms", added[2] < 0.3),
            ("gateway added p50 over direct < 0.3 ms (CONNECT)", fmt(added[4], 3) + " ms", added[4] < 0.3),
            ("gateway throughput >= tinyproxy (HTTP)", fmt(rates[2] / rates[1]) + "x", rates[2] >= rates[1]),
            ("gateway throughput >= tinyproxy (CONNECT)", fmt(rates[4] / rates[3]) + "x", rates[4] >= rates[3]),
            ("decision (decide + DLP) < 10 µs", fmt(decisionNs / 1000, 2) + " µs", decisionNs < 10_000),
        ]
        for (name, value, ok) in rows {
            print("  " + pad(name, 52) + lpad(value, 11) + "  " + verdict(ok))
        }
        return 0
    } catch {
        print("egress benchmark failed: \(error)")
        return 1
    }
}
