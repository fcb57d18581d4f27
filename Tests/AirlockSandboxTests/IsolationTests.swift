import Foundation
import Testing

/// Each test runs an attack inside a real sandbox and asserts both that it
/// failed and that the host is unchanged (Fixture.with checks mounts, cgroups,
/// processes and /tmp after every run).
extension SandboxSuite {
@Suite("isolation")
struct IsolationTests {
    @Test func commandRunsWithStatusAndStdio() throws {
        try Fixture.with { f in
            let r = try f.sh("read line; echo \"got:$line\"; echo err >&2; exit 7", stdin: "hello\n")
            #expect(r.status == 7)
            #expect(r.stdout == "got:hello\n")
            #expect(r.stderr.contains("err"))
        }
    }

    @Test func workspaceIsMountedAtWorkingDirectory() throws {
        try Fixture.with { f in
            try f.write("input.txt", "from host")
            let r = try f.sh("pwd; cat input.txt; echo out > result.txt")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == "/workspace\nfrom host")
            #expect(f.read("result.txt") == "out\n")
        }
    }

    @Test func hostSecretsAreInvisible() throws {
        // A host file under /root and under /home, plus the host's shadow file.
        let secretDir = "/root/.airlock-test-secret"
        try FileManager.default.createDirectory(atPath: secretDir, withIntermediateDirectories: true)
        try "topsecret".write(toFile: secretDir + "/key", atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secretDir) }
        let home = "/home/airlock-test-other"
        try FileManager.default.createDirectory(atPath: home + "/.ssh", withIntermediateDirectories: true)
        try "ssh-key".write(toFile: home + "/.ssh/id_ed25519", atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: home) }
        try Fixture.with { f in
            let r = try f.sh("""
                for p in /etc/shadow /etc/gshadow /root/.airlock-test-secret/key /home/airlock-test-other/.ssh/id_ed25519 \
                         /root/.ssh /etc/ssh /etc/sudoers /var/lib /run /home/airlock-test-other; do
                  if cat "$p" >/dev/null 2>&1 || ls "$p" >/dev/null 2>&1; then echo "LEAK $p"; fi
                done
                ls /home; ls -a $HOME
                """)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("LEAK"), "\(r.stdout)")
            #expect(!r.stdout.contains("airlock-test-other"))
        }
    }

    @Test func callerEnvironmentIsNotInherited() throws {
        try Fixture.with { f in
            let r = try f.sh("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat /proc/1/environ 2>&1 | head -c 200")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains(Fixture.canary), "the caller's environment leaked into the sandbox")
            #expect(r.stdout.contains("HOME=/home/agent"))
        }
    }

    @Test func hostProcessesAreInvisible() throws {
        try Fixture.with { f in
            let r = try f.sh("ls /proc | grep -E '^[0-9]+$' | wc -l; ls /proc/\(getpid())/ >/dev/null 2>&1 && echo SEEN; true")
            #expect(r.status == 0, "\(r.stderr)")
            let count = Int(r.stdout.split(separator: "\n").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "") ?? 999
            #expect(count <= 6, "the sandbox sees \(count) processes")
            #expect(!r.stdout.contains("SEEN"))
        }
    }

    @Test func identityHasNoPrivilege() throws {
        try Fixture.with { f in
            let r = try f.sh("id -u; id -g; grep -E '^(CapEff|CapPrm|CapInh|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "1000")
            #expect(lines.contains { $0.hasPrefix("CapEff:") && $0.hasSuffix("0000000000000000") })
            #expect(lines.contains { $0.hasPrefix("CapPrm:") && $0.hasSuffix("0000000000000000") })
            #expect(lines.contains { $0.hasPrefix("CapBnd:") && $0.hasSuffix("0000000000000000") })
            #expect(lines.contains { $0.hasPrefix("CapAmb:") && $0.hasSuffix("0000000000000000") })
            #expect(lines.contains { $0.hasPrefix("NoNewPrivs:") && $0.hasSuffix("1") })
            #expect(lines.contains { $0.hasPrefix("Seccomp:") && $0.hasSuffix("2") })
        }
    }

    @Test func systemTreesAreReadOnlyAndTmpIsPrivate() throws {
        let marker = "airlock-test-\(UUID().uuidString.prefix(8))"
        try Fixture.with { f in
            let r = try f.sh("""
                for p in /usr/\(marker) /etc/\(marker) /\(marker) /bin/\(marker) /proc/sys/kernel/hostname; do
                  if echo x > "$p" 2>/dev/null; then echo "WROTE $p"; fi
                done
                echo x > /tmp/\(marker) && echo tmp-ok
                """)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("WROTE"), "\(r.stdout)")
            #expect(r.stdout.contains("tmp-ok"))
            for dir in ["/usr", "/etc", "/", "/tmp", "/var/tmp"] {
                #expect(!FileManager.default.fileExists(atPath: dir + "/" + marker), "\(dir)/\(marker) appeared on the host")
            }
        }
    }

    @Test func plantedSymlinkCannotReachOutside() throws {
        let outside = "/var/tmp/airlock-test-outside-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try "original".write(toFile: outside + "/target", atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try Fixture.with { f in
            try FileManager.default.createSymbolicLink(atPath: f.path("link-dir"), withDestinationPath: outside)
            try FileManager.default.createSymbolicLink(atPath: f.path("link-file"), withDestinationPath: outside + "/target")
            let r = try f.sh("""
                echo pwned > link-file 2>/dev/null && echo WROTE-FILE
                echo pwned > link-dir/new 2>/dev/null && echo WROTE-DIR
                cat link-file 2>/dev/null && echo READ
                ln -sf /etc/passwd newlink; cat newlink >/dev/null && echo sandbox-passwd-only
                """)
            #expect(!r.stdout.contains("WROTE"), "\(r.stdout)")
            #expect(!r.stdout.contains("READ"))
            #expect(try String(contentsOfFile: outside + "/target", encoding: .utf8) == "original")
            #expect(!FileManager.default.fileExists(atPath: outside + "/new"))
        }
    }

    @Test func mandatoryDenyPathsStayReadOnly() throws {
        try Fixture.with { f in
            try f.write(".git/config", "[core]\n")
            try f.write(".git/hooks/README", "hooks")
            try f.write("src/main.py", "print(1)")
            try f.write(".bashrc", "# mine\n")
            let r = try f.sh("""
                echo '[core] fsmonitor = evil' >> .git/config 2>/dev/null && echo WROTE-config
                echo 'evil' > .git/hooks/post-checkout 2>/dev/null && echo WROTE-hook
                echo 'evil' >> .bashrc 2>/dev/null && echo WROTE-bashrc
                echo 'evil' > .envrc 2>/dev/null && echo WROTE-envrc
                echo '{}' > .mcp.json 2>/dev/null && echo WROTE-mcp
                mkdir -p .vscode 2>/dev/null; echo '{}' > .vscode/tasks.json 2>/dev/null && echo WROTE-vscode
                mkdir -p .claude 2>/dev/null; echo '{}' > .claude/settings.json 2>/dev/null && echo WROTE-claude
                rm -rf .vscode 2>/dev/null; mv .claude .claude2 2>/dev/null && echo MOVED-claude
                rm -f .git/config 2>/dev/null; mv .git/hooks .git/h2 2>/dev/null && echo MOVED
                echo ../evil > .git/commondir 2>/dev/null && echo WROTE-commondir
                mv .git .git.orig 2>/dev/null && echo MOVED-git
                mkdir -p evil && printf '[core]\\n\\tfsmonitor = x\\n' > evil/config && echo evil-dir-ok
                echo ok > src/new.py && echo normal-write-ok
                git status --porcelain 2>/dev/null | grep -E 'envrc|mcp|vscode|claude' && echo GIT-SEES-PLACEHOLDERS
                true
                """)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("WROTE"), "\(r.stdout)")
            #expect(!r.stdout.contains("MOVED"), "\(r.stdout)")
            #expect(r.stdout.contains("normal-write-ok"))
            #expect(!f.exists(".git/commondir"))
            #expect(!f.exists(".git.orig"))
            #expect(f.read(".git/config") == "[core]\n")
            #expect(!r.stdout.contains("GIT-SEES-PLACEHOLDERS"))
            #expect(!f.exists(".git/hooks/post-checkout"))
            #expect(f.read(".bashrc") == "# mine\n")
            // placeholders for the missing entries are gone again
            for gone in [".envrc", ".mcp.json", ".vscode", ".claude", ".claude2", ".cursor", ".idea", ".devcontainer"] {
                #expect(!f.exists(gone), "\(gone) left in the workspace")
            }
        }
    }

    @Test func symlinkAtProtectedPathRefusesToRun() throws {
        try Fixture.with { f in
            try FileManager.default.createSymbolicLink(atPath: f.path(".bashrc"), withDestinationPath: "/etc/passwd")
            let r = try f.sh("cat .bashrc")
            #expect(r.status == 125, "\(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains(".bashrc"))
            #expect(r.stdout.isEmpty)
        }
    }

    @Test func kernelAttackSurfaceIsRefused() throws {
        try Fixture.with { f in
            // Each line prints NAME=errno; 1 is EPERM (seccomp), 38 ENOSYS.
            let script = """
                import ctypes, os, errno, socket
                libc = ctypes.CDLL(None, use_errno=True)
                def sc(name, nr, *args):
                    r = libc.syscall(nr, *args)
                    print(f"{name}={ctypes.get_errno() if r == -1 else 'OK'}")
                sc("mount", 165, b"none", b"/tmp", b"tmpfs", 0, 0)
                sc("unshare_user", 272, 0x10000000)
                sc("unshare_net", 272, 0x40000000)
                sc("setns", 308, 0, 0)
                sc("ptrace_attach", 101, 16, 1, 0, 0)
                sc("init_module", 175, 0, 0, 0)
                sc("finit_module", 313, 0, 0, 0)
                sc("io_uring_setup", 425, 8, 0)
                sc("bpf", 321, 0, 0, 0)
                sc("perf_event_open", 298, 0, 0, -1, -1, 0)
                sc("keyctl", 250, 0, 0, 0)
                sc("userfaultfd", 323, 0)
                sc("kexec_load", 246, 0, 0, 0, 0)
                sc("open_by_handle_at", 304, 0, 0, 0)
                sc("personality_norandom", 135, 0x0040000)
                sc("clone_newns", 56, 0x00020000 | 17, 0, 0, 0, 0)
                sc("tiocsti", 16, 0, 0x5412, ctypes.c_char_p(b"x"))
                sc("tiocsti_highbits", 16, 0, 0xffffffff00005412, ctypes.c_char_p(b"x"))
                for fam, name in ((16, "netlink"), (40, "vsock"), (17, "packet")):
                    try:
                        socket.socket(fam, socket.SOCK_RAW if fam != 40 else socket.SOCK_STREAM, 0); print(f"socket_{name}=OK")
                    except OSError as e:
                        print(f"socket_{name}={e.errno}")
                """
            try f.write("attack.py", script)
            let r = try f.run(["run", "--", "python3", "attack.py"])
            #expect(r.status == 0, "\(r.stderr)")
            var results: [String: String] = [:]
            for line in r.stdout.split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2 { results[kv[0]] = kv[1] }
            }
            for name in ["mount", "unshare_user", "unshare_net", "setns", "ptrace_attach", "init_module", "finit_module",
                         "io_uring_setup", "bpf", "perf_event_open", "keyctl", "userfaultfd", "kexec_load",
                         "open_by_handle_at", "personality_norandom", "clone_newns", "tiocsti", "tiocsti_highbits",
                         "socket_netlink", "socket_vsock", "socket_packet"] {
                #expect(results[name] == "1", "\(name) was not refused with EPERM: \(results[name] ?? "missing") — \(r.stdout)")
            }
        }
    }

    @Test func ptraceOfSiblingFails() throws {
        try Fixture.with { f in
            let r = try f.sh("""
                sleep 5 & pid=$!
                python3 -c "import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); r=l.ptrace(16,$pid,0,0); print('ptrace', r, ctypes.get_errno())"
                kill $pid
                """)
            #expect(r.stdout.contains("ptrace -1 1"), "\(r.stdout) \(r.stderr)")
        }
    }

    @Test func unshareCommandFails() throws {
        try Fixture.with { f in
            let r = try f.sh("unshare -U true && echo ESCAPED; unshare -r true && echo ESCAPED2; echo done")
            #expect(!r.stdout.contains("ESCAPED"), "\(r.stdout)")
            #expect(r.stdout.contains("done"))
        }
    }

    @Test func setuidCopyDoesNotElevate() throws {
        try Fixture.with { f in
            // A setuid-root copy planted on the host side of the workspace...
            try FileManager.default.copyItem(atPath: "/usr/bin/id", toPath: f.path("suid-id"))
            chmod(f.path("suid-id"), 0o4755)
            // ...and one the sandbox tries to make itself.
            let r = try f.sh("""
                ./suid-id -u
                cp /usr/bin/id ./mine; chmod u+s ./mine 2>/dev/null && echo CHMOD-OK
                python3 -c "import os; os.chmod('mine', 0o4755)" 2>/dev/null && echo PYCHMOD-OK
                python3 -c "import os; os.open('made', os.O_CREAT|os.O_WRONLY, 0o4755)" 2>/dev/null && echo CREAT-OK
                true
                """)
            #expect(r.stdout.hasPrefix("1000\n"), "setuid binary elevated: \(r.stdout)")
            #expect(!r.stdout.contains("CHMOD-OK"))
            #expect(!r.stdout.contains("PYCHMOD-OK"))
            #expect(!r.stdout.contains("CREAT-OK"))
            var st = stat()
            if lstat(f.path("mine"), &st) == 0 { #expect(st.st_mode & 0o6000 == 0, "setuid bit landed on the host") }
            if lstat(f.path("made"), &st) == 0 { #expect(st.st_mode & 0o6000 == 0) }
        }
    }

    @Test func noRouteToHostLoopbackOrDNS() throws {
        // A real service on the host's loopback.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 8)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = UInt16(bigEndian: addr.sin_port)
        try Fixture.with { f in
            let script = """
                import socket
                for host in ("127.0.0.1", "10.0.2.2", "169.254.169.254", "1.1.1.1"):
                    s = socket.socket(); s.settimeout(2)
                    try:
                        s.connect((host, \(port))); print("CONNECTED", host)
                    except OSError as e:
                        print("refused", host, e.errno)
                try:
                    print("RESOLVED", socket.getaddrinfo("example.com", 443))
                except OSError as e:
                    print("dns-failed", e)
                import subprocess
                print(subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout)
                """
            try f.write("net.py", script)
            let r = try f.run(["run", "--", "python3", "net.py"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("CONNECTED"), "\(r.stdout)")
            #expect(!r.stdout.contains("RESOLVED"))
            #expect(r.stdout.contains("dns-failed"))
        }
        // nothing reached the host listener
        var flags = fcntl(listener, F_GETFL)
        flags |= O_NONBLOCK
        _ = fcntl(listener, F_SETFL, flags)
        #expect(accept(listener, nil, nil) < 0, "a connection from the sandbox reached the host's loopback")
    }

    @Test func orphanedBackgroundProcessesDieWithTheCommand() throws {
        try Fixture.with { f in
            let r = try f.sh("""
                python3 -c 'import time; time.sleep(1000)' airlock-marker &
                setsid python3 -c 'import time; time.sleep(1000)' airlock-marker &
                ( python3 -c 'import os,time; os.fork() and os._exit(0); os.setsid(); time.sleep(1000)' airlock-marker & )
                sleep 0.3; exit 3
                """)
            #expect(r.status == 3, "\(r.stderr)")
            // Fixture.with asserts no process with airlock-marker is left on the host.
        }
    }

    @Test func signalsAreForwarded() throws {
        try Fixture.with { f in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Airlock.binary)
            p.arguments = ["run", "--", "/bin/sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done"]
            p.currentDirectoryURL = URL(fileURLWithPath: f.workspace)
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            var buf = Data()
            while !String(decoding: buf, as: UTF8.self).contains("ready") { buf.append(out.fileHandleForReading.availableData) }
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            buf.append(out.fileHandleForReading.readDataToEndOfFile())
            #expect(p.terminationStatus == 42)
            #expect(String(decoding: buf, as: UTF8.self).contains("got-term"))
        }
    }

    @Test func landlockFencesWhatTheMountsAllow() throws {
        try Fixture.with { f in
            // /proc/self/comm is writable by its owner as far as procfs and the mounts go;
            // only Landlock (read-only rights on /proc) refuses it.
            let r = try f.sh("echo renamed > /proc/self/comm && echo WROTE; cat /proc/self/comm; true")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("WROTE"), "Landlock did not refuse a write the mounts allow: \(r.stdout)")
        }
    }

    @Test func rlimitsAreApplied() throws {
        try Fixture.with { f in
            let r = try f.sh("ulimit -c; ulimit -n")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == "0\n4096\n")
        }
    }

    @Test func initReapsOrphanedZombies() throws {
        try Fixture.with { f in
            // Ten orphans exit at once and are re-parented to PID 1, which must reap them.
            let r = try f.sh("""
                for i in 1 2 3 4 5 6 7 8 9 10; do ( sh -c 'exit 0' & ) ; done
                sleep 0.5
                grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l
                """)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "zombies left: \(r.stdout)")
        }
    }

    /// Two sandboxes on one workspace: the first one's clean-up must not strip the
    /// second one's protection (placeholders go only when the last run leaves).
    @Test func concurrentRunsKeepEachOthersProtection() throws {
        try Fixture.with { f in
            let first = Process()
            first.executableURL = URL(fileURLWithPath: Airlock.binary)
            first.arguments = ["run", "--", "/bin/sh", "-c", "touch first-started; sleep 1"]
            first.currentDirectoryURL = URL(fileURLWithPath: f.workspace)
            first.environment = ["PATH": "/usr/bin:/bin", "TMPDIR": Fixture.tmpdir]
            try first.run()
            let deadline = Date().addingTimeInterval(10)
            while !f.exists("first-started") && Date() < deadline { usleep(10_000) }
            let r = try f.sh("""
                sleep 2   # the first sandbox has exited and cleaned up by now
                mkdir -p .vscode 2>/dev/null; echo '{}' > .vscode/tasks.json 2>/dev/null && echo WROTE-vscode
                echo x > .envrc 2>/dev/null && echo WROTE-envrc
                true
                """)
            first.waitUntilExit()
            #expect(first.terminationStatus == 0)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("WROTE"), "protection lost after the other run ended: \(r.stdout)")
            for gone in [".vscode", ".envrc", ".git", ".mcp.json"] {
                #expect(!f.exists(gone), "\(gone) left in the workspace after both runs")
            }
        }
    }

    /// A host-side atomic replace (editor save, `git config`) detaches a read-only bind;
    /// airlock cannot prevent the host from doing that, but it must say so.
    @Test func protectedEntryReplacedDuringTheRunIsReported() throws {
        try Fixture.with { f in
            try f.write(".npmrc", "registry=https://registry.example/\n")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Airlock.binary)
            p.arguments = ["run", "--", "/bin/sh", "-c", "touch started; sleep 1; echo 'node-options=--require /tmp/x' >> .npmrc 2>/dev/null; true"]
            p.currentDirectoryURL = URL(fileURLWithPath: f.workspace)
            p.environment = ["PATH": "/usr/bin:/bin", "TMPDIR": Fixture.tmpdir]
            let err = Pipe()
            p.standardError = err
            try p.run()
            let deadline = Date().addingTimeInterval(10)
            while !f.exists("started") && Date() < deadline { usleep(10_000) }
            try "registry=https://other.example/\n".write(toFile: f.path(".npmrc.new"), atomically: false, encoding: .utf8)
            #expect(rename(f.path(".npmrc.new"), f.path(".npmrc")) == 0)
            p.waitUntilExit()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(stderr.contains("protected workspace path(s) changed during the run: .npmrc"), "\(stderr)")
        }
    }

    /// Run as root, airlock still never runs the sandbox as host uid 0: it gets its own
    /// unprivileged uid, and the workspace is idmapped so it stays writable and new files
    /// belong to the workspace's owner.
    @Test func rootCallerSandboxRunsAsUnprivilegedHostUID() throws {
        try Fixture.with { f in
            chown(f.workspace, 4242, 4343)
            try f.write("theirs.txt", "not yours\n")
            chown(f.path("theirs.txt"), 777, 777)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Airlock.binary)
            p.arguments = ["run", "--", "/bin/sh", "-c",
                           "echo mine > created.txt; echo x >> theirs.txt 2>/dev/null && echo WROTE-THEIRS; python3 -c 'import time; time.sleep(2)' airlock-marker"]
            p.currentDirectoryURL = URL(fileURLWithPath: f.workspace)
            p.environment = ["PATH": "/usr/bin:/bin", "TMPDIR": Fixture.tmpdir]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            var hostUIDs: [UInt32] = []
            let deadline = Date().addingTimeInterval(5)
            while hostUIDs.isEmpty && Date() < deadline {
                for e in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(e) != nil {
                    guard let cmd = try? String(contentsOfFile: "/proc/\(e)/cmdline", encoding: .utf8), cmd.hasPrefix("python3"), cmd.contains("airlock-marker"),
                          let status = try? String(contentsOfFile: "/proc/\(e)/status", encoding: .utf8),
                          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }),
                          let uid = line.split(separator: "\t").dropFirst().first.flatMap({ UInt32($0) })
                    else { continue }
                    hostUIDs.append(uid)
                }
                usleep(20_000)
            }
            p.waitUntilExit()
            let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(p.terminationStatus == 0)
            #expect(!hostUIDs.isEmpty, "the sandboxed process was not found on the host")
            for uid in hostUIDs { #expect(uid >= 0x7000_0000 && uid < 0x7100_0000, "sandbox runs as host uid \(uid)") }
            var st = stat()
            #expect(stat(f.path("created.txt"), &st) == 0)
            #expect(st.st_uid == 4242 && st.st_gid == 4343, "new file owned by \(st.st_uid):\(st.st_gid), not the workspace owner")
            #expect(!stdout.contains("WROTE-THEIRS"), "wrote a file owned by another user")
            #expect(f.read("theirs.txt") == "not yours\n")
        }
    }

    /// PID 1 holds the status pipe to airlock; it is non-dumpable, so the command can
    /// neither reach its descriptors nor forge a status line (a forged "exit 0" would
    /// turn the real status 7 into 0).
    @Test(arguments: [nil, 65534] as [UInt32?])
    func pid1AndItsStatusPipeAreOutOfReach(asUser uid: UInt32?) throws {
        // As root, PID 1's switch to the sandbox's host uid already makes it non-dumpable;
        // rootless, its uid does not change and only PR_SET_DUMPABLE(0) protects it.
        try Fixture.with { f in
            if let uid { chown(f.workspace, uid, uid) }
            let script = """
                echo 'exit 0' > /proc/1/fd/4 2>/dev/null && echo FORGED
                ls /proc/1/fd >/dev/null 2>&1 && echo LISTED
                cat /proc/1/environ >/dev/null 2>&1 && echo READ-ENV
                kill -KILL 1 2>/dev/null; sleep 0.2   # init of a pid namespace cannot be killed from inside
                exit 7
                """
            let r = try f.run(["run", "--", "/bin/sh", "-c", script], asUser: uid)
            #expect(r.status == 7, "status \(r.status): \(r.stdout) \(r.stderr)")
            for marker in ["FORGED", "LISTED", "READ-ENV"] { #expect(!r.stdout.contains(marker), "\(r.stdout)") }
        }
    }
}
}
