#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import CAirlockShim

/// Protected paths that do not exist yet would let the sandbox *create* them
/// (plant `.git/hooks/post-checkout` or `.vscode/tasks.json`). For each missing
/// entry of `WorkspaceGrant.placeholderEntries` the first missing component is
/// created as an empty *directory* (invisible to git, and a directory where a file
/// is expected still blocks the file), so it can be bound read-only; after the run
/// every placeholder that is still an empty directory with the same inode is removed.
///
/// Every step walks the workspace with `openat(O_NOFOLLOW)`: a symlink planted in
/// the workspace can never redirect a creation or a removal outside it.
public struct DenyPlaceholders: Sendable {
    struct Placeholder: Sendable {
        var relativePath: String
        var device: UInt64
        var inode: UInt64
    }

    public let workspace: String
    var created: [Placeholder] = []

    public var createdPaths: [String] { created.map(\.relativePath) }

    public static func create(workspace: String, entries: [String]) throws(AirlockError) -> DenyPlaceholders {
        var result = DenyPlaceholders(workspace: workspace)
        let root = open(workspace, AIRLOCK_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw systemError("open", errno, "cannot open the workspace \(workspace)") }
        defer { close(root) }
        for entry in entries {
            let parts = entry.split(separator: "/").map(String.init)
            guard !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else { continue }
            var dirfd = dup(root)
            var prefix: [String] = []
            defer { if dirfd >= 0 { close(dirfd) } }
            for (i, part) in parts.enumerated() {
                let last = i == parts.count - 1
                prefix.append(part)
                var st = stat()
                if fstatat(dirfd, part, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                    if last { break }
                    // Inside a placeholder made for an earlier entry: already covered by it.
                    if result.created.contains(where: { $0.device == UInt64(st.st_dev) && $0.inode == UInt64(st.st_ino) }) { break }
                    guard st.st_mode & S_IFMT == S_IFDIR else { break }  // a file where a dir is expected: nothing below can be created
                    let next = openat(dirfd, part, AIRLOCK_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    guard next >= 0 else { break }
                    close(dirfd)
                    dirfd = next
                    continue
                }
                guard errno == ENOENT else { break }
                guard mkdirat(dirfd, part, 0o755) == 0 else {
                    throw systemError("mkdirat", errno, "cannot create a placeholder for protected path \(prefix.joined(separator: "/"))")
                }
                guard fstatat(dirfd, part, &st, AT_SYMLINK_NOFOLLOW) == 0 else { break }
                result.created.append(
                    Placeholder(relativePath: prefix.joined(separator: "/"), device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
                break
            }
        }
        return result
    }

    /// Removes the placeholders that are still empty and unchanged; returns those left behind.
    @discardableResult
    public func remove() -> [String] {
        var left: [String] = []
        let root = open(workspace, AIRLOCK_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { return created.map(\.relativePath) }
        defer { close(root) }
        for p in created.reversed() {
            let parts = p.relativePath.split(separator: "/").map(String.init)
            var dirfd = dup(root)
            var ok = true
            for part in parts.dropLast() {
                let next = openat(dirfd, part, AIRLOCK_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                close(dirfd)
                dirfd = next
                if next < 0 { ok = false; break }
            }
            guard ok, let name = parts.last else { left.append(p.relativePath); continue }
            var st = stat()
            if fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, UInt64(st.st_ino) == p.inode, UInt64(st.st_dev) == p.device {
                // rmdir fails on a non-empty directory: whatever is inside stays, and is reported.
                if unlinkat(dirfd, name, AT_REMOVEDIR) != 0 { left.append(p.relativePath) }
            }
            close(dirfd)
        }
        return left
    }
}
