import AirlockCore

/// The log's signed head: the newest record a signature covers, as a witness keeps it
/// off the host. `signature` is the checkpoint's Ed25519 signature over
/// `airlock-audit-checkpoint/1\n<chain>\n<seq>\n<hash>\n`, so anyone holding the
/// public key can check a head without the log. `time` is when the checkpoint was
/// written; it is not covered by the signature.
///
/// One head is one JSON line:
///
///     {"seq":42,"hash":"<64 hex>","time":"…","chain":"…","key":"ed25519:<64 hex>","signature":"<128 hex>"}
public struct SignedHead: Sendable, Equatable {
    public var seq: UInt64
    public var hash: Digest32
    public var time: String
    public var chain: String
    public var key: AuditPublicKey
    public var signature: [UInt8]

    public init(seq: UInt64, hash: Digest32, time: String, chain: String, key: AuditPublicKey, signature: [UInt8]) {
        self.seq = seq
        self.hash = hash
        self.time = time
        self.chain = chain
        self.key = key
        self.signature = signature
    }

    public var json: JSONValue {
        .object([
            ("seq", .int(Int64(seq))), ("hash", .string(hash.description)), ("time", .string(time)), ("chain", .string(chain)),
            ("key", .string(key.description)), ("signature", .string(Hex.string(signature))),
        ])
    }

    /// The head as one line of JSON, without a newline.
    public var line: String { json.encoded() }

    /// Parses one line as written by `line`; nil when it is not a head.
    public init?(line: some Collection<UInt8>) {
        guard let v = try? JSONParser.parse(Array(line)), let seq = v["seq"]?.intValue, seq >= 0,
            let hash = v["hash"]?.stringValue.flatMap({ Digest32(hex: $0) }), let chain = v["chain"]?.stringValue,
            let key = v["key"]?.stringValue.flatMap({ AuditPublicKey($0) }),
            let signature = v["signature"]?.stringValue.flatMap({ Hex.decode($0) })
        else { return nil }
        self.init(seq: UInt64(seq), hash: hash, time: v["time"]?.stringValue ?? "", chain: chain, key: key, signature: signature)
    }

    /// Whether `signature` is `key`'s signature over this head's chain, seq and hash.
    public func isSigned(by key: AuditPublicKey) -> Bool {
        key.isValidSignature(signature, for: CheckpointMessage.bytes(chain: chain, seq: seq, hash: hash))
    }
}
