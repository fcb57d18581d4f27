import AirlockCore
import AirlockTestSupport
import Testing

@testable import AirlockPolicy

@Suite struct FuzzTests {
    static let tokens: [String] = [
        "profiles", "default", "extends", "limits", "memory", "cpus", "pids", "disk", "wall_clock", "filesystem",
        "mounts", "source", "target", "mode", "workspace", "deny", "etc", "environment", "pass", "set", "network",
        "runtime", "user", "syscalls", "landlock", "cgroups", "tmp_size", "open_files", "file_size",
        ":", ": ", "-", "- ", "{", "}", "[", "]", ",", "?", "&a", "*a", "!", "!!str", "!!int", "|", ">", "#", "%",
        "@", "`", "'", "\"", "\\", "~", "null", "yes", "no", "0", "-1", "1.5", "4G", "1h", "1e999", "0x10", "nan",
        "/", "/etc", "/mnt/x", "..", "/workspace", "TOKEN", "\n", "\n", "\n  ", "\n    ", "\n      ", "  ", "\t",
        " ", "\r\n", "\r", "\u{0}", "\u{7}", "\u{85}", "\u{2028}", "\u{FEFF}", "é", "\u{301}", "🙂", "\u{E000}",
        "---", "...", "<<", "allow", "host", "ports", "methods", "paths", "inspect_tls", "budgets", "hosts", "secrets",
        "inject", "header", "format", "from", "proxied", "*.", "*", "[::1]", "::", "/8", "{}", "env:", "file:", "443",
    ]

    static func garbage(_ rng: inout SeededGenerator) -> String {
        let count = Int.random(in: 0...60, using: &rng)
        return (0..<count).map { _ in tokens.randomElement(using: &rng) ?? "" }.joined()
    }

    /// A valid policy with a few random edits: close enough to real files to reach deep into the reader.
    static func mutated(_ rng: inout SeededGenerator) -> String {
        let base = Bool.random(using: &rng) ? ParseTests.full : BuiltinProfiles.yaml
        var scalars = Array(base.unicodeScalars)
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            guard !scalars.isEmpty else { break }
            let i = Int.random(in: 0..<scalars.count, using: &rng)
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: scalars.remove(at: i)
            case 1: scalars.insert(contentsOf: (tokens.randomElement(using: &rng) ?? "").unicodeScalars, at: i)
            case 2: scalars[i] = (tokens.randomElement(using: &rng) ?? " ").unicodeScalars.first ?? " "
            default:
                let j = Int.random(in: 0..<scalars.count, using: &rng)
                scalars.swapAt(i, j)
            }
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func randomTextNeverCrashesAndAlwaysAnswersWithPositions(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var valid = 0
        for n in 0..<400 {
            let text = n % 2 == 0 ? Self.garbage(&rng) : Self.mutated(&rng)
            let found = Policy.check(text, file: "fuzz.yaml")
            let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).count
            for d in found {
                #expect(d.file == "fuzz.yaml")
                #expect(d.line >= 1 && d.line <= lines + 1, "\(d) in \(text.debugDescription)")
                #expect(d.column >= 1)
                #expect(!d.message.isEmpty)
            }
            #expect(Policy.check(text, file: "fuzz.yaml") == found)  // deterministic
            guard found.isEmpty, case .success(let doc) = Policy.parse(text, file: "fuzz.yaml") else {
                if case .success = Policy.parse(text, file: "fuzz.yaml"), found.isEmpty {
                    Issue.record("check found nothing but parse failed")
                }
                continue
            }
            valid += 1
            // A valid document resolves or is refused with an error, never crashes.
            for name in doc.profiles.keys {
                let r = RunRequest(profile: name, policy: doc, command: ["true"], currentDirectory: "/srv/repo")
                _ = refusal(r)
            }
        }
        // The mutations are mild enough that some inputs stay valid: the resolver path is exercised.
        #expect(valid > 0)
    }

    @Test func moreDuplicateKeysThanCanBeSteppedOverAreStillReported() {
        let text = "profiles:\n  a:\n    limits:\n" + String(repeating: "      memory: 1G\n", count: 100)
        let found = Policy.check(text, file: "p")
        #expect(!found.isEmpty)
        #expect(found.allSatisfy { $0.message.hasPrefix("duplicate key 'memory'") })
    }

    @Test func oversizedInputIsRefusedBeforeParsing() {
        let text = "profiles:\n  a: {description: \"" + String(repeating: "x", count: YAMLComposer.maximumSize) + "\"}\n"
        let found = Policy.check(text, file: "p")
        #expect(found.count == 1)
        #expect(found.first?.message.contains("policies are limited to 1048576 bytes") == true)
    }
}
