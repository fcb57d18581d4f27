#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import Crypto

/// The Ed25519 key that signs a log's checkpoints. It lives next to the log as
/// `audit.key` (32 raw bytes, mode 0600, owned by the writer), is created on first
/// use, and is refused if anyone else could read or replace it. Its public half is
/// exported as `ed25519:<64 hex>` (`airlock audit key`), so a third party can pin it.
public struct AuditSigningKey: Sendable {
    let privateKey: Curve25519.Signing.PrivateKey

    public var publicKey: AuditPublicKey { AuditPublicKey(raw: Array(privateKey.publicKey.rawRepresentation)) }

    func sign(_ message: [UInt8]) throws(AirlockError) -> [UInt8] {
        do { return Array(try privateKey.signature(for: message)) } catch {
            throw AirlockError(.internalError, "signing an audit checkpoint failed: \(error)")
        }
    }

    /// Loads `path`, or creates it (exclusively) when absent.
    static func loadOrCreate(at path: String) throws(AirlockError) -> AuditSigningKey {
        if let key = try load(at: path) { return key }
        return try create(at: path)
    }

    /// Loads `path` (refused unless it is a regular 0600 file of this user's); nil when
    /// there is none.
    public static func load(at path: String) throws(AirlockError) -> AuditSigningKey? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)  // no symlink; no hang on a FIFO
        if fd < 0 {
            guard errno == ENOENT else { throw systemError("open", errno, "cannot read the audit signing key \(path)") }
            return nil
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw systemError("fstat", errno, "cannot inspect \(path)") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw AirlockError(.usage, "the audit signing key \(path) is not a regular file") }
        guard st.st_uid == geteuid() else {
            throw AirlockError(.usage, "the audit signing key \(path) belongs to uid \(st.st_uid), not to this user (uid \(geteuid())); refusing to sign with a key someone else controls")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw AirlockError(.usage, "the audit signing key \(path) is readable or writable by others (mode \(String(st.st_mode & 0o777, radix: 8))); run: chmod 600 \(path)")
        }
        let bytes = POSIXIO.readAll(fd, upTo: 64) ?? []
        guard bytes.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: bytes) else {
            throw AirlockError(.usage, "the audit signing key \(path) is not a 32-byte Ed25519 key (\(bytes.count) bytes)")
        }
        return AuditSigningKey(privateKey: key)
    }

    /// Writes a new key under a fresh temporary name, then links it into place, so no
    /// other writer starting at the same moment can read it half-written; if one linked
    /// its key first, that key is used.
    private static func create(at path: String) throws(AirlockError) -> AuditSigningKey {
        let key = Curve25519.Signing.PrivateKey()
        var fd: Int32 = -1
        var tmp = ""
        for _ in 0..<16 where fd < 0 {
            var g = SystemRandomNumberGenerator()
            tmp = path + "." + String(g.next() as UInt64, radix: 16) + ".tmp"
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
            if fd < 0 && errno != EEXIST { break }
        }
        guard fd >= 0 else { throw systemError("open", errno, "cannot create the audit signing key \(path)") }
        defer {
            close(fd)
            unlink(tmp)
        }
        guard POSIXIO.writeAll(fd, Array(key.rawRepresentation)) == 0, fsync(fd) == 0 else {
            throw systemError("write", errno, "cannot write the audit signing key \(path)")
        }
        // link(2) never replaces: exactly one key ends up as `path`.
        guard link(tmp, path) == 0 else {
            if errno == EEXIST { return try loadOrCreate(at: path) }
            throw systemError("link", errno, "cannot create the audit signing key \(path)")
        }
        return AuditSigningKey(privateKey: key)
    }
}

/// An Ed25519 public key, written `ed25519:<64 hex>`; its id is the first 16 hex
/// digits of SHA-256 over the raw key.
public struct AuditPublicKey: Sendable, Hashable, CustomStringConvertible {
    public var raw: [UInt8]

    public init(raw: [UInt8]) { self.raw = raw }

    public init?(_ text: String) {
        var t = Substring(text)
        while let last = t.last, last == "\n" || last == " " || last == "\r" { t.removeLast() }
        guard t.hasPrefix("ed25519:"), let raw = Hex.decode(String(t.dropFirst(8))), raw.count == 32 else { return nil }
        self.raw = raw
    }

    public var description: String { "ed25519:" + Hex.string(raw) }
    public var id: String { String(Hex.string(SHA256.hash(data: raw)).prefix(16)) }

    func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return false }
        return key.isValidSignature(signature, for: message)
    }
}

/// What a checkpoint signs: the chain, and the sequence number and hash of the
/// record it covers (the one just before it).
enum CheckpointMessage {
    static func bytes(chain: String, seq: UInt64, hash: Digest32) -> [UInt8] {
        Array("airlock-audit-checkpoint/1\n\(chain)\n\(seq)\n\(hash)\n".utf8)
    }
}
