import AirlockControl
import AirlockTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every test of the daemon runs serially: they run real sandboxes and check the host after.
@Suite("control plane", .serialized)
enum ControlSuite {}

/// A real `airlock serve` (the binary built next to this test bundle) with its own state
/// directory, spoken to over its Unix socket.
final class TestDaemon: @unchecked Sendable {
    static var airlock: String { HostSnapshot.binDir.appendingPathComponent("airlock").path }

    let state: String
    let socket: String
    private(set) var process: Process?
    let arguments: [String]
    let before = HostSnapshot.take()
    var log: String { (try? String(contentsOfFile: state + ".log", encoding: .utf8)) ?? "" }

    init(_ extra: [String] = [], state: String? = nil) throws {
        self.state = state ?? "/var/tmp/airlock-serve-test-\(UInt32.random(in: 0...UInt32.max))"
        socket = self.state + "/airlock.sock"
        arguments = extra
        try start()
    }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.airlock)
        p.arguments = ["serve", "--state-dir", state] + arguments
        p.environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "AIRLOCK_TEST_SECRET": "s3cr3t-value-for-injection-0123456789"]
        _ = FileManager.default.createFile(atPath: state + ".log", contents: nil)
        let logHandle = FileHandle(forWritingAtPath: state + ".log")!
        logHandle.seekToEndOfFile()
        p.standardError = logHandle
        p.standardOutput = logHandle
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let r = try? client().request("GET", "/v1/health", timeout: 2), r.status == 200 { return }
            if !p.isRunning { break }
            usleep(20_000)
        }
        throw TestFailure("airlock serve did not come up: \(log)")
    }

    func client(token: String? = nil) -> ControlClient { ControlClient(socket: socket, token: token) }

    /// `airlock token create` against this daemon's store.
    func token(_ role: String, ttl: String = "1h") throws -> String {
        let r = try Self.cli(["token", "create", "--role", role, "--ttl", ttl, "--state-dir", state])
        guard r.status == 0 else { throw TestFailure("token create failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Graceful stop (SIGTERM); returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard let p = process else { return 0 }
        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        process = nil
        return p.terminationStatus
    }

    /// kill -9.
    func crash() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    /// Stops the daemon, checks the host is as before, removes the state directory.
    func finish(sourceLocation: SourceLocation = #_sourceLocation) {
        stop()
        let after = HostSnapshot.take()
        #expect(after.mounts == before.mounts, "mount table changed", sourceLocation: sourceLocation)
        let newGroups = Set(after.airlockCgroups).subtracting(before.airlockCgroups)
        #expect(newGroups.isEmpty, "cgroups left behind: \(newGroups); daemon log: \(log.suffix(3000))", sourceLocation: sourceLocation)
        #expect(after.sandboxProcesses.isEmpty, "sandbox processes left: \(after.sandboxProcesses)", sourceLocation: sourceLocation)
        let newTmp = after.tmpEntries.subtracting(before.tmpEntries).filter { !$0.hasPrefix("TemporaryDirectory.") && !$0.hasPrefix("airlock-cgroup-test-") }
        #expect(newTmp.isEmpty, "new entries in /tmp: \(newTmp)", sourceLocation: sourceLocation)
        let workspaces = (try? FileManager.default.contentsOfDirectory(atPath: state + "/workspaces")) ?? []
        #expect(workspaces.isEmpty, "workspaces left: \(workspaces)", sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket was left behind", sourceLocation: sourceLocation)
        try? FileManager.default.removeItem(atPath: state)
        try? FileManager.default.removeItem(atPath: state + ".log")
    }

    // MARK: Requests

    func json(_ method: String, _ path: String, _ body: [String: Any]? = nil, token: String? = nil) throws -> ControlClient.Reply {
        let data = try body.map { [UInt8](try JSONSerialization.data(withJSONObject: $0)) }
        return try client(token: token).request(method, path, body: data)
    }

    func create(_ body: [String: Any] = [:], token: String? = nil) throws -> String {
        let r = try json("POST", "/v1/sandboxes", body, token: token)
        guard r.status == 201, let id = r.json?["id"] as? String else { throw TestFailure("create failed: \(r.status) \(r.text)") }
        return id
    }

    func exec(_ id: String, _ command: [String], extra: [String: Any] = [:], token: String? = nil) throws -> [String: Any] {
        var body = extra
        body["command"] = command
        let r = try json("POST", "/v1/sandboxes/\(id)/exec", body, token: token)
        guard r.status == 200, let o = r.json else { throw TestFailure("exec failed: \(r.status) \(r.text)") }
        return o
    }

    func sandbox(_ id: String) throws -> [String: Any] {
        let r = try json("GET", "/v1/sandboxes/\(id)")
        guard r.status == 200, let o = r.json else { throw TestFailure("get failed: \(r.status) \(r.text)") }
        return o
    }

    struct CLIResult {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func cli(_ args: [String], environment: [String: String] = [:]) throws -> CLIResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: airlock)
        p.arguments = args
        p.environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"].merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        nonisolated(unsafe) var errData = Data()
        let t = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        t.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !t.isFinished { usleep(1000) }
        return CLIResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The problem `type` slug of a reply (`https://airlock.dev/problems/<slug>`).
func problemSlug(_ r: ControlClient.Reply) -> String? {
    (r.json?["type"] as? String)?.replacingOccurrences(of: Problem.typeBase, with: "")
}

func detail(_ r: ControlClient.Reply) -> String { r.json?["detail"] as? String ?? "" }
func string(_ v: Any?) -> String { v as? String ?? "" }
