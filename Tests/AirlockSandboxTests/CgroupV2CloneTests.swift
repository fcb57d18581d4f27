import Foundation
import Testing

@testable import AirlockCore
@testable import AirlockRuntime

extension SandboxSuite {
    /// cgroup v2 hosts get PID 1 created inside the sandbox's cgroup (clone3 with
    /// CLONE_INTO_CGROUP) instead of the helper moving itself there. This host's
    /// controller-less cgroup2 mount is enough to prove the mechanism for real.
    @Suite("cgroup v2 clone")
    struct CgroupV2CloneTests {
        static func cgroup2Mount() -> String? {
            guard let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
            for line in info.split(separator: "\n") {
                let parts = line.split(separator: " ")
                guard let dash = parts.firstIndex(of: "-"), dash + 1 < parts.count, parts[dash + 1] == "cgroup2" else { continue }
                return String(parts[4])
            }
            return nil
        }

        @Test func pid1IsBornInTheCgroupAndTheHelperIsNot() throws {
            let root = try #require(Self.cgroup2Mount(), "this test needs a cgroup2 mount (any host with systemd has one)")
            let dir = root + "/airlock-test-\(UInt32.random(in: 1...UInt32.max))"
            #expect(mkdir(dir, 0o755) == 0, "cannot create \(dir): errno \(errno)")
            defer { rmdir(dir) }

            let spec = SandboxSpec(
                profile: "test", command: ["/bin/sleep", "0.5"],
                environment: [EnvironmentVariable("PATH", "/usr/bin:/bin")], workingDirectory: "/",
                filesystem: FilesystemSpec(workspace: nil))
            let builder = PlanBuilder(
                host: .live, seccomp: try SeccompCompiler.compile(profile: .default, arch: .native), cgroupProcs: [],
                cgroupDirectory: dir)
            let plan = try PlanEncoder.encode(try builder.records(for: spec))
            let helper = try HelperLocator.locate(environment: [:])
            let process = try HelperProcess.spawn(helper: helper, plan: plan)
            var pid1Cgroup: String?
            var helperCgroup: String?
            var exited: String?
            let relative = String(dir.dropFirst(root.count))
            process.supervise { line in
                if line.hasPrefix("pid1 "), let pid = line.split(separator: " ").dropFirst().first {
                    pid1Cgroup = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8))?
                        .split(separator: "\n").first { $0.hasPrefix("0::") }.map(String.init)
                    helperCgroup = (try? String(contentsOfFile: "/proc/\(process.pid)/cgroup", encoding: .utf8))?
                        .split(separator: "\n").first { $0.hasPrefix("0::") }.map(String.init)
                }
                if line.hasPrefix("exit ") { exited = String(line) }
            }
            let status = process.wait()
            #expect(status == .exited(0))
            #expect(exited?.hasPrefix("exit 0") == true)
            #expect(pid1Cgroup == "0::\(relative)", "PID 1 was not created in \(relative): \(pid1Cgroup ?? "nil")")
            #expect(helperCgroup != "0::\(relative)", "the helper joined the cgroup instead of cloning into it")
        }
    }
}
