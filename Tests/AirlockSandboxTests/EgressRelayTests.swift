import Foundation
import Logging
import Synchronization
import Testing

@testable import AirlockCore
@testable import AirlockRuntime

/// The sandbox side of the proxied network, through the runtime API: PID 1 relays
/// `127.0.0.1:<port>` and `[::1]:<port>` to the airlock directory's `egress.sock`, here a
/// Unix-socket echo server standing in for the egress gateway. Everything else stays
/// unreachable, and the airlock directory is read-only inside.
extension SandboxSuite {
@Suite("egress relay")
struct EgressRelayTests {
    static let port = NetworkSpec.defaultProxyPort

    /// A fresh airlock directory (0711) the way the gateway's side makes one, removed afterwards.
    static func withAirlockDirectory(_ body: (String) throws -> Void) throws {
        let dir = "/var/tmp/airlock-relay-\(UInt32.random(in: 1...UInt32.max))"
        #expect(mkdir(dir, 0o711) == 0, "mkdir \(dir): errno \(errno)")
        chmod(dir, 0o711)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n"
            .write(toFile: dir + "/ca.pem", atomically: false, encoding: .utf8)
        chmod(dir + "/ca.pem", 0o644)
        try body(dir)
    }

    static func spec(_ mode: NetworkSpec.Mode, workspace: String, args: [String]) -> SandboxSpec {
        SandboxSpec(
            profile: "test", command: ["python3", "/workspace/probe.py"] + args,
            environment: [EnvironmentVariable("PATH", "/usr/local/bin:/usr/bin:/bin"), EnvironmentVariable("HOME", "/home/agent")],
            workingDirectory: "/workspace",
            filesystem: FilesystemSpec(workspace: WorkspaceGrant(hostPath: workspace, readOnly: false)),
            network: NetworkSpec(mode: mode), limits: Limits(wallClock: .seconds(90)))
    }

    static func runner() -> SandboxRunner {
        var logger = Logger(label: "airlock-test")
        logger.logLevel = .warning
        return SandboxRunner(logger: logger, environment: [:])
    }

    /// Runs probe.py in a sandbox and returns its JSON report and the run's outcome.
    static func probe(
        _ f: Fixture, _ mode: NetworkSpec.Mode, airlock: String?, outside: [String] = []
    ) throws -> ([String: Any], RunOutcome) {
        try f.write("probe.py", probeScript)
        let spec = Self.spec(mode, workspace: f.workspace, args: [mode == .none ? "none" : "proxied", String(port)] + outside)
        let outcome = try Self.runner().run(spec, airlockDirectory: airlock)
        #expect(outcome.status == .exited(0), "probe.py failed: \(outcome.status) \(outcome.execFailure ?? "")")
        let data = try Data(contentsOf: URL(fileURLWithPath: f.path("relay-result.json")))
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (report, outcome)
    }

    static func errnoOf(_ v: Any?) -> Int? { (v as? [String: Any])?["errno"] as? Int }

    @Test func loopbackPortReachesTheGatewaySocketAndNothingElseIsReachable() throws {
        try Self.withAirlockDirectory { dir in
            let gateway = try RelayEchoGateway(path: dir + "/egress.sock")
            defer { gateway.stop() }
            let host = try RelayHostSink()
            defer { host.stop() }
            var outside = ["10.0.0.1:80", "[2001:db8::1]:80"]
            if let ip = Self.hostAddress() { outside.append("\(ip):\(host.port)") }
            try Fixture.with { f in
                let (r, outcome) = try Self.probe(f, .proxied, airlock: dir, outside: outside)
                // Both loopback families, a 1 MiB payload echoed whole (half-close: the client
                // shuts its write side first, then reads everything), and 16 at once.
                #expect(r["v4"] as? Bool == true, "\(r["v4"] ?? "nil")")
                #expect(r["v6"] as? Bool == true, "\(r["v6"] ?? "nil")")
                #expect(r["big"] as? Bool == true, "\(r["big"] ?? "nil")")
                let parallel = r["parallel"] as? [Any] ?? []
                #expect(parallel.count == 16 && parallel.allSatisfy { $0 as? Bool == true }, "\(parallel)")
                // A gateway that answers before reading an upload, then closes: the answer
                // still reaches the client (the relay drains the rest of the upload).
                #expect((r["refusedUpload"] as? String)?.hasPrefix("HTTP/1.1 403 Forbidden") == true, "\(r["refusedUpload"] ?? "nil")")
                #expect(gateway.connections >= 20, "the gateway saw \(gateway.connections) connections")
                #expect(gateway.bytes >= (1 << 20) + 16 * 100_000, "the gateway received \(gateway.bytes) bytes")
                // No other way out: no route to the host's address or anywhere else.
                for target in outside {
                    #expect(Self.errnoOf(r["direct " + target]) == Int(ENETUNREACH), "\(target): \(r["direct " + target] ?? "nil")")
                }
                #expect(host.accepted == 0, "a direct connection reached the host")
                // The relay's port is PID 1's alone.
                #expect(Self.errnoOf(r["hijack"]) == Int(EADDRINUSE), "\(r["hijack"] ?? "nil")")
                // The status line PID 1 writes once it listens is in the timeline.
                #expect(outcome.timeline.marks.contains { $0.0 == "egress" })
                #expect(outcome.warnings.isEmpty, "\(outcome.warnings)")
            }
        }
    }

    @Test func airlockDirectoryIsReadOnlyInside() throws {
        try Self.withAirlockDirectory { dir in
            let gateway = try RelayEchoGateway(path: dir + "/egress.sock")
            defer { gateway.stop() }
            // World-writable on the host, so that only the read-only mount stands in the way.
            chmod(dir, 0o777)
            chmod(dir + "/ca.pem", 0o666)
            try Fixture.with { f in
                let (r, _) = try Self.probe(f, .proxied, airlock: dir)
                #expect(r["listing"] as? [String] == ["ca.pem", "egress.sock"], "\(r["listing"] ?? "nil")")
                #expect(r["isSocket"] as? Bool == true, "\(r["isSocket"] ?? "nil")")
                #expect((r["ca"] as? String)?.contains("not a real one") == true, "\(r["ca"] ?? "nil")")
                for attack in ["create", "writeCA", "replace", "unlink", "plantSocket", "chmod"] {
                    #expect(Self.errnoOf(r[attack]) == Int(EROFS), "\(attack): \(r[attack] ?? "nil")")
                }
                // A rename into it from elsewhere crosses a mount.
                let e = Self.errnoOf(r["replaceFromTmp"])
                #expect(e == Int(EXDEV) || e == Int(EROFS), "replaceFromTmp: \(r["replaceFromTmp"] ?? "nil")")
                let mount = (r["mountinfo"] as? [String])?.first ?? ""
                for option in ["ro", "nosuid", "nodev", "noexec"] {
                    #expect(mount.split(separator: " ").dropFirst(5).first?.split(separator: ",").contains(Substring(option)) == true,
                            "/run/airlock lacks \(option): \(mount)")
                }
                // Still the gateway's socket, and still relayed.
                #expect(r["v4"] as? Bool == true, "\(r["v4"] ?? "nil")")
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            #expect(left == ["ca.pem", "egress.sock"], "the airlock directory changed: \(left)")
        }
    }

    @Test func nothingListensWithoutTheProxiedNetwork() throws {
        try Self.withAirlockDirectory { dir in
            let gateway = try RelayEchoGateway(path: dir + "/egress.sock")
            defer { gateway.stop() }
            try Fixture.with { f in
                // An airlock directory passed with mode none is ignored.
                let (r, outcome) = try Self.probe(f, .none, airlock: dir)
                #expect(Self.errnoOf(r["v4"]) == Int(ECONNREFUSED), "\(r["v4"] ?? "nil")")
                #expect(Self.errnoOf(r["v6"]) == Int(ECONNREFUSED), "\(r["v6"] ?? "nil")")
                #expect(r["airlock"] as? Bool == false, "/run/airlock exists with network mode none")
                #expect(!outcome.timeline.marks.contains { $0.0 == "egress" })
                #expect(gateway.connections == 0)
            }
        }
    }

    @Test func aGatewayThatIsGoneClosesConnectionsAndPID1Survives() throws {
        try Self.withAirlockDirectory { dir in
            // A socket file nobody listens on: connect() is refused.
            let path = dir + "/egress.sock"
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            #expect(RelayEchoGateway.bind(fd, path) == 0, "bind \(path): errno \(errno)")
            close(fd)
            try Fixture.with { f in
                try f.write("probe.py", Self.probeScript)
                let spec = Self.spec(.proxied, workspace: f.workspace, args: ["gone", String(Self.port)])
                let outcome = try Self.runner().run(spec, airlockDirectory: dir)
                #expect(outcome.status == .exited(0))
                let data = try Data(contentsOf: URL(fileURLWithPath: f.path("relay-result.json")))
                let r = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
                for attempt in ["first", "second"] {
                    let v = r[attempt]
                    let closed = v as? Int == 0 || [Int(ECONNRESET), Int(EPIPE)].contains(Self.errnoOf(v) ?? -1)
                    #expect(closed, "\(attempt): \(v ?? "nil")")
                }
                #expect(outcome.warnings.contains { $0.contains("egress gateway's socket") }, "\(outcome.warnings)")
            }
        }
    }

    @Test func connectionsBeyondTheCapAreResetAndPID1Recovers() throws {
        try Self.withAirlockDirectory { dir in
            let gateway = try RelayEchoGateway(path: dir + "/egress.sock")
            defer { gateway.stop() }
            try Fixture.with { f in
                try f.write("probe.py", Self.probeScript)
                let spec = Self.spec(.proxied, workspace: f.workspace, args: ["cap", String(Self.port)])
                let outcome = try Self.runner().run(spec, airlockDirectory: dir)
                #expect(outcome.status == .exited(0), "\(outcome.status)")
                let data = try Data(contentsOf: URL(fileURLWithPath: f.path("relay-result.json")))
                let r = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
                // 1100 held open at once: 1024 relayed, the rest reset; then a fresh one works.
                #expect(r["echoed"] as? Int == 1024, "\(r)")
                #expect(r["refused"] as? Int == 1100 - 1024, "\(r)")
                #expect(r["after"] as? Bool == true, "\(r)")
                #expect(gateway.connections >= 1025, "the gateway saw \(gateway.connections) connections")
            }
        }
    }

    @Test func aProxiedRunNeedsTheAirlockDirectory() throws {
        let spec = Self.spec(.proxied, workspace: "/var/tmp", args: [])
        #expect(throws: AirlockError.self) { try Self.runner().run(spec) }
        #expect(throws: AirlockError.self) { try Self.runner().run(spec, airlockDirectory: "/var/tmp/airlock-relay-missing") }
        var bad = spec
        bad.network.proxyPort = 70000
        #expect(throws: AirlockError.self) { try SandboxRunner.validate(bad) }
    }

    @Test func thePlanCarriesTheBindAndTheRelay() throws {
        var builder = PlanBuilder(host: .live, seccomp: nil, cgroupProcs: [])
        builder.airlockDirectory = "/var/tmp/airlock-x"
        let records = try builder.records(for: Self.spec(.proxied, workspace: "/var/tmp", args: []))
        #expect(records.contains(.bind(source: "/var/tmp/airlock-x", destination: "/run/airlock", flags: [.readOnly, .noSUID, .noDev, .noExec])))
        #expect(records.contains(.landlock(path: "/run/airlock", access: .read, optional: false)))
        #expect(records.contains(.egress(port: 3128, socket: "/run/airlock/egress.sock")))
        let none = try builder.records(for: Self.spec(.none, workspace: "/var/tmp", args: []))
        #expect(!none.contains { if case .egress = $0 { true } else { false } })
        #expect(!none.contains { if case .bind(_, "/run/airlock", _) = $0 { true } else { false } })
        builder.airlockDirectory = nil
        #expect(throws: AirlockError.self) { try builder.records(for: Self.spec(.proxied, workspace: "/var/tmp", args: [])) }
        let bytes = try PlanEncoder.encode([.egress(port: 3128, socket: "/s")])
        #expect(bytes == Array("ALP1".utf8) + [30, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 0x38, 0x0C, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x2F, 0x73])
    }

    /// The host's first non-loopback IPv4 address, if it has one.
    static func hostAddress() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            guard let sa = ifa.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            var addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            var buf = [CChar](repeating: 0, count: 64)
            guard inet_ntop(AF_INET, &addr, &buf, 64) != nil else { continue }
            let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !s.hasPrefix("127.") { return s }
        }
        return nil
    }

    /// Runs inside the sandbox: `probe.py MODE PORT [HOST:PORT…]`; writes relay-result.json.
    static let probeScript = #"""
        import json, os, socket, stat, sys, threading

        MODE, PORT, OUTSIDE = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
        res = {}

        def exchange(family, host, payload, timeout=60):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect((host, PORT))
            err = []
            def send():
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                except OSError as e:
                    err.append(e)
            t = threading.Thread(target=send)
            t.start()
            got = bytearray()
            try:
                while True:
                    b = s.recv(1 << 16)
                    if not b:
                        break
                    got += b
            finally:
                t.join()
                s.close()
            if err:
                raise err[0]
            return bytes(got)

        def check(name, fn):
            try:
                res[name] = fn()
            except OSError as e:
                res[name] = {"errno": e.errno, "error": str(e)}
            except Exception as e:
                res[name] = {"error": repr(e)}

        def echoed(family, host, payload):
            return exchange(family, host, payload) == payload

        def parallel():
            out = [None] * 16
            def one(i):
                p = bytes([65 + i]) * (100000 + i)
                try:
                    out[i] = echoed(socket.AF_INET, "127.0.0.1", p)
                except Exception as e:
                    out[i] = repr(e)
            ts = [threading.Thread(target=one, args=(i,)) for i in range(16)]
            for t in ts: t.start()
            for t in ts: t.join()
            return out

        def direct(target):
            host, port = target.rsplit(":", 1)
            family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((host.strip("[]"), int(port)))
            return "connected"

        def refused_upload():
            s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
            def send():
                try:
                    s.sendall(b"POST /refuse HTTP/1.1\r\n\r\n" + b"u" * (4 << 20))
                except OSError:
                    pass # the gateway stopped reading: expected
            t = threading.Thread(target=send)
            t.start()
            got = bytearray()
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                got += b
            t.join()
            s.close()
            return got.decode()

        def hijack():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", PORT))
            return "bound"

        def create():
            with open("/run/airlock/planted", "w") as fh:
                fh.write("x")
            return "created"

        def replace_from_tmp():
            with open("/tmp/fake.sock", "w") as fh:
                fh.write("x")
            os.rename("/tmp/fake.sock", "/run/airlock/egress.sock")
            return "replaced"

        def plant_socket():
            socket.socket(socket.AF_UNIX).bind("/run/airlock/evil.sock")
            return "bound"

        if MODE == "proxied":
            check("v4", lambda: echoed(socket.AF_INET, "127.0.0.1", b"hello over v4\n"))
            check("v6", lambda: echoed(socket.AF_INET6, "::1", b"hello over v6\n"))
            big = os.urandom(1 << 20)
            check("big", lambda: echoed(socket.AF_INET, "127.0.0.1", big))
            check("parallel", parallel)
            check("refusedUpload", refused_upload)
            check("hijack", hijack)
            check("listing", lambda: sorted(os.listdir("/run/airlock")))
            check("isSocket", lambda: stat.S_ISSOCK(os.stat("/run/airlock/egress.sock").st_mode))
            check("ca", lambda: open("/run/airlock/ca.pem").read())
            check("create", create)
            check("writeCA", lambda: open("/run/airlock/ca.pem", "a").write("x") and "written")
            check("replace", lambda: os.rename("/run/airlock/ca.pem", "/run/airlock/egress.sock") or "replaced")
            check("replaceFromTmp", replace_from_tmp)
            check("unlink", lambda: os.unlink("/run/airlock/egress.sock") or "unlinked")
            check("chmod", lambda: os.chmod("/run/airlock/egress.sock", 0o777) or "changed")
            check("plantSocket", plant_socket)
            check("mountinfo", lambda: [l.strip() for l in open("/proc/self/mountinfo") if " /run/airlock " in l])
        elif MODE == "none":
            check("v4", lambda: echoed(socket.AF_INET, "127.0.0.1", b"x"))
            check("v6", lambda: echoed(socket.AF_INET6, "::1", b"x"))
            res["airlock"] = os.path.exists("/run/airlock")
        elif MODE == "cap":
            held, n_echoed, n_refused = [], 0, 0
            for i in range(1100):
                try:
                    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
                    held.append(s)
                    s.sendall(b"x")
                    if s.recv(1) == b"x":
                        n_echoed += 1
                    else:
                        n_refused += 1
                except OSError:
                    n_refused += 1
            res["echoed"], res["refused"] = n_echoed, n_refused
            for s in held:
                s.close()
            import time
            for attempt in range(1, 101):
                try:
                    if echoed(socket.AF_INET, "127.0.0.1", b"again"):
                        res["after"], res["afterAttempts"] = True, attempt
                        break
                except OSError:
                    time.sleep(0.05)
        elif MODE == "gone":
            check("first", lambda: len(exchange(socket.AF_INET, "127.0.0.1", b"anyone?\n", timeout=10)))
            check("second", lambda: len(exchange(socket.AF_INET6, "::1", b"anyone?\n", timeout=10)))
        for target in OUTSIDE:
            check("direct " + target, lambda: direct(target))

        with open("/workspace/relay-result.json", "w") as fh:
            json.dump(res, fh)
        """#
}
}

/// A stand-in for the egress gateway: a Unix-socket server that echoes each connection
/// until the client shuts its side, then closes. Counts connections and bytes. A
/// connection that starts with `POST /refuse` is answered with a 403 at once and closed
/// with the rest of its upload unread, as a gateway refusing a request does.
final class RelayEchoGateway: Sendable {
    let path: String
    private let fd: Int32
    private let stats = Mutex((connections: 0, bytes: 0))
    private let done = DispatchSemaphore(value: 0)

    init(path: String) throws {
        self.path = path
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0, Self.bind(s, path) == 0, chmod(path, 0o666) == 0, listen(s, 512) == 0 else {
            let e = errno
            if s >= 0 { close(s) }
            throw AirlockError(.system, "cannot serve \(path): errno \(e)")
        }
        fd = s
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var connections: Int { stats.withLock { $0.connections } }
    var bytes: Int { stats.withLock { $0.bytes } }

    /// Wakes the accept loop (shutdown makes accept fail) and waits for it to close the socket.
    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        _ = done.wait(timeout: .now() + 5)
        unlink(path)
    }

    private func acceptLoop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC) // the next sandbox's helper must not hold it open
            stats.withLock { $0.connections += 1 }
            let t = Thread { [self] in echo(c) }
            t.stackSize = 256 << 10
            t.start()
        }
        close(fd)
        done.signal()
    }

    private func echo(_ c: Int32) {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        loop: while true {
            let n = buf.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            stats.withLock { $0.bytes += n }
            if n >= 12, buf[0..<12] == ArraySlice("POST /refuse".utf8) {
                let answer = Array("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".utf8)
                _ = answer.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                break loop
            }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { send(c, $0.baseAddress! + off, n - off, Int32(MSG_NOSIGNAL)) }
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { break loop }
                off += w
            }
        }
        shutdown(c, Int32(SHUT_WR))
        close(c)
    }

    static func bind(_ fd: Int32, _ path: String) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return -1 }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}

/// A TCP listener on every host address that must never see a connection from a sandbox.
final class RelayHostSink: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = 0 // INADDR_ANY: every host address
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = s >= 0 && withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(s, $0, len) == 0 && listen(s, 16) == 0 && getsockname(s, $0, &len) == 0
            }
        }
        guard ok else {
            let e = errno
            if s >= 0 { close(s) }
            throw AirlockError(.system, "cannot listen on the host: errno \(e)")
        }
        fd = s
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Connections waiting to be accepted (the sink never accepts one on purpose).
    var accepted: Int {
        var n = 0
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { break }
            close(c)
            n += 1
        }
        return n
    }

    func stop() { close(fd) }
}
