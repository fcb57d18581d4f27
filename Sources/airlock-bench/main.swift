// airlock-bench: Airlock side by side with its peers on this machine.
//
//   swift build -c release --static-swift-stdlib && .build/release/airlock-bench sandbox [--runs N]
//
//   .build/release/airlock-bench audit [--events N]   (see AuditBench.swift)
//   .build/release/airlock-bench dlp                  (see DLPBench.swift)
//   .build/release/airlock-bench egress [--requests N] [--size BYTES]   (see EgressBench.swift)
//   .build/release/airlock-bench serve [--runs N] [--clients C] [--seconds S] [--rootless]   (see ServeBench.swift)
//
// `sandbox` runs `airlock run -- /bin/true` (default profile: every namespace, cgroup
// limits, seccomp, Landlock), `bwrap --unshare-all --ro-bind / / /bin/true` and
// `unshare -Urmpfn --mount-proc /bin/true`, alternating, and prints median, p95 and
// the ratio to bwrap; then where airlock's time goes, phase by phase, from the
// monotonic stamps the helper writes (AIRLOCK_TIMING=1). Absolute times on a noisy
// machine mean little: read the ratios.
import AirlockCore
#if canImport(Glibc)
import Glibc
#endif

struct Command {
    var name: String
    var argv: [String]
    var environment: [String] = ["PATH=/usr/bin:/bin"]
}

func now() -> UInt64 { Clock.monotonicNanos() }

/// Spawns argv with stdout/stderr to /dev/null (or stderr to `stderrFD`), waits, returns (ns, status).
func timed(_ c: Command, stderrFD: Int32? = nil) -> (UInt64, Int32) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    if let fd = stderrFD { posix_spawn_file_actions_adddup2(&actions, fd, 2) } else {
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    }
    let argv = c.argv.map { strdup($0) } + [nil]
    let envp = c.environment.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
    var pid: pid_t = 0
    let start = now()
    guard posix_spawn(&pid, c.argv[0], &actions, nil, argv, envp) == 0 else { return (0, -1) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (now() - start, status)
}

func percentile(_ xs: [UInt64], _ p: Double) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return .nan }
    let idx = min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))
    return Double(s[idx]) / 1e6
}

func fmt(_ v: Double, _ digits: Int = 2) -> String {
    let m = pow(10, Double(digits))
    let r = (v * m).rounded() / m
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    } else { s += "." + String(repeating: "0", count: digits) }
    return s
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

func which(_ name: String) -> String? {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin"] where access(dir + "/" + name, X_OK) == 0 {
        return dir + "/" + name
    }
    return nil
}

func selfDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let path = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "."
    return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
}

func sandboxBenchmark(runs: Int) -> Int32 {
    let airlock = selfDirectory() + "/airlock"
    guard access(airlock, X_OK) == 0 else {
        print("airlock-bench: \(airlock) not found; build with: swift build -c release --static-swift-stdlib")
        return 2
    }
    // A scratch workspace, like a user's project directory.
    var template = Array("/var/tmp/airlock-bench-XXXXXX".utf8CString)
    let made: String? = template.withUnsafeMutableBufferPointer { buf in
        guard let base = buf.baseAddress, let p = mkdtemp(base) else { return nil }
        return String(cString: p)
    }
    guard let ws = made else {
        print("airlock-bench: cannot create a scratch workspace"); return 2
    }
    var rootlessDirectory: String?
    // Each uid's runs are recorded in an audit log of its own, as in production.
    let audit = { (uid: Int) in "/var/tmp/airlock-bench-audit-\(getpid())-\(uid)" }
    defer {
        rmdir(ws)
        if let dir = rootlessDirectory { rmdir(dir) }
        _ = system("rm -rf '\(audit(0))' '\(audit(65534))'")
    }
    var commands = [
        Command(name: "airlock run (default profile)", argv: [airlock, "run", "--audit-dir", audit(0), "--workspace", ws, "--", "/bin/true"]),
        // The same without the audit log: what recording (4-5 synced events and a signed checkpoint) costs.
        Command(name: "airlock run --no-audit", argv: [airlock, "run", "--no-audit", "--workspace", ws, "--", "/bin/true"]),
    ]
    // Rootless: the same sandbox without cgroup limits (v1 cannot be delegated), which
    // isolates the cost of attaching to v1 cgroups on this host.
    if getuid() == 0, let setpriv = which("setpriv") {
        var rootlessWS = Array("/var/tmp/airlock-bench-rootless-XXXXXX".utf8CString)
        let made: String? = rootlessWS.withUnsafeMutableBufferPointer { buf in
            guard let base = buf.baseAddress, let p = mkdtemp(base) else { return nil }
            return String(cString: p)
        }
        if let dir = made, chown(dir, 65534, 65534) == 0 {
            rootlessDirectory = dir
            commands.append(Command(
                name: "airlock run, rootless (no cgroups)",
                argv: [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", airlock, "run", "--audit-dir", audit(65534), "--workspace", dir, "--", "/bin/true"]))
        }
    }
    if let bwrap = which("bwrap") {
        commands.append(Command(name: "bwrap --unshare-all", argv: [bwrap, "--unshare-all", "--ro-bind", "/", "/", "/bin/true"]))
    } else { print("note: bwrap not installed (apt-get install bubblewrap); no ratio") }
    if let unshare = which("unshare") {
        commands.append(Command(name: "unshare -Urmpfn --mount-proc", argv: [unshare, "-Urmpfn", "--mount-proc", "/bin/true"]))
    }
    for c in commands {
        let (_, st) = timed(c)
        if st != 0 { print("airlock-bench: \(c.argv.joined(separator: " ")) failed (status \(st))"); return 1 }
        for _ in 0..<4 { _ = timed(c) }
    }
    var samples = Array(repeating: [UInt64](), count: commands.count)
    for i in 0..<runs {
        for k in 0..<commands.count {
            let j = (i + k) % commands.count  // rotate the order so no command always runs first
            samples[j].append(timed(commands[j]).0)
        }
    }
    let base = commands.firstIndex { $0.name.hasPrefix("bwrap") }.map { percentile(samples[$0], 0.5) }
    print("sandbox start-up and teardown of /bin/true, \(runs) alternating runs each")
    print(pad("command", 32) + lpad("median ms", 11) + lpad("p95 ms", 9) + lpad("vs bwrap", 10))
    for (k, c) in commands.enumerated() {
        let med = percentile(samples[k], 0.5)
        let ratio = base.map { fmt(med / $0) + "x" } ?? "-"
        print(pad(c.name, 32) + lpad(fmt(med), 11) + lpad(fmt(percentile(samples[k], 0.95)), 9) + lpad(ratio, 10))
    }

    // Where airlock's time goes: medians of each phase over separate runs.
    var phases: [String: [Double]] = [:]
    var order: [String] = []
    var timing = commands[0]
    timing.environment.append("AIRLOCK_TIMING=1")
    for _ in 0..<max(10, runs / 4) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { break }
        let spawned = now()
        let (total, _) = timed(timing, stderrFD: fds[1])
        let waited = spawned + total
        close(fds[1])
        var text: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            text.append(contentsOf: buf[0..<n])
        }
        close(fds[0])
        var first: UInt64?
        var last: UInt64?
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix("airlock: timing: ") {
            let body = line.dropFirst("airlock: timing: ".count)
            guard let colon = body.firstIndex(of: ":"), let at = body.lastIndex(of: "@") else { continue }
            let name = String(body[..<colon])
            let value = body[body.index(after: colon)..<at].filter { "0123456789.".contains($0) }
            guard let us = Double(value), let stamp = UInt64(body[body.index(after: at)...]) else { continue }
            if first == nil { first = stamp }
            last = stamp
            if phases[name] == nil { order.append(name) }
            phases[name, default: []].append(us)
        }
        if let first, let last, first > spawned, waited > last {
            // Before airlock's first instruction: fork/exec + dynamic start-up; after its last mark: exit.
            if phases["exec+start"] == nil { order.insert("exec+start", at: 0) }
            phases["exec+start", default: []].append(Double(first - spawned) / 1000)
            if phases["airlock-exit"] == nil { order.append("airlock-exit") }
            phases["airlock-exit", default: []].append(Double(waited - last) / 1000)
        }
    }
    print("\nwhere airlock's time goes (median µs since the previous mark, AIRLOCK_TIMING=1):")
    let explain: [String: String] = [
        "cgroup": "detect + create cgroups", "placeholders": "protected-path placeholders",
        "plan": "seccomp compile + plan", "helper": "posix_spawn + exec of the C helper",
        "joined": "helper joins the cgroups (v1: waits for an RCU grace period)",
        "pid1": "clone into new namespaces + id maps", "cloned": "PID 1 running", "init": "PID 1 released",
        "root-built": "mounts + pivot_root", "landlock": "drop privileges + Landlock",
        "started": "rlimits, seccomp, fork + exec of the command", "exit": "command runs",
        "pid1-exit": "namespace teardown", "reaped": "helper reaped",
        "exec+start": "exec of airlock until its main()", "main": "", "cli": "argument parsing",
        "resolved": "policy resolution", "runner": "", "seccomp": "seccomp compile",
        "placeholders-removed": "placeholders removed", "cgroup-removed": "cgroups removed", "teardown": "",
        "airlock-exit": "airlock exits",
    ]
    for name in order where name != "airlock" {
        let xs = (phases[name] ?? []).sorted()
        let med = xs.isEmpty ? 0 : xs[xs.count / 2]
        print("  " + pad(name, 14) + lpad(fmt(med, 0), 8) + "  " + (explain[name] ?? ""))
    }
    return 0
}

let args = Array(CommandLine.arguments.dropFirst())
let usage = "usage: airlock-bench sandbox [--runs N] | serve [--runs N] [--clients C] [--seconds S] [--rootless] | audit [--events N] | dlp [--runs N] | egress [--requests N] [--size BYTES] | audit-crash-writer DIR"
if args.contains("--help") || args.contains("-h") || args.first == "help" {
    print(usage)
    print("")
    print("audit: append throughput of the audit log (chained, signed, synced by group commit) with 1, 16 and 256")
    print("writers and with batched writers, next to a naive durable log and an unsynced one; acknowledgement")
    print("latency at a steady 10,000 events/s; verification speed. Default 400000 events, on /var/tmp.")
    print("Build with: swift build -c release --product airlock-bench")
    exit(0)
}
var runs = 200
if let i = args.firstIndex(of: "--runs"), i + 1 < args.count, let n = Int(args[i + 1]), n > 0 { runs = n }
var events = 400_000
if let i = args.firstIndex(of: "--events"), i + 1 < args.count, let n = Int(args[i + 1]), n > 0 { events = n }
var egressRequests = 5000
if let i = args.firstIndex(of: "--requests"), i + 1 < args.count, let n = Int(args[i + 1]), n > 0 { egressRequests = n }
var egressSize = 256 << 20
if let i = args.firstIndex(of: "--size"), i + 1 < args.count, let n = Int(args[i + 1]), n > 0 { egressSize = n }
switch args.first {
case "sandbox", nil:
    exit(sandboxBenchmark(runs: runs))
case "audit":
    exit(await auditBenchmark(events: events))
case "audit-crash-writer" where args.count == 2:
    exit(await auditCrashWriter(directory: args[1]))
case "egress":
    exit(egressBenchmark(requests: egressRequests, size: egressSize))
case "serve":
    var clients = 8
    if let i = args.firstIndex(of: "--clients"), i + 1 < args.count, let n = Int(args[i + 1]), n > 0 { clients = n }
    var seconds = 5.0
    if let i = args.firstIndex(of: "--seconds"), i + 1 < args.count, let n = Double(args[i + 1]), n > 0 { seconds = n }
    exit(serveBenchmark(runs: args.contains("--runs") ? runs : 100, clients: clients, seconds: seconds, rootless: args.contains("--rootless")))
case "dlp":
    for line in runDLPBench(iterations: runs * 100) { print(line) }
    exit(0)
default:
    print(usage)
    exit(2)
}
