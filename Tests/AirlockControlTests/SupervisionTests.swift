import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ControlSuite {
    @Suite("kill switches, lifetimes, containment, crashes, erasure") struct SupervisionTests {
        /// Starts a streamed `sleep` in the sandbox and returns once it runs (the exec is mid-flight).
        func startSleeper(_ d: TestDaemon, _ id: String) -> Thread {
            let t = Thread {
                _ = try? d.client().request(
                    "POST", "/v1/sandboxes/\(id)/exec/stream", body: Array(#"{"command":["sh","-c","echo up; exec sleep 600"]}"#.utf8), timeout: 120)
            }
            t.start()
            for _ in 0..<200 {
                if let s = try? d.sandbox(id), s["running_execs"] as? Int == 1 { break }
                usleep(10_000)
            }
            // Running as an exec is not yet `sleep`: under load the shell may not have exec'd
            // it. Wait until a sleeping `sleep` is there (a process snapshot looks for it).
            for _ in 0..<100 {
                if let r = try? d.exec(id, ["sh", "-c", "grep -l '^State:.*S (sleeping)' $(grep -l '^Name:.sleep$' /proc/[0-9]*/status)"]),
                    r["exit_code"] as? Int == 0
                { break }
                usleep(20_000)
            }
            return t
        }

        func cgroupPIDs(_ id: String) -> [String] {
            ["/sys/fs/cgroup/pids/airlock/airlock-\(id)/cgroup.procs", "/sys/fs/cgroup/airlock/airlock-\(id)/cgroup.procs"].flatMap { path in
                ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            }
        }

        @Test("kill switches at every scope reach sandboxes mid-exec within a second")
        func killScopes() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let op = try d.token("operator")
            let a = try d.create(["labels": ["workflow": "w1", "session": "s1"]])
            let b = try d.create(["labels": ["workflow": "w1", "session": "s2"]])
            let c = try d.create(["labels": ["workflow": "w2", "session": "s3", "agent": "x"]])
            let e = try d.create(["labels": ["workflow": "w3"]])
            let f = try d.create(["labels": ["workflow": "w4"]])
            let g = try d.create(["labels": ["workflow": "w5"]])

            func killed(_ body: [String: Any], token: String? = nil) throws -> (ids: [String], seconds: Double) {
                let start = Date()
                let r = try d.json("POST", "/v1/kill", body, token: token)
                #expect(r.status == 200, "\(r.text)")
                return ((r.json?["stopped"] as? [String]) ?? [], Date().timeIntervalSince(start))
            }
            // instance, mid-exec
            let t = startSleeper(d, a)
            #expect(!cgroupPIDs(a).isEmpty)
            let k1 = try killed(["instance": a], token: op)
            #expect(k1.ids == [a] && k1.seconds < 1.0, "\(k1)")
            // Every process of the sandbox is dead when the kill returns; its helper (airlock's
            // own supervisor, in the same cgroup on v1) exits right after.
            for _ in 0..<50 where !cgroupPIDs(a).isEmpty { usleep(5_000) }
            #expect(cgroupPIDs(a).isEmpty, "no process of the sandbox is left")
            while t.isExecuting { usleep(10_000) }
            #expect(try d.sandbox(a)["stop_reason"] as? String == "killed")
            // session
            let k2 = try killed(["session": "s2"])
            #expect(k2.ids == [b])
            // workflow, mid-exec
            _ = startSleeper(d, c)
            let k3 = try killed(["workflow": "w2", "reason": "incident-42"])
            #expect(k3.ids == [c] && k3.seconds < 1.0)
            #expect(try d.sandbox(c)["stop_reason"] as? String == "incident-42")
            // selector
            let k4 = try killed(["selector": ["workflow": "w3"]])
            #expect(k4.ids == [e])
            // all, through the CLI (the socket's owner is admin)
            _ = startSleeper(d, f)
            let start = Date()
            let cli = try TestDaemon.cli(["kill", "--all", "--socket", d.socket])
            #expect(cli.status == 0, "\(cli.stderr)")
            #expect(Set(cli.stdout.split(separator: "\n").map(String.init)) == [f, g])
            #expect(Date().timeIntervalSince(start) < 1.5)
            for id in [f, g] { #expect(try d.sandbox(id)["state"] as? String == "stopped") }
            let running = try d.json("GET", "/v1/sandboxes?state=running").json?["sandboxes"] as? [Any]
            #expect(running?.isEmpty == true)
        }

        @Test("TTL, idle timeout and max_execs stop the sandbox with the reason recorded")
        func lifetimes() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let ttl = try d.create(["ttl": 1])
            let idle = try d.create(["idle_timeout": "1s"])
            let execs = try d.create(["max_execs": 2])
            _ = try d.exec(execs, ["true"])
            _ = try d.exec(execs, ["true"])
            let third = try d.json("POST", "/v1/sandboxes/\(execs)/exec", ["command": ["true"]])
            #expect(third.status == 409 && detail(third).contains("max_execs"))
            usleep(1_800_000)
            for (id, reason) in [(ttl, "ttl"), (idle, "idle"), (execs, "max_execs")] {
                let s = try d.sandbox(id)
                #expect(s["state"] as? String == "stopped", "\(id)")
                #expect(s["stop_reason"] as? String == reason, "\(id): \(s["stop_reason"] ?? "nil")")
            }
            // The exec timeout never outlives the TTL.
            let short = try d.create(["ttl": 2])
            let r = try d.exec(short, ["sleep", "30"])
            #expect(r["signal"] as? Int == 9)
        }

        @Test("containment: frozen, revoked, snapshot of processes and workspace that outlives the sandbox")
        func containment() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let id = try d.create(["labels": ["workflow": "suspect"]])
            _ = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=loot.txt", body: Array("exfil-candidate\n".utf8), contentType: "application/octet-stream")
            let t = startSleeper(d, id)
            let r = try d.json("POST", "/v1/sandboxes/\(id)/contain", ["reason": "prompt injection suspected"])
            #expect(r.status == 200, "\(r.text)")
            let sandbox = r.json?["sandbox"] as? [String: Any] ?? [:]
            let snapshot = r.json?["snapshot"] as? [String: Any] ?? [:]
            #expect(sandbox["state"] as? String == "frozen")
            let procs = snapshot["processes"] as? [[String: Any]] ?? []
            #expect(procs.contains { ($0["command"] as? [String])?.first == "sleep" && $0["state"] as? String == "S" }, "\(procs)")
            // The exec that was running is answered at once, not when the sandbox is deleted.
            for _ in 0..<300 where t.isExecuting { usleep(10_000) }
            #expect(!t.isExecuting, "a running exec still waits after containment")
            let freezer = (try? String(contentsOfFile: "/sys/fs/cgroup/freezer/airlock/airlock-\(id)/freezer.state", encoding: .utf8)) ?? ""
            #expect(freezer.hasPrefix("FROZEN"), "cgroup freezer: \(freezer)")
            // Frozen: nothing runs, nothing more is accepted.
            #expect(try d.json("POST", "/v1/sandboxes/\(id)/exec", ["command": ["true"]]).status == 409)
            #expect(try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=x", body: [1], contentType: "application/octet-stream").status == 409)
            let snapID = snapshot["id"] as? String ?? ""
            // Destroy the sandbox: the snapshot remains, and holds the workspace and the process list.
            #expect(try d.json("DELETE", "/v1/sandboxes/\(id)").status == 200)
            while t.isExecuting { usleep(10_000) }
            #expect(try d.json("GET", "/v1/snapshots/\(snapID)").status == 200)
            let viewer = try d.token("operator")
            #expect(try d.client(token: viewer).request("GET", "/v1/snapshots/\(snapID)/archive").status == 403, "contents are admin only")
            let archive = try d.client().request("GET", "/v1/snapshots/\(snapID)/archive")
            #expect(archive.status == 200)
            let dir = "/var/tmp/airlock-snap-\(getpid())"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            _ = try TestDaemon.run("/bin/tar", ["-x", "-f", "-", "-C", dir], stdin: archive.body)
            #expect((try? String(contentsOfFile: dir + "/loot.txt", encoding: .utf8)) == "exfil-candidate\n")
            let summary = (try? String(contentsOfFile: dir + "/airlock-snapshot.json", encoding: .utf8)) ?? ""
            #expect(summary.contains("prompt injection suspected") && summary.contains("sleep"))
            // At rest the snapshot is ciphertext.
            let sealed = try FileManager.default.contentsOfDirectory(atPath: d.state + "/sealed")
            #expect(sealed.count == 1)
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: d.state + "/sealed/" + sealed[0]))) ?? Data()
            #expect(bytes.range(of: Data("exfil-candidate".utf8)) == nil)
        }

        @Test("persisted workspaces are sealed, restored, and erased cryptographically")
        func cryptographicErasure() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let marker = "persisted-marker-\(UInt64.random(in: 1...UInt64.max))"
            let id = try d.create(["persist": true])
            _ = try d.exec(id, ["sh", "-c", "echo \(marker) > notes.txt; mkdir -p src; echo code > src/a.py"])
            let stopped = try d.json("DELETE", "/v1/sandboxes/\(id)").json ?? [:]
            let ws = stopped["workspace_id"] as? String ?? ""
            #expect(ws.hasPrefix("ws-"), "\(stopped)")
            // Restored into a new sandbox.
            let again = try d.create(["workspace": ws])
            #expect(try d.exec(again, ["cat", "notes.txt", "src/a.py"])["stdout"] as? String == "\(marker)\ncode\n")
            _ = try d.json("DELETE", "/v1/sandboxes/\(again)")

            // Keep a copy of the ciphertext, as an attacker with a backup would.
            let files = try FileManager.default.contentsOfDirectory(atPath: d.state + "/sealed").filter { $0.hasPrefix(ws) }
            #expect(files.count == 1)
            let copy = try Data(contentsOf: URL(fileURLWithPath: d.state + "/sealed/" + files[0]))
            #expect(copy.range(of: Data(marker.utf8)) == nil, "sealed at rest")
            #expect(try d.json("DELETE", "/v1/workspaces/\(ws)").status == 204)
            #expect(try d.json("POST", "/v1/sandboxes", ["workspace": ws]).status == 404)
            d.stop()
            // With everything the daemon has — its master key, its whole store (and WAL) — the copy cannot be opened.
            let master = try Data(contentsOf: URL(fileURLWithPath: d.state + "/master.key"))
            let vault = Vault(masterKey: .init(data: master))
            var candidates: [Data] = []
            for name in (try? FileManager.default.contentsOfDirectory(atPath: d.state)) ?? [] where name.hasPrefix("airlock.db") {
                let db = (try? Data(contentsOf: URL(fileURLWithPath: d.state + "/" + name))) ?? Data()
                #expect(db.range(of: Data(marker.utf8)) == nil)
                // Every 40-byte window could be a wrapped key (AES key wrap of 32 bytes).
                let bytes = [UInt8](db)
                if bytes.count >= 40 { for i in stride(from: 0, to: bytes.count - 40, by: 1) where bytes[i] != 0 { candidates.append(Data(bytes[i..<(i + 40)])) } }
            }
            let tmp = d.state + "/copy.alv"
            try copy.write(to: URL(fileURLWithPath: tmp))
            var opened = false
            for k in candidates {
                if (try? vault.open(id: ws, ciphertext: tmp, wrappedKey: k) { _ in }) != nil { opened = true; break }
            }
            #expect(!opened, "the erased workspace could still be decrypted")
            #expect(candidates.count > 1000, "the search covered the store")
            try d.start()
        }

        @Test("after kill -9 mid-exec, a restart reaps every sandbox and leaves nothing behind")
        func crashRecovery() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let a = try d.create(["labels": ["workflow": "crash"]])
            let contained = try d.create()
            _ = startSleeper(d, contained)
            #expect(try d.json("POST", "/v1/sandboxes/\(contained)/contain", ["reason": "before the crash"]).status == 200)
            let persisted = try d.create(["persist": true])
            _ = try d.exec(persisted, ["sh", "-c", "echo survived > keep.txt"])
            _ = startSleeper(d, a)
            #expect(!cgroupPIDs(a).isEmpty)
            d.crash()
            // The helpers take their sandboxes down with the lifeline.
            for _ in 0..<100 where !cgroupPIDs(a).isEmpty || !cgroupPIDs(contained).isEmpty { usleep(20_000) }
            #expect(cgroupPIDs(a).isEmpty, "processes of \(a) outlived the daemon")
            #expect(cgroupPIDs(contained).isEmpty, "the frozen sandbox \(contained) outlived the daemon")
            try d.start()
            for id in [a, contained, persisted] {
                let s = try d.sandbox(id)
                #expect(s["state"] as? String == "stopped" && s["stop_reason"] as? String == "daemon_restart", "\(s)")
            }
            let ws = try d.sandbox(persisted)["workspace_id"] as? String ?? ""
            #expect(ws.hasPrefix("ws-"), "the persistent workspace was sealed on recovery")
            let restored = try d.create(["workspace": ws])
            #expect(try d.exec(restored, ["cat", "keep.txt"])["stdout"] as? String == "survived\n")
            _ = try d.json("DELETE", "/v1/sandboxes/\(restored)")
            let verify = try TestDaemon.cli(["audit", "verify", d.state + "/audit"])
            #expect(verify.status == 0, "the audit chain survives the crash: \(verify.stderr)")
        }

        @Test("graceful shutdown on SIGTERM stops every sandbox")
        func gracefulShutdown() throws {
            let d = try TestDaemon()
            defer { d.finish() }
            let id = try d.create()
            _ = startSleeper(d, id)
            #expect(d.stop() == 0)
            #expect(cgroupPIDs(id).isEmpty)
            try d.start()
            let s = try d.sandbox(id)
            #expect(s["stop_reason"] as? String == "daemon_shutdown", "\(s)")
        }
    }
}
