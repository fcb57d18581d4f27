import Foundation

/// What a sandbox could leave behind on the host: mounts, airlock cgroups, entries in /tmp,
/// processes of this build's helper.
public struct HostSnapshot: Sendable {
    public var mounts: [String]
    public var airlockCgroups: [String]
    public var tmpEntries: Set<String>
    public var sandboxProcesses: [String]

    /// The directory of the test bundle and the binaries built with it.
    public static let binDir: URL = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return exe.deletingLastPathComponent()
    }()

    public static func take() -> HostSnapshot {
        let mountinfo = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let mounts = mountinfo.split(separator: "\n").map { line -> String in
            // drop the mount id / parent id columns, which are stable anyway; keep mount point + fs
            let f = line.split(separator: " ")
            return f.count > 4 ? "\(f[4]) \(f.last ?? "")" : String(line)
        }.sorted()
        var cgroups: [String] = []
        let fm = FileManager.default
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu",
                     "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/unified"] {
            let dir = root + "/airlock"
            for e in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where e.hasPrefix("airlock-") || e.hasPrefix("sbx-") {
                cgroups.append(dir + "/" + e)
            }
        }
        let tmp = Set((try? fm.contentsOfDirectory(atPath: "/tmp")) ?? [])
        var procs: [String] = []
        for e in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(e) != nil {
            guard let cmd = try? String(contentsOfFile: "/proc/\(e)/cmdline", encoding: .utf8) else { continue }
            // Only this build's sandboxes (a colleague's experiment elsewhere is not our leak).
            if cmd.contains("airlock-marker") || cmd.hasPrefix(binDir.path + "/airlock-sandbox") {
                procs.append("\(e): \(cmd.replacingOccurrences(of: "\0", with: " "))")
            }
        }
        return HostSnapshot(mounts: mounts, airlockCgroups: cgroups, tmpEntries: tmp, sandboxProcesses: procs)
    }
}
