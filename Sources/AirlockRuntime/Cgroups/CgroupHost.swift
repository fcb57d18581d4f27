#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What this host offers for cgroup limits, found once per process.
///
/// Detection reads `/proc/self/mountinfo` and `/proc/self/cgroup` (passed in, so it can be
/// tested on sample texts) and touches only the few cgroup files it needs: each cgroup2
/// mount's `cgroup.controllers`, and `access(2)` on the directories it would write. It never
/// scans a directory.
///
/// - cgroup v2 is chosen only when a cgroup2 mount offers the `memory` and `pids` controllers.
///   A hybrid host's empty `/sys/fs/cgroup/unified` does not; its v1 hierarchies are used.
/// - As root, sandboxes live in `<mount>/airlock/airlock-<id>` (v2) or
///   `<hierarchy mount>/airlock/airlock-<id>` in each v1 hierarchy used.
/// - Rootless, only v2 can work: the parent of the process's own cgroup must be delegated to
///   the user (writable, with writable `cgroup.subtree_control` and `cgroup.procs`), as systemd
///   does for everything under `user@UID.service`. Sandboxes then live in `<that parent>/airlock/`.
public struct CgroupHost: Sendable {
    /// The interface sandboxes use, or nil when no cgroup limit can be enforced here.
    public var version: CgroupVersion? {
        switch layout {
        case .v1: .v1
        case .v2: .v2
        case .unavailable: nil
        }
    }

    /// Why `version` is nil, written for the person running Airlock: what is not enforced and what to do.
    public var unavailableReason: String? {
        if case .unavailable(let reason) = layout { return reason }
        return nil
    }

    /// The controllers sandbox cgroups get on this host, e.g. `["cpu", "cpuacct", "freezer", "memory", "pids"]`.
    public var controllers: [String] {
        switch layout {
        case .v1(let hierarchies): hierarchies.flatMap(\.controllers).sorted()
        case .v2(_, let controllers): controllers
        case .unavailable: []
        }
    }

    /// One line for `--explain` and the `sandbox.created` event.
    public var summary: String {
        switch layout {
        case .v1(let hierarchies):
            "cgroup v1 ("
                + hierarchies.map { "\($0.controllers.joined(separator: ",")) at \($0.mountPoint)" }
                .joined(separator: "; ") + ")"
        case .v2(let base, let controllers):
            "cgroup v2 at \(base) (\(controllers.joined(separator: ", ")))"
        case .unavailable(let reason):
            "no cgroup limits: \(reason)"
        }
    }

    /// A v1 hierarchy the sandbox gets a group in.
    struct Hierarchy: Sendable, Equatable {
        var mountPoint: String
        /// The controllers bound to it that Airlock uses (`cpu,cpuacct` co-mounted gives both).
        var controllers: [String]
        /// Whether `cpuset` is co-mounted: new groups then need `cpuset.cpus`/`cpuset.mems` filled in.
        var hasCpuset: Bool = false
    }

    enum Layout: Sendable, Equatable {
        case v1([Hierarchy])
        /// `base` is the directory `airlock/` is created in; `controllers` the ones to enable below it.
        case v2(base: String, controllers: [String])
        case unavailable(String)
    }

    let layout: Layout
    let fs: any CgroupFS

    init(layout: Layout, fs: any CgroupFS) {
        self.layout = layout
        self.fs = fs
    }

    /// v1 controllers a sandbox gets a group in: the limited ones, plus `cpuacct` for CPU time
    /// and `freezer` for freeze and kill.
    static let v1Controllers = ["memory", "pids", "cpu", "cpuacct", "freezer"]
    /// v2 controllers enabled for sandboxes, in the order written to `cgroup.subtree_control`
    /// (freezing and `cgroup.kill` are core v2 features, not controllers).
    static let v2Controllers = ["cpu", "memory", "pids"]
    /// A cgroup2 mount without these cannot bound a sandbox and is not chosen.
    static let v2Required = ["memory", "pids"]

    static let notEnforced = "memory, pids and cpu limits are NOT enforced"

    /// Detects the host's cgroup setup for a process running as `uid`.
    public static func detect(
        mountinfo: String = CgroupHost.readProcFile("/proc/self/mountinfo"),
        selfCgroup: String = CgroupHost.readProcFile("/proc/self/cgroup"),
        uid: uid_t = geteuid()
    ) -> CgroupHost {
        detect(mountinfo: mountinfo, selfCgroup: selfCgroup, uid: uid, fs: SystemCgroupFS())
    }

    /// The content of a `/proc` file, or "" when it cannot be read (detection then finds nothing).
    @usableFromInline
    static func readProcFile(_ path: String) -> String {
        (try? SystemCgroupFS().readFile(path)) ?? ""
    }

    static func detect(mountinfo: String, selfCgroup: String, uid: uid_t, fs: any CgroupFS) -> CgroupHost {
        CgroupHost(layout: detectLayout(mountinfo: mountinfo, selfCgroup: selfCgroup, uid: uid, fs: fs), fs: fs)
    }

    private static func detectLayout(mountinfo: String, selfCgroup: String, uid: uid_t, fs: any CgroupFS) -> Layout {
        let mounts = CgroupProcFiles.parseMountinfo(mountinfo)

        var unifiedWithoutControllers: [String] = []
        for mount in mounts where mount.kind == .v2 {
            let available = controllers(at: mount.mountPoint, fs: fs)
            guard v2Required.allSatisfy(available.contains) else {
                unifiedWithoutControllers.append(mount.mountPoint)
                continue
            }
            return detectV2(mount: mount, available: available, selfCgroup: selfCgroup, uid: uid, fs: fs)
        }

        var hierarchies: [Hierarchy] = []
        var taken: Set<String> = []
        for mount in mounts {
            guard case .v1(let bound) = mount.kind else { continue }
            let used = v1Controllers.filter { bound.contains($0) && !taken.contains($0) }
            guard !used.isEmpty else { continue }
            taken.formUnion(bound)
            hierarchies.append(
                Hierarchy(mountPoint: mount.mountPoint, controllers: used, hasCpuset: bound.contains("cpuset")))
            if mount.readOnly || (uid == 0 && !fs.isWritable(mount.mountPoint)) {
                return .unavailable(
                    "the cgroup v1 hierarchy at \(mount.mountPoint) is read-only (as inside most containers): "
                        + "\(notEnforced); run Airlock on the host, or give the container a writable cgroup mount")
            }
        }
        guard taken.contains("memory") || taken.contains("pids") || taken.contains("cpu") else {
            var reason =
                "no cgroup2 mount with the memory and pids controllers and no cgroup v1 memory, pids or cpu hierarchy in /proc/self/mountinfo"
            if !unifiedWithoutControllers.isEmpty {
                reason += " (\(unifiedWithoutControllers.joined(separator: ", ")) has no controllers)"
            }
            return .unavailable(reason + ": \(notEnforced)")
        }
        guard uid == 0 else {
            return .unavailable(
                "this host uses cgroup v1, which cannot be delegated to an unprivileged user (uid \(uid)): "
                    + "\(notEnforced); run as root, or on a host with cgroup v2")
        }
        return .v1(hierarchies)
    }

    private static func detectV2(
        mount: CgroupMount, available: [String], selfCgroup: String, uid: uid_t, fs: any CgroupFS
    )
        -> Layout
    {
        let hint = "run as root or under `systemd-run --user --scope -p Delegate=yes`"
        if uid == 0 {
            guard !mount.readOnly, fs.isWritable(mount.mountPoint) else {
                return .unavailable(
                    "cgroup v2 at \(mount.mountPoint) is read-only (as inside most containers): \(notEnforced); "
                        + "run Airlock on the host, or give the container a writable cgroup mount")
            }
            return .v2(base: mount.mountPoint, controllers: v2Controllers.filter(available.contains))
        }

        // Rootless: the parent of our own cgroup, if the user may create groups, enable controllers
        // and move processes there (moving needs write access to the common ancestor's cgroup.procs).
        guard let ownPath = CgroupProcFiles.parseSelfCgroup(selfCgroup).v2,
            let relative = relativePath(ownPath, under: mount.root)
        else {
            return .unavailable(
                "cannot tell which cgroup v2 group this process is in (no `0::` line of /proc/self/cgroup under \(mount.mountPoint)): \(notEnforced); \(hint)"
            )
        }
        guard let lastSlash = relative.lastIndex(of: "/"), !relative.isEmpty else {
            return .unavailable(
                "this process runs in the root of its cgroup v2 tree at \(mount.mountPoint), which cannot be delegated to uid \(uid): \(notEnforced); \(hint)"
            )
        }
        let parent = mount.mountPoint + relative[..<lastSlash]
        for path in [parent, parent + "/cgroup.subtree_control", parent + "/cgroup.procs"] where !fs.isWritable(path) {
            return .unavailable(
                "cgroup v2 at \(mount.mountPoint) is not delegated to uid \(uid) (no write access to \(path)): \(notEnforced); \(hint)"
            )
        }
        let delegated = controllers(at: parent, fs: fs)
        let missing = v2Required.filter { !delegated.contains($0) }
        guard missing.isEmpty else {
            return .unavailable(
                "the cgroup v2 subtree \(parent) delegated to uid \(uid) lacks the \(missing.joined(separator: " and ")) controller\(missing.count > 1 ? "s" : "") "
                    + "(it has: \(delegated.isEmpty ? "none" : delegated.joined(separator: " "))): \(notEnforced); "
                    + "delegate them with a systemd drop-in for user@.service (`Delegate=cpu memory pids`) or run as root"
            )
        }
        return .v2(base: parent, controllers: v2Controllers.filter(delegated.contains))
    }

    /// `/a/b/c` under mount root `/a` → `/b/c`; under `/` → `/a/b/c`; the root itself → "".
    private static func relativePath(_ path: String, under root: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        if root == "/" { return path == "/" ? "" : path }
        if path == root { return "" }
        guard path.hasPrefix(root + "/") else { return nil }
        return String(path.dropFirst(root.count))
    }

    private static func controllers(at directory: String, fs: any CgroupFS) -> [String] {
        guard let text = try? fs.readFile(directory + "/cgroup.controllers") else { return [] }
        return CgroupProcFiles.parseList(text)
    }
}
