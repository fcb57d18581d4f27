import ArgumentParser
import AirlockCore

/// `airlock`: the root command. Each subcommand lives in its own file.
public struct AirlockCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "airlock",
        abstract: "Run agents, tool calls and generated code in a sandbox they cannot talk their way out of.",
        discussion: """
            Exit status of `airlock run`: the command's own status, or
              64  policy or usage error (nothing was run)
              124 stopped by airlock: a limit was reached (the reason is printed)
              125 the sandbox could not be built (nothing was run)
              126 the command was found but could not be executed
              127 the command was not found inside the sandbox
            """,
        subcommands: [
            RunCommand.self, ProfilesCommand.self, PolicyCommand.self, AuditCommand.self, ServeCommand.self, TokenCommand.self,
            KillCommand.self,
        ])

    public init() {}

    /// Set by `main` before parsing, so AIRLOCK_TIMING can show start-up cost.
    nonisolated(unsafe) public static var processStart: UInt64 = 0
}

/// Exit statuses of `airlock` itself (docs/cli.md).
public enum AirlockExit {
    public static let usage: Int32 = 64
    public static let limitReached: Int32 = 124
    public static let sandboxSetup: Int32 = 125

    static func code(for error: AirlockError) -> Int32 {
        switch error.code {
        case .usage, .policy, .denied: usage
        default: sandboxSetup
        }
    }
}

/// Writes `airlock: <message>` to stderr and exits with the status for the error's code.
func fail(_ error: AirlockError) -> ExitCode {
    printError("airlock: error: \(error.description)")
    return ExitCode(AirlockExit.code(for: error))
}

func printError(_ line: String) {
    POSIXIO.writeAll(2, Array((line + "\n").utf8))
}

#if canImport(Glibc)
import Glibc
#endif
