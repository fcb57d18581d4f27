import AirlockCore

/// One record of the plan the C helper executes; see `Sources/CAirlockShim/sandbox.h`.
/// The tags and field layouts here and there must agree.
public enum PlanRecord: Equatable, Sendable {
    case namespaces(UInt64)
    case idMap(insideUID: UInt32, outsideUID: UInt32, insideGID: UInt32, outsideGID: UInt32)
    case cgroupJoin(String)
    case hostname(String)
    case wallClock(milliseconds: UInt64)
    case rootTmpfs(size: UInt64)
    case bind(source: String, destination: String, flags: MountFlags)
    case tmpfs(destination: String, size: UInt64, mode: UInt32, flags: MountFlags)
    case proc(String)
    case devpts(String)
    case directory(String, mode: UInt32)
    case symlink(target: String, path: String)
    case file(String, content: String, mode: UInt32)
    case denyWrite(workspace: String, relativePath: String)
    case mask(String)
    case remountReadOnly(String)
    /// Detaches a staging mount (lazily: binds taken from it stay) and removes its mount point.
    case unmount(String)
    case landlock(path: String, access: LandlockAccess, optional: Bool)
    case landlockMode(required: Bool)
    case rlimit(resource: Int32, soft: UInt64, hard: UInt64)
    case seccomp([UInt8])
    case environment(String)
    case argument(String)
    case workingDirectory(String)
    /// cgroup v2: PID 1 is cloned straight into this directory (CLONE_INTO_CGROUP).
    case cgroupDirectory(String)
    /// An empty host directory the helper removes if airlock dies mid-run.
    case cleanupDirectory(String)
    /// A top-level workspace name that may be a placeholder; removed through fd 6 if airlock dies.
    case placeholder(String)
    /// fd 6 is the workspace directory, flock'ed shared by airlock.
    case workspaceLock
    /// Binds flagged `.idmapped` show files owned by the disk ids as owned by the host ids.
    case idmap(diskUID: UInt32, diskGID: UInt32, hostUID: UInt32, hostGID: UInt32)
    /// Proxied network: PID 1 listens on `127.0.0.1:port` and `[::1]:port` and relays each
    /// connection to the Unix socket at `socket` (a path inside the sandbox).
    case egress(port: UInt16, socket: String)
    /// A long-lived sandbox: PID 1 runs the execs asked for on the control socket (fd 7)
    /// instead of one command, and ends the sandbox when that socket closes (service.c).
    case service

    var tag: UInt32 {
        switch self {
        case .namespaces: 1
        case .idMap: 2
        case .cgroupJoin: 3
        case .hostname: 4
        case .wallClock: 5
        case .rootTmpfs: 6
        case .bind: 7
        case .tmpfs: 8
        case .proc: 9
        case .devpts: 10
        case .directory: 11
        case .symlink: 12
        case .file: 13
        case .denyWrite: 14
        case .mask: 15
        case .remountReadOnly: 16
        case .landlock: 17
        case .landlockMode: 18
        case .rlimit: 19
        case .seccomp: 20
        case .environment: 21
        case .argument: 22
        case .workingDirectory: 23
        case .cgroupDirectory: 25
        case .cleanupDirectory: 26
        case .placeholder: 27
        case .workspaceLock: 28
        case .idmap: 29
        case .egress: 30
        case .service: 31
        case .unmount: 32
        }
    }
}

public struct MountFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let readOnly = MountFlags(rawValue: 0x01)
    public static let noSUID = MountFlags(rawValue: 0x02)
    public static let noDev = MountFlags(rawValue: 0x04)
    public static let noExec = MountFlags(rawValue: 0x08)
    public static let optional = MountFlags(rawValue: 0x10)
    public static let recursive = MountFlags(rawValue: 0x20)
    /// The source is a path inside the new root (e.g. re-binding part of the fresh /proc).
    public static let sourceInSandbox = MountFlags(rawValue: 0x40)
    /// Idmapped with the plan's `.idmap` (prepared by the helper in the host's namespaces).
    public static let idmapped = MountFlags(rawValue: 0x80)
}

public enum LandlockAccess: UInt64, Sendable {
    /// Read files, list directories, execute.
    case read = 1
    /// Read plus create, remove, write, truncate, rename.
    case write = 2
    /// Write plus device ioctls.
    case device = 3
    /// List directories only (granted on "/" so `ls /` works without granting reads below).
    case listOnly = 4
}

/// Serialises plan records: `"ALP1"`, then per record `u32 tag, u32 nfields`, then per field `u32 len, bytes`.
public enum PlanEncoder {
    public static func encode(_ records: [PlanRecord]) throws(AirlockError) -> [UInt8] {
        var out: [UInt8] = Array("ALP1".utf8)
        out.reserveCapacity(8192)
        for record in records {
            let fields = try self.fields(of: record)
            put32(record.tag, into: &out)
            put32(UInt32(fields.count), into: &out)
            for field in fields {
                put32(UInt32(field.count), into: &out)
                out.append(contentsOf: field)
            }
        }
        return out
    }

    private static func fields(of record: PlanRecord) throws(AirlockError) -> [[UInt8]] {
        switch record {
        case .namespaces(let f): return [u64(f)]
        case .idMap(let iu, let ou, let ig, let og): return [u64(iu), u64(ou), u64(ig), u64(og)]
        case .cgroupJoin(let p): return [try str(p)]
        case .hostname(let h): return [try str(h)]
        case .wallClock(let ms): return [u64(ms)]
        case .rootTmpfs(let s): return [u64(s)]
        case .bind(let s, let d, let f): return [try str(s), try str(d), u64(f.rawValue)]
        case .tmpfs(let d, let s, let m, let f): return [try str(d), u64(s), u64(m), u64(f.rawValue)]
        case .proc(let d), .devpts(let d), .mask(let d), .remountReadOnly(let d), .unmount(let d):
            return [try str(d)]
        case .directory(let d, let m): return [try str(d), u64(m)]
        case .symlink(let t, let p): return [try str(t), try str(p)]
        case .file(let p, let c, let m): return [try str(p), try str(c), u64(m)]
        case .denyWrite(let w, let r): return [try str(w), try str(r)]
        case .landlock(let p, let a, let o): return [try str(p), u64(a.rawValue), u64(o ? 1 : 0)]
        case .landlockMode(let r): return [u64(r ? 1 : 0)]
        case .workspaceLock, .service: return []
        case .idmap(let du, let dg, let hu, let hg): return [u64(du), u64(dg), u64(hu), u64(hg)]
        case .egress(let port, let socket): return [u64(port), try str(socket)]
        case .rlimit(let r, let s, let h): return [u64(UInt64(UInt32(bitPattern: r))), u64(s), u64(h)]
        case .seccomp(let bytes): return [bytes]
        case .environment(let s), .argument(let s), .workingDirectory(let s), .cgroupDirectory(let s),
            .cleanupDirectory(let s), .placeholder(let s):
            return [try str(s)]
        }
    }

    private static func str(_ s: String) throws(AirlockError) -> [UInt8] {
        let bytes = Array(s.utf8)
        if bytes.contains(0) {
            throw AirlockError(.usage, "a path, argument or environment value contains a NUL byte, which no program can receive")
        }
        return bytes
    }

    private static func u64<T: BinaryInteger>(_ v: T) -> [UInt8] {
        let x = UInt64(truncatingIfNeeded: v)
        return (0..<8).map { UInt8(truncatingIfNeeded: x >> (8 * UInt64($0))) }
    }

    private static func put32(_ v: UInt32, into out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: v))
        out.append(UInt8(truncatingIfNeeded: v >> 8))
        out.append(UInt8(truncatingIfNeeded: v >> 16))
        out.append(UInt8(truncatingIfNeeded: v >> 24))
    }
}
