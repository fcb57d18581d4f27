#if canImport(Glibc)
import Glibc
#endif
import AirlockCore

/// The files of a log directory:
///
/// - `seg-<first seq, 20 digits>.log`: the segments, oldest first;
/// - `audit.key` / `audit.pub`: the checkpoint signing key and its public half;
/// - `lock`: taken exclusively for each group commit, so several writers (several
///   `airlock` processes) can share one log;
/// - `writers`: held shared by every open writer, so `audit verify` can say whether
///   one has the log open;
/// - `cut-<first>-<last>-<random>.log`: what a recovery cut after the last valid signature,
///   kept as evidence and never read as log;
/// - `index.sqlite`: the query index, a cache rebuilt from the segments.
public enum LogFiles {
    public static let keyFile = "audit.key"
    public static let publicKeyFile = "audit.pub"
    public static let lockFile = "lock"
    public static let writersFile = "writers"
    public static let indexFile = "index.sqlite"

    public static func segmentName(firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return "seg-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".log"
    }

    /// The first sequence number a segment's name claims, or nil if the name is not a segment's.
    public static func firstSeq(ofSegment name: String) -> UInt64? {
        guard name.hasPrefix("seg-"), name.hasSuffix(".log"), name.count == 28 else { return nil }
        let digits = name.dropFirst(4).dropLast(4)
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }

    /// Segment names, oldest first.
    public static func segments(in dir: String) throws(AirlockError) -> [String] {
        guard let d = opendir(dir) else { throw systemError("opendir", errno, "cannot list the audit log \(dir)") }
        defer { closedir(d) }
        var names: [(UInt64, String)] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if let seq = firstSeq(ofSegment: name) { names.append((seq, name)) }
        }
        return names.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Opens a file of a log directory without following a symlink (`O_NOFOLLOW`) and
    /// without blocking on a FIFO (`O_NONBLOCK`), and fails unless what it opened is a
    /// regular file. Anyone who can write the directory can plant a symlink, FIFO or device
    /// under any name, so every open there goes through this; all reading, truncating and
    /// appending is then done on the descriptor, never by re-opening the name.
    public static func openRegular(_ path: String, _ flags: Int32, mode: mode_t = 0o600, followSymlinks: Bool = false)
        throws(AirlockError) -> Int32
    {
        let fd = open(path, flags | (followSymlinks ? 0 : O_NOFOLLOW) | O_NONBLOCK | O_CLOEXEC, mode)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP && !followSymlinks {
                throw AirlockError(
                    .usage,
                    "\(path) is a symlink; the files of an audit log must be regular files, so it was not followed. Someone who can write the directory put it there: move it away, then run `airlock audit verify` on the directory")
            }
            if e == ENXIO {
                throw AirlockError(.usage, "\(path) is not a regular file (a FIFO or socket?); move it away, then run `airlock audit verify` on the directory")
            }
            throw systemError("open", e, "cannot open \(path)")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw systemError("fstat", e, "cannot inspect \(path)")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw AirlockError(
                .usage,
                "\(path) is not a regular file (a FIFO, device or directory?); it was not read or written. Move it away, then run `airlock audit verify` on the directory")
        }
        return fd
    }

    /// Reads a whole regular file (at most `limit` + 1 bytes) opened with `openRegular`.
    public static func readRegular(_ path: String, upTo limit: Int = Int.max - 1, followSymlinks: Bool = false) throws(AirlockError) -> [UInt8] {
        let fd = try openRegular(path, O_RDONLY, followSymlinks: followSymlinks)
        defer { close(fd) }
        guard let bytes = POSIXIO.readAll(fd, upTo: limit) else { throw systemError("read", errno, "cannot read \(path)") }
        return bytes
    }

    /// Reads a whole regular file (at most `limit` + 1 bytes); nil with errno set on
    /// failure (`ELOOP` for a symlink, `EINVAL` for anything but a regular file).
    public static func read(_ path: String, upTo limit: Int = Int.max - 1) -> [UInt8]? {
        guard let fd = openRegularOrErrno(path) else { return nil }
        defer { close(fd) }
        return POSIXIO.readAll(fd, upTo: limit)
    }

    /// Reads a regular file from byte `offset` to its end; nil with errno set on failure.
    static func read(_ path: String, from offset: Int) -> [UInt8]? {
        guard let fd = openRegularOrErrno(path) else { return nil }
        defer { close(fd) }
        return read(fd: fd, from: offset)
    }

    /// Reads an open file from byte `offset` to its end (at most `limit` + 1 bytes);
    /// nil with errno set on failure.
    static func read(fd: Int32, from offset: Int, upTo limit: Int = Int.max - 1) -> [UInt8]? {
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { return nil }
        return POSIXIO.readAll(fd, upTo: limit)
    }

    private static func openRegularOrErrno(_ path: String) -> Int32? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            errno = EINVAL
            return nil
        }
        return fd
    }

    /// Creates `dir` (and parents) owner-only if missing.
    static func makeDirectory(_ dir: String) throws(AirlockError) {
        var path = ""
        for part in dir.split(separator: "/", omittingEmptySubsequences: true) {
            path += "/" + part
            if mkdir(path, 0o700) != 0, errno != EEXIST {
                throw systemError("mkdir", errno, "cannot create the audit log directory \(path)")
            }
        }
        if !dir.hasPrefix("/") { throw AirlockError(.usage, "the audit log directory must be an absolute path: \(dir)") }
    }
}

/// Lines of a segment: each whole line (without its newline) and where it starts,
/// plus any bytes after the last newline (a torn tail).
struct SegmentLines: Sequence {
    let bytes: [UInt8]

    var tornTail: Range<Int>? {
        guard let last = bytes.lastIndex(of: 0x0A) else { return bytes.isEmpty ? nil : 0..<bytes.count }
        return last + 1 < bytes.count ? (last + 1)..<bytes.count : nil
    }

    func makeIterator() -> AnyIterator<(offset: Int, line: ArraySlice<UInt8>)> {
        var i = 0
        let bytes = self.bytes
        return AnyIterator {
            guard i < bytes.count, let nl = bytes[i...].firstIndex(of: 0x0A) else { return nil }
            defer { i = nl + 1 }
            return (i, bytes[i..<nl])
        }
    }
}

extension LogFiles {
    /// Where the audit log lives unless told otherwise: `$AIRLOCK_AUDIT_DIR`; as root
    /// `/var/lib/airlock/audit`; otherwise `$XDG_STATE_HOME/airlock/audit` or
    /// `~/.local/state/airlock/audit`.
    public static func defaultDirectory(environment env: [String: String], uid: uid_t = geteuid()) -> String? {
        if let d = env["AIRLOCK_AUDIT_DIR"], !d.isEmpty { return d }
        if uid == 0 { return "/var/lib/airlock/audit" }
        if let s = env["XDG_STATE_HOME"], s.hasPrefix("/") { return s + "/airlock/audit" }
        if let h = env["HOME"], h.hasPrefix("/") { return h + "/.local/state/airlock/audit" }
        return nil
    }
}
