import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ControlSuite {
    @Suite("API against a running daemon") struct APITests {
        @Test("create, exec, stream, files, list, get, delete")
        func lifecycle() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let id = try d.create(["profile": "default", "labels": ["workflow": "wf-a", "session": "s-1"], "ttl": "5m"])
            #expect(id.hasPrefix("sbx-"))

            // Files in, a command that uses them, files out.
            let put = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=src/main.py", body: Array("print(6*7)\n".utf8), contentType: "application/octet-stream")
            #expect(put.status == 201, "\(put.text)")
            let r = try d.exec(id, ["python3", "src/main.py"])
            #expect(r["exit_code"] as? Int == 0)
            #expect(r["stdout"] as? String == "42\n")
            let w = try d.exec(id, ["sh", "-c", "echo made-inside > out.txt; id -u"])
            #expect(w["stdout"] as? String == "1000\n", "the command runs as the unprivileged sandbox user")
            let get = try d.client().request("GET", "/v1/sandboxes/\(id)/files?path=out.txt")
            #expect(get.status == 200 && get.text == "made-inside\n")

            // stdin, env within the allowlist, exit codes, missing commands.
            let s = try d.exec(id, ["sh", "-c", "cat; echo $LANG; exit 7"], extra: ["stdin": "from-stdin\n", "env": ["LANG": "C.UTF-8"]])
            #expect(s["stdout"] as? String == "from-stdin\nC.UTF-8\n")
            #expect(s["exit_code"] as? Int == 7)
            let missing = try d.exec(id, ["no-such-command-xyz"])
            #expect(missing["exit_code"] as? Int == 127)
            #expect(string(missing["stderr"]).contains("not found"))
            let binary = try d.exec(id, ["sh", "-c", "printf '\\377\\376'"])
            #expect(binary["stdout_encoding"] as? String == "base64")
            #expect(binary["stdout"] as? String == Data([0xff, 0xfe]).base64EncodedString())

            // A streamed exec: output lines, then the exit line.
            let stream = try d.client().request(
                "POST", "/v1/sandboxes/\(id)/exec/stream",
                body: Array(#"{"command":["sh","-c","for i in 1 2 3; do echo line$i; sleep 0.1; done; echo e >&2; exit 3"]}"#.utf8))
            #expect(stream.status == 200)
            #expect(stream.headers["content-type"] == "application/x-ndjson")
            let lines = stream.text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let stdout = lines.filter { $0["type"] as? String == "stdout" }.compactMap { $0["data"] as? String }.joined()
            #expect(stdout == "line1\nline2\nline3\n")
            #expect(lines.contains { $0["type"] as? String == "stderr" && $0["data"] as? String == "e\n" })
            #expect(lines.last?["type"] as? String == "exit" && lines.last?["exit_code"] as? Int == 3)

            // Concurrent execs: each waits at a barrier inside the sandbox until all four have
            // arrived, which only happens if they run at the same time.
            let group = DispatchGroup()
            let results = Results()
            let barrier = "touch /tmp/barrier-$0; for n in $(seq 200); do [ $(ls /tmp/barrier-* | wc -l) -ge 4 ] && echo met-$0 && exit 0; sleep 0.05; done; echo alone-$0"
            for i in 0..<4 {
                group.enter()
                DispatchQueue.global().async {
                    defer { group.leave() }
                    if let o = try? d.exec(id, ["sh", "-c", barrier, "\(i)"]) { results.add(string(o["stdout"])) }
                }
            }
            group.wait()
            #expect(results.values.sorted() == ["met-0\n", "met-1\n", "met-2\n", "met-3\n"], "\(results.values)")

            // Timeout: the exec's process group is killed.
            let t = try d.exec(id, ["sleep", "30"], extra: ["timeout": 0.5])
            #expect(t["timed_out"] as? Bool == true)
            #expect(t["signal"] as? Int == 9)

            // Get and list (with label filters).
            let info = try d.sandbox(id)
            #expect(info["state"] as? String == "running")
            #expect((info["labels"] as? [String: String])?["workflow"] == "wf-a")
            #expect(info["execs"] as? Int == 11)
            #expect(((info["remaining"] as? [String: Any])?["ttl_seconds"] as? Double ?? 0) > 200)
            #expect(((info["usage"] as? [String: Any])?["cpu_seconds"] as? Double ?? 0) > 0)
            let other = try d.create(["labels": ["workflow": "wf-b"]])
            let listed = try d.json("GET", "/v1/sandboxes?label=workflow=wf-a").json?["sandboxes"] as? [[String: Any]] ?? []
            #expect(listed.map { $0["id"] as? String } == [id])

            // Delete: stopped, with the reason recorded; commands are refused afterwards.
            let del = try d.json("DELETE", "/v1/sandboxes/\(id)")
            #expect(del.status == 200)
            #expect(del.json?["state"] as? String == "stopped" && del.json?["stop_reason"] as? String == "deleted")
            let after = try d.json("POST", "/v1/sandboxes/\(id)/exec", ["command": ["true"]])
            #expect(after.status == 409 && problemSlug(after) == "conflict")
            // Once torn down, a sandbox is read from the store: its limits from the stored spec,
            // its final usage and exec count from the final record.
            var stored: [String: Any] = [:]
            for _ in 0..<200 {
                stored = try d.sandbox(id)
                if (stored["usage"] as? [String: Any])?["cpu_seconds"] is Double { break }
                usleep(20_000)
            }
            usleep(50_000)  // the final record is stored just before the sandbox leaves the live set
            stored = try d.sandbox(id)
            #expect(((stored["usage"] as? [String: Any])?["cpu_seconds"] as? Double ?? 0) > 0, "\(stored)")
            #expect((stored["limits"] as? [String: Any])?["pids"] as? Int == (info["limits"] as? [String: Any])?["pids"] as? Int)
            #expect((stored["limits"] as? [String: Any])?["memory_bytes"] as? Int == (info["limits"] as? [String: Any])?["memory_bytes"] as? Int)
            #expect(((stored["limits"] as? [String: Any])?["pids"] as? Int ?? 0) > 0)
            #expect((stored["network"] as? [String: Any])?["mode"] as? String == "none")
            #expect(stored["execs"] as? Int == 11)
            #expect(stored["state"] as? String == "stopped" && stored["stop_reason"] as? String == "deleted")
            _ = try d.json("DELETE", "/v1/sandboxes/\(other)")
        }

        @Test("every role boundary, and bad, expired and revoked tokens")
        func roles() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let viewer = try d.token("viewer"), op = try d.token("operator"), admin = try d.token("admin")
            #expect(viewer.hasPrefix("alk_") && viewer.count == 4 + 12 + 1 + 43)

            // viewer: reads only.
            #expect(try d.json("GET", "/v1/sandboxes", token: viewer).status == 200)
            #expect(try d.json("GET", "/v1/whoami", token: viewer).json?["role"] as? String == "viewer")
            let denied = try d.json("POST", "/v1/sandboxes", [:], token: viewer)
            #expect(denied.status == 403 && problemSlug(denied) == "forbidden")
            #expect(detail(denied).contains("needs operator"))
            // operator: sandboxes, but no tokens, policy or global kill switch.
            let id = try d.create([:], token: op)
            #expect(try d.json("DELETE", "/v1/sandboxes/\(id)", token: viewer).status == 403)
            #expect(try d.json("POST", "/v1/tokens", ["role": "admin", "ttl": "1h"], token: op).status == 403)
            #expect(try d.json("GET", "/v1/tokens", token: op).status == 403)
            #expect(try d.json("POST", "/v1/kill", ["all": true], token: op).status == 403)
            #expect(try d.json("POST", "/v1/kill", ["instance": id], token: viewer).status == 403)
            #expect(try d.json("POST", "/v1/kill", ["instance": id], token: op).json?["count"] as? Int == 1)
            let policy = try d.client(token: op).request("PUT", "/v1/policy", body: Array("profiles: {}\n".utf8), contentType: "application/yaml")
            #expect(policy.status == 403)
            // admin: tokens (shown once, stored hashed), revocation.
            let created = try d.json("POST", "/v1/tokens", ["role": "viewer", "ttl": "1d", "name": "ci"], token: admin)
            #expect(created.status == 201)
            let fresh = created.json?["token"] as? String ?? ""
            let freshID = created.json?["id"] as? String ?? ""
            #expect(try d.json("GET", "/v1/whoami", token: fresh).status == 200)
            let listed = try d.json("GET", "/v1/tokens", token: admin)
            #expect(!listed.text.contains(fresh) && !listed.text.contains(String(fresh.suffix(43))), "a listing never shows a token")
            let db = (try? Data(contentsOf: URL(fileURLWithPath: d.state + "/airlock.db"))) ?? Data()
            #expect(db.range(of: Data(fresh.utf8)) == nil, "the store keeps no token in clear")
            #expect(try d.json("DELETE", "/v1/tokens/\(freshID)", token: admin).status == 204)
            let revoked = try d.json("GET", "/v1/whoami", token: fresh)
            #expect(revoked.status == 401 && detail(revoked).contains("revoked"))

            // Bad tokens: malformed, unknown, wrong secret, expired; all 401 with a reason.
            let malformed = try d.json("GET", "/v1/whoami", token: "not-a-token")
            #expect(malformed.status == 401 && problemSlug(malformed) == "unauthorized")
            #expect(malformed.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try d.json("GET", "/v1/whoami", token: "alk_000000000000_" + String(repeating: "A", count: 43)).status == 401)
            let forged = String(viewer.dropLast()) + (viewer.last == "A" ? "B" : "A")
            let forgedReply = try d.json("GET", "/v1/whoami", token: forged)
            #expect(forgedReply.status == 401 && detail(forgedReply).contains("does not match"))
            let short = try d.token("operator", ttl: "1s")
            usleep(1_300_000)
            let expired = try d.json("GET", "/v1/whoami", token: short)
            #expect(expired.status == 401 && detail(expired).contains("expired"))
            // Every change names its principal in the audit log.
            let verify = try TestDaemon.cli(["audit", "verify", d.state + "/audit"])
            #expect(verify.status == 0, "\(verify.stderr)")
            let tail = try TestDaemon.cli(["audit", "tail", d.state + "/audit", "-n", "200"])
            #expect(tail.stdout.contains("control.token.created") && tail.stdout.contains("token:"))
            #expect(tail.stdout.contains("control.kill"))
        }

        @Test("bad input is refused with the right status and a message to act on")
        func badInput() throws {
            let d = try TestDaemon(["--max-file-size", "4K", "--max-sandboxes", "2"])
            defer { d.finish() }
            let unknown = try d.json("POST", "/v1/sandboxes", ["profile": "default", "ttl_seconds": 3])
            #expect(unknown.status == 422 && problemSlug(unknown) == "validation")
            #expect(detail(unknown).contains("unknown field 'ttl_seconds'"))
            let nested = try d.json("POST", "/v1/sandboxes", ["limits": ["memroy": "1G"]])
            #expect(nested.status == 422 && detail(nested).contains("limits.memroy"))
            let notJSON = try d.client().request("POST", "/v1/sandboxes", body: Array("{nope".utf8))
            #expect(notJSON.status == 400 && problemSlug(notJSON) == "bad-request")
            #expect(!detail(notJSON).contains("NSCocoaErrorDomain") && !detail(notJSON).contains("Error Domain"), "no internals in problems")
            let before = try d.json("GET", "/v1/sandboxes").json?["sandboxes"] as? [Any] ?? []
            let impossible = try d.json("POST", "/v1/sandboxes", ["limits": ["memory": "1K"]])
            #expect(impossible.status == 422 && detail(impossible).contains("limits.memory: must be at least 1M"), "\(impossible.text)")
            // The bounds of LimitBounds, checked before anything is built (0.005 cores passed
            // four checks and failed at cgroup creation).
            let tinyCPU = try d.json("POST", "/v1/sandboxes", ["limits": ["cpus": 0.005]])
            #expect(tinyCPU.status == 422 && detail(tinyCPU).contains("limits.cpus: must be a number of cores from 0.01 to 1024"), "\(tinyCPU.text)")
            let after = try d.json("GET", "/v1/sandboxes").json?["sandboxes"] as? [Any] ?? []
            #expect(after.count == before.count, "a failed create leaves no sandbox record")
            #expect(try d.json("POST", "/v1/sandboxes", ["limits": ["pids": 1]]).status == 422)
            #expect(notJSON.headers["content-type"] == "application/problem+json")
            let profile = try d.json("POST", "/v1/sandboxes", ["profile": "nope"])
            #expect(profile.status == 422 && detail(profile).contains("untrusted"))
            // Overrides may only tighten the profile.
            let ttl = try d.json("POST", "/v1/sandboxes", ["profile": "untrusted", "ttl": "1h"])
            #expect(ttl.status == 403 && detail(ttl).contains("300s"))
            let mem = try d.json("POST", "/v1/sandboxes", ["profile": "untrusted", "limits": ["memory": "8G"]])
            #expect(mem.status == 403)
            let env = try d.json("POST", "/v1/sandboxes", ["env": ["LD_PRELOAD": "/x.so"]])
            #expect(env.status == 403 && detail(env).contains("LD_PRELOAD"))
            #expect(try d.json("GET", "/v1/sandboxes/sbx-0000000000000000").status == 404)
            #expect(try d.json("GET", "/v1/sandboxes/..%2F..%2Fetc").status == 404)
            #expect(try d.json("GET", "/v1/nothing-here").json?["type"] as? String == Problem.typeBase + "not-found")

            let id = try d.create()
            let tooBig = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=big", body: [UInt8](repeating: 65, count: 5000), contentType: "application/octet-stream")
            #expect(tooBig.status == 413 && problemSlug(tooBig) == "payload-too-large")
            let wrongType = try d.client().request("POST", "/v1/sandboxes/\(id)/exec", body: Array("command=ls".utf8), contentType: "application/x-www-form-urlencoded")
            #expect(wrongType.status == 415)
            let noCommand = try d.json("POST", "/v1/sandboxes/\(id)/exec", ["command": []])
            #expect(noCommand.status == 422)
            let badEnv = try d.json("POST", "/v1/sandboxes/\(id)/exec", ["command": ["true"], "env": ["PATH": "/evil"]])
            #expect(badEnv.status == 403, "PATH is not in the default profile's environment allowlist")

            // Path escapes in the file APIs: refused, and the host is untouched.
            let marker = "/var/tmp/airlock-escape-\(getpid())"
            for (path, status) in [("../../../../\(marker)", 400), ("/etc/passwd", 400), ("a/../../x", 400), ("", 400)] {
                let enc = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path
                let r = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=\(enc)", body: Array("x".utf8), contentType: "application/octet-stream")
                #expect(r.status == status, "\(path): \(r.status) \(r.text)")
            }
            // A symlink made inside the sandbox that points out is not followed.
            _ = try d.exec(id, ["sh", "-c", "ln -s /etc etc-link; ln -s ../../../../../../var/tmp up; mkdir d; ln -s .. d/parent"])
            for path in ["etc-link/passwd", "up/airlock-escape-\(getpid())"] {
                let w = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=\(path)", body: Array("x".utf8), contentType: "application/octet-stream")
                #expect(w.status == 403, "\(path): \(w.text)")
                let r = try d.client().request("GET", "/v1/sandboxes/\(id)/files?path=\(path)")
                #expect(r.status == 403 || r.status == 404, "\(path): \(r.text)")
            }
            #expect(!FileManager.default.fileExists(atPath: marker))
            // No symlink made in the sandbox is followed, not even one that stays inside (the
            // sandbox could rewrite it while the daemon uses it); the file itself is reachable.
            _ = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=real.txt", body: Array("inside".utf8), contentType: "application/octet-stream")
            #expect(try d.client().request("GET", "/v1/sandboxes/\(id)/files?path=real.txt").text == "inside")
            let inside = try d.client().request("GET", "/v1/sandboxes/\(id)/files?path=d/parent/real.txt")
            #expect(inside.status == 403 && detail(inside).contains("symlink"), "\(inside.text)")
            // A FIFO is not a file to read or write (the daemon must not block on it).
            _ = try d.exec(id, ["mkfifo", "pipe"])
            #expect(try d.client().request("GET", "/v1/sandboxes/\(id)/files?path=pipe").status == 403)
            #expect(try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=pipe", body: [1], contentType: "application/octet-stream").status == 403)
            // An archive is never unpacked through a symlink that leaves the workspace.
            let viaLink = try d.client().request("PUT", "/v1/sandboxes/\(id)/archive?path=etc-link", body: [UInt8](repeating: 0, count: 1024), contentType: "application/x-tar")
            #expect(viaLink.status == 403, "\(viaLink.text)")
            #expect(try d.client().request("GET", "/v1/sandboxes/\(id)/archive?path=no-such-dir").status == 404)
            // A missing working directory is named as such, not as a missing command.
            let cwd = try d.exec(id, ["/bin/pwd"], extra: ["cwd": "/nonexistent"])
            #expect(cwd["exit_code"] as? Int == 126 && string(cwd["stderr"]).contains("working directory"), "\(cwd)")

            // At most --max-sandboxes run at once.
            _ = try d.create()
            let third = try d.json("POST", "/v1/sandboxes", [:])
            #expect(third.status == 429 && problemSlug(third) == "too-many-requests", "\(third.text)")
        }

        @Test("tar archives are unpacked inside a sandbox: hostile members cannot escape")
        func archives() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let id = try d.create(["profile": "untrusted"])
            // A hostile archive: a member with .., an absolute one, a symlink out and a file through it.
            let src = "/var/tmp/airlock-tar-src-\(getpid())"
            try FileManager.default.createDirectory(atPath: src + "/pkg", withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: src) }
            try "hello\n".write(toFile: src + "/pkg/a.txt", atomically: false, encoding: .utf8)
            let good = try TestDaemon.run("/bin/tar", ["-c", "-f", "-", "-C", src, "pkg"])
            let up = try d.client().request("PUT", "/v1/sandboxes/\(id)/archive?path=in", body: good, contentType: "application/x-tar")
            #expect(up.status == 201, "\(up.text)")
            #expect(try d.exec(id, ["cat", "/workspace/in/pkg/a.txt"])["stdout"] as? String == "hello\n")
            let down = try d.client().request("GET", "/v1/sandboxes/\(id)/archive?path=in")
            #expect(down.status == 200)
            let listing = try TestDaemon.run("/bin/tar", ["-t", "-f", "-"], stdin: down.body)
            #expect(String(decoding: listing, as: UTF8.self).contains("in/pkg/a.txt"))

            let marker = "airlock-tar-escape-\(getpid())"
            let evil = try TestDaemon.run(
                "/usr/bin/python3",
                ["-c", """
                import io, sys, tarfile
                b = io.BytesIO()
                with tarfile.open(fileobj=b, mode='w') as t:
                    for name in ['../../../../../var/tmp/\(marker)', '/var/tmp/\(marker)-abs']:
                        i = tarfile.TarInfo(name); d = b'pwned'; i.size = len(d); t.addfile(i, io.BytesIO(d))
                    l = tarfile.TarInfo('link'); l.type = tarfile.SYMTYPE; l.linkname = '/var/tmp'; t.addfile(l)
                    i = tarfile.TarInfo('link/\(marker)-via-link'); d = b'pwned'; i.size = len(d); t.addfile(i, io.BytesIO(d))
                sys.stdout.buffer.write(b.getvalue())
                """])
            _ = try d.client().request("PUT", "/v1/sandboxes/\(id)/archive", body: evil, contentType: "application/x-tar")
            for name in [marker, marker + "-abs", marker + "-via-link"] {
                #expect(!FileManager.default.fileExists(atPath: "/var/tmp/" + name), "\(name) escaped to the host")
            }
        }

        @Test("the control API is unreachable from inside a sandbox")
        func unreachableFromSandbox() throws {
            let d = try TestDaemon(["--listen", "127.0.0.1:0".replacingOccurrences(of: ":0", with: ":\(UInt16.random(in: 20000...40000))"), "--insecure-http"])
            defer { d.finish() }
            let id = try d.create()
            let probe = """
                ls -la /run/airlock 2>&1; ls \(d.state) 2>&1; test -e \(d.socket) && echo SOCKET-VISIBLE
                find / -xdev -type s 2>/dev/null | grep -v '^/proc' || true
                python3 - <<'EOF'
                import socket
                for host in ['127.0.0.1', '::1']:
                    for port in range(20000, 40001, 997):
                        pass
                try:
                    s = socket.socket(socket.AF_UNIX); s.connect('\(d.socket)'); print('CONNECTED-UNIX')
                except Exception as e: print('unix:', type(e).__name__)
                EOF
                """
            let r = try d.exec(id, ["sh", "-c", probe])
            let out = r["stdout"] as? String ?? ""
            #expect(!out.contains("SOCKET-VISIBLE") && !out.contains("CONNECTED-UNIX"), "\(out)")
            #expect(!out.contains("airlock.sock"), "\(out)")
            // An exec holds no socket (PID 1's control socket is close-on-exec), and cannot
            // reach PID 1's descriptors (it is not dumpable).
            let fds = try d.exec(id, ["python3", "-c", """
                import os
                links = []
                for f in os.listdir('/proc/self/fd'):
                    try: links.append(os.readlink('/proc/self/fd/' + f))
                    except OSError: pass
                print([l for l in links if l.startswith('socket:')])
                try: print(os.listdir('/proc/1/fd'))
                except OSError as e: print(type(e).__name__)
                """])
            #expect(string(fds["stdout"]) == "[]\nPermissionError\n", "\(fds)")
            // No process of the sandbox (its helper, its PID 1) holds any of the daemon's sockets.
            let daemonSockets = socketInodes(d.process?.processIdentifier ?? 0)
            #expect(!daemonSockets.isEmpty)
            for pid in sandboxProcesses() {
                let shared = socketInodes(pid).intersection(daemonSockets)
                #expect(shared.isEmpty, "process \(pid) of a sandbox holds the daemon's sockets \(shared)")
            }
            // The daemon's TCP listener on the host's loopback: the sandbox has its own loopback.
            let port = d.arguments[1].split(separator: ":").last.map(String.init) ?? "0"
            let tcp = try d.exec(id, ["python3", "-c", "import socket\ntry:\n socket.create_connection(('127.0.0.1', \(port)), 2); print('CONNECTED')\nexcept Exception as e: print(type(e).__name__)"])
            #expect(string(tcp["stdout"]) == "ConnectionRefusedError\n", "\(tcp)")
            // And on TCP a token is required.
            let noToken = try ControlClient(host: "127.0.0.1", port: Int(port) ?? 0).request("GET", "/v1/sandboxes")
            #expect(noToken.status == 401)
            let withToken = try ControlClient(host: "127.0.0.1", port: Int(port) ?? 0, token: try d.token("viewer")).request("GET", "/v1/sandboxes")
            #expect(withToken.status == 200)
        }
    }
}

final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

extension TestDaemon {
    /// Runs a host tool (tar, python3) and returns its stdout.
    static func run(_ tool: String, _ args: [String], stdin: [UInt8] = []) throws -> [UInt8] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let out = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardInput = inp
        try p.run()
        let writer = Thread {
            inp.fileHandleForWriting.write(Data(stdin))
            try? inp.fileHandleForWriting.close()
        }
        writer.start()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return [UInt8](data)
    }
}

/// The socket inodes a process holds open.
func socketInodes(_ pid: Int32) -> Set<String> {
    let dir = "/proc/\(pid)/fd"
    var out: Set<String> = []
    for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + fd), target.hasPrefix("socket:") { out.insert(target) }
    }
    return out
}

/// Every running airlock-sandbox process (helpers and the PID 1s they clone).
func sandboxProcesses() -> [Int32] {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).filter { pid in
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe"))?.hasSuffix("/airlock-sandbox") == true
    }
}
