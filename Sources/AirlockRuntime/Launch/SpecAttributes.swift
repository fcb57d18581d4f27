import AirlockEvents
import AirlockCore

/// The `sandbox.created` event's view of a spec: everything that decides what the
/// sandbox may do, and no environment values (they may hold secrets; only names).
enum SpecAttributes {
    static func of(_ spec: SandboxSpec, cgroup: String?) -> [(String, JSONValue)] {
        var a: [(String, JSONValue)] = [
            ("airlock.profile", .string(spec.profile)),
            ("airlock.runtime", .string(spec.runtime.rawValue)),
            ("process.command_args", .array(spec.command.map { .string($0) })),
            ("airlock.user", .string(spec.user.name)),
            ("airlock.network.mode", .string(spec.network.mode.rawValue)),
            ("airlock.syscalls", .string(spec.syscalls.rawValue)),
            ("airlock.env.names", .array(spec.environment.map { .string($0.name) })),
            ("airlock.fs.tmp_bytes", .int(Int64(spec.filesystem.tmpSize))),
            ("airlock.limits.open_files", .int(Int64(spec.limits.openFiles))),
            ("airlock.cgroup", cgroup.map { .string($0) } ?? .null),
        ]
        if let ws = spec.filesystem.workspace {
            a.append(("airlock.workspace.path", .string(ws.hostPath)))
            a.append(("airlock.workspace.read_only", .bool(ws.readOnly)))
        }
        if !spec.filesystem.mounts.isEmpty {
            a.append(("airlock.mounts", .array(spec.filesystem.mounts.map {
                .string("\($0.source):\($0.destination):\($0.readOnly ? "ro" : "rw")")
            })))
        }
        if spec.network.mode == .proxied {
            let n = spec.network
            a.append(("airlock.network.allow", .array(n.allow.map { .string($0.label) })))
            if !n.deny.isEmpty { a.append(("airlock.network.deny", .array(n.deny.map { .string($0.label) }))) }
            if !n.inspectTLS.isEmpty { a.append(("airlock.network.inspect_tls", .array(n.inspectTLS.map { .string($0) }))) }
            a.append(("airlock.network.dlp", .string(n.dlp.rawValue)))
        }
        if !spec.secrets.isEmpty {
            a.append(("airlock.secrets", .array(spec.secrets.map { s in .string(s.inject.map { "\(s.name)->\($0.host)" } ?? s.name) })))
        }
        if let w = spec.limits.wallClock { a.append(("airlock.limits.wall_clock_ms", .int(w.milliseconds))) }
        if let m = spec.limits.memoryBytes { a.append(("airlock.limits.memory_bytes", .int(Int64(m)))) }
        if let c = spec.limits.cpus { a.append(("airlock.limits.cpus", .double(c))) }
        if let p = spec.limits.pids { a.append(("airlock.limits.pids", .int(Int64(p)))) }
        return a
    }
}
