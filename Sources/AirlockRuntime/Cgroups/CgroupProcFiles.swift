/// One cgroup file-system mount, from a `/proc/self/mountinfo` line.
struct CgroupMount: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        /// A cgroup v1 hierarchy with the controllers bound to it, e.g. `["cpu", "cpuacct"]`
        /// (named hierarchies such as `name=systemd` have none).
        case v1(controllers: [String])
        /// The cgroup v2 unified hierarchy (its controllers are in `cgroup.controllers`).
        case v2
    }

    var kind: Kind
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    var mountPoint: String
    /// Which cgroup of the hierarchy is mounted there (`/` unless a subtree was bind-mounted).
    var root: String
    /// Mounted read-only (as in most containers).
    var readOnly: Bool
}

/// Pure parsers for the two `/proc` files cgroup detection reads.
enum CgroupProcFiles {
    /// The v1 controller names the kernel knows; anything else in a v1 mount's super
    /// options (`rw`, `name=systemd`, `clone_children`, `release_agent=…`) is not one.
    static let v1Controllers: Set<String> = [
        "cpuset", "cpu", "cpuacct", "blkio", "io", "memory", "devices", "freezer", "net_cls",
        "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc",
    ]

    /// The cgroup and cgroup2 mounts of a `mountinfo` text, in file order.
    ///
    /// A line is `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS`
    /// (proc(5)); paths escape space, tab, newline and backslash as `\ooo`. Parsed as bytes:
    /// this runs on every `airlock run`, and splitting `Character`s costs ten times more.
    static func parseMountinfo(_ text: String) -> [CgroupMount] {
        var mounts: [CgroupMount] = []
        for line in Array(text.utf8).split(separator: newline) {
            let fields = line.split(separator: space)
            guard let dash = fields.firstIndex(where: { $0.elementsEqual("-".utf8) }), dash >= 6,
                fields.count >= dash + 4
            else { continue }
            let fsType = fields[dash + 1]
            let kind: CgroupMount.Kind
            if fsType.elementsEqual("cgroup2".utf8) {
                kind = .v2
            } else if fsType.elementsEqual("cgroup".utf8) {
                let controllers = fields[dash + 3].split(separator: comma).map { String(decoding: $0, as: UTF8.self) }
                    .filter { v1Controllers.contains($0) }
                kind = .v1(controllers: controllers)
            } else {
                continue
            }
            let readOnly = fields[5].split(separator: comma).contains { $0.elementsEqual("ro".utf8) }
            mounts.append(
                CgroupMount(kind: kind, mountPoint: unescape(fields[4]), root: unescape(fields[3]), readOnly: readOnly))
        }
        return mounts
    }

    /// The cgroup paths of a `/proc/<pid>/cgroup` text: the v2 path (line `0::PATH`) and,
    /// for each v1 controller, the path in its hierarchy.
    static func parseSelfCgroup(_ text: String) -> (v2: String?, v1: [String: String]) {
        var v2: String?
        var v1: [String: String] = [:]
        for line in Array(text.utf8).split(separator: newline) {
            let parts = line.split(separator: colon, maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(decoding: parts[2], as: UTF8.self)
            if parts[0].elementsEqual("0".utf8) && parts[1].isEmpty {
                v2 = path
            } else {
                for controller in parts[1].split(separator: comma) {
                    v1[String(decoding: controller, as: UTF8.self)] = path
                }
            }
        }
        return (v2, v1)
    }

    private static let newline = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let comma = UInt8(ascii: ",")
    private static let colon = UInt8(ascii: ":")

    /// Decodes mountinfo's octal escapes (`\040` → space).
    static func unescape(_ field: ArraySlice<UInt8>) -> String {
        guard field.contains(UInt8(ascii: "\\")) else { return String(decoding: field, as: UTF8.self) }
        let bytes = Array(field)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), let value = octal(bytes, from: i + 1) {
                out.append(value)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func octal(_ bytes: [UInt8], from start: Int) -> UInt8? {
        guard start + 3 <= bytes.count else { return nil }
        var value: UInt16 = 0
        for b in bytes[start..<start + 3] {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "7") else { return nil }
            value = value * 8 + UInt16(b - UInt8(ascii: "0"))
        }
        return value <= 255 ? UInt8(value) : nil
    }

    /// The `key value` lines of a flat-keyed cgroup file (`memory.events`, `cpu.stat`,
    /// `pids.events`, `memory.oom_control`) as numbers.
    static func parseFlatKeyed(_ text: String) -> [String: UInt64] {
        var values: [String: UInt64] = [:]
        for line in Array(text.utf8).split(separator: newline) {
            let parts = line.split(separator: space)
            guard parts.count == 2, let value = UInt64(String(decoding: parts[1], as: UTF8.self)) else { continue }
            values[String(decoding: parts[0], as: UTF8.self)] = value
        }
        return values
    }

    /// Whitespace-separated tokens of a space-list file such as `cgroup.controllers`.
    static func parseList(_ text: String) -> [String] {
        Array(text.utf8).split(whereSeparator: { $0 == space || $0 == newline || $0 == UInt8(ascii: "\t") })
            .map { String(decoding: $0, as: UTF8.self) }
    }
}
