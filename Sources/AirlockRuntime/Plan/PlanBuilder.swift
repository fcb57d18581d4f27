#if canImport(Glibc)
import Glibc
#endif
import AirlockCore

/// Turns a resolved `SandboxSpec` into the helper's plan: namespaces, id maps,
/// the root file system, Landlock rules, rlimits, seccomp, and the command.
///
/// The layout it builds (see docs/sandbox.md):
/// - `/` a small tmpfs, read-only once populated;
/// - system trees (`/usr`, `/bin`, `/lib*`, `/sbin`, `/opt`) bound read-only, nosuid, nodev
///   (merged-/usr symlinks are recreated as symlinks);
/// - `/etc` with only `FilesystemSpec.etcEntries` from the host, read-only, and generated
///   `passwd`, `group`, `hosts`, `hostname`, `resolv.conf`;
/// - a fresh `/proc` with the kernel knobs (`/proc/sys`, `sysrq-trigger`, …) read-only and
///   information leaks (`kcore`, `keys`, `timer_list`, …) masked;
/// - a minimal `/dev`: null, zero, full, random, urandom, tty, a private devpts, shm, fd links;
/// - `/tmp` and `$HOME` as size-limited tmpfs; `/workspace` bound from the host with the
///   mandatory-deny paths inside it re-bound read-only;
/// - with a proxied network, `/run/airlock`: the run's airlock directory (the egress
///   gateway's socket and CA files) bound read-only, and PID 1 relaying the loopback proxy
///   port to that socket.
public struct PlanBuilder: Sendable {
    public var host: HostProbe
    /// Compiled seccomp program (raw `sock_filter` bytes), or nil for none.
    public var seccomp: [UInt8]?
    /// cgroup v1: `cgroup.procs` files the helper joins before creating the namespaces.
    public var cgroupProcs: [String]
    /// cgroup v2: the directory PID 1 is cloned into.
    public var cgroupDirectory: String?

    /// Empty host directories (cgroups, placeholders) the helper removes if airlock dies mid-run.
    public var cleanupDirectories: [String] = []
    /// Top-level workspace names that may be placeholders (removed via fd 6 if airlock dies).
    public var placeholderNames: [String] = []
    /// The host ids the sandbox user maps to. Defaults to the caller's (rootless); when the
    /// caller is root the runner sets a per-sandbox unprivileged pair, never 0.
    public var hostIdentity: (uid: UInt32, gid: UInt32)?
    /// With `hostIdentity`: owner of the workspace on disk; writable binds are idmapped so
    /// files owned by it appear owned by the sandbox user, and new files are stored as it.
    public var idmapDiskOwner: (uid: UInt32, gid: UInt32)?
    /// Proxied network: the host directory holding the egress gateway's socket
    /// (`egress.sock`) and CA files, bound read-only at `airlockMountPoint`. Required when
    /// the spec's network is proxied, ignored otherwise.
    public var airlockDirectory: String?
    /// A long-lived sandbox (``ServiceSandbox``): no command of its own; execs arrive on fd 7.
    public var service = false

    /// Where the airlock directory appears inside the sandbox.
    public static let airlockMountPoint = "/run/airlock"
    /// Where the scratch tmpfs is staged while its directories are bound into place.
    static let scratchStaging = "/.airlock-scratch"
    /// The egress gateway's socket, by name within the airlock directory.
    public static let egressSocketName = "egress.sock"

    public init(host: HostProbe, seccomp: [UInt8]?, cgroupProcs: [String], cgroupDirectory: String? = nil) {
        self.host = host
        self.seccomp = seccomp
        self.cgroupProcs = cgroupProcs
        self.cgroupDirectory = cgroupDirectory
    }

    public static let namespaceFlags: UInt64 =
        0x1000_0000 /* CLONE_NEWUSER */ | 0x0002_0000 /* NEWNS */ | 0x2000_0000 /* NEWPID */
        | 0x4000_0000 /* NEWNET */ | 0x0800_0000 /* NEWIPC */ | 0x0400_0000 /* NEWUTS */
        | 0x0200_0000 /* NEWCGROUP */

    static let procReadOnly = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"]
    static let procMasked = [
        "/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/sched_debug",
        "/proc/latency_stats", "/proc/kallsyms", "/proc/kmsg", "/proc/acpi", "/proc/scsi", "/proc/config.gz",
        "/proc/kpageflags", "/proc/kpagecount", "/proc/kpagecgroup", "/proc/slabinfo", "/proc/pagetypeinfo",
        "/proc/vmallocinfo", "/proc/asound", "/proc/timer_stats", "/proc/dynamic_debug",
    ]
    static let devices = ["null", "zero", "full", "random", "urandom", "tty"]
    /// `/etc` files up to this size are copied rather than bound.
    static let copyLimit = 64 << 10

    public func records(for spec: SandboxSpec) throws(AirlockError) -> [PlanRecord] {
        var r: [PlanRecord] = []
        r.append(.namespaces(Self.namespaceFlags))
        let outside = hostIdentity ?? (host.euid, host.egid)
        r.append(.idMap(insideUID: spec.user.uid, outsideUID: outside.uid, insideGID: spec.user.gid, outsideGID: outside.gid))
        if let owner = idmapDiskOwner, let hostIdentity {
            r.append(.idmap(diskUID: owner.uid, diskGID: owner.gid, hostUID: hostIdentity.uid, hostGID: hostIdentity.gid))
        }
        let idmap: MountFlags = idmapDiskOwner != nil && hostIdentity != nil ? [.idmapped] : []
        for procs in cgroupProcs { r.append(.cgroupJoin(procs)) }
        if let cgroupDirectory { r.append(.cgroupDirectory(cgroupDirectory)) }
        for dir in cleanupDirectories { r.append(.cleanupDirectory(dir)) }
        for name in placeholderNames { r.append(.placeholder(name)) }
        if !placeholderNames.isEmpty { r.append(.workspaceLock) }
        r.append(.hostname(spec.hostname))
        if let wall = spec.limits.wallClock { r.append(.wallClock(milliseconds: UInt64(max(1, wall.milliseconds)))) }
        r.append(.rootTmpfs(size: 1 << 20))

        var landlock: [PlanRecord] = [.landlock(path: "/", access: .listOnly, optional: false)]
        let ro: MountFlags = [.readOnly, .noSUID, .noDev]

        // System trees.
        for path in spec.filesystem.systemPaths {
            switch host.kind(path) {
            case .missing, .file: continue
            case .symlink(let target):
                r.append(.symlink(target: target, path: path))
            case .directory:
                r.append(.bind(source: path, destination: path, flags: ro.union([.recursive, .optional])))
                landlock.append(.landlock(path: path, access: .read, optional: true))
            }
        }

        // /etc: an allowlist from the host plus generated identity files.
        r.append(.directory("/etc", mode: 0o755))
        for entry in spec.filesystem.etcEntries {
            let path = "/etc/" + entry
            switch host.kind(path) {
            case .missing: continue
            case .symlink(let target) where !target.hasPrefix("/"):
                // A relative link inside /etc: recreate it; its target is bound by its own entry, if allowed.
                r.append(.symlink(target: target, path: path))
            case .file:
                // Small text files are copied into the (read-only) root: far cheaper than a bind each.
                if let (text, mode) = host.smallText(path, Self.copyLimit) {
                    r.append(.file(path, content: text, mode: mode))
                } else {
                    r.append(.bind(source: path, destination: path, flags: ro.union([.optional])))
                }
            default:
                r.append(.bind(source: path, destination: path, flags: ro.union([.recursive, .optional])))
            }
        }
        for (name, content) in generatedEtc(spec) {
            r.append(.file("/etc/" + name, content: content, mode: 0o644))
        }
        landlock.append(.landlock(path: "/etc", access: .read, optional: false))

        // /proc: fresh for the new pid namespace, knobs read-only, leaks masked.
        r.append(.proc("/proc"))
        for path in Self.procReadOnly {
            r.append(.bind(source: path, destination: path, flags: ro.union([.sourceInSandbox, .optional, .recursive, .noExec])))
        }
        for path in Self.procMasked { r.append(.mask(path)) }
        landlock.append(.landlock(path: "/proc", access: .read, optional: false))

        // /dev: minimal.
        r.append(.tmpfs(destination: "/dev", size: 64 << 10, mode: 0o755, flags: [.noExec]))
        for dev in Self.devices {
            r.append(.bind(source: "/dev/" + dev, destination: "/dev/" + dev, flags: [.noSUID, .noExec, .optional]))
        }
        r.append(.devpts("/dev/pts"))
        r.append(.symlink(target: "pts/ptmx", path: "/dev/ptmx"))
        r.append(.symlink(target: "/proc/self/fd", path: "/dev/fd"))
        r.append(.symlink(target: "/proc/self/fd/0", path: "/dev/stdin"))
        r.append(.symlink(target: "/proc/self/fd/1", path: "/dev/stdout"))
        r.append(.symlink(target: "/proc/self/fd/2", path: "/dev/stderr"))
        landlock.append(.landlock(path: "/dev", access: .device, optional: false))

        // Writable scratch space: one tmpfs of the disk budget holds /tmp, $HOME and
        // /dev/shm, so together they cannot hold more than `limits.disk`. It is mounted at a
        // staging point, its three directories are bound into place, and the staging mount
        // is detached.
        let scratch = Self.scratchStaging
        r.append(.tmpfs(destination: scratch, size: spec.filesystem.tmpSize, mode: 0o755, flags: []))
        r.append(.directory(scratch + "/tmp", mode: 0o1777))
        r.append(.directory(scratch + "/home", mode: 0o700))
        r.append(.directory(scratch + "/shm", mode: 0o1777))
        r.append(.bind(source: scratch + "/tmp", destination: "/tmp", flags: [.sourceInSandbox, .noSUID, .noDev]))
        r.append(.bind(source: scratch + "/home", destination: spec.user.home, flags: [.sourceInSandbox, .noSUID, .noDev]))
        r.append(.bind(source: scratch + "/shm", destination: "/dev/shm", flags: [.sourceInSandbox, .noSUID, .noDev, .noExec]))
        r.append(.unmount(scratch))
        // /dev holds only mount points and symlinks: read-only once they are in place, so it
        // is no scratch space (nor an inode sink) of its own. Its devices, /dev/pts and
        // /dev/shm are mounts of their own and stay writable.
        r.append(.remountReadOnly("/dev"))
        landlock.append(.landlock(path: "/tmp", access: .write, optional: false))
        landlock.append(.landlock(path: spec.user.home, access: .write, optional: false))

        // The workspace and its protected paths.
        if let ws = spec.filesystem.workspace {
            var flags: MountFlags = [.noSUID, .noDev]
            if ws.readOnly { flags.insert(.readOnly) } else { flags.formUnion(idmap) }
            r.append(.bind(source: ws.hostPath, destination: "/workspace", flags: flags))
            if !ws.readOnly {
                for rel in protectedPaths(in: ws) {
                    r.append(.denyWrite(workspace: "/workspace", relativePath: rel))
                }
            }
            landlock.append(.landlock(path: "/workspace", access: ws.readOnly ? .read : .write, optional: false))
        }
        for m in spec.filesystem.mounts {
            var flags: MountFlags = [.noSUID, .noDev, .recursive]
            if m.readOnly { flags.insert(.readOnly) } else { flags.formUnion(idmap) }
            r.append(.bind(source: m.source, destination: m.destination, flags: flags))
            landlock.append(.landlock(path: m.destination, access: m.readOnly ? .read : .write, optional: false))
        }

        // The airlock: the only way out (proxied network). Read-only, so the sandbox can
        // neither plant a socket of its own nor replace the gateway's.
        var egress: PlanRecord?
        if spec.network.mode == .proxied {
            guard let dir = airlockDirectory, dir.hasPrefix("/") else {
                throw AirlockError(
                    .sandboxSetup,
                    "network mode 'proxied' needs the egress gateway's airlock directory (an absolute host path), and none was given")
            }
            guard let port = UInt16(exactly: spec.network.proxyPort), port > 0 else {
                throw AirlockError(.policy, "network.proxy_port \(spec.network.proxyPort) is not a TCP port (1-65535)")
            }
            r.append(.bind(source: dir, destination: Self.airlockMountPoint, flags: [.readOnly, .noSUID, .noDev, .noExec]))
            landlock.append(.landlock(path: Self.airlockMountPoint, access: .read, optional: false))
            egress = .egress(port: port, socket: Self.airlockMountPoint + "/" + Self.egressSocketName)
        }

        r.append(.remountReadOnly("/"))
        if let egress { r.append(egress) }

        r.append(.landlockMode(required: spec.landlock == .required))
        r.append(contentsOf: landlock)
        r.append(.rlimit(resource: Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0))
        r.append(.rlimit(resource: Int32(RLIMIT_NOFILE.rawValue), soft: UInt64(spec.limits.openFiles), hard: UInt64(spec.limits.openFiles)))
        if let fsize = spec.limits.fileSize {
            r.append(.rlimit(resource: Int32(RLIMIT_FSIZE.rawValue), soft: fsize, hard: fsize))
        }
        if let seccomp { r.append(.seccomp(seccomp)) }
        for v in spec.environment { r.append(.environment(v.name + "=" + v.value)) }
        if service { r.append(.service) } else { for a in spec.command { r.append(.argument(a)) } }
        r.append(.workingDirectory(spec.workingDirectory))
        return r
    }

    /// The protected entries that exist in the workspace (missing ones that matter are
    /// covered by placeholders the runner creates first; see `WorkspaceGuard`).
    func protectedPaths(in ws: WorkspaceGrant) -> [String] {
        var out: [String] = []
        for entry in ws.denyWrite {
            let rel = entry.hasSuffix("/") ? String(entry.dropLast()) : entry
            if host.kind(ws.hostPath + "/" + rel) != .missing { out.append(rel) }
        }
        return out
    }

    func generatedEtc(_ spec: SandboxSpec) -> [(String, String)] {
        let u = spec.user
        var passwd = "root:x:0:0:root:/root:/bin/sh\n"
        var group = "root:x:0:\n"
        if u.uid != 0 {
            passwd += "\(u.name):x:\(u.uid):\(u.gid):Airlock sandbox user:\(u.home):/bin/sh\n"
            group += "\(u.name):x:\(u.gid):\n"
        }
        passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        group += "nogroup:x:65534:\n"
        let hosts = "127.0.0.1\tlocalhost \(spec.hostname)\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        let resolv = "# airlock: this sandbox has no DNS (network mode: \(spec.network.mode.rawValue))\n"
        return [("passwd", passwd), ("group", group), ("hosts", hosts), ("hostname", spec.hostname + "\n"), ("resolv.conf", resolv)]
    }
}
