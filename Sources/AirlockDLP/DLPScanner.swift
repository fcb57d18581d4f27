#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A named secret value that must not leave the sandbox or reach the log.
public struct Secret: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// One match: which rule, in which encoding, and where (byte offsets into the input).
public struct DLPFinding: Sendable, Equatable, CustomStringConvertible {
    /// A pattern name (`github-token`) or `secret:` + the secret's name.
    public var rule: String
    /// `raw`, `base64`, `base64url`, `hex`, `url` or `json`. Patterns are always `raw`.
    public var encoding: String
    public var range: Range<Int>

    public init(rule: String, encoding: String, range: Range<Int>) {
        self.rule = rule
        self.encoding = encoding
        self.range = range
    }

    /// Never the matched bytes.
    public var description: String { "\(rule) (\(encoding)) at \(range.lowerBound)..<\(range.upperBound)" }
}

/// Finds secret values (in every encoding) and credential-shaped strings in bytes, in
/// one pass: an Aho–Corasick DFA over every literal (the encodings of each secret, the
/// prefixes of each pattern) and, in the same loop, the runs of token bytes that the
/// `high-entropy` rule measures. Immutable after init; share one per sandbox.
public final class DLPScanner: Sendable {
    /// Secrets shorter than this many bytes are not searched for: an 8-byte value is
    /// already common in ordinary text by chance far more often than it is leaked.
    public static let minimumSecretLength = 8

    /// The names of the secrets that are not searched for (shorter than
    /// `minimumSecretLength` bytes). The caller should warn about each.
    public let ignoredSecrets: [String]
    /// Literal keywords in the automaton, and its size in states (for diagnostics).
    public var keywordCount: Int { keywords.count }
    public var stateCount: Int { automaton.stateCount }

    private let automaton: Automaton
    private let keywords: [Keyword]
    /// Secret literal forms, indexed by `Keyword.index` when the keyword is a literal.
    private let forms: [Literal]
    private let patterns: [DLPPattern]
    private let entropy: DLPPattern.HighEntropy?
    private let entropyRule: String
    /// byte → automaton class in the low byte, bit 8 set for token bytes.
    private let byteInfo: [UInt16]
    /// x·log2(x) for x in 0...entropy.length.upperBound.
    private let xlogx: [Double]

    /// A literal in the automaton: the first `anchor` bytes of a secret form, or a whole
    /// pattern prefix.
    private struct Keyword: Sendable {
        var isPattern: Bool
        var index: Int  // into forms or patterns
        var length: Int
    }

    private struct Literal: Sendable {
        var rule: String
        var bytes: [UInt8]
        var encoding: String
        var lead: Bool
        var trail: Bool
        var alphabet: ByteSet?
    }

    /// Secret forms are anchored on their first `anchorLength` bytes (and verified in full
    /// on a hit), which bounds the automaton at about anchorLength states per form.
    static let anchorLength = 8

    static let tokenBytes = ByteSet("A-Za-z0-9+/_-")

    public init(secrets: [Secret], patterns: [DLPPattern] = DLPPattern.builtin) {
        var ignored: [String] = []
        var forms: [Literal] = []
        var seen = Set<[UInt8]>()
        for secret in secrets {
            let value = Array(secret.value.utf8)
            guard value.count >= Self.minimumSecretLength else {
                ignored.append(secret.name)
                continue
            }
            for form in SecretForms.all(value) where seen.insert(form.bytes).inserted {
                forms.append(
                    Literal(
                        rule: "secret:" + secret.name, bytes: form.bytes, encoding: form.encoding, lead: form.lead,
                        trail: form.trail, alphabet: form.alphabet?.set))
            }
        }
        var keywordBytes: [[UInt8]] = []
        var keywords: [Keyword] = []
        for (i, f) in forms.enumerated() {
            keywordBytes.append(Array(f.bytes.prefix(Self.anchorLength)))
            keywords.append(Keyword(isPattern: false, index: i, length: min(Self.anchorLength, f.bytes.count)))
        }
        var entropy: DLPPattern.HighEntropy?
        var entropyRule = "high-entropy"
        for (i, p) in patterns.enumerated() {
            if case let .highEntropy(h) = p.shape {
                entropy = h
                entropyRule = p.name
            }
            for prefix in p.prefixes where !prefix.isEmpty {
                keywordBytes.append(Array(prefix.utf8))
                keywords.append(Keyword(isPattern: true, index: i, length: prefix.utf8.count))
            }
        }
        let automaton = Automaton(keywords: keywordBytes)
        var info = [UInt16](repeating: 0, count: 256)
        for b in 0..<256 {
            info[b] = UInt16(automaton.classes[b]) | (Self.tokenBytes.contains(UInt8(b)) ? 0x100 : 0)
        }
        let maxRun = entropy?.length.upperBound ?? 0
        var xlogx = [Double](repeating: 0, count: maxRun + 1)
        for x in stride(from: 1, through: maxRun, by: 1) { xlogx[x] = Double(x) * log2(Double(x)) }

        self.ignoredSecrets = ignored
        self.automaton = automaton
        self.keywords = keywords
        self.forms = forms
        self.patterns = patterns
        self.entropy = entropy
        self.entropyRule = entropyRule
        self.byteInfo = info
        self.xlogx = xlogx
    }

    // MARK: - Public entry points

    /// Every finding, ordered by start offset. A `high-entropy` finding that overlaps
    /// another finding is left out (the other one names the rule better).
    public func scan(_ bytes: UnsafeRawBufferPointer) -> [DLPFinding] {
        var findings: [DLPFinding] = []
        run(bytes, firstOnly: false, into: &findings)
        guard findings.count > 1 else { return findings }
        findings.sort { a, b in
            a.range.lowerBound != b.range.lowerBound
                ? a.range.lowerBound < b.range.lowerBound : a.range.upperBound > b.range.upperBound
        }
        // Two prefixes of one rule can end at the same place (`secret_access_key` inside
        // `aws_secret_access_key`): keep one finding per rule and range. Equal ranges are
        // adjacent after the sort.
        var unique: [DLPFinding] = []
        unique.reserveCapacity(findings.count)
        for f in findings {
            var k = unique.count - 1
            var duplicate = false
            while k >= 0, unique[k].range == f.range {
                if unique[k].rule == f.rule { duplicate = true; break }
                k -= 1
            }
            if !duplicate { unique.append(f) }
        }
        // Drop high-entropy findings that overlap a named one: among the named findings
        // that start before the run ends, does any end after it starts?
        let named = unique.filter { $0.rule != entropyRule }
        if named.count == unique.count { return unique }
        var maxEnd: [Int] = []  // running maximum of named upper bounds, in start order
        maxEnd.reserveCapacity(named.count)
        for f in named { maxEnd.append(max(maxEnd.last ?? 0, f.range.upperBound)) }
        return unique.filter { f in
            guard f.rule == entropyRule else { return true }
            var lo = 0
            var hi = named.count  // first named finding starting at or after f's end
            while lo < hi {
                let mid = (lo + hi) / 2
                if named[mid].range.lowerBound < f.range.upperBound { lo = mid + 1 } else { hi = mid }
            }
            return lo == 0 || maxEnd[lo - 1] <= f.range.lowerBound
        }
    }

    public func scan(_ text: String) -> [DLPFinding] {
        withBytes(text) { scan($0) }
    }

    /// The first finding in scan order, or nil: the egress gateway's block decision.
    /// Stops at the first hit, so a dirty request costs no more than a clean one.
    public func firstFinding(_ bytes: UnsafeRawBufferPointer) -> DLPFinding? {
        var findings: [DLPFinding] = []
        run(bytes, firstOnly: true, into: &findings)
        return findings.first
    }

    public func firstFinding(_ text: String) -> DLPFinding? {
        withBytes(text) { firstFinding($0) }
    }

    /// `text` with each finding replaced by `[REDACTED:<rule>]`; overlapping or touching
    /// findings become one, named after the first.
    public func redact(_ text: String) -> String {
        withBytes(text) { bytes in
            let findings = scan(bytes)
            if findings.isEmpty { return text }
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            var at = 0
            var i = 0
            while i < findings.count {
                let rule = findings[i].rule
                var range = findings[i].range
                i += 1
                while i < findings.count, findings[i].range.lowerBound <= range.upperBound {
                    range = range.lowerBound..<max(range.upperBound, findings[i].range.upperBound)
                    i += 1
                }
                out.append(contentsOf: bytes[at..<range.lowerBound])
                out.append(contentsOf: "[REDACTED:".utf8)
                out.append(contentsOf: rule.utf8)
                out.append(UInt8(ascii: "]"))
                at = range.upperBound
            }
            out.append(contentsOf: bytes[at...])
            return String(decoding: out, as: UTF8.self)
        }
    }

    private func withBytes<R>(_ text: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var text = text
        return text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }

    // MARK: - The pass

    private func run(_ raw: UnsafeRawBufferPointer, firstOnly: Bool, into findings: inout [DLPFinding]) {
        guard let base = raw.baseAddress, raw.count > 0 else { return }
        let p = base.assumingMemoryBound(to: UInt8.self)
        let n = raw.count
        let minRun = entropy?.length.lowerBound ?? Int.max
        var cursor = Cursor()
        while true {
            let event = byteInfo.withUnsafeBufferPointer { info in
                automaton.table.withUnsafeBufferPointer { table in
                    Self.advance(p, n, &cursor, table.baseAddress!, info.baseAddress!, minRun)
                }
            }
            switch event {
            case .end:
                if n - cursor.runStart >= minRun { _ = checkRun(p, cursor.runStart, n, into: &findings) }
                return
            case .keyword:
                let i = cursor.i - 1
                if matchKeywords(endingAt: i, state: cursor.state / automaton.stride, p, n, firstOnly: firstOnly, into: &findings),
                    firstOnly
                {
                    return
                }
                // The byte that ended the keyword may also end a token run.
                if info(p[i]) & 0x100 == 0 {
                    if i - cursor.runStart >= minRun, checkRun(p, cursor.runStart, i, into: &findings), firstOnly { return }
                    cursor.runStart = i + 1
                }
            case .run:
                let i = cursor.i - 1
                if checkRun(p, cursor.runStart, i, into: &findings), firstOnly { return }
                cursor.runStart = i + 1
            }
        }
    }

    @inline(__always) private func info(_ b: UInt8) -> UInt16 { byteInfo[Int(b)] }

    private struct Cursor {
        var i = 0
        /// The DFA state times the row width.
        var state = 0
        var runStart = 0
    }

    private enum Event { case end, keyword, run }

    /// The hot loop: one table load per byte until a keyword ends (the transition's output
    /// bit) or a token run of at least `minRun` bytes ends. On return `cursor.i` is one past
    /// the byte that caused the event.
    @inline(__always)
    private static func advance(
        _ p: UnsafePointer<UInt8>, _ n: Int, _ cursor: inout Cursor, _ table: UnsafePointer<UInt32>,
        _ info: UnsafePointer<UInt16>, _ minRun: Int
    ) -> Event {
        var i = cursor.i
        var state = cursor.state
        var runStart = cursor.runStart
        defer {
            cursor.i = i
            cursor.state = state
            cursor.runStart = runStart
        }
        while i < n {
            let b = info[Int(p[i])]
            let next = table[state &+ Int(b & 0xFF)]
            state = Int(next & ~Automaton.outputBit)
            i &+= 1
            if next & Automaton.outputBit != 0 { return .keyword }
            if b & 0x100 == 0 {
                if i &- 1 &- runStart >= minRun { return .run }
                runStart = i
            }
        }
        return .end
    }

    /// Verifies each keyword that ends at `i`; true if one matched.
    private func matchKeywords(
        endingAt i: Int, state: Int, _ p: UnsafePointer<UInt8>, _ n: Int, firstOnly: Bool,
        into findings: inout [DLPFinding]
    ) -> Bool {
        var found = false
        let lo = Int(automaton.outputStart[state])
        let hi = Int(automaton.outputStart[state + 1])
        for o in lo..<hi {
            let k = keywords[Int(automaton.outputs[o])]
            let start = i + 1 - k.length
            if k.isPattern {
                let pattern = patterns[k.index]
                if let r = pattern.shape.match(p, n, start: start, anchorEnd: i + 1) {
                    findings.append(DLPFinding(rule: pattern.name, encoding: "raw", range: r))
                    found = true
                    if firstOnly { return true }
                }
            } else {
                let f = forms[k.index]
                guard start + f.bytes.count <= n, memEqual(p + start, f.bytes) else { continue }
                var lower = start
                var upper = start + f.bytes.count
                if let alphabet = f.alphabet {
                    if f.lead, lower > 0, alphabet.contains(p[lower - 1]) { lower -= 1 }
                    if f.trail, upper < n, alphabet.contains(p[upper]) { upper += 1 }
                    var pad = 0
                    while pad < 2, upper < n, p[upper] == UInt8(ascii: "=") { upper += 1; pad += 1 }
                }
                findings.append(DLPFinding(rule: f.rule, encoding: f.encoding, range: lower..<upper))
                found = true
                if firstOnly { return true }
            }
        }
        return found
    }

    /// The `high-entropy` rule on the token run `p[from..<to]`; true if it is flagged.
    private func checkRun(_ p: UnsafePointer<UInt8>, _ from: Int, _ to: Int, into findings: inout [DLPFinding]) -> Bool {
        guard let h = entropy, h.length.contains(to - from) else { return false }
        // Classes and transitions first: cheap, and they reject most identifiers and paths.
        var upper = false, lower = false, digit = false
        var previous = 0
        var pairs = 0
        var changes = 0
        for i in from..<to {
            let b = p[i]
            let c: Int
            if b >= 0x41 && b <= 0x5A {
                c = 1; upper = true
            } else if b >= 0x61 && b <= 0x7A {
                c = 2; lower = true
            } else if b >= 0x30 && b <= 0x39 {
                c = 3; digit = true
            } else {
                continue
            }
            if previous != 0 {
                pairs += 1
                if c != previous { changes += 1 }
            }
            previous = c
        }
        guard upper, lower, digit, pairs > 0, Double(changes) >= h.transitions * Double(pairs) else { return false }
        let n = to - from
        let bits: Double = withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 128) { counts in
            counts.initialize(repeating: 0)
            for i in from..<to { counts[Int(p[i] & 0x7F)] &+= 1 }
            var sum = 0.0
            for c in counts where c > 0 { sum += xlogx[Int(c)] }
            return log2(Double(n)) - sum / Double(n)
        }
        guard bits >= h.bits else { return false }
        findings.append(DLPFinding(rule: entropyRule, encoding: "raw", range: from..<to))
        return true
    }
}
