import Foundation
import AirlockTestSupport
import Testing

@testable import AirlockDLP

@Suite struct FuzzTests {
    static let pieces: [String] = [
        "AKIA", "ghp_", "github_pat_", "glpat-", "xoxb-", "hooks.slack.com/services/", "sk-", "sk-ant-", "AIza",
        "sk_live_", "-----BEGIN ", "PRIVATE KEY", "-----", "-----END ", "eyJ", ".", "aws_secret_access_key", "=", ":",
        "\"", " ", "\n", "%", "+", "/", "A", "z", "0", "==", "\\n", "é", "\u{0}",
    ]

    @Test(arguments: 0..<4)
    func randomInputNeverCrashesAndRedactionNeverLeaks(seed: UInt64) {
        var rng = SeededGenerator(seed: 0xD1_5C0 &+ seed)
        let secret = "Tr0ub4dor&3-horse"
        let forms = Reference.forms(secret)
        let scanner = DLPScanner(secrets: [Secret(name: "S", value: secret)])
        let b64 = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for _ in 0..<300 {
            var text = ""
            for _ in 0..<Int(rng.next() % 40) {
                switch rng.next() % 6 {
                case 0: text += forms[Int(rng.next() % UInt64(forms.count))]
                case 1: text += String(decoding: (0..<Int(rng.next() % 50)).map { _ in b64[Int(rng.next() % 64)] }, as: UTF8.self)
                case 2: text += String(decoding: (0..<Int(rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, as: UTF8.self)
                default: text += Self.pieces[Int(rng.next() % UInt64(Self.pieces.count))]
                }
            }
            let findings = scanner.scan(text)
            let n = text.utf8.count
            #expect(findings.allSatisfy { $0.range.lowerBound >= 0 && $0.range.upperBound <= n && !$0.range.isEmpty })
            let redacted = scanner.redact(text)
            for form in forms where redacted.contains(form) {
                Issue.record("\(form) survived redaction of \(text.debugDescription)")
            }
            #expect(scanner.scan(redacted).allSatisfy { !$0.rule.hasPrefix("secret:") })
        }
    }

    @Test func randomBytesNeverCrash() {
        var rng = SeededGenerator(seed: 42)
        let scanner = DLPScanner(secrets: [Secret(name: "S", value: "abcdefgh")])
        for size in [0, 1, 2, 3, 7, 31, 32, 33, 255, 256, 257, 4096] {
            let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = bytes.withUnsafeBytes { scanner.scan($0) }
            _ = bytes.withUnsafeBytes { scanner.firstFinding($0) }
        }
    }
}
