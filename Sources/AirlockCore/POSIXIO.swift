#if canImport(Glibc)
import Glibc
#endif

/// The one place Airlock's Swift code reads and writes whole buffers on a descriptor:
/// short transfers are continued and `EINTR` is retried, so callers never hand-roll loops.
public enum POSIXIO {
    /// Writes every byte. Returns 0, or the errno of the failing `write(2)`.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        transferAll(bytes) { base, count in write(fd, base, count) }
    }

    /// Writes every byte to a socket with `MSG_NOSIGNAL`: a peer that went away is `EPIPE`,
    /// never `SIGPIPE`. Returns 0, or the errno of the failing `send(2)`.
    @discardableResult
    public static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        transferAll(bytes) { base, count in send(fd, base, count, Int32(MSG_NOSIGNAL)) }
    }

    private static func transferAll(_ bytes: [UInt8], _ call: (UnsafeRawPointer, Int) -> Int) -> Int32 {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return call(base + off, buf.count - off)
            }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return n < 0 ? errno : EIO }
            off += n
        }
        return 0
    }

    /// Reads until end of file, or until more than `limit` bytes have arrived (then it
    /// returns `limit + 1` bytes, so the caller can tell "too large"). Nil on a read
    /// error, with `errno` left as `read(2)` set it.
    public static func readAll(_ fd: Int32, upTo limit: Int) -> [UInt8]? {
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: min(65536, limit + 1))
        while data.count <= limit {
            let want = min(buf.count, limit + 1 - data.count)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
            if n < 0, errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        return data
    }
}
