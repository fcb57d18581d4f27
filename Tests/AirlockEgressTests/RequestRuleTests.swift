import AirlockCore
import Testing

@testable import AirlockEgress

@Suite struct RequestRuleTests {
    static let github = EgressRule(host: "api.github.com", methods: ["GET", "POST"], paths: ["/repos/acme/**", "/user"])

    func decide(_ p: EgressPolicy, _ method: String, _ path: String, host h: String = "api.github.com", port: Int = 443) throws
        -> EgressDecision
    {
        p.decide(host: try parsedHost(h), port: port, method: method, path: path)
    }

    @Test func methodAndPathMustBothMatch() throws {
        let p = try makePolicy(allow: [Self.github])
        #expect(try decide(p, "GET", "/repos/acme/widget").allowed)
        #expect(try decide(p, "GET", "/repos/acme/widget/issues/1").allowed)
        #expect(try decide(p, "GET", "/repos/acme").allowed)
        #expect(try decide(p, "GET", "/repos/acme/").allowed)
        #expect(try decide(p, "POST", "/user").allowed)
        #expect(try decide(p, "get", "/user").allowed)
        #expect(try decide(p, "GET", "/repos/acme/widget?next=/../../evil#x").allowed)
        #expect(try decide(p, "GET", "/repos/%61cme/widget").allowed)

        let wrongMethod = try decide(p, "DELETE", "/repos/acme/widget")
        #expect(!wrongMethod.allowed && wrongMethod.rule == nil)
        #expect(wrongMethod.reason.contains("DELETE /repos/acme/widget is not allowed on api.github.com:443"))
        #expect(wrongMethod.reason.contains(Self.github.label))
        #expect(wrongMethod.hint?.contains("methods: [DELETE]") == true)
        #expect(!(try decide(p, "GET", "/repos/other/widget")).allowed)
        #expect(!(try decide(p, "GET", "/repos/acmeco/widget")).allowed)
        #expect(!(try decide(p, "GET", "/user/keys")).allowed)
        #expect(!(try decide(p, "GET", "/Repos/acme/widget")).allowed)
        #expect(!(try decide(p, "GET", "/repos/acme/widget", port: 8080)).allowed)
        #expect(try decide(p, "GET", "/repos/acme/widget", host: "github.com").reason == "no allow rule matches github.com:443")
    }

    @Test(arguments: [
        ("/repos/acme/../../evil", "dot segment"),
        ("/repos/acme/%2e%2e/x", "dot segment"),
        ("/repos/acme/%2E%2E/%2E%2E/evil", "dot segment"),
        ("/repos/acme/.%2e/x", "dot segment"),
        ("/repos/acme/..;/..;/evil", "dot segment"),
        ("/repos/acme/..%3b/evil", "dot segment"),
        ("/repos/acme/./x", "dot segment"),
        ("/repos/acme/...", "dot segment"),
        ("/repos/acme%2Fx", "encoded '/'"),
        ("/repos/acme%2f..%2f..%2fevil", "encoded '/'"),
        ("/repos/acme%5c..%5cevil", "encoded '/'"),
        ("/repos/acme/%252e%252e/x", "twice"),
        ("/repos//acme/x", "empty segment"),
        ("/repos/acme/x\\..\\y", "'\\'"),
        ("/repos/acme/a b", "' '"),
        ("/repos/acme/caf\u{e9}", "non-ASCII"),
        ("/repos/acme/%zz", "two hex digits"),
        ("/repos/acme/%4", "two hex digits"),
        ("/repos/acme/%00", "NUL"),
        ("/repos/acme/%c0%ae%c0%ae/x", "UTF-8"),
        ("/repos/acme/%e0%80%ae/x", "UTF-8"),
        ("/repos/acme/%ff", "UTF-8"),
        ("repos/acme/x", "start with '/'"),
        ("*", "names no path"),
    ])
    func traversalAndAmbiguousPathsAreRefused(_ path: String, _ mention: String) throws {
        let p = try makePolicy(allow: [Self.github])
        let d = try decide(p, "GET", path)
        #expect(!d.allowed)
        #expect(d.reason.contains(mention), "\(d.reason)")
    }

    @Test func pathsPlayNoPartWithoutPathRules() throws {
        let p = try makePolicy(allow: [EgressRule(host: "example.com")], deny: [EgressRule(host: "example.com", methods: ["DELETE"])])
        #expect(try decide(p, "GET", "/a/../b", host: "example.com").allowed)
        #expect(try decide(p, "GET", "//x", host: "example.com").allowed)
        #expect(try decide(p, "OPTIONS", "*", host: "example.com").allowed)
        let deleted = try decide(p, "delete", "/x", host: "example.com")
        #expect(!deleted.allowed && deleted.rule == "deny:example.com DELETE")
        #expect(!(try decide(p, "GE T", "/x", host: "example.com")).allowed)
        #expect(!(try decide(p, "", "/x", host: "example.com")).allowed)
    }

    @Test func denyPathsCannotBeSidesteppedByCaseParametersOrEncoding() throws {
        let p = try makePolicy(
            allow: [EgressRule(host: "api.example.com")],
            deny: [EgressRule(host: "api.example.com", paths: ["/admin/**", "/v1/*/secrets"])])
        for path in [
            "/admin", "/admin/", "/admin/users", "/ADMIN/users", "/Admin", "/admin;jsessionid=1/users", "/%61dmin/users",
            "/admin%3Bx/users", "/v1/acme/secrets", "/v1/acme/SECRETS/", "/v1/acme/secrets;x", "//admin", "/x/../admin",
            "/%2e%2e/admin",
        ] {
            let d = try decide(p, "GET", path, host: "api.example.com")
            #expect(!d.allowed, "\(path)")
            #expect(d.rule?.hasPrefix("deny:api.example.com") == true, "\(path)")
        }
        for path in ["/", "/administrator", "/public/admin", "/v1/acme/secret", "/v1/acme/b/secrets"] {
            #expect(try decide(p, "GET", path, host: "api.example.com").allowed, "\(path)")
        }
    }

    @Test func denyRulesWithMethodsAndPaths() throws {
        let p = try makePolicy(
            allow: [EgressRule(host: "*.example.com")],
            deny: [EgressRule(host: "api.example.com", methods: ["DELETE", "PUT"], paths: ["/repos/**"])])
        #expect(!(try decide(p, "DELETE", "/repos/x", host: "api.example.com")).allowed)
        #expect(!(try decide(p, "put", "/Repos/x", host: "api.example.com")).allowed)
        #expect(try decide(p, "GET", "/repos/x", host: "api.example.com").allowed)
        #expect(try decide(p, "DELETE", "/users/x", host: "api.example.com").allowed)
        #expect(try decide(p, "DELETE", "/repos/x", host: "www.example.com").allowed)
    }

    @Test func segmentGlobs() throws {
        let p = try makePolicy(allow: [
            EgressRule(host: "example.com", paths: ["/repos/*/issues", "/files/*.tar.gz", "/a/**/z", "/exact", "/"])
        ])
        func ok(_ path: String) throws -> Bool { try decide(p, "GET", path, host: "example.com").allowed }
        #expect(try ok("/repos/x/issues"))
        #expect(try ok("/repos/x-y.z/issues"))
        #expect(try !ok("/repos/x/y/issues"))
        #expect(try !ok("/repos/x/issues/1"))
        #expect(try ok("/files/v1.tar.gz"))
        #expect(try ok("/files/.tar.gz"))
        #expect(try !ok("/files/v1.tar.gz.sig"))
        #expect(try !ok("/files/v1/x.tar.gz"))
        #expect(try ok("/a/z"))
        #expect(try ok("/a/b/z"))
        #expect(try ok("/a/b/c/d/z"))
        #expect(try !ok("/a/b/c"))
        #expect(try !ok("/a/z/b"))
        #expect(try ok("/exact"))
        #expect(try !ok("/exact/"))
        #expect(try !ok("/exactly"))
        #expect(try ok("/"))
        #expect(try ok("/?q=1"))
    }

    @Test func pathNormalisation() throws {
        func text(_ raw: String) -> String? { try? RequestPath.normalize(raw).get().text }
        #expect(text("/a/b") == "/a/b")
        #expect(text("/%7Euser/%41%2d%5f") == "/~user/A-_")
        #expect(text("/a%3bb/%c3%A9") == "/a%3Bb/%C3%A9")
        #expect(text("/a/b/?x") == "/a/b/")
        #expect(text("/a#frag") == "/a")
        #expect(text("/") == "/")
        #expect(text("/a;b=c/@:!$&'()*+,=") == "/a;b=c/@:!$&'()*+,=")
        #expect(text("/a/%25/b") == "/a/%25/b")
        #expect(text("/a/%25zz") == "/a/%25zz")
        #expect(text("/a/%252F") == nil)
        #expect(text("/" + String(repeating: "a", count: 9000)) == nil)
        #expect(text("/.well-known/x") == "/.well-known/x")
        #expect(text("/a..b/..c/c..") == "/a..b/..c/c..")
    }

    @Test func pathGlobsAreLinearEnough() {
        // Many stars against a long non-matching path: the matcher backtracks once per star.
        let pattern = try? PathPattern("/**/" + String(repeating: "*a", count: 30) + "b")
        let path = RequestPath([Array(repeating: UInt8(ascii: "a"), count: 4000)[...]])
        #expect(pattern?.matches(path) == false)
    }
}
