import AirlockTestSupport
import Testing

@testable import AirlockDLP

let patternsOnly = DLPScanner(secrets: [])

func rules(_ text: String, _ scanner: DLPScanner = patternsOnly) -> [String] { scanner.scan(text).map(\.rule) }

func matched(_ text: String, _ scanner: DLPScanner = patternsOnly) -> [String] {
    let bytes = Array(text.utf8)
    return scanner.scan(text).map { String(decoding: bytes[$0.range], as: UTF8.self) }
}

@Suite struct PatternTests {
    @Test(arguments: [
        ("key AKIAIOSFODNN7EXAMPLE end", "aws-access-key-id", "AKIAIOSFODNN7EXAMPLE"),
        ("id=ASIAY34FZKBOKMUTVV7A", "aws-access-key-id", "ASIAY34FZKBOKMUTVV7A"),
        ("A3TX1234567890ABCDEF", "aws-access-key-id", "A3TX1234567890ABCDEF"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "aws-secret-access-key",
         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("{\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"}", "aws-secret-access-key",
         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("token ghp_16C7e42F292c6912E7710c838347Ae178B4a.", "github-token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
        ("x-access-token:ghs_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@github.com", "github-token",
         "ghs_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("github_pat_" + String(repeating: "A1_b", count: 20) + "Zz", "github-token",
         "github_pat_" + String(repeating: "A1_b", count: 20) + "Zz"),
        ("GITLAB=glpat-xxxxXXXX1234-_yyyyZZZZ ", "gitlab-token", "glpat-xxxxXXXX1234-_yyyyZZZZ"),
        ("xoxb-1234567890-0987654321-AbCdEfGhIjKl", "slack-token", "xoxb-1234567890-0987654321-AbCdEfGhIjKl"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "slack-webhook",
         "hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
        ("OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2oPq5sTu8wXy1zAb4dEf7hIj0kLm", "openai-key",
         "sk-proj-Ab3dEf6hIj9kLm2oPq5sTu8wXy1zAb4dEf7hIj0kLm"),
        ("sk-T3BlbkFJ1234567890abcdefghijklmnopqrstuvwxyzAB", "openai-key", "sk-T3BlbkFJ1234567890abcdefghijklmnopqrstuvwxyzAB"),
        ("x-api-key: sk-ant-api03-abcdEFGH1234_ijklMNOP5678-qrstUVWX90AA", "anthropic-key",
         "sk-ant-api03-abcdEFGH1234_ijklMNOP5678-qrstUVWX90AA"),
        ("?key=AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q&x", "google-api-key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
        ("stripe: sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe-key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("rk_live_abcdefghij0123456789", "stripe-key", "rk_live_abcdefghij0123456789"),
        ("a\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----\nb", "private-key",
         "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----"),
        ("{\"k\":\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXk\\n-----END OPENSSH PRIVATE KEY-----\\n\"}",
         "private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXk\\n-----END OPENSSH PRIVATE KEY-----"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", "private-key",
         "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\r\n",
         "jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        ("secret: Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa ok", "high-entropy", "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"),
    ])
    func truePositives(text: String, rule: String, match: String) {
        #expect(rules(text) == [rule])
        #expect(matched(text) == [match])
    }

    @Test(arguments: [
        "XAKIAIOSFODNN7EXAMPLE",  // inside a longer identifier
        "AKIAIOSFODNN7EXAMPLEX",  // one character too many
        "AKIAIOSFODNN7EXAMPL",  // one too few
        "AKIAiosfodnn7example",  // lower case
        "aws_secret_access_key = tooShort",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYx",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4",  // 35
        "xghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "github_pat_tooshort",
        "glpat-short",
        "xoxb-12345",
        "hooks.slack.com/services/",
        "sk-learn-is-a-python-library-for-machine-learning-stuff",  // no digit, no upper case
        "task-Ab3dEf6hIj9kLm2oPq5sTu8wXy1zAb4dEf7hIj0kLm",  // sk- inside a word
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6",  // 34
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "eyJhbGciOiJIUzI1NiJ9",  // one segment
        "eyJhbGciOiJIUzI1NiJ9.notjson.sig",
    ])
    func nearMissesOfNamedRules(text: String) {
        // Random-looking near misses may still be high-entropy; no named rule may claim them.
        #expect(patternsOnly.scan(text).filter { $0.rule != "high-entropy" } == [], "\(text)")
    }

    @Test(arguments: [
        "sk-learn-is-a-python-library-for-machine-learning-stuff",
        "hooks.slack.com/services/",
        "eyJhbGciOiJIUzI1NiJ9",
        "7638417db6d59f3c431d3e1f261cc637155684cd7638417db6d59f3c",  // hex: a git SHA
        "550e8400-e29b-41d4-a716-446655440000-550e8400-e29b-41d4",  // UUIDs
        "D41D8CD98F00B204E9800998ECF8427ED41D8CD98F00B204",  // upper-case hex
        "getUserProfileSettingsForAccountNumber2AndMore",  // an identifier
        "/api/v1/repos/AcmeCorp/widget-service/pulls/1234/comments",  // a path
        "node_modules/@types/React18/index-d-ts-files-and-Something",
        "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0",  // random but 30 characters
    ])
    func nearMissesAreClean(text: String) {
        #expect(patternsOnly.scan(text) == [], "\(text)")
    }

    @Test func theMoreSpecificRuleWinsAndEntropyDefersToNamedRules() {
        #expect(rules("sk-ant-api03-abcdEFGH1234_ijklMNOP5678-qrstUVWX90AAbbbbb") == ["anthropic-key"])
        #expect(rules("ghp_16C7e42F292c6912E7710c838347Ae178B4a") == ["github-token"])
    }

    @Test func aBlobLongerThanTheEntropyCeilingIsData() {
        var rng = SeededGenerator(seed: 7)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        let blob = String(decoding: (0..<300).map { _ in alphabet[Int(rng.next() % 62)] }, as: UTF8.self)
        #expect(patternsOnly.scan(blob) == [])
        #expect(rules(String(blob.prefix(64))) == ["high-entropy"])
    }

    @Test func customPatternsReplaceTheBuiltins() {
        let scanner = DLPScanner(
            secrets: [], patterns: [.token("acme-key", prefixes: ["acme_"], tail: "a-f0-9", length: 16...16)])
        #expect(rules("k=acme_0123456789abcdef;", scanner) == ["acme-key"])
        #expect(rules("ghp_16C7e42F292c6912E7710c838347Ae178B4a", scanner) == [])
    }

    @Test func firstFindingStopsAtTheFirstHit() {
        let text = "a AKIAIOSFODNN7EXAMPLE b ghp_16C7e42F292c6912E7710c838347Ae178B4a"
        let first = Array(text.utf8).withUnsafeBytes { patternsOnly.firstFinding($0) }
        #expect(first?.rule == "aws-access-key-id")
        #expect(patternsOnly.firstFinding("nothing here") == nil)
        #expect(patternsOnly.firstFinding("") == nil)
    }

    @Test func redactionNamesTheRuleAndKeepsTheRest() {
        #expect(
            patternsOnly.redact("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY # é")
                == "export AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-access-key] # é")
        #expect(patternsOnly.redact("no secrets, ünïcode ok") == "no secrets, ünïcode ok")
    }

    @Test func descriptionNeverShowsTheMatch() {
        let f = patternsOnly.scan("AKIAIOSFODNN7EXAMPLE")[0]
        #expect(f.description == "aws-access-key-id (raw) at 0..<20")
    }
}
