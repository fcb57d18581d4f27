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

/// Reading policy files: bounded in size, UTF-8, with errors that name the file.
enum PolicyFile {
    static let maxBytes = 1 << 20

    static func read(_ path: String) throws(AirlockError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw AirlockError(.usage, "cannot read the policy file \(path)", cause: errnoDescription(errno))
        }
        defer { close(fd) }
        guard let data = POSIXIO.readAll(fd, upTo: maxBytes) else {
            throw AirlockError(.usage, "cannot read the policy file \(path)", cause: errnoDescription(errno))
        }
        guard data.count <= maxBytes else {
            throw AirlockError(.policy, "\(path) is larger than 1 MiB; a policy file is a few KiB of YAML")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw AirlockError(.policy, "\(path) is not valid UTF-8 text")
        }
        return text
    }

    static func load(_ path: String) throws(AirlockError) -> PolicyDocument {
        try Policy.load(try read(path), file: path)
    }
}
