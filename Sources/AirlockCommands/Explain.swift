import AirlockCore
import AirlockRuntime

/// `airlock run --explain`: the resolved spec, as the runtime will build it.
enum Explain {
    static func render(_ spec: SandboxSpec) throws(AirlockError) -> String {
        var out: [String] = []
        func line(_ s: String) { out.append(s) }
        let l = spec.limits
        line("profile:      \(spec.profile) (runtime: \(spec.runtime.rawValue))")
        line("command:      \(spec.command.joined(separator: " "))")
        line("user:         \(spec.user.name) (uid \(spec.user.uid), gid \(spec.user.gid)), home \(spec.user.home), no capabilities, no_new_privs")
        line("namespaces:   user, mount, pid, network, ipc, uts, cgroup")
        let n = spec.network
        switch n.mode {
        case .none:
            line("network:      none (loopback only, no route, no DNS)")
        case .proxied:
            line("network:      proxied (loopback only; the egress gateway on 127.0.0.1:\(n.proxyPort) and [::1]:\(n.proxyPort), no DNS)")
            line("  allow:      \(n.allow.isEmpty ? "(nothing: every request is refused)" : n.allow.map(\.label).joined(separator: "; "))")
            if !n.deny.isEmpty { line("  deny:       \(n.deny.map(\.label).joined(separator: "; "))") }
            if !n.inspectTLS.isEmpty { line("  inspect:    \(n.inspectTLS.joined(separator: ", ")) (TLS terminated with a per-sandbox CA)") }
            var budgets: [String] = []
            if let b = n.budgets.bytesOut { budgets.append("out \(Units.formatBytes(b))") }
            if let b = n.budgets.bytesIn { budgets.append("in \(Units.formatBytes(b))") }
            if let r = n.budgets.requestsPerMinute { budgets.append("\(r) requests/min") }
            if !budgets.isEmpty { line("  budgets:    \(budgets.joined(separator: ", "))") }
            line("  dlp:        \(n.dlp.rawValue)")
        }
        for s in spec.secrets {
            let how = s.inject.map { "placeholder; injected as \($0.header) on requests to \($0.host)" } ?? "value passed in; refused on the way out"
            line("secret:       \(s.name) from \(s.source) (\(how))")
        }
        line("workdir:      \(spec.workingDirectory)")
        var limits: [String] = []
        if let w = l.wallClock { limits.append("wall clock \(Units.formatDuration(w))") }
        if let m = l.memoryBytes { limits.append("memory \(Units.formatBytes(m)) (swap included)") }
        if let c = l.cpus { limits.append("cpus \(c)") }
        if let p = l.pids { limits.append("pids \(p)") }
        limits.append("disk \(Units.formatBytes(spec.filesystem.tmpSize)) (/tmp, $HOME and /dev/shm together)")
        limits.append("open files \(l.openFiles)")
        if let f = l.fileSize { limits.append("file size \(Units.formatBytes(f))") }
        limits.append("no core dumps")
        line("limits:       " + limits.joined(separator: ", "))
        let cg = CgroupHost.detect()
        line("cgroups:      \(cg.version.map { "\($0) (\(cg.controllers.joined(separator: ", ")))" } ?? "unavailable: \(cg.unavailableReason ?? "?")") [\(spec.cgroups.rawValue)]")
        line("environment:  \(spec.environment.map(\.name).joined(separator: ", ")) (host environment not inherited)")
        line("file system:")
        let records = try PlanBuilder(host: .live, seccomp: nil, cgroupProcs: []).records(for: spec)
        var landlock: [String] = []
        for r in records {
            switch r {
            case .bind(let s, let d, let f):
                let mode = f.contains(.readOnly) ? "ro" : "rw"
                let from = f.contains(.sourceInSandbox) ? "" : "  <- \(s)"
                line("  \(d.padding(24)) bind \(mode)\(flagText(f))\(from)")
            case .symlink(let t, let p): line("  \(p.padding(24)) symlink -> \(t)")
            case .tmpfs(let d, let size, _, let f): line("  \(d.padding(24)) tmpfs \(Units.formatBytes(size))\(flagText(f))")
            case .proc(let d): line("  \(d.padding(24)) proc (new pid namespace)")
            case .devpts(let d): line("  \(d.padding(24)) devpts (private instance)")
            case .file(let p, _, _): line("  \(p.padding(24)) generated")
            case .mask(let p): line("  \(p.padding(24)) masked")
            case .denyWrite(let w, let rel): line("  \((w + "/" + rel).padding(24)) read-only (protected)")
            case .remountReadOnly(let d): line("  \(d.padding(24)) read-only once built")
            case .landlock(let p, let a, _): landlock.append("\(p) \(a)")
            default: break
            }
        }
        if let ws = spec.filesystem.workspace, !ws.readOnly {
            line("  protected in /workspace when present (read-only): \(ws.denyWrite.joined(separator: " "))")
            line("  protected even when missing (empty read-only placeholder directory): \(ws.placeholderEntries.joined(separator: " "))")
        }
        line("landlock:     \(spec.landlock.rawValue): " + landlock.joined(separator: ", "))
        line("seccomp:      profile \(spec.syscalls.rawValue), arch \(SeccompArch.native)")
        for s in SeccompSummary.lines(profile: spec.syscalls, arch: .native) { line("  " + s) }
        return out.joined(separator: "\n")
    }

    static func flagText(_ f: MountFlags) -> String {
        var parts: [String] = []
        if f.contains(.noSUID) { parts.append("nosuid") }
        if f.contains(.noDev) { parts.append("nodev") }
        if f.contains(.noExec) { parts.append("noexec") }
        return parts.isEmpty ? "" : " " + parts.joined(separator: ",")
    }
}
