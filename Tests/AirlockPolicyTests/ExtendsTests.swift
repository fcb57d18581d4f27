import AirlockCore
import Testing

@testable import AirlockPolicy

@Suite struct ExtendsTests {
    static let family = """
        profiles:
          base:
            description: "the base"
            user: root
            filesystem:
              workspace: ro
              deny: [secrets/, .env]
              etc: [gitconfig]
              mounts: [{source: /srv/a, target: /mnt/a}]
            environment:
              pass: [TERM, LANG]
              set: {A: "1", B: "2"}
            limits: {memory: 1G, cpus: 1, pids: 100, wall_clock: 10m}
          child:
            extends: base
            filesystem:
              deny: [.env.local, .env]
              etc: [npmrc]
              mounts: [{source: /srv/b, target: /mnt/b, mode: rw}]
            environment:
              pass: [TZ]
              set: {B: "3", C: "4"}
            limits: {memory: 2G}
          grandchild:
            extends: child
            description: "the youngest"
            limits: {cpus: 4}
            syscalls: strict
        """

    @Test func childFieldsOverrideAndMappingsMergeKeyByKey() throws {
        let p = try #require(flat("child", Self.family))
        #expect(p.extends == nil)
        #expect(p.description == nil)  // not inherited
        #expect(p.user == .root)
        #expect(p.filesystem.workspace == .ro)
        #expect(p.limits.memory == 2 * GiB)
        #expect(p.limits.cpus == 1)
        #expect(p.limits.pids == 100)
        #expect(p.limits.wallClock == .seconds(600))
        #expect(p.environment.set == [.init("A", "1"), .init("B", "3"), .init("C", "4")])
    }

    @Test func denyAndEtcAddToTheParentsOtherListsReplace() throws {
        let p = try #require(flat("child", Self.family))
        #expect(p.filesystem.deny == ["secrets/", ".env", ".env.local"])
        #expect(p.filesystem.etc == ["gitconfig", "npmrc"])
        #expect(p.filesystem.mounts == [MountGrant(source: "/srv/b", destination: "/mnt/b", readOnly: false)])
        #expect(p.environment.pass == ["TZ"])
    }

    @Test func chainsOfThreeApplyInOrder() throws {
        let p = try #require(flat("grandchild", Self.family))
        #expect(p.description == "the youngest")
        #expect(p.limits.cpus == 4)
        #expect(p.limits.memory == 2 * GiB)
        #expect(p.limits.pids == 100)
        #expect(p.syscalls == .strict)
        #expect(p.filesystem.deny == ["secrets/", ".env", ".env.local"])
    }

    @Test func aFileCanExtendBuiltins() throws {
        let yaml = "profiles:\n  tight:\n    extends: untrusted\n    limits: {memory: 1G}\n"
        let p = try #require(flat("tight", yaml))
        #expect(p.limits.memory == GiB)
        #expect(p.limits.wallClock == .seconds(300))
        #expect(p.syscalls == .strict)
        #expect(p.filesystem.workspace == .ro)
    }

    @Test func aFileDefaultExtendingDefaultMeansTheBuiltin() throws {
        let yaml = """
            profiles:
              default:
                extends: default
                limits: {memory: 8G}
              ci:
                extends: default
                limits: {cpus: 8}
            """
        let d = try #require(flat("default", yaml))
        #expect(d.limits.memory == 8 * GiB)
        #expect(d.limits.wallClock == .seconds(3600))
        #expect(d.filesystem.workspace == .rw)
        // `ci` extends the file's `default`, which extends the built-in one.
        let ci = try #require(flat("ci", yaml))
        #expect(ci.limits.memory == 8 * GiB)
        #expect(ci.limits.cpus == 8)
        #expect(ci.limits.pids == 1024)
    }

    @Test func diskAndTmpSizeAreOneBudgetAcrossTheChain() throws {
        let yaml = """
            profiles:
              parent: {filesystem: {tmp_size: 1G}}
              child: {extends: parent, limits: {disk: 2G}}
              other: {extends: child, filesystem: {tmp_size: 512M}}
            """
        #expect(try #require(flat("parent", yaml)).diskBudget == GiB)
        let child = try #require(flat("child", yaml))
        #expect(child.limits.disk == 2 * GiB)
        #expect(child.filesystem.tmpSize == 2 * GiB)
        #expect(try #require(flat("other", yaml)).diskBudget == 512 * MiB)
    }

    @Test func cyclesAreReportedAtTheExtendsThatClosesTheLoop() {
        let yaml = """
            profiles:
              a:
                extends: b
              b:
                extends: c
              c:
                extends: a
              d:
                extends: a
              self:
                extends: self
            """
        let found = diagnostics(yaml).map { "\($0.line):\($0.column) \($0.message)" }
        #expect(
            found == [
                "3:14 profile 'a' extends 'b', which leads back to it (b → c → a → b); an extends chain must end at a profile that extends nothing",
                "5:14 profile 'b' extends 'c', which leads back to it (c → a → b → c); an extends chain must end at a profile that extends nothing",
                "7:14 profile 'c' extends 'a', which leads back to it (a → b → c → a); an extends chain must end at a profile that extends nothing",
                "11:14 profile 'self' extends itself, and there is no built-in profile 'self' it could mean; an extends chain must end at a profile that extends nothing",
            ])
    }

    @Test func unknownParentsAreReportedWithLineAndColumn() {
        let yaml = "profiles:\n  a:\n    limits: {cpus: 1}\n    extends: defualt\n"
        let found = diagnostics(yaml)
        #expect(found.map { [$0.line, $0.column] } == [[4, 14]])
        #expect(
            found.first?.message
                == "profile 'a' extends 'defualt', which is neither a profile of this file nor a built-in profile; known profiles: a, default, review, untrusted"
        )
        guard case .failure(let f) = Policy.flatten("a", in: try? Policy.parse(yaml, file: "policy.yaml").get()) else {
            Issue.record("flatten should fail")
            return
        }
        #expect(f.diagnostics == found)
    }

    @Test func anInvalidExtendsValueIsAFieldError() {
        let found = diagnostics("profiles:\n  a: {extends: [b]}\n  c: {extends: 'no such'}\n")
        #expect(found.map { "\($0.line):\($0.column)" } == ["2:16", "3:16"])
        #expect(found.first?.message == "extends must be text; found a list")
    }
}
