import AirlockAudit
import AirlockCore
import AirlockRuntime
import CAirlockShim
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A sandbox's workspace on the host: `<state>/workspaces/<id>`. As root it is a tmpfs of the
/// sandbox's disk budget (bounded, and nothing is left on a disk when it is unmounted);
/// without root, a plain directory.
struct WorkspaceArea: Sendable {
    let path: String
    let mounted: Bool

    static func make(under base: String, id: String, size: UInt64) throws(AirlockError) -> WorkspaceArea {
        if mkdir(base, 0o711) != 0, errno != EEXIST { throw systemError("mkdir", errno, "cannot create \(base)") }
        chmod(base, 0o711)  // the daemon's umask is 077
        let path = base + "/" + id
        guard mkdir(path, 0o755) == 0 else { throw systemError("mkdir", errno, "cannot create the workspace \(path)") }
        chmod(path, 0o755)
        if geteuid() == 0 {
            let options = "size=\(size),mode=0755,uid=0,gid=0"
            guard mount("tmpfs", path, "tmpfs", UInt(MS_NOSUID | MS_NODEV), options) == 0 else {
                let e = errno
                rmdir(path)
                throw systemError("mount", e, "cannot mount the workspace tmpfs at \(path)")
            }
            return WorkspaceArea(path: path, mounted: true)
        }
        return WorkspaceArea(path: path, mounted: false)
    }

    /// Unmounts and removes it (symlinks inside are removed, never followed).
    func remove() { Self.remove(path: path, mounted: mounted) }

    static func remove(path: String, mounted: Bool) {
        if mounted || isMountPoint(path) { _ = umount2(path, Int32(MNT_DETACH)) }
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        // The area's own directory sits in the daemon's (root-only) workspaces directory; what
        // is in it may have been made by the sandbox.
        let parent = open(String(path[..<slash]), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard parent >= 0 else { return }
        defer { close(parent) }
        removeTree(parent, String(path[path.index(after: slash)...]))
    }

    /// Removes `name` beneath the directory `parent` and, if it is a directory, everything in
    /// it, through descriptors only: each directory is opened beneath its parent's descriptor
    /// with no symlink followed and no mount crossed, each entry unlinked relative to the
    /// descriptor it was listed from. A sandbox that renames entries meanwhile (a symlink
    /// swapped for a directory) can make the walk skip them, never reach outside. Walked with
    /// an explicit stack, so a deep tree cannot exhaust the thread's stack.
    static func removeTree(_ parent: Int32, _ name: String) {
        guard unlinkat(parent, name, 0) != 0, errno == EISDIR else { return }
        struct Level {
            let dir: OpaquePointer
            let name: String
            var fd: Int32 { dirfd(dir) }
        }
        func enter(_ p: Int32, _ n: String) -> Level? {
            let fd = airlock_open_beneath(p, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0)
            guard fd >= 0 else { return nil }
            guard let dir = fdopendir(fd) else {
                close(fd)
                return nil
            }
            return Level(dir: dir, name: n)
        }
        guard let top = enter(parent, name) else { return }
        var stack = [top]
        while let level = stack.last {
            guard let entry = readdir(level.dir) else {
                closedir(level.dir)
                stack.removeLast()
                unlinkat(stack.last?.fd ?? parent, level.name, AT_REMOVEDIR)
                continue
            }
            let child = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if child == "." || child == ".." { continue }
            if unlinkat(level.fd, child, 0) == 0 || errno != EISDIR { continue }
            // A directory: listed from its own descriptor. One descriptor is held per level, so
            // the depth is bounded; a deeper tree is left in place, never walked by name.
            if stack.count < 256, let next = enter(level.fd, child) { stack.append(next) }
        }
    }

    static func isMountPoint(_ path: String) -> Bool {
        var a = stat(), b = stat()
        guard lstat(path, &a) == 0, lstat(path + "/..", &b) == 0 else { return false }
        return a.st_dev != b.st_dev
    }
}

/// Workspace-relative paths from the API, checked before any file system call.
enum WorkspacePath {
    static func check(_ raw: String?, field: String = "path", allowRoot: Bool = false) throws(Problem) -> String {
        guard let p = raw, !p.isEmpty else {
            if allowRoot { return "." }
            throw Problem.badRequest("\(field) is required: a path relative to /workspace, e.g. ?path=src/main.py")
        }
        guard p.utf8.count <= 4096 else { throw Problem.badRequest("\(field) is longer than 4096 bytes") }
        guard !p.utf8.contains(0), !p.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw Problem.badRequest("\(field) contains a NUL or control character")
        }
        guard !p.hasPrefix("/") else {
            throw Problem.badRequest("\(field) '\(p)' is absolute; paths are relative to /workspace (write '\(p.drop { $0 == "/" })')")
        }
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains("..") { throw Problem.badRequest("\(field) '\(p)' contains '..'; paths must stay inside /workspace") }
        let clean = parts.filter { !$0.isEmpty && $0 != "." }
        if let long = clean.first(where: { $0.utf8.count > 255 }) {
            throw Problem.badRequest("\(field): the name '\(long.prefix(32))…' is longer than 255 bytes")
        }
        if clean.isEmpty {
            if allowRoot { return "." }
            throw Problem.badRequest("\(field) '\(p)' names the workspace itself, not a file in it")
        }
        return clean.joined(separator: "/")
    }
}

extension Supervisor {
    // MARK: Files

    func writeFile(_ id: String, path raw: String?, body: [UInt8], principal: String) throws(Problem) -> Int {
        let (sb, root) = try workspaceRoot(id, writing: true)
        defer { close(root) }
        let path = try WorkspacePath.check(raw)
        var parts = path.split(separator: "/").map(String.init)
        let name = parts.removeLast()
        let dir = try openDirectories(root, parts, create: true, for: path)
        defer { close(dir) }
        // No O_TRUNC: nothing is changed before the file is known to be a regular one.
        let fd = airlock_open_beneath(dir, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fileProblem(errno, path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw Problem.forbidden("'\(path)' is not a regular file in the workspace; only regular files can be written")
        }
        guard ftruncate(fd, 0) == 0 else { throw Problem.internalError("cannot truncate '\(path)': \(errnoDescription(errno))") }
        fchmod(fd, 0o644)  // on the descriptor: the daemon's umask is 077
        let err = POSIXIO.writeAll(fd, body)
        guard err == 0 else {
            if err == ENOSPC { throw Problem.tooLarge("the workspace of \(id) is full (its disk budget is \(Units.formatBytes(sb.spec.filesystem.tmpSize)))") }
            throw Problem.internalError("cannot write '\(path)': \(errnoDescription(err))")
        }
        touch(sb)
        emit("control.file.written", sb.record.withLock { $0 }, principal: principal, [("file.path", .string(path)), ("file.size", .int(Int64(body.count)))])
        return body.count
    }

    func readFile(_ id: String, path raw: String?, principal: String) throws(Problem) -> [UInt8] {
        let (sb, root) = try workspaceRoot(id, writing: false)
        defer { close(root) }
        let path = try WorkspacePath.check(raw)
        let fd = airlock_open_beneath(root, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw fileProblem(errno, path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw Problem.forbidden("'\(path)' is not a regular file; only regular files can be read (use the archive endpoint for a directory)")
        }
        guard st.st_size <= settings.maxFileBytes else {
            throw Problem.tooLarge("'\(path)' is \(Units.formatBytes(UInt64(st.st_size))); single files are limited to \(Units.formatBytes(UInt64(settings.maxFileBytes))) (use the archive endpoint)")
        }
        guard let bytes = POSIXIO.readAll(fd, upTo: settings.maxFileBytes) else { throw Problem.internalError("cannot read '\(path)': \(errnoDescription(errno))") }
        touch(sb)
        emit("control.file.read", sb.record.withLock { $0 }, principal: principal, [("file.path", .string(path)), ("file.size", .int(Int64(bytes.count)))])
        return bytes
    }

    private func touch(_ sb: LiveSandbox) {
        let r = sb.record.withLock { r in
            r.lastActivityAt = Date()
            return r
        }
        try? store.updateSandbox(r)
    }

    /// The workspace directory of a running sandbox, opened (O_PATH-like, read-only).
    private func workspaceRoot(_ id: String, writing: Bool) throws(Problem) -> (LiveSandbox, Int32) {
        guard let sb = liveSandbox(id), sb.stopping.withLock({ $0 }) == nil else { throw notRunning(id) }
        let state = sb.record.withLock { $0.state }
        // A contained sandbox's workspace is evidence: it may be read, never written.
        guard state == .running || (state == .frozen && !writing) else {
            throw Problem.conflict("the sandbox \(id) is \(state.rawValue): its workspace is kept as evidence and cannot be written (see its snapshot)")
        }
        guard let area = sb.workspace else {
            throw Problem.conflict("the sandbox \(id) has no workspace (its profile '\(sb.spec.profile)' grants none)")
        }
        return (sb, try openWorkspace(area.path))
    }

    private func fileProblem(_ e: Int32, _ path: String) -> Problem {
        switch e {
        case EXDEV: Problem.forbidden("'\(path)' resolves outside the workspace (through a mount); it is refused")
        case ELOOP: Problem.forbidden("'\(path)' is or passes through a symlink; the daemon follows no link made in a sandbox (use the path of the link's target, or run the command inside the sandbox)")
        case ENOENT: Problem.notFound("there is no '\(path)' in the workspace")
        case ENOTDIR: Problem.badRequest("a parent of '\(path)' is not a directory")
        case EISDIR, ENXIO: Problem.forbidden("'\(path)' is not a regular file (a directory, a FIFO or a socket); the files endpoint reads and writes regular files only (use the archive endpoint for directories)")
        case ENOSPC: Problem.tooLarge("the workspace is full")
        case ENAMETOOLONG: Problem.badRequest("'\(path)' is too long")
        case ENOSYS: Problem.internalError("this kernel lacks openat2 (Linux 5.6+), which confining file access needs")
        default: Problem.internalError("cannot open '\(path)': \(errnoDescription(e))")
        }
    }

    // MARK: Archives (tar, run inside a sandbox)

    /// A short-lived sandbox with the same profile and the workspace writable, no network and
    /// no secrets: archives are packed and unpacked there, never by the daemon, so a hostile
    /// archive (`..` members, links out, device files) is confined like any command.
    func withTransferSandbox<T: Sendable>(
        spec base: SandboxSpec, workspace: String, _ body: @Sendable (ServiceSandbox) async throws(Problem) -> T
    ) async throws(Problem) -> T {
        var spec = base
        spec.filesystem.workspace?.hostPath = workspace
        spec.filesystem.workspace?.readOnly = false
        spec.network = NetworkSpec()
        spec.secrets = []
        spec.environment.removeAll { $0.name.hasSuffix("_PROXY") || $0.name.hasSuffix("_proxy") || $0.name == "NO_PROXY" || $0.name == "no_proxy" }
        spec.monitor = MonitorSpec()
        spec.limits.wallClock = .seconds(600)
        spec.command = []
        let instance = Identifiers.random("sbx-")
        let launchSpec = spec
        let runner = SandboxRunner(logger: logger, events: NullSink(), environment: settings.environment)
        let started: Result<ServiceSandbox, AirlockError> = await Blocking.run {
            do throws(AirlockError) { return .success(try ServiceSandbox.start(launchSpec, instance: instance, runner: runner)) } catch { return .failure(error) }
        }
        let sandbox: ServiceSandbox
        switch started {
        case .success(let s): sandbox = s
        case .failure(let e): throw Problem.from(e)
        }
        do {
            let result = try await body(sandbox)
            sandbox.stop()
            await sandbox.ended()
            return result
        } catch {
            sandbox.stop()
            await sandbox.ended()
            throw error
        }
    }

    /// Runs `tar` in a transfer sandbox; its stdout goes to `out`, and its status is checked.
    func runTar(
        spec: SandboxSpec, workspace: String, arguments: [String], stdin: [UInt8] = [],
        out: @escaping @Sendable ([UInt8]) async throws(Problem) -> Void = { _ in }
    ) async throws(Problem) {
        try await withTransferSandbox(spec: spec, workspace: workspace) { (sandbox) throws(Problem) -> Void in
            let request = ServiceSandbox.ExecRequest(
                command: ["tar"] + arguments, environment: [EnvironmentVariable("PATH", "/usr/bin:/bin"), EnvironmentVariable("LC_ALL", "C")],
                workingDirectory: "/workspace")
            let run = try ExecRun.start(in: sandbox, request: request, stdin: stdin, timeout: 600) { _ in }
            var stderr: [UInt8] = []
            var outcome: ExecRun.Outcome?
            for await e in run.events {
                run.consumed()
                switch e {
                case .stdout(let b): try await out(b)
                case .stderr(let b): if stderr.count < 8192 { stderr += b }
                case .exit(let o): outcome = o
                }
            }
            guard let outcome, outcome.exitCode == 0 else {
                let text = String(decoding: stderr, as: UTF8.self).split(separator: "\n").prefix(5).joined(separator: "; ")
                throw Problem.validation("tar failed in the sandbox: \(text.isEmpty ? "exit \(outcome?.exitCode.map(String.init) ?? "?")" : text)")
            }
        }
    }

    func putArchive(_ id: String, path raw: String?, body: [UInt8], principal: String) async throws(Problem) {
        guard let sb = liveSandbox(id), sb.stopping.withLock({ $0 }) == nil else { throw notRunning(id) }
        guard sb.record.withLock({ $0.state }) == .running else { throw Problem.conflict("the sandbox \(id) is not running") }
        guard let area = sb.workspace else { throw Problem.conflict("the sandbox \(id) has no workspace") }
        let dir = try WorkspacePath.check(raw, allowRoot: true)
        // The directory is created (confined, symlinks out refused) first, then tar extracts into it.
        if dir != "." {
            let root = try openWorkspace(area.path)
            defer { close(root) }
            close(try openDirectories(root, dir.split(separator: "/").map(String.init), create: true, for: dir))
        }
        try await runTar(
            spec: sb.spec, workspace: area.path,
            arguments: ["-x", "-f", "-", "--no-same-owner", "--no-same-permissions", "-C", "/workspace/" + dir], stdin: body)
        emit("control.archive.written", sb.record.withLock { $0 }, principal: principal, [("file.path", .string(dir)), ("file.size", .int(Int64(body.count)))])
    }

    func getArchive(_ id: String, path raw: String?, principal: String) async throws(Problem) -> [UInt8] {
        guard let sb = liveSandbox(id), sb.stopping.withLock({ $0 }) == nil else { throw notRunning(id) }
        guard let area = sb.workspace else { throw Problem.conflict("the sandbox \(id) has no workspace") }
        let dir = try WorkspacePath.check(raw, allowRoot: true)
        let root = try openWorkspace(area.path)
        defer { close(root) }
        try checkExists(root, dir)
        let limit = settings.maxArchiveBytes
        let collected = Collected()
        try await runTar(spec: sb.spec, workspace: area.path, arguments: ["-c", "-f", "-", "-C", "/workspace", "--", dir]) { (b) throws(Problem) -> Void in
            guard collected.add(b, limit: limit) else {
                throw Problem.tooLarge("the archive of '\(dir)' is larger than \(Units.formatBytes(UInt64(limit)))")
            }
        }
        emit("control.archive.read", sb.record.withLock { $0 }, principal: principal, [("file.path", .string(dir))])
        return collected.bytes
    }

    private func openWorkspace(_ path: String) throws(Problem) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Problem.internalError("cannot open the workspace \(path): \(errnoDescription(errno))") }
        return fd
    }

    /// 404 for a path that does not exist, 403 for one that resolves out of the workspace.
    private func checkExists(_ root: Int32, _ path: String) throws(Problem) {
        let fd = airlock_open_beneath(root, path, Int32(AIRLOCK_O_PATH) | O_CLOEXEC, 0)
        guard fd >= 0 else { throw fileProblem(errno, path) }
        close(fd)
    }

    /// Opens the directory `parts` beneath the workspace `root`, one level at a time, each
    /// level opened beneath the descriptor of the one above with no symlink followed; with
    /// `create`, a missing level is made (`mkdir -p`). Returns its descriptor; errors name `path`.
    ///
    /// The sandbox can rename anything in its workspace at any moment, so a name is resolved
    /// once and the work done on the descriptor it gave: a new level's mode is set with
    /// `fchmod` on the directory just opened, never by name (`fchmodat` follows a symlink
    /// swapped in between the two calls, and would change a host file as root).
    private func openDirectories(_ root: Int32, _ parts: [String], create: Bool, for path: String) throws(Problem) -> Int32 {
        var rootStat = stat()
        guard fstat(root, &rootStat) == 0 else { throw fileProblem(errno, path) }
        var current = fcntl(root, F_DUPFD_CLOEXEC, 0)
        guard current >= 0 else { throw fileProblem(errno, path) }
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        for name in parts {
            var fd = airlock_open_beneath(current, name, flags, 0)
            var e = errno
            if fd < 0, e == ENOENT, create {
                let made = mkdirat(current, name, 0o755) == 0
                e = errno
                if made || e == EEXIST {
                    fd = airlock_open_beneath(current, name, flags, 0)
                    e = errno
                }
                // Whatever is under the name now (the sandbox may have swapped it) is a directory
                // on the workspace's own file system, reached without a link: setting 0755 on it
                // cannot touch anything outside.
                var st = stat()
                if made, fd >= 0, fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_dev == rootStat.st_dev {
                    fchmod(fd, 0o755)  // the daemon's umask is 077
                }
            }
            if fd < 0, e == ENOTDIR {
                // O_DIRECTORY on a symlink says ENOTDIR: name it as the link it is (403).
                var st = stat()
                if fstatat(current, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFLNK { e = ELOOP }
            }
            close(current)
            guard fd >= 0 else { throw fileProblem(e, path) }
            current = fd
        }
        return current
    }

    // MARK: Sealing

    /// Packs the workspace in a transfer sandbox and seals the archive as it is produced
    /// (the plaintext never touches a disk). `prefix` is prepended to the archive (a snapshot's
    /// `airlock-snapshot.json` entry).
    /// Without a workspace (`area` nil), the archive is `prefix` and the end-of-archive blocks.
    func seal(
        area: WorkspaceArea?, spec: SandboxSpec, sandbox: String, kind: SealedRecord.Kind, meta: [String: Any], prefix: [UInt8] = []
    ) async throws(Problem) -> SealedRecord {
        let id = Identifiers.random(kind == .workspace ? "ws-" : "snap-")
        if mkdir(settings.sealedDirectory, 0o700) != 0, errno != EEXIST {
            throw Problem.internalError("cannot create \(settings.sealedDirectory): \(errnoDescription(errno))")
        }
        let relative = "sealed/\(id).alv"
        let sealer: Vault.Sealer
        do { sealer = try vault.sealer(id: id, ciphertext: settings.stateDirectory + "/" + relative) } catch { throw Problem.from(error) }
        let box = SealerBox(sealer)
        do throws(AirlockError) { try sealer.append(prefix) } catch { throw Problem.from(error) }
        if let area {
            try await runTar(spec: spec, workspace: area.path, arguments: ["-c", "-f", "-", "-C", "/workspace", "."]) { (b) throws(Problem) -> Void in
                do throws(AirlockError) { try box.sealer.append(b) } catch { throw Problem.from(error) }
            }
        } else {
            do throws(AirlockError) { try sealer.append([UInt8](repeating: 0, count: 1024)) } catch { throw Problem.from(error) }
        }
        let (wrapped, size): (Data, Int64)
        do { (wrapped, size) = try sealer.finish() } catch { throw Problem.from(error) }
        let metaText = (try? String(decoding: JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys]), as: UTF8.self)) ?? "{}"
        let record = SealedRecord(id: id, kind: kind, sandbox: sandbox, createdAt: Date(), size: size, wrappedKey: wrapped, path: relative, meta: metaText)
        do { try store.insertSealed(record) } catch {
            unlink(settings.stateDirectory + "/" + relative)
            throw Problem.internalError("the store refused the sealed \(kind.rawValue): \(error)")
        }
        emit("control.\(kind.rawValue).sealed", nil, principal: "airlock", [("airlock.sealed.id", .string(id)), ("airlock.sealed.size", .int(size))], instance: sandbox)
        return record
    }

    func snapshot(_ id: String) throws(Problem) -> SealedRecord {
        guard Identifiers.isSnapshot(id), let r = try? store.sealed(id: id), r.kind == .snapshot else {
            throw Problem.notFound("there is no snapshot \(id) (see GET /v1/snapshots)")
        }
        return r
    }

    /// The plaintext of a sealed object.
    func unseal(_ r: SealedRecord) throws(Problem) -> [UInt8] {
        var out: [UInt8] = []
        do {
            try vault.open(id: r.id, ciphertext: settings.stateDirectory + "/" + r.path, wrappedKey: r.wrappedKey) { out.append(contentsOf: $0) }
        } catch { throw Problem.internalError("cannot open \(r.id): \(error)") }
        return out
    }

    /// Unpacks a persisted workspace into a new sandbox's workspace (in a transfer sandbox).
    func restore(_ r: SealedRecord, into sb: LiveSandbox) async throws(Problem) {
        guard let area = sb.workspace else { return }
        let data = try unseal(r)
        try await runTar(spec: sb.spec, workspace: area.path, arguments: ["-x", "-f", "-", "--no-same-owner", "-C", "/workspace"], stdin: data)
    }

    /// Cryptographic erasure of a sealed object.
    func erase(_ id: String, kind: SealedRecord.Kind, principal: String) throws(Problem) {
        guard let r = try? store.sealed(id: id), r.kind == kind else {
            throw Problem.notFound("there is no \(kind == .workspace ? "persisted workspace" : "snapshot") \(id)")
        }
        if kind == .workspace, live.withLock({ $0.values.contains { $0.record.withLock { $0.workspaceID } == id && $0.record.withLock { $0.persist } } }) {
            throw Problem.conflict("the workspace \(id) belongs to a running sandbox; stop it first")
        }
        do { _ = try store.eraseSealed(id: id) } catch { throw Problem.internalError("cannot erase \(id): \(error)") }
        unlink(settings.stateDirectory + "/" + r.path)
        emit("control.\(kind.rawValue).erased", nil, principal: principal, [("airlock.sealed.id", .string(id))], instance: r.sandbox)
    }
}

/// Bytes gathered from a stream, up to a limit.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var data: [UInt8] = []
    func add(_ b: [UInt8], limit: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard data.count + b.count <= limit else { return false }
        data += b
        return true
    }
    var bytes: [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        return data
    }
}

/// The sealer, handed to the tar reader (one consumer at a time).
final class SealerBox: @unchecked Sendable {
    let sealer: Vault.Sealer
    init(_ s: Vault.Sealer) { sealer = s }
}
