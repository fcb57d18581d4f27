#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import CAirlockShim

/// The workspace's protected top-level entries, from the host's side.
///
/// - Every run holds a shared `flock` on the workspace directory for its whole life
///   (the helper inherits it, so it outlives a killed airlock).
/// - A protected entry that does not exist would let the sandbox *create* it, so an
///   empty placeholder directory is made (marked with the `AIRLOCK_PLACEHOLDER_XATTR`
///   xattr) and bound read-only. Placeholders are removed only by the last run out:
///   the one that can convert its lock to exclusive. A concurrent run on the same
///   workspace therefore never loses its protection to another run's cleanup.
/// - Existing entries are fingerprinted (device, inode, size, mtime); after the run a
///   changed fingerprint is reported, since a host-side replace detaches a bind.
///
/// Every step works on descriptors (`openat` + `O_NOFOLLOW`, `unlinkat`), never on
/// path strings: a symlink planted in the workspace cannot redirect it.
public final class WorkspaceGuard {

    public let workspace: String
    /// The workspace directory, locked shared; handed to the helper as fd 6.
    public let lockFD: Int32
    let entries: [String]
    private(set) var fingerprints: [String: Fingerprint] = [:]
    public private(set) var createdPaths: [String] = []

    struct Fingerprint: Equatable {
        var device: UInt64
        var inode: UInt64
        var isDirectory: Bool
        var size: Int64
        var mtime: Int64
        var mtimeNanos: Int64
    }

    public init(workspace: String, protected: [String], placeholders: [String], instance: String) throws(AirlockError) {
        self.workspace = workspace
        self.entries = protected.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        let fd = open(workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("open", errno, "cannot open the workspace \(workspace)") }
        lockFD = fd
        while flock(fd, LOCK_SH) != 0 {
            guard errno == EINTR else {
                close(fd)
                throw systemError("flock", errno, "cannot lock the workspace \(workspace)")
            }
        }
        let wanted = Set(placeholders.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 })
        for name in entries {
            if let fp = Self.fingerprint(fd, name) {
                fingerprints[name] = fp
                continue
            }
            guard errno == ENOENT, wanted.contains(name) else { continue }
            if mkdirat(fd, name, 0o755) != 0 {
                if errno == EEXIST { continue }  // a concurrent run made it a moment ago
                close(fd)
                throw systemError("mkdirat", errno, "cannot create a placeholder for protected path \(name)")
            }
            let dir = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if dir >= 0 {
                _ = airlock_mark_placeholder(dir, instance)
                close(dir)
            }
            createdPaths.append(name)
            if let fp = Self.fingerprint(fd, name) { fingerprints[name] = fp }
        }
    }

    deinit { close(lockFD) }

    static func fingerprint(_ dirfd: Int32, _ name: String) -> Fingerprint? {
        var st = stat()
        guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return Fingerprint(
            device: UInt64(st.st_dev), inode: UInt64(st.st_ino), isDirectory: st.st_mode & S_IFMT == S_IFDIR,
            size: Int64(st.st_size), mtime: Int64(st.st_mtim.tv_sec), mtimeNanos: Int64(st.st_mtim.tv_nsec))
    }

    /// Protected entries whose identity or (for files) content changed during the run.
    public func changedEntries() -> [String] {
        var changed: [String] = []
        for name in entries {
            let before = fingerprints[name]
            let after = Self.fingerprint(lockFD, name)
            switch (before, after) {
            case (nil, nil): continue
            case (let b?, let a?):
                let same = b.device == a.device && b.inode == a.inode
                    && (b.isDirectory || (b.size == a.size && b.mtime == a.mtime && b.mtimeNanos == a.mtimeNanos))
                if !same { changed.append(name) }
            default: changed.append(name)
            }
        }
        return changed
    }

    /// Removes every placeholder (any run's) if no other run holds the workspace;
    /// returns whether this run was the last one out.
    @discardableResult
    public func removePlaceholdersIfLast() -> Bool {
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else { return false }
        // Our own placeholders too, in case the file system refused the xattr mark.
        for name in entries where Self.isPlaceholder(lockFD, name) || createdPaths.contains(name) {
            _ = unlinkat(lockFD, name, AT_REMOVEDIR)  // fails, harmlessly, if something was put inside
        }
        return true
    }

    static func isPlaceholder(_ dirfd: Int32, _ name: String) -> Bool {
        let fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return airlock_is_placeholder(fd) == 1
    }
}
