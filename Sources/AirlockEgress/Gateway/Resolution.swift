import AirlockCore
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Name resolution for the gateway. The sandbox has no DNS: the gateway resolves every
/// name itself, checks every address it got, and connects to a checked address (never
/// resolving the name a second time, so a rebinding answer cannot slip in between).
public protocol EgressResolver: Sendable {
    /// The addresses of `name`, in the order to try them.
    func resolve(_ name: String, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]>
}

/// The host's resolver (`getaddrinfo`, so `/etc/hosts` and `nsswitch.conf` apply), run on
/// NIO's blocking thread pool.
public struct SystemResolver: EgressResolver {
    public init() {}

    public func resolve(_ name: String, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        NIOThreadPool.singleton.runIfActive(eventLoop: loop) { try Self.getaddrinfo(name) }
    }

    static func getaddrinfo(_ name: String) throws -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = Glibc.getaddrinfo(name, nil, &hints, &result)
        guard rc == 0, let first = result else {
            throw ResolutionError(name: name, message: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(first) }
        var out: [IPAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let sa = ai.pointee.ai_addr, let address = IPAddress(sockaddr: sa), !out.contains(address) {
                out.append(address)
            }
            p = ai.pointee.ai_next
        }
        if out.isEmpty { throw ResolutionError(name: name, message: "no addresses") }
        return out
    }
}

public struct ResolutionError: Error, CustomStringConvertible, Sendable {
    public var name: String
    public var message: String
    public var description: String { "cannot resolve \(name): \(message)" }
}

extension IPAddress {
    /// Reads an `AF_INET` or `AF_INET6` socket address (the port is ignored).
    init?(sockaddr sa: UnsafePointer<sockaddr>) {
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            let v4 = UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in.self)
            self = .v4(UInt32(bigEndian: v4.sin_addr.s_addr))
        case AF_INET6:
            let v6 = UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in6.self)
            let bytes = withUnsafeBytes(of: v6.sin6_addr) { Array($0) }
            self.init(v6Bytes: bytes)
        default:
            return nil
        }
    }

    /// The NIO socket address for connecting to this address.
    func socketAddress(port: Int) throws -> SocketAddress {
        try SocketAddress(ipAddress: description, port: port)
    }
}
