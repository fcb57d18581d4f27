#if canImport(Glibc)
import Glibc
#endif

/// The host's own interface addresses. A connection to one reaches a service on the host,
/// so the policy refuses them like loopback (`AddressClass.thisHost`).
public enum LocalAddresses {
    /// Every IPv4 and IPv6 address of every interface (`getifaddrs`), zone dropped; empty
    /// when the call fails.
    public static func current() -> Set<IPAddress> {
        var out: Set<IPAddress> = []
        #if canImport(Glibc)
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0 else { return out }
        defer { freeifaddrs(list) }
        var entry = list
        while let e = entry {
            defer { entry = e.pointee.ifa_next }
            guard let sa = e.pointee.ifa_addr else { continue }
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                let sin = UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in.self)
                out.insert(.v4(UInt32(bigEndian: sin.sin_addr.s_addr)))
            case AF_INET6:
                let sin6 = UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in6.self)
                if let a = withUnsafeBytes(of: sin6.sin6_addr, { IPAddress(v6Bytes: $0) }) { out.insert(a) }
            default:
                continue
            }
        }
        #endif
        return out
    }
}
