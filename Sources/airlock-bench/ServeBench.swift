// `airlock-bench serve`: the sandbox round trip through the control API — create, exec
// /bin/true, delete — against a real `airlock serve` on its Unix socket, side by side with
// `airlock run -- /bin/true` and `bwrap --unshare-all … /bin/true` in the same run.
//
//   swift build -c release --product airlock-bench --product airlock --product airlock-sandbox
//   .build/release/airlock-bench serve [--runs N] [--clients C] [--seconds S]
//
// One client (a keep-alive connection, as HTTP client libraries use; every 4th round trip also
// with a new connection per request): p50 and p99 of each request and of the round trip.
// Concurrent clients (a keep-alive connection each): sandboxes per second (complete round
// trips) for S seconds. Targets on a 2-core machine: p50 < 10 ms per round trip, >= 100
// sandboxes/s.
import AirlockControl
import AirlockCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    private var failures: [String] = []
    private var samples: [UInt64] = []
    func add(_ ns: UInt64) { lock.lock(); n += 1; samples.append(ns); lock.unlock() }
    func fail(_ s: String) { lock.lock(); if failures.count < 5 { failures.append(s) }; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return n }
    var errors: [String] { lock.lock(); defer { lock.unlock() }; return failures }
    var all: [UInt64] { lock.lock(); defer { lock.unlock() }; return samples }
}

/// How a round trip reaches the daemon: a keep-alive connection (as HTTP client libraries and
/// the SDK do) or a new connection per request.
typealias Send = (_ method: String, _ path: String, _ body: [UInt8]?) throws(AirlockError) -> ControlClient.Reply

/// One create + exec /bin/true + delete; the three durations in ns.
func roundTrip(_ send: Send) throws -> (UInt64, UInt64, UInt64) {
    let t0 = now()
    let c = try send("POST", "/v1/sandboxes", Array(#"{"profile":"default"}"#.utf8))
    guard c.status == 201, let id = c.json?["id"] as? String else { throw AirlockError(.system, "create: \(c.status) \(c.text)") }
    let t1 = now()
    let e = try send("POST", "/v1/sandboxes/\(id)/exec", Array(#"{"command":["/bin/true"]}"#.utf8))
    guard e.status == 200, e.json?["exit_code"] as? Int == 0 else { throw AirlockError(.system, "exec: \(e.status) \(e.text)") }
    let t2 = now()
    let d = try send("DELETE", "/v1/sandboxes/\(id)", nil)
    guard d.status == 200 else { throw AirlockError(.system, "delete: \(d.status) \(d.text)") }
    let t3 = now()
    return (t1 - t0, t2 - t1, t3 - t2)
}

func keepAlive(_ client: ControlClient) -> Send {
    let connection = client.connection()
    return { (m, p, b) throws(AirlockError) in try connection.request(m, p, body: b) }
}

func perRequest(_ client: ControlClient) -> Send {
    { (m, p, b) throws(AirlockError) in try client.request(m, p, body: b) }
}

func serveBenchmark(runs: Int, clients: Int, seconds: Double, rootless: Bool) -> Int32 {
    let dir = selfDirectory()
    let airlock = dir + "/airlock"
    guard access(airlock, X_OK) == 0, access(dir + "/airlock-sandbox", X_OK) == 0 else {
        print("airlock-bench: \(airlock) or airlock-sandbox not found; build them: swift build -c release --product airlock --product airlock-sandbox")
        return 2
    }
    let base = "/var/tmp/airlock-bench-serve-\(getpid())"
    let state = base + "/state"
    mkdir(base, 0o755)
    // Rootless (uid 65534): no cgroups at all, which shows what cgroup v1 task migration
    // (an RCU grace period per sandbox, serialised host-wide) costs on this host.
    if rootless { chown(base, 65534, 65534) }
    let socket = state + "/airlock.sock"
    var pid: pid_t = 0
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let setpriv = which("setpriv") ?? "/usr/bin/setpriv"
    let args: [String] = (rootless ? [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"] : []) + [airlock, "serve", "--state-dir", state]
    let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    let env: [String] = ["PATH=/usr/bin:/bin", "HOME=" + (rootless ? base : "/root")]
    let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
    guard posix_spawn(&pid, args[0], &actions, nil, argv, envp) == 0 else { print("airlock-bench: cannot start airlock serve"); return 2 }
    posix_spawn_file_actions_destroy(&actions)
    defer {
        kill(pid, SIGTERM)
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        _ = system("rm -rf '\(base)'")
    }
    let client = ControlClient(socket: socket)
    var up = false
    for _ in 0..<500 {
        if let r = try? client.request("GET", "/v1/health", timeout: 1), r.status == 200 { up = true; break }
        usleep(10_000)
    }
    guard up else { print("airlock-bench: airlock serve did not come up"); return 2 }

    print("serve benchmark: \(ProcessInfo.processInfo.activeProcessorCount) CPUs; airlock serve\(rootless ? " as uid 65534 (rootless: no cgroups)" : "") on its Unix socket, profile default")
    print("  (every namespace, cgroup limits, seccomp, Landlock, a tmpfs workspace; HTTP/1.1 keep-alive, one connection per client)")
    let send = keepAlive(client)
    for _ in 0..<10 { _ = try? roundTrip(send) }

    // One client, round trips interleaved with airlock run and bwrap.
    var create: [UInt64] = [], exec: [UInt64] = [], delete: [UInt64] = [], total: [UInt64] = []
    var runTimes: [UInt64] = [], bwrapTimes: [UInt64] = [], fresh: [UInt64] = []
    let ws = base + "/run-ws"
    mkdir(ws, 0o755)
    let runCmd = Command(name: "airlock run", argv: [airlock, "run", "--no-audit", "--workspace", ws, "--", "/bin/true"])
    let bwrap = which("bwrap").map { Command(name: "bwrap", argv: [$0, "--unshare-all", "--ro-bind", "/", "/", "/bin/true"]) }
    for i in 0..<runs {
        do {
            let (c, e, d) = try roundTrip(send)
            create.append(c); exec.append(e); delete.append(d); total.append(c + e + d)
        } catch { print("  round trip failed: \(error)"); return 1 }
        if i % 4 == 0 {
            do {
                let (c, e, d) = try roundTrip(perRequest(client))
                fresh.append(c + e + d)
            } catch { print("  round trip failed: \(error)"); return 1 }
            runTimes.append(timed(runCmd).0)
            if let bwrap { bwrapTimes.append(timed(bwrap).0) }
        }
    }
    print("\none client: \(runs) round trips (create, exec /bin/true, delete); every 4th also without keep-alive, airlock run and bwrap")
    print("  " + pad("", 44) + lpad("p50 ms", 9) + lpad("p99 ms", 9))
    func row(_ name: String, _ xs: [UInt64]) { print("  " + pad(name, 44) + lpad(fmt(percentile(xs, 0.5)), 9) + lpad(fmt(percentile(xs, 0.99)), 9)) }
    row("POST /v1/sandboxes (create)", create)
    row("POST /v1/sandboxes/{id}/exec (/bin/true)", exec)
    row("DELETE /v1/sandboxes/{id}", delete)
    row("round trip through the API", total)
    row("  the same, a new connection per request", fresh)
    row("airlock run --no-audit -- /bin/true", runTimes)
    if bwrap != nil { row("bwrap --unshare-all -- /bin/true", bwrapTimes) }
    let p50 = percentile(total, 0.5)
    let bw = percentile(bwrapTimes, 0.5)
    if bwrap != nil { print("  round trip / bwrap: \(fmt(p50 / bw))x; exec alone / bwrap: \(fmt(percentile(exec, 0.5) / bw))x") }
    print("  round trip / airlock run: \(fmt(p50 / percentile(runTimes, 0.5)))x")

    // Concurrent clients.
    let done = Counter()
    let deadline = now() + UInt64(seconds * 1e9)
    let started = now()
    var threads: [Thread] = []
    for _ in 0..<clients {
        let t = Thread {
            let send = keepAlive(client)
            while now() < deadline {
                let t0 = now()
                do {
                    _ = try roundTrip(send)
                    done.add(now() - t0)
                } catch { done.fail("\(error)") }
            }
        }
        t.stackSize = 1 << 20
        threads.append(t)
        t.start()
    }
    for t in threads { while !t.isFinished { usleep(5000) } }
    let elapsed = Double(now() - started) / 1e9
    let rate = Double(done.count) / elapsed
    print("\n\(clients) concurrent clients for \(fmt(elapsed, 1)) s: \(done.count) round trips, \(fmt(rate, 1)) sandboxes/s; round trip p50 \(fmt(percentile(done.all, 0.5))) ms, p99 \(fmt(percentile(done.all, 0.99))) ms")
    for e in done.errors { print("  error: \(e)") }

    print("\ntargets")
    let ok1 = p50 < 10, ok2 = rate >= 100
    print("  round trip p50 < 10 ms (one client)      \(lpad(fmt(p50) + " ms", 12))  \(ok1 ? "PASS" : "FAIL")")
    print("  sandboxes/s >= 100 (\(clients) clients)           \(lpad(fmt(rate, 1), 12))  \(ok2 ? "PASS" : "FAIL")")
    return done.errors.isEmpty ? 0 : 1
}
