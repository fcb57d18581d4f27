import AirlockCore
import Foundation
import Synchronization
import Testing

@testable import AirlockRuntime

#if canImport(Glibc)
    import Glibc
#endif

/// A cgroup file system laid out in a temporary directory, for testing the driver without a
/// cgroup v2 host (or without root).
///
/// Every absolute path the driver uses (`/sys/fs/cgroup/…`) is mapped under the temporary
/// directory, and the operations behave the way cgroupfs does where the driver depends on it:
/// `mkdir` creates a group's interface files (v2: those of the controllers the parent enables
/// in `cgroup.subtree_control`), writes never create files, `cgroup.subtree_control` only takes
/// controllers listed in `cgroup.controllers`, `rmdir` fails with `EBUSY` while `cgroup.procs`
/// is not empty, `cgroup.kill` empties the group, v1 refuses a `memory.limit_in_bytes` above
/// `memory.memsw.limit_in_bytes`. Every write is logged in order. The directory is removed on deinit.
final class FakeCgroupFS: CgroupFS, Sendable {
    enum Kind: Sendable {
        /// The unified hierarchy; its root offers these controllers.
        case v2(controllers: [String])
        /// A v1 hierarchy with these controllers bound.
        case v1(controllers: [String])
    }

    struct Options: Sendable {
        /// v2 `memory.swap.max`, v1 `memory.memsw.*` exist (swap accounting on).
        var swapAccounting = true
        /// v2 `memory.oom.group` exists (Linux 4.19+).
        var oomGroup = true
        /// v2 `cgroup.kill` exists (Linux 5.14+).
        var cgroupKill = true
        /// File names whose writes fail with `EINVAL`.
        var failingWrites: Set<String> = []
        /// Whether the caller's credentials may write a path (`access(2)` for a non-root caller).
        var writable: @Sendable (String) -> Bool = { _ in true }
    }

    let directory: String
    let mounts: [(mountPoint: String, kind: Kind)]
    let options: Options
    private let log = Mutex<[(path: String, value: String)]>([])

    static let v2Order = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]

    init(_ mounts: [(String, Kind)], options: Options = Options()) {
        directory = NSTemporaryDirectory() + "airlock-cgroup-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.mounts = mounts.map { (mountPoint: $0.0, kind: $0.1) }
        self.options = options
        for (mountPoint, kind) in self.mounts {
            try! FileManager.default.createDirectory(atPath: real(mountPoint), withIntermediateDirectories: true)
            switch kind {
            case .v2(let controllers):
                set(mountPoint + "/cgroup.controllers", controllers.joined(separator: " ") + "\n")
                set(mountPoint + "/cgroup.subtree_control", "\n")
                set(mountPoint + "/cgroup.procs", "1\n")
                set(mountPoint + "/cgroup.events", "populated 1\nfrozen 0\n")
            case .v1(let controllers):
                populateV1(mountPoint, controllers: controllers)
            }
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Detection against this tree.
    func host(mountinfo: String, selfCgroup: String = "0::/\n", uid: uid_t = 0) -> CgroupHost {
        CgroupHost.detect(mountinfo: mountinfo, selfCgroup: selfCgroup, uid: uid, fs: self)
    }

    // MARK: Inspecting and seeding

    var writes: [(path: String, value: String)] { log.withLock { $0 } }
    func clearWrites() { log.withLock { $0.removeAll() } }

    func real(_ path: String) -> String { directory + path }

    func exists(_ path: String) -> Bool { access(real(path), F_OK) == 0 }

    func contents(_ path: String) -> String? {
        try? String(contentsOfFile: real(path), encoding: .utf8)
    }

    func set(_ path: String, _ value: String) {
        _ = FileManager.default.createFile(atPath: real(path), contents: Data(value.utf8))
    }

    /// A group that exists before the test (e.g. a systemd slice): directory, files, controllers.
    func seedV2Group(_ path: String, controllers: [String], subtreeControl: [String] = []) {
        try! FileManager.default.createDirectory(atPath: real(path), withIntermediateDirectories: true)
        populateV2(path, controllers: controllers)
        set(path + "/cgroup.subtree_control", subtreeControl.joined(separator: " ") + "\n")
    }

    // MARK: CgroupFS

    func readFile(_ path: String) throws(CgroupFSError) -> String {
        try SystemCgroupFS().readFile(real(path))
    }

    func writeFile(_ path: String, _ value: String) throws(CgroupFSError) {
        log.withLock { $0.append((path, value)) }
        let name = (path as NSString).lastPathComponent
        let dir = (path as NSString).deletingLastPathComponent
        func fail(_ e: Int32) -> CgroupFSError { CgroupFSError(call: "write", path: path, errno: e, value: value) }
        guard exists(path) else { throw fail(ENOENT) }
        if options.failingWrites.contains(name) { throw fail(EINVAL) }
        switch name {
        case "cgroup.subtree_control":
            var enabled = Set(list(path))
            let available = Set(list(dir + "/cgroup.controllers"))
            let isMountRoot = mounts.contains { $0.mountPoint == dir }
            for token in value.split(separator: " ") {
                let controller = String(token.dropFirst())
                guard available.contains(controller) else { throw fail(ENOENT) }
                if token.hasPrefix("+") {
                    if !isMountRoot && !list(dir + "/cgroup.procs").isEmpty { throw fail(EBUSY) }
                    enabled.insert(controller)
                } else {
                    enabled.remove(controller)
                }
            }
            set(path, Self.v2Order.filter(enabled.contains).joined(separator: " ") + "\n")
            for child in (try? FileManager.default.contentsOfDirectory(atPath: real(dir))) ?? []
            where isDirectory(dir + "/" + child) {
                populateV2(dir + "/" + child, controllers: Self.v2Order.filter(enabled.contains))
            }
        case "cgroup.kill":
            set(dir + "/cgroup.procs", "")
        case "cgroup.freeze":
            set(path, value + "\n")
            set(dir + "/cgroup.events", "populated 0\nfrozen \(value)\n")
        case "memory.limit_in_bytes":
            if let memsw = UInt64(contents(dir + "/memory.memsw.limit_in_bytes")?.cgroupTrimmed ?? ""),
                let asked = UInt64(value), asked > memsw
            {
                throw fail(EINVAL)
            }
            set(path, value + "\n")
        case "memory.memsw.limit_in_bytes":
            if let limit = UInt64(contents(dir + "/memory.limit_in_bytes")?.cgroupTrimmed ?? ""),
                let asked = UInt64(value), asked < limit
            {
                throw fail(EINVAL)
            }
            set(path, value + "\n")
        default:
            set(path, value + "\n")
        }
    }

    func makeDirectory(_ path: String) throws(CgroupFSError) {
        if mkdir(real(path), 0o755) != 0 { throw CgroupFSError(call: "mkdir", path: path, errno: errno) }
        guard let kind = mounts.first(where: { path.hasPrefix($0.mountPoint + "/") })?.kind else { return }
        switch kind {
        case .v2:
            let parent = (path as NSString).deletingLastPathComponent
            populateV2(path, controllers: list(parent + "/cgroup.subtree_control"))
        case .v1(let controllers):
            populateV1(path, controllers: controllers)
        }
    }

    func removeDirectory(_ path: String) throws(CgroupFSError) {
        func fail(_ e: Int32) -> CgroupFSError { CgroupFSError(call: "rmdir", path: path, errno: e) }
        guard exists(path) else { throw fail(ENOENT) }
        if !list(path + "/cgroup.procs").isEmpty { throw fail(EBUSY) }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: real(path))) ?? []
        if entries.contains(where: { isDirectory(path + "/" + $0) }) { throw fail(EBUSY) }
        for entry in entries { unlink(real(path + "/" + entry)) }
        if rmdir(real(path)) != 0 { throw fail(errno) }
    }

    func isWritable(_ path: String) -> Bool {
        exists(path) && options.writable(path)
    }

    // MARK: What cgroupfs creates

    private func populateV2(_ path: String, controllers: [String]) {
        func add(_ name: String, _ value: String) {
            if !exists(path + "/" + name) { set(path + "/" + name, value) }
        }
        add("cgroup.procs", "")
        add("cgroup.controllers", controllers.joined(separator: " ") + "\n")
        set(path + "/cgroup.controllers", controllers.joined(separator: " ") + "\n")
        add("cgroup.subtree_control", "\n")
        add("cgroup.events", "populated 0\nfrozen 0\n")
        add("cgroup.freeze", "0\n")
        if options.cgroupKill { add("cgroup.kill", "") }
        add("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n")
        if controllers.contains("memory") {
            add("memory.max", "max\n")
            add("memory.current", "0\n")
            add("memory.peak", "0\n")
            add("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
            if options.swapAccounting { add("memory.swap.max", "max\n") }
            if options.oomGroup { add("memory.oom.group", "0\n") }
        }
        if controllers.contains("pids") {
            add("pids.max", "max\n")
            add("pids.current", "0\n")
            add("pids.events", "max 0\n")
        }
        if controllers.contains("cpu") {
            add("cpu.max", "max 100000\n")
            add("cpu.weight", "100\n")
        }
    }

    private func populateV1(_ path: String, controllers: [String]) {
        set(path + "/cgroup.procs", "")
        set(path + "/tasks", "")
        set(path + "/notify_on_release", "0\n")
        for controller in controllers {
            switch controller {
            case "memory":
                set(path + "/memory.limit_in_bytes", "9223372036854771712\n")
                set(path + "/memory.max_usage_in_bytes", "0\n")
                set(path + "/memory.usage_in_bytes", "0\n")
                set(path + "/memory.failcnt", "0\n")
                set(path + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
                if options.swapAccounting {
                    set(path + "/memory.memsw.limit_in_bytes", "9223372036854771712\n")
                    set(path + "/memory.memsw.failcnt", "0\n")
                }
            case "cpu":
                set(path + "/cpu.cfs_period_us", "100000\n")
                set(path + "/cpu.cfs_quota_us", "-1\n")
            case "cpuacct":
                set(path + "/cpuacct.usage", "0\n")
            case "pids":
                set(path + "/pids.max", "max\n")
                set(path + "/pids.current", "0\n")
                set(path + "/pids.events", "max 0\n")
            case "freezer":
                set(path + "/freezer.state", "THAWED\n")
            case "cpuset":
                set(path + "/cpuset.cpus", "\n")
                set(path + "/cpuset.mems", "\n")
            default:
                break
            }
        }
    }

    private func list(_ path: String) -> [String] {
        CgroupProcFiles.parseList(contents(path) ?? "")
    }

    private func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: real(path), isDirectory: &isDir) && isDir.boolValue
    }
}

// MARK: Sample /proc files

enum CgroupSamples {
    /// A pure cgroup v2 host (Ubuntu 22.04 / Fedora style).
    static let pureV2Mountinfo = """
        22 29 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
        23 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
        29 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
        26 23 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        31 23 0:26 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:8 - bpf bpf rw,mode=700

        """

    /// A hybrid host like the one these tests were written on: v1 controllers, an empty cgroup2.
    static let hybridMountinfo = """
        23 1 0:20 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
        37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
        38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw

        """

    /// A v1 host with `cpu,cpuacct` and `net_cls,net_prio` co-mounted (CentOS 7 / Debian 10 style).
    static let comountedV1Mountinfo = """
        18 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/root rw,attr2
        24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
        25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
        28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
        29 24 0:25 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,net_cls,net_prio
        30 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
        31 24 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
        32 24 0:28 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,freezer

        """

    static let hybridMounts: [(String, FakeCgroupFS.Kind)] = [
        ("/sys/fs/cgroup/cpu", .v1(controllers: ["cpu"])),
        ("/sys/fs/cgroup/cpuacct", .v1(controllers: ["cpuacct"])),
        ("/sys/fs/cgroup/cpuset", .v1(controllers: ["cpuset"])),
        ("/sys/fs/cgroup/memory", .v1(controllers: ["memory"])),
        ("/sys/fs/cgroup/freezer", .v1(controllers: ["freezer"])),
        ("/sys/fs/cgroup/pids", .v1(controllers: ["pids"])),
        ("/sys/fs/cgroup/unified", .v2(controllers: [])),
    ]

    static let comountedMounts: [(String, FakeCgroupFS.Kind)] = [
        ("/sys/fs/cgroup/cpu,cpuacct", .v1(controllers: ["cpu", "cpuacct"])),
        ("/sys/fs/cgroup/memory", .v1(controllers: ["memory"])),
        ("/sys/fs/cgroup/pids", .v1(controllers: ["pids"])),
        ("/sys/fs/cgroup/freezer", .v1(controllers: ["freezer"])),
    ]

    static let pureV2Controllers = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]
}

/// A name no other test (or test run) uses.
func uniqueCgroupInstance(_ label: String) -> String {
    "test-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}
