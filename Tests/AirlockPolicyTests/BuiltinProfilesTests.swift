import AirlockCore
import Testing

@testable import AirlockPolicy

@Suite struct BuiltinProfilesTests {
    @Test func theEmbeddedYAMLReadsWithoutADiagnostic() {
        #expect(Policy.check(BuiltinProfiles.yaml, file: "built-in").isEmpty)
        #expect(Policy.builtins.profiles.keys.sorted() == ["default", "review", "untrusted"])
        #expect(Policy.builtins.source == "built-in")
        #expect(Policy.builtins.profiles.values.allSatisfy { !($0.description ?? "").isEmpty })
    }

    @Test func defaultIsForRunningAnAgentOnARepository() throws {
        let p = try Policy.flatten("default", in: nil).get()
        #expect(p.runtime == .namespace)
        #expect(p.user == .agent)
        #expect(p.filesystem.workspace == .rw)
        #expect(p.network.mode == NetworkSpec.Mode.none)
        #expect(p.limits.wallClock == .seconds(3600))
        #expect(p.limits.memory == 4 * GiB)
        #expect(p.limits.cpus == 2)
        #expect(p.limits.pids == 1024)
        #expect(p.diskBudget == 1 * GiB)
        #expect(p.environment.pass == ["TERM", "LANG", "LC_ALL", "TZ", "COLORTERM"])
        #expect(p.syscalls == .default)
        #expect(p.landlock == .bestEffort)
    }

    @Test func untrustedIsForGeneratedCode() throws {
        let p = try Policy.flatten("untrusted", in: nil).get()
        #expect(Policy.builtins.profiles["untrusted"]?.extends == nil)  // spelled out, not inherited
        #expect(p.filesystem.workspace == .ro)
        #expect(p.limits.wallClock == .seconds(300))
        #expect(p.limits.memory == 512 * MiB)
        #expect(p.limits.cpus == 1)
        #expect(p.limits.pids == 128)
        #expect(p.diskBudget == 256 * MiB)
        #expect(p.limits.openFiles == 1024)
        #expect(p.limits.fileSize == 256 * MiB)
        #expect(p.syscalls == .strict)
        #expect(p.landlock == .required)
        #expect(p.network.mode == NetworkSpec.Mode.none)
    }

    @Test func reviewIsDefaultWithAReadOnlyWorkspace() throws {
        let review = try Policy.flatten("review", in: nil).get()
        var expected = try Policy.flatten("default", in: nil).get()
        expected.filesystem.workspace = .ro
        expected.description = review.description
        #expect(review == expected)
    }

    @Test func profileNamesListBuiltinsAndFileProfilesSorted() throws {
        let doc = try Policy.parse(
            """
            profiles:
              ci: {description: "CI jobs", extends: default}
              default: {description: "mine", extends: default}
            """, file: "team.yaml"
        ).get()
        let rows = Policy.profileNames(in: doc)
        #expect(rows.map(\.name) == ["ci", "default", "review", "untrusted"])
        #expect(rows[0].origin == "team.yaml" && rows[0].description == "CI jobs")
        #expect(rows[1].origin == "team.yaml (replaces the built-in)" && rows[1].description == "mine")
        #expect(rows[3].origin == "built-in")
        #expect(Policy.profileNames(in: nil).map(\.name) == ["default", "review", "untrusted"])
    }
}
