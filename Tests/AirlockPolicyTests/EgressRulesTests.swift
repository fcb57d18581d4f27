import AirlockCore
import Testing

@testable import AirlockPolicy

@Suite struct EgressRulesTests {
    typealias P = EgressRules.HostPattern

    @Test(arguments: [
        ("example.com", P.name("example.com")),
        ("API.Example.COM.", P.name("api.example.com")),
        ("*.githubusercontent.com", P.subdomains(of: "githubusercontent.com")),
        ("_dmarc.example.com", P.name("_dmarc.example.com")),
        ("xn--bcher-kva.example", P.name("xn--bcher-kva.example")),
        ("localhost", P.name("localhost")),
        ("10.0.0.5", P.address([10, 0, 0, 5])),
        ("::1", P.address([UInt8](repeating: 0, count: 15) + [1])),
        ("::ffff:10.0.0.1", P.address([10, 0, 0, 1])),  // as the gateway reads it: the IPv4 address
        ("::ffff:10.0.0.0/104", P.network([10, 0, 0, 0], prefix: 8)),
        ("10.0.0.0/8", P.network([10, 0, 0, 0], prefix: 8)),
        ("10.1.2.3/32", P.network([10, 1, 2, 3], prefix: 32)),
        ("fd00::/8", P.network([0xFD] + [UInt8](repeating: 0, count: 15), prefix: 8)),
    ])
    func acceptedHostPatterns(text: String, pattern: P) throws {
        #expect(try EgressRules.parseHostPattern(text).get() == pattern)
    }

    @Test(arguments: [
        ("", "host is empty"),
        ("*", "'*' would allow every host"),
        ("*.", "'*.' would allow every host"),
        ("**.example.com", "a '*' may only stand for the whole first label"),
        ("*.*.example.com", "a '*' may only stand for the whole first label"),
        ("foo*.example.com", "a '*' may only stand for the whole first label"),
        ("a.*", "a '*' may only stand for the whole first label"),
        ("example..com", "has an empty label"),
        (".example.com", "has an empty label"),
        ("-x.example.com", "starts or ends with '-'"),
        ("ex!ample.com", "is not a valid host name"),
        ("bücher.de", "is not ASCII"),
        ("1.2.3", "is not a valid IP address (write IPv4 addresses as four numbers, e.g. 10.0.0.5), and a host name's last label cannot start with a digit"),
        ("example.1com", "a host name's last label cannot start with a digit"),
        ("0x7f.1", "a host name's last label cannot start with a digit"),
        ("01.2.3.4", "is not a valid IP address"),
        ("256.1.1.1", "is not a valid IP address"),
        ("example.com:443", "contains ':'; give ports separately"),
        ("1:2:3:4:5:6:7:8:9", "is not a valid IPv6 address"),
        ("1::2::3", "is not a valid IPv6 address"),
        ("12345::", "is not a valid IPv6 address"),
        (":::1", "is not a valid IPv6 address"),
        ("fe80::1%eth0", "is not a valid IPv6 address"),
        ("[::1]", "write an IPv6 address without brackets"),
        ("10.0.0.0/33", "the prefix length must be a number from 1 to 32"),
        ("fd00::/129", "the prefix length must be a number from 1 to 128"),
        ("10.0.0.0/", "the prefix length must be a number from 1 to 32"),
        ("10.0.0.0/+8", "the prefix length must be a number from 1 to 32"),
        ("10.0.0.1/24", "has address bits set after the /24 prefix; write 10.0.0.0/24"),
        ("::/0", "would allow every address"),
        ("example.com/8", "is not a CIDR block: 'example.com' is not an IP address"),
        ("a\tb", "contains a space or a control character"),
    ])
    func refusedHostPatterns(text: String, fragment: String) {
        let problem = EgressRules.hostPatternProblem(text)
        #expect(problem?.contains(fragment) == true, "\(text.debugDescription): \(problem ?? "accepted")")
    }

    @Test func longNamesAndLabels() {
        let label = String(repeating: "a", count: 63)
        #expect(EgressRules.hostPatternProblem("\(label).example.com") == nil)
        #expect(EgressRules.hostPatternProblem("a\(label).example.com")?.contains("a label longer than 63 characters") == true)
        let long = Array(repeating: label, count: 4).joined(separator: ".")  // 255 characters
        #expect(EgressRules.hostPatternProblem(long)?.contains("longer than 253 characters") == true)
    }

    @Test func ipv6TextForms() {
        #expect(EgressRules.ipv6("::") == [UInt8](repeating: 0, count: 16))
        #expect(EgressRules.ipv6("1::") == [0, 1] + [UInt8](repeating: 0, count: 14))
        #expect(EgressRules.ipv6("1:2:3:4:5:6:7:8") == [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8])
        #expect(EgressRules.ipv6("1:2:3:4:5:6:7::") != nil)
        #expect(EgressRules.ipv6("1:2:3:4:5:6:1.2.3.4") != nil)
        #expect(EgressRules.ipv6("2001:DB8::a") == [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 10) + [0, 0x0A])
        #expect(EgressRules.ipv6("1:2:3:4:5:6:7") == nil)
        #expect(EgressRules.ipv6("1:2:3:4:5:6:7:8::") == nil)
        #expect(EgressRules.ipv6("::1.2.3.4:5") == nil)
        #expect(EgressRules.ipv6("::g") == nil)
        #expect(EgressRules.ipv6("1:") == nil)
    }

    @Test func coverage() {
        let cases: [(String, String, Bool)] = [
            ("api.github.com", "API.GitHub.com.", true),
            ("api.github.com", "github.com", false),
            ("*.github.com", "api.github.com", true),
            ("*.github.com", "a.b.github.com", true),
            ("*.github.com", "github.com", false),
            ("*.github.com", "evilgithub.com", false),
            ("*.github.com", "*.eu.github.com", true),
            ("*.github.com", "*.github.com", true),
            ("*.eu.github.com", "*.github.com", false),
            ("api.github.com", "*.api.github.com", false),
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "10.128.0.0/9", true),
            ("10.128.0.0/9", "10.0.0.0/8", false),
            ("10.0.0.5", "10.0.0.5", true),
            ("10.0.0.0/8", "::ffff:10.0.0.5", true),
            ("::1", "0:0:0:0:0:0:0:1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "10.0.0.1", false),
            ("10.0.0.1", "example.com", false),
            ("*", "example.com", false),
        ]
        for (outer, inner, expected) in cases {
            #expect(EgressRules.covers(outer, inner) == expected, "\(outer) covers \(inner)")
        }
    }

    @Test func methodsPathsHeadersFormatsAndSources() {
        #expect(EgressRules.methodProblem("PROPFIND") == nil)
        #expect(EgressRules.methodProblem("") != nil)
        #expect(EgressRules.methodProblem("GET/") != nil)
        #expect(EgressRules.pathProblem("/") == nil)
        #expect(EgressRules.pathProblem("/repos/**/pulls") == nil)
        #expect(EgressRules.pathProblem("/a#b") != nil)
        #expect(EgressRules.injectionHeaderProblem("X-Api-Key") == nil)
        for refused in ["Proxy-Authorization", "HOST", "content-length", "Transfer-Encoding", "Bad Header", "X:Y", ""] {
            #expect(EgressRules.injectionHeaderProblem(refused) != nil, "\(refused)")
        }
        #expect(EgressRules.injectionFormatProblem("Bearer {}") == nil)
        #expect(EgressRules.injectionFormatProblem("{}") == nil)
        #expect(EgressRules.injectionFormatProblem("{} {}") != nil)
        #expect(EgressRules.injectionFormatProblem("Bearer {}\u{0}") != nil)
        #expect(EgressRules.secretSourceProblem("env:GITHUB_TOKEN") == nil)
        #expect(EgressRules.secretSourceProblem("file:/run/secrets/gh") == nil)
        #expect(EgressRules.secretSourceProblem("env:") != nil)
        #expect(EgressRules.secretSourceProblem("file:") != nil)
        #expect(EgressRules.secretSourceProblem("file:~/.token") != nil)
        #expect(EgressRules.secretSourceProblem("GITHUB_TOKEN") != nil)
        #expect(EgressRules.secretNameProblem("GITHUB_TOKEN") == nil)
        #expect(EgressRules.secretNameProblem("https_proxy") != nil)
        #expect(EgressRules.secretNameProblem("AIRLOCK_CA_CERT") != nil)
    }

    @Test func theGatewayEnvironment() {
        #expect(
            EgressEnvironment.proxyVariables(port: 3128).map(\.name) == EgressEnvironment.proxyVariableNames)
        #expect(EgressEnvironment.caVariables.map(\.name) == EgressEnvironment.caVariableNames)
        #expect(EgressEnvironment.proxyVariables(port: 1).first?.value == "http://127.0.0.1:1")
    }
}
