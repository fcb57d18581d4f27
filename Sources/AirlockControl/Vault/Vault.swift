import AirlockCore
import CAirlockShim
import Crypto
import Foundation

/// Encryption at rest for what outlives a sandbox: persisted workspaces and forensic
/// snapshots.
///
/// Each object has its own random 256-bit data key. The object is sealed with AES-256-GCM in
/// 1 MiB chunks (a counter nonce, which is safe because the key is used for this object
/// only; each chunk's additional data binds the object id, the chunk's index and whether it
/// is the last, so chunks cannot be reordered, dropped or truncated). The data key is wrapped
/// with the daemon's master key (AES key wrap, RFC 3394) and the wrapped key is stored only in
/// the store's record. Erasing the record destroys the key: the ciphertext, wherever copies of
/// it went, can no longer be decrypted (cryptographic erasure).
///
/// The master key is 32 random bytes in `<state>/master.key` (0600), created on first use.
public struct Vault: Sendable {
    let masterKey: SymmetricKey
    static let chunkSize = 1 << 20
    static let magic: [UInt8] = Array("ALV1".utf8)

    public init(masterKey: SymmetricKey) { self.masterKey = masterKey }

    /// Loads the master key, creating it (0600, never overwriting) when the file does not exist.
    public static func open(keyFile path: String) throws(AirlockError) -> Vault {
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count == 32 else {
                throw AirlockError(.usage, "the master key \(path) is \(data.count) bytes, not 32: it is damaged; restore it from a backup (sealed workspaces and snapshots cannot be opened without it)")
            }
            var st = stat()
            if stat(path, &st) == 0, st.st_mode & 0o077 != 0 {
                throw AirlockError(.usage, "the master key \(path) can be read by others (mode \(String(st.st_mode & 0o777, radix: 8))); run chmod 600 \(path)")
            }
            return Vault(masterKey: SymmetricKey(data: data))
        }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard bytes.withUnsafeMutableBytes({ airlock_random($0.baseAddress, 32) }) == 0 else {
            throw AirlockError(.sandboxSetup, "cannot read random bytes for the master key")
        }
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AirlockError(.sandboxSetup, "cannot create the master key \(path)", cause: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard POSIXIO.writeAll(fd, bytes) == 0, fsync(fd) == 0 else {
            throw AirlockError(.sandboxSetup, "cannot write the master key \(path)", cause: String(cString: strerror(errno)))
        }
        return Vault(masterKey: SymmetricKey(data: bytes))
    }

    /// Seals a stream written piece by piece (``Sealer/append(_:)``), for data that is never
    /// whole in one place (a workspace archive as `tar` writes it).
    public func sealer(id: String, ciphertext: String) throws(AirlockError) -> Sealer {
        try Sealer(id: id, path: ciphertext, masterKey: masterKey)
    }

    public final class Sealer {
        let id: String
        let path: String
        let masterKey: SymmetricKey
        let key = SymmetricKey(size: .bits256)
        let fd: Int32
        var pending: [UInt8] = []
        var index: UInt64 = 0
        var total: Int64 = 0
        var closed = false

        init(id: String, path: String, masterKey: SymmetricKey) throws(AirlockError) {
            self.id = id
            self.path = path
            self.masterKey = masterKey
            fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw AirlockError(.sandboxSetup, "cannot create \(path)", cause: String(cString: strerror(errno))) }
            guard POSIXIO.writeAll(fd, Vault.magic) == 0 else { throw AirlockError(.sandboxSetup, "cannot write \(path)") }
        }

        deinit {
            if !closed {
                close(fd)
                unlink(path)
            }
        }

        public func append(_ bytes: some Collection<UInt8>) throws(AirlockError) {
            pending.append(contentsOf: bytes)
            total += Int64(bytes.count)
            // A chunk is sealed only once more data follows it: the last one is marked so.
            while pending.count > Vault.chunkSize {
                try write(Array(pending[0..<Vault.chunkSize]), last: false)
                pending.removeFirst(Vault.chunkSize)
            }
        }

        /// Seals the rest; returns the wrapped data key and the plaintext size.
        public func finish() throws(AirlockError) -> (wrappedKey: Data, size: Int64) {
            try write(pending, last: true)
            pending = []
            guard fsync(fd) == 0 else { throw AirlockError(.sandboxSetup, "cannot sync \(path)") }
            close(fd)
            closed = true
            do { return (try AES.KeyWrap.wrap(key, using: masterKey), total) } catch {
                unlink(path)
                throw AirlockError(.sandboxSetup, "cannot wrap the key of \(id): \(error)")
            }
        }

        private func write(_ chunk: [UInt8], last: Bool) throws(AirlockError) {
            do {
                let box = try AES.GCM.seal(chunk, using: key, nonce: Vault.nonce(index), authenticating: Vault.aad(id: id, index: index, last: last))
                var out: [UInt8] = []
                let sealed = box.ciphertext + box.tag
                withUnsafeBytes(of: UInt32(sealed.count).littleEndian) { out.append(contentsOf: $0) }
                out.append(contentsOf: sealed)
                guard POSIXIO.writeAll(fd, out) == 0 else { throw AirlockError(.sandboxSetup, "cannot write \(path)", cause: String(cString: strerror(errno))) }
                index += 1
            } catch let e as AirlockError {
                throw e
            } catch {
                throw AirlockError(.sandboxSetup, "cannot seal \(id): \(error)")
            }
        }
    }

    /// Opens a sealed file, handing the plaintext to `out` chunk by chunk. Fails when the key
    /// is not this object's or any byte of the ciphertext was changed; `out` may then have
    /// seen earlier chunks (each chunk is authenticated before it is handed over).
    public func open(id: String, ciphertext: String, wrappedKey: Data, _ out: (Data) throws(AirlockError) -> Void) throws(AirlockError) {
        let key: SymmetricKey
        do { key = try AES.KeyWrap.unwrap(wrappedKey, using: masterKey) } catch {
            throw AirlockError(.usage, "the key of \(id) cannot be unwrapped with this daemon's master key")
        }
        guard let data = FileManager.default.contents(atPath: ciphertext) else {
            throw AirlockError(.usage, "the sealed data of \(id) is missing (\(ciphertext))")
        }
        try Self.decrypt(id: id, data: data, key: key, out)
    }

    static func decrypt(id: String, data: Data, key: SymmetricKey, _ out: (Data) throws(AirlockError) -> Void) throws(AirlockError) {
        let bytes = [UInt8](data)
        guard bytes.count >= 4, Array(bytes[0..<4]) == magic else { throw AirlockError(.usage, "\(id) is not a sealed airlock object") }
        var off = 4
        var index: UInt64 = 0
        while true {
            guard off + 4 <= bytes.count else { throw AirlockError(.usage, "\(id) is truncated") }
            let len = Int(UInt32(bytes[off]) | UInt32(bytes[off + 1]) << 8 | UInt32(bytes[off + 2]) << 16 | UInt32(bytes[off + 3]) << 24)
            off += 4
            guard len >= 16, off + len <= bytes.count else { throw AirlockError(.usage, "\(id) is truncated or damaged") }
            let last = off + len == bytes.count
            do {
                let box = try AES.GCM.SealedBox(
                    nonce: nonce(index), ciphertext: bytes[off..<(off + len - 16)], tag: bytes[(off + len - 16)..<(off + len)])
                try out(try AES.GCM.open(box, using: key, authenticating: aad(id: id, index: index, last: last)))
            } catch let e as AirlockError {
                throw e
            } catch {
                throw AirlockError(.usage, "\(id) cannot be decrypted: the key is wrong or the data was changed (chunk \(index))")
            }
            off += len
            index += 1
            if last { return }
        }
    }

    static func nonce(_ index: UInt64) throws(AirlockError) -> AES.GCM.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { bytes[4 + i] = UInt8(truncatingIfNeeded: index >> (8 * UInt64(7 - i))) }
        // 12 bytes is the size AES-GCM takes; a failure here is a bug, reported, never a crash.
        do { return try AES.GCM.Nonce(data: bytes) } catch {
            throw AirlockError(.system, "cannot make an AES-GCM nonce: \(error)")
        }
    }

    static func aad(id: String, index: UInt64, last: Bool) -> Data {
        var d = Data("airlock-vault-v1\0\(id)\0".utf8)
        withUnsafeBytes(of: index.bigEndian) { d.append(contentsOf: $0) }
        d.append(last ? 1 : 0)
        return d
    }
}
