#if canImport(Glibc)
import Glibc
#endif
import AirlockCore

/// What the plan builder needs to know about the host's file system, injected so
/// the plan can be computed (and tested) without touching the host.
public struct HostProbe: Sendable {
    public enum Kind: Equatable, Sendable {
        case missing
        case directory
        case file
        case symlink(target: String)
    }

    public var kind: @Sendable (String) -> Kind
    public var euid: UInt32
    public var egid: UInt32

    public init(kind: @escaping @Sendable (String) -> Kind, euid: UInt32, egid: UInt32) {
        self.kind = kind
        self.euid = euid
        self.egid = egid
    }

    /// The real host, through `lstat(2)` and `readlink(2)`.
    public static var live: HostProbe {
        HostProbe(kind: { path in
            var st = stat()
            guard lstat(path, &st) == 0 else { return .missing }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: return .directory
            case S_IFLNK:
                var buf = [CChar](repeating: 0, count: 4096)
                let n = readlink(path, &buf, buf.count - 1)
                guard n > 0 else { return .missing }
                let bytes = buf[0..<n].map { UInt8(bitPattern: $0) }
                return .symlink(target: String(decoding: bytes, as: UTF8.self))
            default: return .file
            }
        }, euid: geteuid(), egid: getegid())
    }
}
