import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The root daemon works on files a sandbox can write while code in the sandbox runs. These
/// tests run that code: an attacker that swaps names in the workspace for symlinks to a host
/// file while the daemon works, and check the host file is untouched.
extension ControlSuite {
    @Suite("the daemon's work in a workspace, raced from inside") struct WorkspaceRaceTests {
        /// Run inside the sandbox: for each name `d<N>` the test will create, a symlink `s<N>`
        /// to the host canary; `renameat2(RENAME_EXCHANGE)` of the two is tried in a tight loop
        /// and succeeds the moment the daemon has made `d<N>`, so whatever the daemon does next
        /// by that name lands on the symlink.
        static let attacker = #"""
            import ctypes, os, sys, time
            canary, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
            libc = ctypes.CDLL(None, use_errno=True)
            AT_FDCWD, RENAME_EXCHANGE = -100, 2
            try:
                rename2 = libc.renameat2
                def exchange(a, b): return rename2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
            except AttributeError:
                def exchange(a, b): return libc.syscall(316, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
            names = [(b"d%d" % n, b"s%d" % n) for n in range(count)]
            for d, s in names: os.symlink(canary, s)
            open("ready", "w").close()
            deadline, n, swaps, i = time.time() + seconds, 0, 0, 0
            while n < count:
                d, s = names[n]
                if exchange(d, s) == 0:
                    swaps += 1
                    n += 1
                i += 1
                if i % 4096 == 0:
                    if time.time() > deadline or os.path.exists("stop"): break
                    # Writes the attacker missed (it was descheduled): catch up.
                    while n + 1 < count and os.path.lexists(names[n + 1][0]): n += 1
            print(swaps, n)
            """#

        @Test("renameat2(RENAME_EXCHANGE) raced against thousands of file writes never reaches a host file")
        func renameExchangeRace() throws {
            // A root-owned 0600 file outside every workspace, like /etc/shadow or master.key.
            let canary = "/var/tmp/airlock-canary-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let secret = Array("root-only \(UUID().uuidString)\n".utf8)
            #expect(FileManager.default.createFile(atPath: canary, contents: Data(secret), attributes: [.posixPermissions: 0o600]))
            chown(canary, 0, 0)
            defer { unlink(canary) }
            var before = stat()
            #expect(stat(canary, &before) == 0)
            let varTmp = Set((try? FileManager.default.contentsOfDirectory(atPath: "/var/tmp")) ?? [])

            let d = try TestDaemon()
            defer { d.finish() }
            let id = try d.create(["ttl": "10m"])
            let put = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=attacker.py", body: Array(Self.attacker.utf8), contentType: "application/octet-stream")
            #expect(put.status == 201, "\(put.text)")

            let writes = 3000
            let output = Results()
            let attackerThread = Thread {
                let body = try? JSONSerialization.data(withJSONObject: ["command": ["python3", "attacker.py", canary, "\(writes)", "90"], "timeout": 150])
                if let r = try? d.client().request("POST", "/v1/sandboxes/\(id)/exec", body: body.map { [UInt8]($0) }, timeout: 180), let o = r.json {
                    output.add(string(o["stdout"]) + string(o["stderr"]))
                }
            }
            attackerThread.start()
            var ready = false
            for _ in 0..<600 where !ready {
                ready = (try? d.client().request("GET", "/v1/sandboxes/\(id)/files?path=ready").status) == 200
                if !ready { usleep(50_000) }
            }
            #expect(ready, "the attacker did not start: \(output.values)")

            // The daemon makes d<N> and d<N>/x for each write; the attacker swaps d<N> for its
            // symlink as soon as it exists. Bounded in count and in time.
            let start = Date()
            var statuses: [Int: Int] = [:]
            var changed = false
            var n = 0
            while n < writes, Date().timeIntervalSince(start) < 60, !changed {
                let r = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=d\(n)/x/f.txt", body: Array("x".utf8), contentType: "application/octet-stream")
                statuses[r.status, default: 0] += 1
                n += 1
                if n % 50 == 0 {
                    var now = stat()
                    changed = stat(canary, &now) != 0 || now.st_mode != before.st_mode || now.st_ctim.tv_nsec != before.st_ctim.tv_nsec
                        || now.st_ctim.tv_sec != before.st_ctim.tv_sec
                }
            }
            _ = try d.client().request("PUT", "/v1/sandboxes/\(id)/files?path=stop", body: [], contentType: "application/octet-stream")
            while attackerThread.isExecuting { usleep(20_000) }

            // The attacker really raced: it swapped names the daemon had just made.
            let report = output.values.first ?? ""
            let swaps = Int(report.split(separator: " ").first ?? "") ?? 0
            #expect(swaps > 0, "the attacker never swapped a directory the daemon made: \(report)")
            #expect(statuses[500] == nil, "no write is an internal error: \(statuses)")

            // The canary is exactly as it was: mode, owner, content, and not even its inode
            // change time moved (any chmod or chown would set it).
            var after = stat()
            #expect(stat(canary, &after) == 0)
            #expect(after.st_mode == before.st_mode, "the canary's mode changed from \(String(before.st_mode & 0o7777, radix: 8)) to \(String(after.st_mode & 0o7777, radix: 8)) after \(n) writes (\(statuses))")
            #expect(after.st_uid == 0 && after.st_gid == 0)
            #expect(after.st_ctim.tv_sec == before.st_ctim.tv_sec && after.st_ctim.tv_nsec == before.st_ctim.tv_nsec, "the canary's inode was changed")
            #expect(FileManager.default.contents(atPath: canary).map { [UInt8]($0) } == secret)
            let newInVarTmp = Set((try? FileManager.default.contentsOfDirectory(atPath: "/var/tmp")) ?? []).subtracting(varTmp)
                .filter { !$0.hasPrefix("airlock-serve-test-") }
            #expect(newInVarTmp.isEmpty, "new entries in /var/tmp: \(newInVarTmp)")
            print("race: \(n) writes in \(String(format: "%.1f", Date().timeIntervalSince(start))) s, \(swaps) swaps, statuses \(statuses)")
        }
    }
}
