import AirlockCore
import Testing

@testable import AirlockEgress

@Suite struct HostNameTests {
    @Test func namesAreCanonicalised() throws {
        #expect(try HostName.parse("Example.COM") == .name("example.com"))
        #expect(try HostName.parse("example.com.") == .name("example.com"))
        #expect(try HostName.parse("API.GitHub.com.") == .name("api.github.com"))
        #expect(try HostName.parse("_acme-challenge.example.com") == .name("_acme-challenge.example.com"))
        #expect(try HostName.parse("localhost") == .name("localhost"))
        #expect(try HostName.parse("xn--bcher-kva.example") == .name("xn--bcher-kva.example"))
        #expect(try HostName.parse("1password.com") == .name("1password.com"))
        #expect(try HostName.parse("127.0.0.1.nip.io") == .name("127.0.0.1.nip.io"))
        #expect(try HostName.parse("0x7f.example.com") == .name("0x7f.example.com"))
    }

    @Test func literalsBecomeAddresses() throws {
        #expect(try HostName.parse("127.0.0.1.") == .address(.v4(0x7F00_0001)))
        #expect(try HostName.parse("0X7F.1") == .address(.v4(0x7F00_0001)))
        #expect(try HostName.parse("[::1]") == .address(.v6(0, 1)))
        #expect(try HostName.parse("::1") == .address(.v6(0, 1)))
        #expect(try HostName.parse("[FE80::1%25en0]") == .address(try #require(IPAddress(literal: "fe80::1"))))
        #expect(try HostName.parse("[::1]").description == "::1")
        #expect(try HostName.parse("[::1]").uriHost == "[::1]")
        #expect(try HostName.parse("127.1").uriHost == "127.0.0.1")
    }

    @Test(arguments: [
        ("", "empty"), ("exämple.com", "ASCII"), ("a..b", "empty label"), (".example.com", "empty label"),
        ("example.com..", "empty label"), ("exa mple.com", "' '"), ("*.example.com", "'*'"), ("example.com/x", "'/'"),
        ("[127.0.0.1]", "IPv6"), ("example.com:443", "IPv6"), ("1.2.3.4.5", "IP address"), ("0x1g", "IP address"),
        ("foo.123", "IP address"), ("exa%6dple.com", "IPv6"), (String(repeating: "a", count: 64) + ".com", "63"),
        (Array(repeating: "abcdefghi", count: 26).joined(separator: "."), "253"), ("a\u{0}b", "'"),
    ])
    func invalidHostsAreRefusedWithAReason(_ raw: String, _ mention: String) {
        do {
            let host = try HostName.parse(raw)
            Issue.record("\(raw.debugDescription) parsed as \(host)")
        } catch {
            #expect(error.code == .denied)
            #expect(error.message.contains(mention), "\(error.message)")
        }
    }

    @Test func longestNameIsAccepted() throws {
        let labels = Array(repeating: String(repeating: "a", count: 63), count: 3) + [String(repeating: "b", count: 61)]
        let name = labels.joined(separator: ".")
        #expect(name.utf8.count == 253)
        #expect(try HostName.parse(name) == .name(name))
        #expect(try HostName.parse(name + ".") == .name(name))
    }
}
