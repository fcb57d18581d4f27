import AirlockCore
import CAirlockShim
import Crypto
import Foundation

/// Who is asking.
public struct Principal: Sendable, Equatable {
    /// `local` (the owner of the Unix socket) or `token:<id>`.
    public var name: String
    public var role: Role
    public var expiresAt: Date?
}

/// API tokens: `alk_<12 hex id>_<43 base64url chars>` (256 random bits). The store keeps the
/// SHA-256 of the whole token, never the token; it is shown once, expires and can be revoked.
public struct Tokens: Sendable {
    public let store: any ControlStore
    /// Applied to a token's name before it is stored (a name is free text: a credential or a
    /// profile's secret pasted into it must not reach the store).
    public let redact: @Sendable (String) -> String

    public init(store: any ControlStore, redact: @escaping @Sendable (String) -> String = EventPipeline.credentialRedaction) {
        self.store = store
        self.redact = redact
    }

    public static let maxTTL: Double = 365 * 86400

    /// Creates a token; returns the record and the token text (shown once).
    public func create(role: Role, ttl: Double, name: String, createdBy: String) throws(AirlockError) -> (TokenRecord, String) {
        guard ttl > 0, ttl <= Self.maxTTL else { throw AirlockError(.usage, "a token's ttl must be more than 0 and at most 365 days") }
        var idBytes = [UInt8](repeating: 0, count: 6)
        var secret = [UInt8](repeating: 0, count: 32)
        guard idBytes.withUnsafeMutableBytes({ airlock_random($0.baseAddress, 6) }) == 0,
            secret.withUnsafeMutableBytes({ airlock_random($0.baseAddress, 32) }) == 0
        else { throw AirlockError(.system, "cannot read random bytes for a token") }
        let id = idBytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        let text = "alk_\(id)_" + Data(secret).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let now = Date()
        let record = TokenRecord(
            id: id, name: redact(name), role: role, hash: Data(SHA256.hash(data: Data(text.utf8))), createdAt: now,
            expiresAt: now.addingTimeInterval(ttl), createdBy: createdBy)
        do { try store.insertToken(record) } catch { throw AirlockError(.system, "the store refused the token: \(error)") }
        return (record, text)
    }

    /// The principal of a bearer token, or a problem that says what is wrong with it.
    public func authenticate(_ text: String) throws(Problem) -> Principal {
        let parts = text.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "alk", Identifiers.isHex(parts[1], count: 12), parts[2].utf8.count == 43 else {
            throw Problem.unauthorized("the bearer token is not an airlock token (alk_<id>_<secret>); create one with `airlock token create --role operator`")
        }
        let id = String(parts[1])
        guard let record = try? store.token(id: id) else {
            throw Problem.unauthorized("the token \(id) is not known to this daemon; create one with `airlock token create`")
        }
        let hash = Data(SHA256.hash(data: Data(text.utf8)))
        guard Self.constantTimeEqual(hash, record.hash) else {
            throw Problem.unauthorized("the token \(id) does not match; use the token exactly as `airlock token create` printed it")
        }
        if let r = record.revokedAt {
            throw Problem.unauthorized("the token \(id) was revoked at \(Supervisor.timestamp(r)); ask an admin for a new one")
        }
        guard record.expiresAt > Date() else {
            throw Problem.unauthorized("the token \(id) expired at \(Supervisor.timestamp(record.expiresAt)); ask an admin for a new one")
        }
        return Principal(name: "token:\(id)", role: record.role, expiresAt: record.expiresAt)
    }

    static func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for (x, y) in zip(a, b) { d |= x ^ y }
        return d == 0
    }
}
