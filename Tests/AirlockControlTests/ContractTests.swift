import AirlockControl
import Foundation
import Testing

extension ControlSuite {
    /// The API against its contract (docs/openapi.yaml) and its Python SDK, both run by
    /// Python tools against a real daemon. `.ci/run` installs them (pip: pytest, schemathesis).
    @Suite("contract and SDK") struct ContractTests {
        static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

        static func python(_ args: [String], environment: [String: String], cwd: String, timeout: Double) throws -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = args
            p.currentDirectoryURL = URL(fileURLWithPath: cwd)
            // The PATH of the test run: pip installed pytest and schemathesis for that python3.
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
            p.environment = ["PATH": path, "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"]
                .merging(environment) { $1 }
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            nonisolated(unsafe) var data = Data()
            let reader = Thread { data = out.fileHandleForReading.readDataToEndOfFile() }
            reader.start()
            let deadline = Date().addingTimeInterval(timeout)
            while p.isRunning && Date() < deadline { usleep(50_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            while !reader.isFinished { usleep(1000) }
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }

        // pytest's temporary files go under the daemon's scratch state directory (removed by
        // `finish`), never /tmp: a first run on a clean machine would otherwise create
        // /tmp/pytest-of-<user> and fail the host-unchanged check.
        @Test("the Python SDK's tests pass against a real airlock serve (Unix socket and TCP)")
        func pythonSDK() throws {
            let port = Int.random(in: 20000...40000)
            let d = try TestDaemon(["--listen", "127.0.0.1:\(port)", "--insecure-http"])
            defer { d.finish() }
            let sdk = Self.root + "/clients/python"
            let (unix, unixOut) = try Self.python(
                ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", d.state + "/pytest-unix", "tests"], environment: ["AIRLOCK_SOCKET": d.socket], cwd: sdk, timeout: 600)
            #expect(unix == 0, "\(unixOut.suffix(4000))")
            #expect(unixOut.contains("passed") && !unixOut.contains(" skipped"), "the integration tests must run, not skip: \(unixOut.suffix(2000))")
            let token = try d.token("operator")
            let (tcp, tcpOut) = try Self.python(
                ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", d.state + "/pytest-tcp", "tests/test_integration.py"],
                environment: ["AIRLOCK_URL": "http://127.0.0.1:\(port)", "AIRLOCK_TOKEN": token], cwd: sdk, timeout: 600)
            #expect(tcp == 0, "\(tcpOut.suffix(4000))")
        }

        @Test("schemathesis finds no server error and no response outside docs/openapi.yaml")
        func schemathesis() throws {
            let port = Int.random(in: 20000...40000)
            let d = try TestDaemon(["--listen", "127.0.0.1:\(port)", "--insecure-http"])
            defer { d.finish() }
            let token = try d.token("admin")
            let (status, out) = try Self.python(
                ["bash", Self.root + "/Tests/Tools/schemathesis_run.sh"],
                environment: ["AIRLOCK_URL": "http://127.0.0.1:\(port)", "AIRLOCK_TOKEN": token], cwd: d.state, timeout: 900)
            #expect(status == 0, "\(out.suffix(6000))")
            // The daemon survived it.
            #expect(try d.client().request("GET", "/v1/health").status == 200)
        }
    }
}
