import AirlockTestSupport
import Foundation
import Testing

/// The proxied network mode end to end: `airlock run` with real clients (curl, Python)
/// inside the sandbox, the gateway on the host, and a real HTTP/HTTPS upstream on the
/// host's loopback reached through explicit test rules (`network.hosts` pins the test
/// names to 127.0.0.1, and a rule naming 127.0.0.1 lets the gateway connect there).
extension SandboxSuite {
@Suite("egress")
struct EgressTests {
    /// One upstream and one policy for a test; the upstream stops when the body returns.
    static func with(_ body: (Fixture, TestUpstream) throws -> Void) throws {
        try Fixture.with { f in
            try FileManager.default.createDirectory(atPath: f.path("pki"), withIntermediateDirectories: true)
            let pki = try TestPKI.make(in: f.path("pki"), names: ["upstream.test", "api.test"])
            let upstream = try TestUpstream(directory: f.workspace, tls: pki)
            defer { upstream.stop() }
            let runBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: "/run/airlock")) ?? [])
            try f.write("policy.yaml", policy(http: upstream.httpPort, https: upstream.httpsPort!, ca: pki.ca))
            try body(f, upstream)
            // The airlock directory (socket, CA certificate) is gone after every run.
            let runAfter = Set((try? FileManager.default.contentsOfDirectory(atPath: "/run/airlock")) ?? [])
            #expect(runAfter.subtracting(runBefore).isEmpty, "left in /run/airlock: \(runAfter.subtracting(runBefore))")
        }
    }

    static func policy(http: Int, https: Int, ca: String) -> String {
        """
        profiles:
          net:
            extends: default
            network:
              mode: proxied
              allow:
                - { host: upstream.test, ports: [\(http), \(https)] }
                - { host: "*.wild.test", ports: [\(http)] }
                - { host: 127.0.0.1, ports: [\(http), \(https)] }
                - host: api.test
                  ports: [\(https)]
                  methods: [GET]
                  paths: ["/repos/acme/**"]
              inspect_tls: [api.test]
              hosts:
                upstream.test: 127.0.0.1
                api.test: 127.0.0.1
                a.wild.test: 127.0.0.1
                wild.test: 127.0.0.1
                other.test: 127.0.0.1
              upstream_ca: \(ca)
            secrets:
              - name: API_TOKEN
                from: env:API_TOKEN
                inject: { host: api.test, header: Authorization, format: "Bearer {}" }
          strict:
            extends: default
            network:
              mode: proxied
              allow:
                - { host: upstream.test, ports: [\(http)] }
                - { host: "*.wild.test", ports: [\(http)] }
                - { host: localhost, ports: [\(http)] }
              hosts:
                upstream.test: 127.0.0.1
                meta.wild.test: 169.254.169.254
                mapped.wild.test: "::ffff:127.0.0.1"
          budget:
            extends: net
            network:
              budgets: { requests_per_minute: 3 }
        """
    }

    static let realToken = "tok_\(UInt64.random(in: 1 << 40 ... 1 << 50))_real_api_token"

    func run(_ f: Fixture, _ profile: String, _ script: String, extra: [String] = [], env: [String: String] = [:]) throws -> Airlock.Result {
        try f.run(
            ["run", "--policy", f.path("policy.yaml"), "--profile", profile] + extra + ["--", "/bin/sh", "-c", script],
            environment: ["API_TOKEN": Self.realToken].merging(env) { $1 })
    }

    @Test func allowedHostWorksWithCurlAndPythonAndEveryRequestIsRecorded() throws {
        try Self.with { f, up in
            let events = f.path("events.jsonl")
            let r = try run(f, "net", """
                curl -sS --fail http://upstream.test:\(up.httpPort)/hello?x=1 && echo &&
                python3 -c 'import urllib.request, json; print(json.load(urllib.request.urlopen("http://upstream.test:\(up.httpPort)/py"))["path"])' &&
                curl -sS --fail --cacert /workspace/pki/ca.pem https://upstream.test:\(up.httpsPort!)/tunnel
                """, extra: ["--events", events])
            #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
            let seen = up.requests()
            #expect(seen.map { $0["path"] as? String } == ["/hello", "/py", "/tunnel"])
            #expect((seen.first?["headers"] as? [String: String])?["host"] == "upstream.test:\(up.httpPort)")
            #expect(seen.last?["tls"] as? Bool == true)
            let recorded = try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n").compactMap {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            let requests = recorded.filter { $0["type"] as? String == "egress.request" }
            #expect(requests.count == 2)
            let first = try #require(requests.first)
            #expect(first["server.address"] as? String == "upstream.test")
            #expect(first["network.peer.address"] as? String == "127.0.0.1")
            #expect(first["http.request.method"] as? String == "GET")
            #expect(first["url.path"] as? String == "/hello")
            #expect(first["airlock.decision"] as? String == "allow")
            #expect((first["airlock.egress.bytes_in"] as? Int ?? 0) > 0)
            let tunnel = try #require(recorded.first { $0["type"] as? String == "egress.connection" })
            #expect(tunnel["tls.client.server_name"] as? String == "upstream.test")
            #expect(tunnel["airlock.decision"] as? String == "allow")
        }
    }

    @Test func unlistedHostAndWildcardApexAreRefusedWithAnActionable403() throws {
        try Self.with { f, up in
            let r = try run(f, "net", """
                curl -sS -o /dev/null -w '%{http_code}\\n' http://a.wild.test:\(up.httpPort)/ok
                curl -sS -w '\\n%{http_code}\\n' http://other.test:\(up.httpPort)/no
                curl -sS -o /dev/null -w '%{http_code}\\n' http://wild.test:\(up.httpPort)/apex
                curl -sS -o /dev/null -w '%{http_code}\\n' http://a.wild.test:\(up.httpPort + 1)/port
                """)
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "200")
            #expect(r.stdout.contains("no allow rule"), "\(r.stdout)")
            #expect(r.stdout.contains("--allow-host") || r.stdout.contains("network.allow"), "\(r.stdout)")
            #expect(lines.suffix(3) == ["403", "403", "403"], "\(lines)")
            #expect(up.requests().map { $0["path"] as? String } == ["/ok"])
        }
    }

    @Test func everyLoopbackSpellingAndEveryNameResolvingToASpecialAddressIsRefused() throws {
        try Self.with { f, up in
            let p = up.httpPort
            let targets = [
                "127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::1]", "127.0.0.1",
                "169.254.169.254", "0", "localhost", "meta.wild.test", "mapped.wild.test",
            ]
            // --noproxy '': curl would otherwise skip the proxy for what it sees as loopback
            // (NO_PROXY), and fail with no route; here every attempt must reach the gateway.
            let script = targets.map { "curl -sS --noproxy '' -o /dev/null -w '\($0) %{http_code}\\n' http://\($0):\(p)/x" }.joined(separator: "\n")
                + "\ncurl -sS -o /dev/null -w 'named %{http_code}\\n' http://upstream.test:\(p)/named"
                + "\ncurl -sS --noproxy '' http://0x7f.0.0.1:\(p)/why"
                + "\ncurl -sS --noproxy '' http://localhost:\(p)/why"
            let r = try run(f, "strict", script)
            for t in targets { #expect(r.stdout.contains("\(t) 403"), "\(t): \(r.stdout)") }
            // A name pinned to loopback is refused too: no rule names 127.0.0.1.
            #expect(r.stdout.contains("named 403"), "\(r.stdout)")
            // Refusals name the canonical address, and the class of a resolved one.
            #expect(r.stdout.contains("no allow rule matches 127.0.0.1:\(p)"), "\(r.stdout)")
            #expect(r.stdout.contains("loopback"), "\(r.stdout)")
            #expect(up.requests().isEmpty, "\(up.requests())")
        }
    }

    @Test func sniThatDoesNotMatchTheConnectHostIsRefused() throws {
        try Self.with { f, up in
            let r = try run(f, "net", """
                python3 - <<'EOF'
                import socket, ssl
                s = socket.create_connection(("127.0.0.1", 3128))
                s.sendall(b"CONNECT upstream.test:\(up.httpsPort!) HTTP/1.1\\r\\nHost: upstream.test\\r\\n\\r\\n")
                print(s.recv(100).split(b"\\r\\n")[0].decode())
                ctx = ssl.create_default_context(cafile="/workspace/pki/ca.pem")
                ctx.check_hostname = False
                try:
                    t = ctx.wrap_socket(s, server_hostname="evil.test")
                    t.sendall(b"GET /fronted HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n")
                    print("answer", t.recv(100))
                except (ssl.SSLError, ConnectionError, OSError) as e:
                    print("refused", type(e).__name__)
                EOF
                """)
            #expect(r.stdout.contains("HTTP/1.1 200"), "\(r.stdout + r.stderr)")
            #expect(r.stdout.contains("refused"), "\(r.stdout + r.stderr)")
            #expect(up.requests().isEmpty)
        }
    }

    @Test func inspectedHostEnforcesMethodAndPathAndGetsTheRealCredential() throws {
        try Self.with { f, up in
            let s = up.httpsPort!
            let r = try run(f, "net", """
                echo "env=$API_TOKEN"
                curl -sS --fail -H "Authorization: Bearer $API_TOKEN" https://api.test:\(s)/repos/acme/quiet -w 'get %{http_code}\\n'
                curl -sS -X POST -d x=1 https://api.test:\(s)/repos/acme/widget -o /dev/null -w 'post %{http_code}\\n'
                curl -sS https://api.test:\(s)/repos/other/x -o /dev/null -w 'other %{http_code}\\n'
                curl -sS --path-as-is https://api.test:\(s)/repos/acme/../../admin -o /dev/null -w 'traversal %{http_code}\\n'
                curl -sS -H "Authorization: Bearer $API_TOKEN" http://upstream.test:\(up.httpPort)/elsewhere -o /dev/null -w 'elsewhere %{http_code}\\n'
                curl -sS -H "Authorization: Bearer $API_TOKEN" https://api.test:\(s)/repos/acme/echo; echo "echo=$?"
                test -e /run/airlock/ca.pem && ! grep -q PRIVATE /run/airlock/ca.pem && echo ca-ok
                """)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("env=airlock-placeholder-API_TOKEN"), "\(r.stdout)")
            // The sandbox never sees the real value, not even when the upstream echoes it back.
            #expect(!r.stdout.contains(Self.realToken))
            #expect(!r.stdout.contains("echo=0"), "\(r.stdout)")
            for line in ["ok\nget 200", "post 403", "other 403", "traversal 403", "elsewhere 200", "ca-ok"] {
                #expect(r.stdout.contains(line), "\(line): \(r.stdout)\n\(r.stderr)")
            }
            let seen = up.requests()
            #expect(seen.map { $0["path"] as? String } == ["/repos/acme/quiet", "/elsewhere", "/repos/acme/echo"])
            #expect((seen.first?["headers"] as? [String: String])?["authorization"] == "Bearer \(Self.realToken)")
            // Plain HTTP to another host: the placeholder stays a placeholder.
            #expect((seen[1]["headers"] as? [String: String])?["authorization"] == "Bearer airlock-placeholder-API_TOKEN")
        }
    }

    @Test func secretsAreBlockedInUrlHeaderJsonBodyAndBase64() throws {
        try Self.with { f, up in
            let secret = "s3cr3t-\(UInt64.random(in: 1 << 40 ... 1 << 50))-value"
            let p = up.httpPort
            let r = try run(f, "net", """
                B64=$(printf %s "$LEAK" | base64 -w0)
                curl -sS -o /dev/null -w 'url %{http_code}\\n' "http://upstream.test:\(p)/q?k=$LEAK"
                curl -sS -o /dev/null -w 'header %{http_code}\\n' -H "X-Key: $LEAK" http://upstream.test:\(p)/h
                curl -sS -o /dev/null -w 'json %{http_code}\\n' -H 'Content-Type: application/json' -d "{\\"k\\": \\"$LEAK\\"}" http://upstream.test:\(p)/j
                curl -sS -o /dev/null -w 'base64 %{http_code}\\n' -d "data=$B64" http://upstream.test:\(p)/b
                curl -sS -o /dev/null -w 'awskey %{http_code}\\n' -d "k=AKIAIOSFODNN7EXAMPLE" http://upstream.test:\(p)/a
                curl -sS -o /dev/null -w 'clean %{http_code}\\n' -d 'hello=world' http://upstream.test:\(p)/c
                """, extra: ["--secret", "LEAK"], env: ["LEAK": secret])
            for line in ["url 403", "header 403", "json 403", "base64 403", "awskey 403", "clean 200"] {
                #expect(r.stdout.contains(line), "\(line): \(r.stdout)\n\(r.stderr)")
            }
            #expect(up.requests().map { $0["path"] as? String } == ["/c"])
        }
    }

    @Test func requestBudgetRefusesOnceSpent() throws {
        try Self.with { f, up in
            let r = try run(f, "budget", """
                for i in 1 2 3 4 5; do curl -sS -o /dev/null -w '%{http_code}\\n' http://upstream.test:\(up.httpPort)/$i; done
                """)
            #expect(r.stdout.split(separator: "\n") == ["200", "200", "200", "429", "429"], "\(r.stdout)")
            #expect(up.requests().count == 3)
        }
    }

    @Test func aProcessIgnoringTheProxyHasNoRoute() throws {
        try Self.with { f, up in
            let r = try run(f, "net", """
                env -u HTTP_PROXY -u http_proxy -u ALL_PROXY -u all_proxy curl -sS -m 5 http://127.0.0.1:\(up.httpPort)/direct; echo "loopback=$?"
                python3 -c '
                import socket
                for host in ("10.0.0.1", "1.1.1.1"):
                    try:
                        socket.create_connection((host, \(up.httpPort)), timeout=3); print(host, "connected")
                    except OSError as e:
                        print(host, "errno", e.errno)
                '
                """)
            #expect(r.stdout.contains("loopback=7"), "\(r.stdout + r.stderr)")  // connection refused: the sandbox's own loopback
            #expect(r.stdout.contains("10.0.0.1 errno 101"), "\(r.stdout)")  // ENETUNREACH
            #expect(r.stdout.contains("1.1.1.1 errno 101"), "\(r.stdout)")
            #expect(up.requests().isEmpty)
        }
    }

    @Test func rootlessProxiedRunWorksAndLeavesNothingBehind() throws {
        try Self.with { f, up in
            chown(f.workspace, 65534, 65534)
            let xdg = "/var/tmp/airlock-test-xdg-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: xdg, withIntermediateDirectories: false)
            chown(xdg, 65534, 65534)
            chmod(xdg, 0o700)
            defer { try? FileManager.default.removeItem(atPath: xdg) }
            let r = try f.run(
                ["run", "--policy", f.path("policy.yaml"), "--profile", "net", "--", "/bin/sh", "-c",
                 "id -u; curl -sS --fail http://upstream.test:\(up.httpPort)/rootless"],
                environment: ["XDG_RUNTIME_DIR": xdg, "API_TOKEN": Self.realToken], asUser: 65534)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(up.requests().map { $0["path"] as? String } == ["/rootless"])
            let left = (try? FileManager.default.contentsOfDirectory(atPath: xdg + "/airlock")) ?? ["(no airlock directory)"]
            #expect(left.isEmpty, "left behind: \(left)")
        }
    }

    @Test func allowHostFlagOpensOneHostForOneRun() throws {
        try Fixture.with { f in
            let r = try f.run(["run", "--allow-host", "example.invalid", "--", "/bin/sh", "-c", "echo $HTTPS_PROXY; curl -sS -o /dev/null -w '%{http_code}\\n' http://other.invalid/"])
            #expect(r.stdout.contains("http://127.0.0.1:3128"), "\(r.stdout + r.stderr)")
            #expect(r.stdout.contains("403"), "\(r.stdout + r.stderr)")
        }
    }
}
}
