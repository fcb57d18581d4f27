import AirlockControl
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ControlSuite {
    @Suite("the state directory") struct StateDirectoryTests {
        /// `airlock serve ARGS`, killed if it is still running after `seconds`.
        static func serve(_ args: [String], seconds: Double) throws -> (status: Int32, exited: Bool, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestDaemon.airlock)
            p.arguments = ["serve"] + args
            p.environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"]
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            let deadline = Date().addingTimeInterval(seconds)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            let exited = !p.isRunning
            if !exited { kill(p.processIdentifier, SIGTERM) }
            p.waitUntilExit()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return (p.terminationStatus, exited, text)
        }

        @Test("a state directory under a parent others cannot traverse is refused at start-up, naming the parent and the fix")
        func privateParent() throws {
            guard geteuid() == 0 else { return }  // without root, sandboxes run as the daemon's own uid
            let parent = "/var/tmp/airlock-private-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            #expect(mkdir(parent, 0o700) == 0)
            chmod(parent, 0o700)  // like mktemp -d
            defer { try? FileManager.default.removeItem(atPath: parent) }
            let state = parent + "/state"

            let refused = try Self.serve(["--state-dir", state, "--warm", "default=0"], seconds: 20)
            #expect(refused.exited && refused.status != 0, "the daemon started under a private parent: \(refused.stderr)")
            #expect(refused.stderr.contains(parent) && refused.stderr.contains("chmod o+x \(parent)"), "\(refused.stderr)")
            #expect(refused.stderr.contains("review"), "the message says what fails: \(refused.stderr)")

            // Once others may traverse it, the daemon starts and a read-only workspace binds.
            chmod(parent, 0o711)
            let d = try TestDaemon(["--warm", "default=0"], state: state)
            defer { d.finish() }
            let r = try d.json("POST", "/v1/sandboxes", ["profile": "review"])
            #expect(r.status == 201, "\(r.text)")
            if let id = r.json?["id"] as? String { _ = try d.json("DELETE", "/v1/sandboxes/\(id)") }
        }
    }
}
