import AirlockTestSupport
import Foundation
import Testing

/// Every sandbox test runs serially: each checks that the host is unchanged
/// afterwards, which only means something when no other sandbox runs meanwhile.
@Suite("sandbox", .serialized)
enum SandboxSuite {}

/// Runs the real `airlock` binary (built next to this test bundle) and checks,
/// after every run, that the host is as it was: no new mount, no leftover
/// cgroup, no process of the sandbox, no new entry in /tmp.
struct Airlock {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var elapsed: Double
    }

    static var binDir: URL { HostSnapshot.binDir }
    static var binary: String { binDir.appendingPathComponent("airlock").path }

    /// Runs `airlock <args>` with `cwd`, feeding `stdin`, with an environment
    /// that holds a canary secret the sandbox must never see.
    @discardableResult
    static func run(
        _ args: [String], cwd: String, stdin: String? = nil, environment: [String: String] = [:],
        asUser uid: UInt32? = nil, timeout: Double = 60
    ) throws -> Result {
        let p = Process()
        if let uid {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--", binary] + args
        } else {
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = args
        }
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        var env = [
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "AIRLOCK_TEST_CANARY": Fixture.canary,
            "TMPDIR": Fixture.tmpdir, "AIRLOCK_AUDIT_DIR": Fixture.auditDirectory(uid: uid ?? 0),
        ]
        env.merge(environment) { $1 }
        p.environment = env
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        let start = Date()
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
        try inp.fileHandleForWriting.close()
        // Read both pipes concurrently so neither fills up.
        nonisolated(unsafe) var errData = Data()
        let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate(); Issue.record("airlock did not finish within \(timeout)s") }
        p.waitUntilExit()
        while reader.isExecuting || !reader.isFinished { usleep(1000) }
        return Result(
            status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self), elapsed: Date().timeIntervalSince(start))
    }
}

/// A temporary workspace plus a snapshot of the host taken before the test and
/// compared after it.
final class Fixture {
    static let canary = "canary-\(UInt64.random(in: 1...UInt64.max))"
    /// The audit log of the runs of one uid during the tests (each uid owns its own).
    static func auditDirectory(uid: UInt32) -> String { "/var/tmp/airlock-test-audit-\(getpid())-\(uid)" }

    /// airlock's TMPDIR during the tests: it must still be empty after every run.
    static let tmpdir: String = {
        let dir = "/var/tmp/airlock-test-tmpdir-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o1777)
        return dir
    }()

    let workspace: String
    let hostBefore: HostSnapshot

    init() throws {
        hostBefore = HostSnapshot.take()
        let dir = "/var/tmp/airlock-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        workspace = dir
    }

    /// Runs `body` with a fresh workspace, then asserts the host is unchanged and cleans up.
    static func with(_ body: (Fixture) throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let f = try Fixture()
        defer { try? FileManager.default.removeItem(atPath: f.workspace) }
        try body(f)
        f.assertHostUnchanged(sourceLocation: sourceLocation)
    }

    func run(_ args: [String], stdin: String? = nil, environment: [String: String] = [:], asUser: UInt32? = nil) throws -> Airlock.Result {
        try Airlock.run(args, cwd: workspace, stdin: stdin, environment: environment, asUser: asUser)
    }

    /// `airlock run <flags> -- sh -c script`
    func sh(_ script: String, flags: [String] = [], stdin: String? = nil) throws -> Airlock.Result {
        try run(["run"] + flags + ["--", "/bin/sh", "-c", script], stdin: stdin)
    }

    func path(_ rel: String) -> String { workspace + "/" + rel }

    func write(_ rel: String, _ content: String) throws {
        let url = URL(fileURLWithPath: path(rel))
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try content.write(to: url, atomically: false, encoding: .utf8)
    }

    func read(_ rel: String) -> String? { try? String(contentsOfFile: path(rel), encoding: .utf8) }

    func exists(_ rel: String) -> Bool {
        var st = stat()
        return lstat(path(rel), &st) == 0
    }

    func assertHostUnchanged(sourceLocation: SourceLocation = #_sourceLocation) {
        let after = HostSnapshot.take()
        #expect(after.mounts == hostBefore.mounts, "mount table changed", sourceLocation: sourceLocation)
        let newGroups = Set(after.airlockCgroups).subtracting(hostBefore.airlockCgroups)
        #expect(newGroups.isEmpty, "cgroups left behind: \(newGroups)", sourceLocation: sourceLocation)
        // Other test targets in this run make their own scratch trees in /tmp (the cgroup
        // unit tests' fake cgroupfs, SwiftPM's TemporaryDirectory.*); nothing else may appear.
        let foreign = ["TemporaryDirectory.", "airlock-cgroup-test-"]
        let newTmp = after.tmpEntries.subtracting(hostBefore.tmpEntries).filter { e in !foreign.contains { e.hasPrefix($0) } }
        #expect(newTmp.isEmpty, "new entries in /tmp: \(newTmp)", sourceLocation: sourceLocation)
        let leftInTmpdir = (try? FileManager.default.contentsOfDirectory(atPath: Fixture.tmpdir)) ?? []
        #expect(leftInTmpdir.isEmpty, "left in airlock's TMPDIR: \(leftInTmpdir)", sourceLocation: sourceLocation)
        #expect(after.sandboxProcesses.isEmpty, "sandbox processes left: \(after.sandboxProcesses)", sourceLocation: sourceLocation)
    }
}

