/// A kind of credential recognised by its shape. Every pattern but `high-entropy` is
/// anchored on literal prefixes, which join the secret values in the scanner's one
/// automaton; the rest of the shape is checked only where a prefix occurs.
/// docs/dlp.md lists the built-in patterns precisely.
public struct DLPPattern: Sendable, Hashable {
    /// The rule name a finding carries, e.g. `github-token`.
    public var name: String
    /// The literals the automaton looks for. Empty for `high-entropy`.
    public var prefixes: [String]
    var shape: Shape

    enum Shape: Sendable, Hashable {
        /// prefix + a run of `tail` bytes whose length is in `length`; the run must end
        /// there (a longer run is another kind of string). The prefix must not follow a
        /// byte of `boundary`. `mixed`: the run has an upper-case letter, a lower-case
        /// letter and a digit. `excluding`: prefixes that belong to a more specific rule.
        case token(tail: ByteSet, length: ClosedRange<Int>, boundary: ByteSet, mixed: Bool, excluding: [[UInt8]])
        /// label, optional closing quote, `=` or `:` (spaces around), optional opening
        /// quote, then a value of exactly `length` bytes of `value`. Only the value is the finding.
        case labelled(value: ByteSet, length: Int)
        /// `-----BEGIN … PRIVATE KEY-----` through `-----END … -----`.
        case privateKeyBlock
        /// header.payload.signature, base64url, header and payload JSON (`eyJ`).
        case jwt
        /// A run of token bytes with high Shannon entropy and mixed character classes.
        case highEntropy(HighEntropy)
    }

    /// The thresholds of the `high-entropy` rule.
    public struct HighEntropy: Sendable, Hashable {
        /// Shortest and longest run considered. Longer runs are data (an image, an archive),
        /// not a credential; secret values inside them are still found by their encodings.
        public var length: ClosedRange<Int>
        /// Minimum Shannon entropy, bits per byte.
        public var bits: Double
        /// Minimum share of adjacent letter/digit pairs whose classes (upper, lower, digit)
        /// differ: ~0.62 for random base62, ~0.1–0.35 for identifiers and paths.
        public var transitions: Double

        public init(length: ClosedRange<Int> = 32...256, bits: Double = 4.0, transitions: Double = 0.4) {
            self.length = length
            self.bits = bits
            self.transitions = transitions
        }
    }

    /// A prefix followed by a run of `tail` bytes (for example `"A-Za-z0-9"`) of a length
    /// in `length`. The prefix must not follow a letter or digit.
    public static func token(
        _ name: String, prefixes: [String], tail: String, length: ClosedRange<Int>,
        mixedClasses: Bool = false, excluding: [String] = []
    ) -> DLPPattern {
        DLPPattern(
            name: name, prefixes: prefixes,
            shape: .token(
                tail: ByteSet(tail), length: length, boundary: .alphanumeric, mixed: mixedClasses,
                excluding: excluding.map { Array($0.utf8) }))
    }

    /// A labelled value: `label = value`, `"label": "value"`, `label: value`. The label is
    /// matched in each given spelling exactly; the value is `length` bytes of `value`.
    public static func labelled(_ name: String, labels: [String], value: String, length: Int) -> DLPPattern {
        DLPPattern(name: name, prefixes: labels, shape: .labelled(value: ByteSet(value), length: length))
    }

    public static func highEntropy(_ thresholds: HighEntropy = HighEntropy()) -> DLPPattern {
        DLPPattern(name: "high-entropy", prefixes: [], shape: .highEntropy(thresholds))
    }

    static let alnum = "A-Za-z0-9"

    public static let awsAccessKeyID = token(
        "aws-access-key-id",
        prefixes: ["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "ABIA", "ACCA"],
        tail: "A-Z0-9", length: 16...16)
    /// The older `A3T` + one more character + 16.
    public static let awsAccessKeyIDA3T = token("aws-access-key-id", prefixes: ["A3T"], tail: "A-Z0-9", length: 17...17)
    public static let awsSecretAccessKey = labelled(
        "aws-secret-access-key",
        labels: [
            "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "Aws_Secret_Access_Key", "aws-secret-access-key",
            "SecretAccessKey", "secretAccessKey", "secret_access_key", "SECRET_ACCESS_KEY",
        ],
        value: "A-Za-z0-9/+", length: 40)
    public static let githubToken = token(
        "github-token", prefixes: ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], tail: alnum, length: 36...255)
    public static let githubFineGrainedToken = token(
        "github-token", prefixes: ["github_pat_"], tail: "A-Za-z0-9_", length: 82...255)
    public static let gitlabToken = token(
        "gitlab-token", prefixes: ["glpat-", "glptt-", "gldt-", "glrt-"], tail: "A-Za-z0-9_-", length: 20...255)
    public static let slackToken = token(
        "slack-token", prefixes: ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-"], tail: "A-Za-z0-9-",
        length: 10...255)
    public static let slackWebhook = DLPPattern(
        name: "slack-webhook", prefixes: ["hooks.slack.com/services/", "hooks.slack.com/workflows/"],
        shape: .token(tail: ByteSet("A-Za-z0-9/_"), length: 20...255, boundary: ByteSet(""), mixed: false, excluding: []))
    public static let openAIKey = token(
        "openai-key", prefixes: ["sk-"], tail: "A-Za-z0-9_-", length: 40...255, mixedClasses: true,
        excluding: ["sk-ant-"])
    public static let anthropicKey = token(
        "anthropic-key", prefixes: ["sk-ant-"], tail: "A-Za-z0-9_-", length: 32...255)
    public static let googleAPIKey = token(
        "google-api-key", prefixes: ["AIza"], tail: "A-Za-z0-9_-", length: 35...35)
    public static let stripeKey = token(
        "stripe-key", prefixes: ["sk_live_", "rk_live_"], tail: alnum, length: 16...255)
    public static let privateKey = DLPPattern(name: "private-key", prefixes: ["-----BEGIN "], shape: .privateKeyBlock)
    public static let jwt = DLPPattern(name: "jwt", prefixes: ["eyJ"], shape: .jwt)

    /// Every built-in pattern, `high-entropy` last.
    public static let builtin: [DLPPattern] = [
        awsAccessKeyID, awsAccessKeyIDA3T, awsSecretAccessKey, githubToken, githubFineGrainedToken, gitlabToken, slackToken,
        slackWebhook, openAIKey, anthropicKey, googleAPIKey, stripeKey, privateKey, jwt, highEntropy(),
    ]
}

// MARK: - Matching at an anchor

extension DLPPattern.Shape {
    /// The finding's byte range when the prefix at `start..<anchorEnd` of `p[0..<n]` is
    /// the start of this shape, else nil.
    func match(_ p: UnsafePointer<UInt8>, _ n: Int, start: Int, anchorEnd: Int) -> Range<Int>? {
        switch self {
        case let .token(tail, length, boundary, mixed, excluding):
            if start > 0, boundary.contains(p[start - 1]) { return nil }
            for x in excluding where start + x.count <= n {
                if memEqual(p + start, x) { return nil }
            }
            var j = anchorEnd
            let limit = min(n, anchorEnd + length.upperBound + 1)
            while j < limit, tail.contains(p[j]) { j += 1 }
            let count = j - anchorEnd
            guard length.contains(count) else { return nil }
            if mixed, !hasMixedClasses(p, anchorEnd, j) { return nil }
            return start..<j
        case let .labelled(value, length):
            var j = anchorEnd
            func skip(_ set: ByteSet, max: Int) {
                var k = 0
                while j < n, k < max, set.contains(p[j]) { j += 1; k += 1 }
            }
            skip(quotes, max: 1)
            skip(spaces, max: 8)
            guard j < n, p[j] == UInt8(ascii: "=") || p[j] == UInt8(ascii: ":") else { return nil }
            j += 1
            if j < n, p[j] == UInt8(ascii: ">") { j += 1 }  // Ruby/PHP `=>`
            skip(spaces, max: 8)
            skip(quotes, max: 1)
            let v = j
            while j < n, j - v <= length, value.contains(p[j]) { j += 1 }
            guard j - v == length, j == n || !value.contains(p[j]), !(j < n && p[j] == UInt8(ascii: "=")) else {
                return nil
            }
            return v..<j
        case .privateKeyBlock:
            // The header: `-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----`.
            var j = anchorEnd
            let headerLimit = min(n, anchorEnd + 64)
            var sawPrivateKey = false
            while j < headerLimit, header.contains(p[j]) {
                if !sawPrivateKey, j + privateKeyWord.count <= n, memEqual(p + j, privateKeyWord) {
                    sawPrivateKey = true
                    j += privateKeyWord.count
                } else {
                    j += 1
                }
            }
            guard sawPrivateKey, j + 5 <= n, memEqual(p + j, dashes) else { return nil }
            j += 5
            // The footer if it is there, else everything that can be a key body.
            if let end = find(endMarker, in: p, from: j, to: min(n, j + 65536)),
                let close = find(dashes, in: p, from: end + endMarker.count, to: min(n, end + endMarker.count + 64))
            {
                return start..<(close + 5)
            }
            while j < n, body.contains(p[j]) { j += 1 }
            return start..<j
        case .jwt:
            if start > 0, ByteSet.base64URL.contains(p[start - 1]) { return nil }
            var j = anchorEnd
            while j < n, ByteSet.base64URL.contains(p[j]) { j += 1 }
            guard j - start >= 10, j + 3 < n, p[j] == UInt8(ascii: "."), memEqual(p + j + 1, eyJ) else { return nil }
            let payload = j + 1
            j = payload + 3
            while j < n, ByteSet.base64URL.contains(p[j]) { j += 1 }
            guard j - payload >= 10, j < n, p[j] == UInt8(ascii: ".") else { return nil }
            j += 1
            while j < n, ByteSet.base64URL.contains(p[j]) { j += 1 }
            return start..<j
        case .highEntropy:
            return nil
        }
    }
}

private let quotes = ByteSet("\"'`")
private let spaces = ByteSet(" \t")
private let header = ByteSet("A-Z0-9 ")
private let body = ByteSet("A-Za-z0-9+/= \t\r\n\\:,-")
private let privateKeyWord = Array("PRIVATE KEY".utf8)
private let dashes = Array("-----".utf8)
private let endMarker = Array("-----END ".utf8)
private let eyJ = Array("eyJ".utf8)

/// Whether `p` starts with `x`; the caller has checked that `x.count` bytes are there.
@inline(__always) func memEqual(_ p: UnsafePointer<UInt8>, _ x: [UInt8]) -> Bool {
    x.withUnsafeBufferPointer { b in
        for k in 0..<b.count where p[k] != b[k] { return false }
        return true
    }
}

func find(_ needle: [UInt8], in p: UnsafePointer<UInt8>, from: Int, to: Int) -> Int? {
    guard let first = needle.first, to - from >= needle.count else { return nil }
    var i = from
    while i + needle.count <= to {
        if p[i] == first, memEqual(p + i, needle) { return i }
        i += 1
    }
    return nil
}

func hasMixedClasses(_ p: UnsafePointer<UInt8>, _ from: Int, _ to: Int) -> Bool {
    var upper = false, lower = false, digit = false
    for i in from..<to {
        let b = p[i]
        if b >= 0x41 && b <= 0x5A { upper = true } else if b >= 0x61 && b <= 0x7A { lower = true } else if b >= 0x30 && b <= 0x39 { digit = true }
    }
    return upper && lower && digit
}
