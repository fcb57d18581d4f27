import AirlockAudit
import AirlockCore
import AirlockRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One process of a contained sandbox, as the snapshot records it.
struct ProcessEntry: Sendable {
    var hostPID: Int32
    var pid: Int32?
    var command: [String]
    var state: String

    var json: [String: Any] {
        ["pid": pid.map { Int($0) } ?? NSNull(), "host_pid": Int(hostPID), "command": command, "state": state]
    }

    static func read(_ hostPID: Int32) -> ProcessEntry {
        let cmdline = FileManager.default.contents(atPath: "/proc/\(hostPID)/cmdline").map { [UInt8]($0) } ?? []
        let args = cmdline.split(separator: 0, omittingEmptySubsequences: false).dropLast(cmdline.last == 0 ? 1 : 0).map { String(decoding: $0, as: UTF8.self) }
        // The state letter of /proc/PID/stat (R, S, D, Z, T, …): the field after the command's ')'.
        let stat = FileManager.default.contents(atPath: "/proc/\(hostPID)/stat").map { String(decoding: $0, as: UTF8.self) } ?? ""
        let state = stat.lastIndex(of: ")").map { String(stat[stat.index(after: $0)...].trimmingCharacters(in: .whitespaces).prefix(1)) } ?? "?"
        return ProcessEntry(hostPID: hostPID, pid: CgroupProbe.namespacePID(of: hostPID), command: args, state: state)
    }
}

extension Supervisor {
    /// Containment for a sandbox suspected of compromise: freeze every process, revoke what
    /// was issued to it, record its links, and seal a forensic snapshot (process list and
    /// workspace) that outlives it. The sandbox stays frozen until it is deleted.
    func contain(_ id: String, reason raw: String, principal: String) async throws(Problem) -> (SandboxRecord, SealedRecord, [String: Any]) {
        guard let sb = liveSandbox(id), sb.stopping.withLock({ $0 }) == nil else { throw notRunning(id) }
        // Free text from the caller: stored and recorded only as this sandbox's events show it.
        let reason = sb.events.redact(raw)
        guard sb.record.withLock({ $0.state }) == .running else { throw Problem.conflict("the sandbox \(id) is already contained") }
        guard let cgroup = sb.service.cgroup else {
            throw Problem.conflict("the sandbox \(id) has no cgroup, so its processes cannot be frozen (the daemon runs without cgroup delegation); stop it instead")
        }
        // What ran in it, read while it still ran (a frozen process reads as D, whatever it did).
        let running = Dictionary(cgroup.processes().map { ($0, ProcessEntry.read($0)) }, uniquingKeysWith: { a, _ in a })
        // 1. Freeze: nothing in it runs from here on.
        do { try sb.service.freeze() } catch { throw Problem.conflict("cannot freeze \(id): \(error.description); stop it instead") }
        // Its execs cannot end while it is frozen: their callers are answered now.
        sb.service.abandonExecs("the sandbox was contained while the command ran")
        var record = sb.record.withLock { r in
            r.state = .frozen
            r.lastActivityAt = Date()
            return r
        }
        try? store.updateSandbox(record)
        // 2. What ran in it.
        let processes = cgroup.processes().sorted().map { running[$0] ?? ProcessEntry.read($0) }
        // 3. Revoke: its egress gateway (and with it every credential it could have had injected).
        var revoked: [String] = []
        var links: [[String: Any]] = []
        if let egress = sb.egress {
            links.append(["kind": "egress", "socket": egress.directory + "/egress.sock", "port": Int(sb.spec.network.proxyPort)])
            egress.stop()
            revoked.append("egress-gateway")
            revoked += sb.spec.secrets.map { "secret:\($0.name)" }
        }
        // 4. The snapshot: a JSON entry first, then the workspace.
        let created = Date()
        let summary: [String: Any] = [
            "sandbox": id, "reason": reason, "created_at": Self.timestamp(created), "principal": principal,
            "processes": processes.map(\.json), "links": links, "revoked": revoked, "labels": record.labels, "profile": record.profile,
        ]
        let summaryJSON = (try? [UInt8](JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .prettyPrinted]))) ?? []
        let prefix = TarEntry.file(name: "airlock-snapshot.json", contents: summaryJSON)
        let meta: [String: Any] = [
            "reason": reason, "links": links, "revoked": revoked, "process_count": processes.count, "principal": principal,
        ]
        let snapshot = try await seal(area: sb.workspace, spec: sb.spec, sandbox: id, kind: .snapshot, meta: meta, prefix: prefix)
        emit("control.sandbox.contained", record, principal: principal, [
            ("airlock.reason", .string(reason)), ("airlock.snapshot.id", .string(snapshot.id)),
            ("airlock.revoked", .array(revoked.map { .string($0) })), ("airlock.process.count", .int(Int64(processes.count))),
        ])
        record = sb.record.withLock { $0 }
        return (record, snapshot, summary)
    }

    static func timestamp(_ d: Date) -> String {
        Clock.rfc3339(Int64((d.timeIntervalSince1970 * 1e9).rounded()))
    }

    // MARK: Recovery

    /// After a restart (a crash included): every sandbox the store says was running on this
    /// host is reaped — its helper (which killed the sandbox when it lost its lifeline) is
    /// waited for or killed, its cgroups emptied and removed, its airlock directory and
    /// workspace removed (a persistent workspace is sealed first) — and recorded as stopped
    /// with the reason `daemon_restart`. Workspace areas no record owns are removed too.
    public func recover() async -> [String] {
        let records = (try? store.sandboxes(host: settings.hostname)) ?? []
        var reaped: [String] = []
        for var r in records where r.state != .stopped {
            if let pid = r.helperPID { Self.reapHelper(pid) }
            for dir in r.cgroupDirectories.reversed() { Self.removeCgroup(dir) }
            if let dir = r.airlockDirectory {
                // Its owner (the daemon that died) no longer holds its lock.
                RunEgress.reapLeftovers(in: String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)]))
                // One made by an earlier version has no lock: removed by its known contents.
                for name in ["egress.sock", "ca.pem", "ca-bundle.pem"] { unlink(dir + "/" + name) }
                rmdir(dir)
            }
            if r.persist, let path = r.workspacePath, let spec = try? JSONDecoder().decode(SandboxSpec.self, from: Data(r.spec.utf8)) {
                let area = WorkspaceArea(path: path, mounted: r.workspaceMounted)
                if let sealed = try? await seal(area: area, spec: spec, sandbox: r.id, kind: .workspace, meta: ["labels": r.labels, "recovered": true]) {
                    r.workspaceID = sealed.id
                }
            }
            if let path = r.workspacePath { WorkspaceArea.remove(path: path, mounted: r.workspaceMounted) }
            r.state = .stopped
            r.stopReason = "daemon_restart"
            r.stoppedAt = Date()
            try? store.updateSandbox(r)
            emit("control.sandbox.reaped", r, principal: "airlock", [("airlock.stop_reason", .string("daemon_restart"))])
            reaped.append(r.id)
        }
        // Areas left by a crash between creating them and recording them.
        let known = Set(records.compactMap(\.workspacePath))
        if let names = try? FileManager.default.contentsOfDirectory(atPath: settings.workspacesDirectory) {
            for name in names where Identifiers.isSandbox(name) {
                let path = settings.workspacesDirectory + "/" + name
                if !known.contains(path) || records.first(where: { $0.workspacePath == path })?.state == .stopped {
                    WorkspaceArea.remove(path: path, mounted: WorkspaceArea.isMountPoint(path))
                }
            }
        }
        return reaped
    }

    /// The helper of a sandbox whose daemon died: it killed the sandbox and exits; wait for
    /// it a little, then kill it (only if it is still an airlock helper).
    static func reapHelper(_ pid: Int32) {
        func isHelper() -> Bool {
            guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe") else { return false }
            return exe.hasSuffix("/airlock-sandbox")
        }
        for _ in 0..<40 where isHelper() { usleep(50_000) }
        if isHelper() { Glibc.kill(pid, SIGKILL) }
    }

    /// Kills whatever is left in a cgroup directory and removes it.
    static func removeCgroup(_ dir: String) {
        for _ in 0..<20 {
            let procs = (FileManager.default.contents(atPath: dir + "/cgroup.procs").map { String(decoding: $0, as: UTF8.self) } ?? "")
                .split(separator: "\n").compactMap { Int32($0) }
            if procs.isEmpty { break }
            // A frozen v1 group must thaw for SIGKILL to land.
            _ = try? "THAWED".write(toFile: dir + "/freezer.state", atomically: false, encoding: .utf8)
            for p in procs { Glibc.kill(p, SIGKILL) }
            usleep(20_000)
        }
        rmdir(dir)
    }
}

/// A minimal ustar header for one regular file (the snapshot's summary entry).
enum TarEntry {
    static func file(name: String, contents: [UInt8], mode: Int = 0o644, mtime: Int = Int(Date().timeIntervalSince1970)) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ offset: Int, _ len: Int) {
            let b = Array(s.utf8.prefix(len))
            h.replaceSubrange(offset..<(offset + b.count), with: b)
        }
        func octal(_ v: Int, _ offset: Int, _ len: Int) { put(String(String(v, radix: 8).suffix(len - 1)).leftPad(len - 1), offset, len - 1) }
        put(name, 0, 100)
        octal(mode, 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(contents.count, 124, 12)
        octal(mtime, 136, 12)
        put("        ", 148, 8)
        h[156] = UInt8(ascii: "0")
        put("ustar", 257, 6)
        put("00", 263, 2)
        let sum = h.reduce(0) { $0 + Int($1) }
        put(String(String(sum, radix: 8)).leftPad(6), 148, 6)
        h[154] = 0
        h[155] = UInt8(ascii: " ")
        var out = h + contents
        let pad = (512 - contents.count % 512) % 512
        out += [UInt8](repeating: 0, count: pad)
        return out
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
