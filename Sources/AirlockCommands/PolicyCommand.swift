import ArgumentParser
import AirlockCore
import AirlockPolicy
#if canImport(Glibc)
import Glibc
#endif

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Work with policy files.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a policy file; errors are reported as FILE:LINE:COLUMN: message.")

        @Argument(help: "The policy file (YAML).")
        var file: String

        func run() throws {
            let text: String
            do { text = try PolicyFile.read(file) } catch { throw fail(error) }
            let diagnostics = Policy.check(text, file: file)
            if diagnostics.isEmpty {
                let n = (try? Policy.load(text, file: file))?.profiles.count ?? 0
                print("\(file): ok (\(n) profile\(n == 1 ? "" : "s"))")
                return
            }
            for d in diagnostics { printError(d.description) }
            printError("airlock: \(diagnostics.count) error\(diagnostics.count == 1 ? "" : "s") in \(file)")
            throw ExitCode(AirlockExit.usage)
        }
    }
}
