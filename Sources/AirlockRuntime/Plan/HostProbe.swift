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
    /// The text of a small regular file (at most `limit` bytes, UTF-8, no NUL) and its
    /// permission bits, or nil: lets the plan copy small `/etc` files instead of binding each.
    public var smallText: @Sendable (_ path: String, _ limit: Int) -> (text: String, mode: UInt32)?
    public var euid: UInt32
    public var egid: UInt32

    public init(
        kind: @escaping @Sendable (String) -> Kind,
        smallText: @escaping @Sendable (String, Int) -> (text: String, mode: UInt32)? = { _, _ in nil },
        euid: UInt32, egid: UInt32
    ) {
        self.kind = kind
        self.smallText = smallText
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
        }, smallText: { path, limit in
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size <= limit else { return nil }
            guard let buf = POSIXIO.readAll(fd, upTo: limit), buf.count <= limit else { return nil }
            guard !buf.contains(0), let text = String(validating: buf, as: UTF8.self) else { return nil }
            return (text, UInt32(st.st_mode) & 0o644)
        }, euid: geteuid(), egid: getegid())
    }
}
