import AirlockCore
import Testing

@testable import AirlockRuntime

#if canImport(Glibc)
    import Glibc
#endif

@Suite("cgroup detection")
struct CgroupDetectionTests {
    // MARK: Parsing /proc files

    @Test func parsesAPureV2Mountinfo() {
        let mounts = CgroupProcFiles.parseMountinfo(CgroupSamples.pureV2Mountinfo)
        #expect(mounts == [CgroupMount(kind: .v2, mountPoint: "/sys/fs/cgroup", root: "/", readOnly: false)])
    }

    @Test func parsesAHybridMountinfo() {
        let mounts = CgroupProcFiles.parseMountinfo(CgroupSamples.hybridMountinfo)
        #expect(mounts.count == 10)
        #expect(
            mounts.contains(CgroupMount(kind: .v2, mountPoint: "/sys/fs/cgroup/unified", root: "/", readOnly: false)))
        #expect(
            mounts.contains(
                CgroupMount(
                    kind: .v1(controllers: ["memory"]), mountPoint: "/sys/fs/cgroup/memory", root: "/", readOnly: false)
            ))
        #expect(
            mounts.contains(
                CgroupMount(
                    kind: .v1(controllers: ["cpu"]), mountPoint: "/sys/fs/cgroup/cpu", root: "/", readOnly: false)))
        // A named hierarchy has no controllers.
        #expect(
            mounts.contains(
                CgroupMount(
                    kind: .v1(controllers: []), mountPoint: "/sys/fs/cgroup/systemd", root: "/", readOnly: false)))
    }

    @Test func parsesCoMountedV1Controllers() {
        let mounts = CgroupProcFiles.parseMountinfo(CgroupSamples.comountedV1Mountinfo)
        #expect(
            mounts.first { $0.mountPoint == "/sys/fs/cgroup/cpu,cpuacct" }?.kind
                == .v1(controllers: ["cpu", "cpuacct"]))
        #expect(
            mounts.first { $0.mountPoint == "/sys/fs/cgroup/net_cls,net_prio" }?.kind
                == .v1(controllers: ["net_cls", "net_prio"]))
        // `xattr` and `release_agent=…` are options, not controllers.
        #expect(mounts.first { $0.mountPoint == "/sys/fs/cgroup/systemd" }?.kind == .v1(controllers: []))
    }

    @Test func parsesEscapesOptionalFieldsAndReadOnlyMounts() {
        let text = """
            40 31 0:38 /docker/abc /mnt/my\\040cgroups ro,nosuid shared:4 master:2 - cgroup2 cgroup2 rw
            41 31 0:39 / /x rw - cgroup cgroup rw,memory,clone_children

            """
        let mounts = CgroupProcFiles.parseMountinfo(text)
        #expect(
            mounts == [
                CgroupMount(kind: .v2, mountPoint: "/mnt/my cgroups", root: "/docker/abc", readOnly: true),
                CgroupMount(kind: .v1(controllers: ["memory"]), mountPoint: "/x", root: "/", readOnly: false),
            ])
    }

    @Test func ignoresGarbageLines() {
        #expect(CgroupProcFiles.parseMountinfo("").isEmpty)
        #expect(CgroupProcFiles.parseMountinfo("not a mountinfo line\n- cgroup2\n1 2 3 - cgroup2\n").isEmpty)
    }

    @Test func parsesProcSelfCgroup() {
        let text = """
            12:pids:/user.slice/user-1000.slice
            4:cpu,cpuacct:/user.slice
            1:name=systemd:/user.slice/user-1000.slice/session-3.scope
            0::/user.slice/user-1000.slice/session-3.scope

            """
        let parsed = CgroupProcFiles.parseSelfCgroup(text)
        #expect(parsed.v2 == "/user.slice/user-1000.slice/session-3.scope")
        #expect(parsed.v1["pids"] == "/user.slice/user-1000.slice")
        #expect(parsed.v1["cpu"] == "/user.slice")
        #expect(parsed.v1["cpuacct"] == "/user.slice")
        #expect(CgroupProcFiles.parseSelfCgroup("0::/a:b\n").v2 == "/a:b")
    }

    @Test func parsesFlatKeyedFiles() {
        let values = CgroupProcFiles.parseFlatKeyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\nbogus\nx y\n")
        #expect(values == ["low": 0, "high": 0, "max": 3, "oom": 1, "oom_kill": 1])
    }

    // MARK: Choosing a version

    @Test func pureV2HostAsRootUsesTheMountRoot() {
        let fs = FakeCgroupFS([("/sys/fs/cgroup", .v2(controllers: CgroupSamples.pureV2Controllers))])
        let host = fs.host(
            mountinfo: CgroupSamples.pureV2Mountinfo, selfCgroup: "0::/user.slice/user-0.slice/session-1.scope\n")
        #expect(host.version == .v2)
        #expect(host.unavailableReason == nil)
        #expect(host.layout == .v2(base: "/sys/fs/cgroup", controllers: ["cpu", "memory", "pids"]))
        #expect(host.controllers == ["cpu", "memory", "pids"])
    }

    @Test func hybridHostUsesV1AndNeverTheEmptyUnifiedMount() {
        let fs = FakeCgroupFS(CgroupSamples.hybridMounts)
        let host = fs.host(mountinfo: CgroupSamples.hybridMountinfo)
        #expect(host.version == .v1)
        guard case .v1(let hierarchies) = host.layout else {
            Issue.record("expected v1, got \(host.layout)")
            return
        }
        #expect(
            hierarchies.map(\.mountPoint) == [
                "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/pids",
            ])
        #expect(host.controllers == ["cpu", "cpuacct", "freezer", "memory", "pids"])
    }

    @Test func unifiedMountWithoutControllersAloneIsUnusable() {
        let fs = FakeCgroupFS([("/sys/fs/cgroup/unified", .v2(controllers: []))])
        let mountinfo = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        let host = fs.host(mountinfo: mountinfo)
        #expect(host.version == nil)
        let reason = host.unavailableReason ?? ""
        #expect(reason.contains("/sys/fs/cgroup/unified has no controllers"))
        #expect(reason.contains("NOT enforced"))
    }

    @Test func unifiedMountWithOnlySomeControllersIsNotChosen() {
        // A hybrid host where only `misc` was left to the unified hierarchy.
        var mounts = CgroupSamples.hybridMounts
        mounts[mounts.count - 1] = ("/sys/fs/cgroup/unified", .v2(controllers: ["misc"]))
        let fs = FakeCgroupFS(mounts)
        #expect(fs.host(mountinfo: CgroupSamples.hybridMountinfo).version == .v1)
    }

    @Test func coMountedV1HierarchyIsOneGroupWithBothControllers() {
        let fs = FakeCgroupFS(CgroupSamples.comountedMounts)
        let host = fs.host(mountinfo: CgroupSamples.comountedV1Mountinfo)
        guard case .v1(let hierarchies) = host.layout else {
            Issue.record("expected v1, got \(host.layout)")
            return
        }
        #expect(
            hierarchies == [
                .init(mountPoint: "/sys/fs/cgroup/cpu,cpuacct", controllers: ["cpu", "cpuacct"]),
                .init(mountPoint: "/sys/fs/cgroup/memory", controllers: ["memory"]),
                .init(mountPoint: "/sys/fs/cgroup/pids", controllers: ["pids"]),
                .init(mountPoint: "/sys/fs/cgroup/freezer", controllers: ["freezer"]),
            ])
    }

    @Test func noCgroupMountsAtAll() {
        let host = CgroupHost.detect(
            mountinfo: "29 1 252:1 / / rw - ext4 /dev/vda1 rw\n", selfCgroup: "", uid: 0, fs: FakeCgroupFS([]))
        #expect(host.version == nil)
        #expect(host.unavailableReason?.contains("NOT enforced") == true)
    }

    @Test func readOnlyV2MountAsRootIsUnusable() {
        let fs = FakeCgroupFS([("/sys/fs/cgroup", .v2(controllers: CgroupSamples.pureV2Controllers))])
        let mountinfo = "26 23 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
        let host = fs.host(mountinfo: mountinfo)
        #expect(host.version == nil)
        #expect(host.unavailableReason?.contains("read-only") == true)
    }

    // MARK: Rootless

    static let userService = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service"

    /// A systemd host where uid 1000's manager owns everything under its `user@1000.service`.
    static func systemdUserTree(appSliceControllers: [String] = ["cpu", "memory", "pids"]) -> FakeCgroupFS {
        var options = FakeCgroupFS.Options()
        options.writable = { $0.hasPrefix(userService) }
        let fs = FakeCgroupFS([("/sys/fs/cgroup", .v2(controllers: CgroupSamples.pureV2Controllers))], options: options)
        fs.seedV2Group(
            "/sys/fs/cgroup/user.slice", controllers: ["cpu", "memory", "pids"],
            subtreeControl: ["cpu", "memory", "pids"])
        fs.seedV2Group(
            "/sys/fs/cgroup/user.slice/user-1000.slice", controllers: ["cpu", "memory", "pids"],
            subtreeControl: ["cpu", "memory", "pids"])
        fs.seedV2Group(
            "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope", controllers: ["cpu", "memory", "pids"])
        fs.seedV2Group(userService, controllers: ["cpu", "memory", "pids"], subtreeControl: appSliceControllers)
        fs.seedV2Group(
            userService + "/app.slice", controllers: appSliceControllers, subtreeControl: appSliceControllers)
        fs.seedV2Group(userService + "/app.slice/run-r1.scope", controllers: appSliceControllers)
        return fs
    }

    @Test func rootlessInADelegatedUserScopeUsesItsParent() {
        let fs = Self.systemdUserTree()
        let host = fs.host(
            mountinfo: CgroupSamples.pureV2Mountinfo,
            selfCgroup: "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope\n", uid: 1000)
        #expect(host.version == .v2)
        #expect(host.layout == .v2(base: Self.userService + "/app.slice", controllers: ["cpu", "memory", "pids"]))
    }

    @Test func rootlessInALoginSessionIsNotDelegated() {
        let fs = Self.systemdUserTree()
        let host = fs.host(
            mountinfo: CgroupSamples.pureV2Mountinfo, selfCgroup: "0::/user.slice/user-1000.slice/session-3.scope\n",
            uid: 1000)
        #expect(host.version == nil)
        let reason = host.unavailableReason ?? ""
        #expect(reason.contains("cgroup v2 at /sys/fs/cgroup is not delegated to uid 1000"))
        #expect(reason.contains("no write access to /sys/fs/cgroup/user.slice/user-1000.slice"))
        #expect(reason.contains("memory, pids and cpu limits are NOT enforced"))
        #expect(reason.contains("systemd-run --user --scope -p Delegate=yes"))
    }

    @Test func rootlessDelegationWithoutTheMemoryControllerIsUnusable() {
        let fs = Self.systemdUserTree(appSliceControllers: ["pids"])
        let host = fs.host(
            mountinfo: CgroupSamples.pureV2Mountinfo,
            selfCgroup: "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope\n", uid: 1000)
        #expect(host.version == nil)
        #expect(host.unavailableReason?.contains("lacks the memory controller (it has: pids)") == true)
    }

    @Test func rootlessAtTheRootOfACgroupNamespaceIsUnusable() {
        let fs = FakeCgroupFS([("/sys/fs/cgroup", .v2(controllers: CgroupSamples.pureV2Controllers))])
        let host = fs.host(mountinfo: CgroupSamples.pureV2Mountinfo, selfCgroup: "0::/\n", uid: 1000)
        #expect(host.version == nil)
        #expect(host.unavailableReason?.contains("root of its cgroup v2 tree") == true)
    }

    @Test func rootlessOnV1IsUnusable() {
        let fs = FakeCgroupFS(CgroupSamples.hybridMounts)
        let host = fs.host(mountinfo: CgroupSamples.hybridMountinfo, uid: 1000)
        #expect(host.version == nil)
        let reason = host.unavailableReason ?? ""
        #expect(reason.contains("cgroup v1, which cannot be delegated to an unprivileged user (uid 1000)"))
        #expect(reason.contains("NOT enforced"))
    }

    @Test func createOnAnUnusableHostFailsWithTheReason() {
        let fs = FakeCgroupFS(CgroupSamples.hybridMounts)
        let host = fs.host(mountinfo: CgroupSamples.hybridMountinfo, uid: 1000)
        #expect {
            try SandboxCgroup.create(instance: "x", limits: CgroupLimits(pids: 16), host: host)
        } throws: { error in
            guard let error = error as? AirlockError else { return false }
            return error.code == .sandboxSetup && error.message.contains("cannot be delegated")
        }
    }

    // MARK: This machine

    @Test func parsesThisMachinesMountinfo() throws {
        let text = CgroupHost.readProcFile("/proc/self/mountinfo")
        try #require(!text.isEmpty)
        let mounts = CgroupProcFiles.parseMountinfo(text)
        let lines = text.split(separator: "\n").filter { $0.contains(" - cgroup") }
        #expect(mounts.count == lines.count)
        // Whatever this host is, a cgroup2 mount without controllers is never chosen.
        let host = CgroupHost.detect()
        for mount in mounts where mount.kind == .v2 {
            let controllers = (try? SystemCgroupFS().readFile(mount.mountPoint + "/cgroup.controllers")) ?? ""
            if controllers.cgroupTrimmed.isEmpty {
                #expect(host.layout != .v2(base: mount.mountPoint, controllers: []))
                if case .v2(let base, _) = host.layout { #expect(!base.hasPrefix(mount.mountPoint)) }
            }
        }
        if geteuid() == 0, mounts.contains(where: { $0.kind == .v1(controllers: ["memory"]) }),
            !mounts.contains(where: {
                $0.kind == .v2
                    && !((try? SystemCgroupFS().readFile($0.mountPoint + "/cgroup.controllers")) ?? "").cgroupTrimmed
                        .isEmpty
            })
        {
            #expect(host.version == .v1)
        }
    }
}
