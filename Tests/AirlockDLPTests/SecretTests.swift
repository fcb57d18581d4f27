import Foundation
import AirlockTestSupport
import Testing

@testable import AirlockDLP

/// Reference encodings, independent of the scanner's own.
enum Reference {
    static func base64(_ b: [UInt8]) -> String { Data(b).base64EncodedString() }
    static func base64url(_ b: [UInt8]) -> String {
        base64(b).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }
    static func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
    static func url(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")) ?? s
    }

    /// Every form the scanner promises to find `value` in.
    static func forms(_ value: String) -> [String] {
        let b = Array(value.utf8)
        let u = url(value)
        return [
            value, base64(b), base64url(b), base64(b).replacingOccurrences(of: "=", with: ""), hex(b), hex(b).uppercased(),
            u, u.lowercasedPercentEscapes(), u.replacingOccurrences(of: "%20", with: "+"),
        ]
    }
}

extension String {
    func lowercasedPercentEscapes() -> String {
        var out = ""
        var pending = 0
        for c in self {
            if c == "%" { pending = 2; out.append(c) } else if pending > 0 { pending -= 1; out += c.lowercased() } else { out.append(c) }
        }
        return out
    }
}

let secretValue = "p@ss w0rd/+?&=\"long-enough"
let secretScanner = DLPScanner(secrets: [Secret(name: "DB_PASSWORD", value: secretValue)])

@Suite struct SecretTests {
    @Test func everyEncodingIsFoundAndNamed() {
        let b = Array(secretValue.utf8)
        let expected: [(String, String)] = [
            (secretValue, "raw"), (Reference.base64(b), "base64"), (Reference.base64url(b), "base64url"),
            (Reference.hex(b), "hex"), (Reference.hex(b).uppercased(), "hex"), (Reference.url(secretValue), "url"),
            (Reference.url(secretValue).lowercasedPercentEscapes(), "url"),
            (Reference.url(secretValue).replacingOccurrences(of: "%20", with: "+"), "url"),
            ("p@ss w0rd\\/+?&=\\\"long-enough", "json"),
        ]
        for (form, encoding) in expected {
            let text = "before " + form + " after"
            let findings = secretScanner.scan(text)
            #expect(findings.map(\.rule) == ["secret:DB_PASSWORD"], "\(encoding): \(form)")
            #expect(findings.first?.encoding == encoding, "\(form)")
            #expect(secretScanner.redact(text) == "before [REDACTED:secret:DB_PASSWORD] after", "\(encoding): \(form)")
        }
    }

    @Test(arguments: 0..<3, 0..<3)
    func base64InsideALongerBlobAtEachAlignment(before: Int, after: Int) {
        let secret = Array("s3cr3t-V4lue!".utf8)
        let scanner = DLPScanner(secrets: [Secret(name: "K", value: String(decoding: secret, as: UTF8.self))])
        let prefix = Array("header bytes: 12345".utf8.prefix(9 + before))
        let suffix = Array(" and a trailer".utf8.prefix(7 + after))
        let blob = Reference.base64(prefix + secret + suffix)
        for text in [blob, Reference.base64url(prefix + secret + suffix), "data:" + blob + ";"] {
            let findings = scanner.scan(text)
            #expect(findings.count == 1, "\(text)")
            #expect(findings.first?.rule == "secret:K")
            // What remains after redaction decodes to nothing that contains the secret.
            let redacted = scanner.redact(text)
            #expect(scanner.scan(redacted) == [])
            #expect(!redacted.contains(String(decoding: secret, as: UTF8.self)))
        }
    }

    @Test func redactionLeavesNoEncodingBehind() {
        let text = Reference.forms(secretValue).joined(separator: " | ")
        let redacted = secretScanner.redact(text)
        #expect(secretScanner.scan(redacted) == [])
        for form in Reference.forms(secretValue) { #expect(!redacted.contains(form), "\(form)") }
        #expect(redacted.contains("[REDACTED:secret:DB_PASSWORD]"))
    }

    @Test func shortSecretsAreReportedNotSearched() {
        let scanner = DLPScanner(secrets: [Secret(name: "PIN", value: "1234"), Secret(name: "OK", value: "12345678")])
        #expect(scanner.ignoredSecrets == ["PIN"])
        #expect(scanner.scan("pin 1234 ok 12345678").map(\.rule) == ["secret:OK"])
    }

    @Test func overlappingFindingsMergeIntoOneRedaction() {
        let scanner = DLPScanner(secrets: [
            Secret(name: "A", value: "abcdefgh12345678"), Secret(name: "B", value: "12345678ijklmnop"),
        ])
        #expect(scanner.redact("x abcdefgh12345678ijklmnop y") == "x [REDACTED:secret:A] y")
        #expect(scanner.scan("abcdefgh12345678ijklmnop").count == 2)
    }

    @Test func aSecretAndAPatternTogether() {
        let scanner = DLPScanner(secrets: [Secret(name: "GITHUB_TOKEN", value: "ghp_16C7e42F292c6912E7710c838347Ae178B4a")])
        let findings = scanner.scan("t=ghp_16C7e42F292c6912E7710c838347Ae178B4a")
        #expect(Set(findings.map(\.rule)) == ["secret:GITHUB_TOKEN", "github-token"])
    }

    @Test func aMebibyteWithSecretsScattered() {
        var rng = SeededGenerator(seed: 1)
        var bytes = [UInt8]()
        bytes.reserveCapacity(1 << 20)
        let words = ["the ", "quick ", "brown ", "fox ", "{\"a\": 1}, ", "\n", "https://example.com/x?y=z "].map { Array($0.utf8) }
        var planted: [Int] = []
        while bytes.count < 1 << 20 {
            if rng.next() % 5000 == 0 {
                planted.append(bytes.count)
                bytes += Array(secretValue.utf8)
            }
            bytes += words[Int(rng.next() % UInt64(words.count))]
        }
        let findings = bytes.withUnsafeBytes { secretScanner.scan($0) }
        #expect(findings.map(\.range.lowerBound) == planted)
        #expect(!planted.isEmpty)
        let redacted = secretScanner.redact(String(decoding: bytes, as: UTF8.self))
        #expect(!redacted.contains(secretValue))
    }
}
