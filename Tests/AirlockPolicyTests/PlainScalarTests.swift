import AirlockTestSupport
import Testing
import Yams

@testable import AirlockPolicy

/// The reader classifies plain scalars itself (no ICU regexes on the start-up path);
/// it must agree with Yams' default YAML 1.1 resolver on every input.
@Suite struct PlainScalarTests {
    static let samples = [
        "", "~", "null", "Null", "NULL", "nil", "yes", "Yes", "YES", "no", "on", "OFF", "true", "False", "y", "n",
        "0", "00", "07", "08", "0o17", "0o8", "0x1F", "0xg", "0b101", "0b2", "-1", "+1", "1_000", "_1", "1:30", "1:30:59",
        "1:60", "190:20:30", "1.5", ".5", "-.5", "1.", "1e5", "1.0e+5", "1.0e-5", "1e", "e5", ".inf", "-.Inf", "+.INF",
        ".nan", "-.nan", ".NaN", "1G", "512M", "30s", "1.5h", "abc", "1 2", "0.1.2", "+", "-", ".", "1_", "0_", "1__2",
        "0x", "0b", "1:2:3.5", "12e3", "1.5.5", "٣", "１", "1,000",
    ]

    @Test(arguments: samples)
    func agreesWithYamsDefaultResolver(_ text: String) {
        let expected = Resolver.default.resolveTag(of: Node(text)).rawValue
        #expect(PlainScalar.tag(of: text).rawValue == expected, "'\(text)'")
    }

    @Test func randomStringsAgree() {
        var rng = SeededGenerator(seed: 0xA1_4C0C)
        let alphabet = Array("0123456789+-._:eExXoObBinfaNIlsuy~ ")
        for _ in 0..<5000 {
            let n = Int(rng.next() % 7)
            let text = String((0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
            let expected = Resolver.default.resolveTag(of: Node(text)).rawValue
            #expect(PlainScalar.tag(of: text).rawValue == expected, "'\(text)'")
        }
    }
}
