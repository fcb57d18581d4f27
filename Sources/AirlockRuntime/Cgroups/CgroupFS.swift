#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A cgroup file-system call that failed, with the errno the kernel gave.
///
/// Internal to the cgroup code: callers decide per errno (`EEXIST` on a parent is
/// fine, `EBUSY` on rmdir means "retry", `ENOENT` on an optional interface file
/// means "this kernel lacks it") and convert the rest to `AirlockError` at the edge.
struct CgroupFSError: Error, Sendable, Equatable {
    var call: String
    var path: String
    var errno: Int32
    /// What was being written, for the message (`write` only).
    var value: String? = nil
}

/// The handful of file operations the cgroup driver needs.
///
/// Production uses `SystemCgroupFS`; tests inject a fake that lays a cgroup tree out
/// in a temporary directory and mimics what cgroupfs does on `mkdir`/`rmdir`/writes.
protocol CgroupFS: Sendable {
    /// The whole content of a (small) file.
    func readFile(_ path: String) throws(CgroupFSError) -> String
    /// Writes `value` with a single `write(2)`, as cgroupfs requires; never creates the file.
    func writeFile(_ path: String, _ value: String) throws(CgroupFSError)
    /// `mkdir(2)` with mode 0755; `EEXIST` is reported, not ignored.
    func makeDirectory(_ path: String) throws(CgroupFSError)
    /// `rmdir(2)`.
    func removeDirectory(_ path: String) throws(CgroupFSError)
    /// Whether the calling process's effective credentials may write `path`.
    func isWritable(_ path: String) -> Bool
}

/// The real cgroup file system: one system call per operation (plus `open`/`close`),
/// every call retried on `EINTR`.
struct SystemCgroupFS: CgroupFS {
    func readFile(_ path: String) throws(CgroupFSError) -> String {
        let fd = Self.retryingEINTR { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw CgroupFSError(call: "open", path: path, errno: errno) }
        defer { _ = close(fd) }
        var bytes: [UInt8] = []
        var failure: Int32 = 0
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buffer in
            while true {
                let n = Self.retryingEINTR { read(fd, buffer.baseAddress, buffer.count) }
                if n < 0 {
                    failure = errno
                    return
                }
                if n == 0 { return }
                bytes.append(contentsOf: buffer[0..<n])
            }
        }
        if failure != 0 { throw CgroupFSError(call: "read", path: path, errno: failure) }
        return String(decoding: bytes, as: UTF8.self)
    }

    func writeFile(_ path: String, _ value: String) throws(CgroupFSError) {
        let fd = Self.retryingEINTR { open(path, O_WRONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw CgroupFSError(call: "open", path: path, errno: errno) }
        defer { _ = close(fd) }
        var bytes = Array(value.utf8)
        let count = bytes.count
        let n = bytes.withUnsafeMutableBytes { raw in Self.retryingEINTR { write(fd, raw.baseAddress, count) } }
        if n < 0 { throw CgroupFSError(call: "write", path: path, errno: errno, value: value) }
        if n != count { throw CgroupFSError(call: "write", path: path, errno: EIO, value: value) }
    }

    func makeDirectory(_ path: String) throws(CgroupFSError) {
        if Self.retryingEINTR({ mkdir(path, 0o755) }) != 0 {
            throw CgroupFSError(call: "mkdir", path: path, errno: errno)
        }
    }

    func removeDirectory(_ path: String) throws(CgroupFSError) {
        if Self.retryingEINTR({ rmdir(path) }) != 0 {
            throw CgroupFSError(call: "rmdir", path: path, errno: errno)
        }
    }

    func isWritable(_ path: String) -> Bool {
        Self.retryingEINTR { faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) } == 0
    }

    /// Runs a system call again for as long as it fails with `EINTR`.
    /// On return `errno` still holds the failing call's error.
    @inline(__always)
    static func retryingEINTR<R: FixedWidthInteger & SignedInteger>(_ call: () -> R) -> R {
        while true {
            let result = call()
            if result != -1 || errno != EINTR { return result }
        }
    }
}
