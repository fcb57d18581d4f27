#if canImport(Glibc)
    import Glibc
#endif
import AirlockCore

/// Takes one ``ResourceSample`` of a sandbox.
protocol ResourceProbe: Sendable {
    /// `processes`: also list the sandbox's processes and their executables.
    func sample(processes: Bool) -> ResourceSample
}

/// Samples a sandbox's cgroup (v1 or v2, through ``SandboxCgroup/usage()``) and, for exec
/// rules, `readlink`s `/proc/PID/exe` of each process in its `cgroup.procs`.
///
/// Processes running the sandbox helper's own executable are skipped: the helper itself (in
/// the cgroup on v1), the sandbox's PID 1, and PID 1's children between `fork` and `execve`.
/// They are recognised by the device and inode of their executable, not by path.
public struct CgroupProbe: ResourceProbe {
    let cgroup: SandboxCgroup
    /// (st_dev, st_ino) of the helper binary.
    let helper: (dev: UInt64, ino: UInt64)?
    /// Where `/proc` is (tests point it elsewhere).
    var proc = "/proc"

    init(cgroup: SandboxCgroup, helperPath: String?) {
        self.cgroup = cgroup
        var st = stat()
        if let helperPath, stat(helperPath, &st) == 0 {
            helper = (UInt64(st.st_dev), UInt64(st.st_ino))
        } else {
            helper = nil
        }
    }

    func sample(processes: Bool) -> ResourceSample {
        let usage = cgroup.usage()
        var s = ResourceSample(
            time: Timing.now(), cpuNanos: usage.cpuNanos, memoryBytes: usage.memoryCurrentBytes, pids: usage.pidsCurrent)
        if processes {
            s.processes = cgroup.processes().compactMap { pid in
                let exe = "\(proc)/\(pid)/exe"
                var st = stat()
                guard stat(exe, &st) == 0 else { return nil }  // gone, or a kernel thread
                if let helper, UInt64(st.st_dev) == helper.dev, UInt64(st.st_ino) == helper.ino { return nil }
                guard let path = Self.readLink(exe) else { return nil }
                return ProcessImage(pid: pid, executable: path)
            }
        }
        return s
    }

    /// An exec rule with, after each pattern whose directory (or, for a pattern without
    /// wildcards, whose file) is a symlink on the host, the same pattern with the link
    /// resolved: the kernel reports executables by their real path (`/bin/sh` runs as
    /// `/usr/bin/dash` on Debian), and the sandbox's system directories are the host's.
    static func resolvingHostLinks(_ rule: AlertRule) -> AlertRule {
        guard case .exec(let allow) = rule.condition else { return rule }
        var out: [String] = []
        func add(_ p: String) { if !out.contains(p) { out.append(p) } }
        for pattern in allow {
            add(pattern)
            let wild = pattern.contains { "*?[".contains($0) }
            if !wild {
                if let real = realPath(pattern) { add(real) }
            } else if let slash = pattern.lastIndex(of: "/") {
                let dir = String(pattern[..<slash])
                if !dir.contains(where: { "*?[".contains($0) }), !dir.isEmpty, let real = realPath(dir) {
                    add(real + pattern[slash...])
                }
            }
        }
        var r = rule
        r.condition = .exec(allow: out)
        return r
    }

    private static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The pid of `pid` inside its innermost PID namespace (the last `NSpid:` field), if readable.
    public static func namespacePID(of pid: Int32, proc: String = "/proc") -> Int32? {
        let fd = open("\(proc)/\(pid)/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        let text = String(decoding: bytes[0..<n], as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last.flatMap { Int32($0) }
    }
}
