import ArgumentParser
import AirlockControl
import AirlockCore
import Foundation

/// `airlock token`: API tokens, written to the daemon's store directly (on its host, as its user).
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke API tokens for airlock serve.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Location: ParsableArguments {
        @Option(help: "The daemon's state directory (default: /var/lib/airlock as root, $XDG_STATE_HOME/airlock otherwise).")
        var stateDir: String?

        func store() throws -> SQLiteStore {
            let dir = stateDir ?? Daemon.defaultStateDirectory(environment: ProcessInfo.processInfo.environment)
            do {
                try Daemon.prepareStateDirectory(dir)
                return try Daemon.openStore(dir)
            } catch { throw fail(error) }
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token; it is printed once and stored only as a hash.")

        @Option(help: "admin (policies, tokens, global kill switch), operator (sandboxes) or viewer (read).")
        var role: String

        @Option(help: "Lifetime, e.g. 12h, 30d (at most 365d).")
        var ttl: String = "30d"

        @Option(help: "A name to recognise it by.")
        var name: String = ""

        @OptionGroup var location: Location

        func run() throws {
            guard let r = Role(rawValue: role) else { throw fail(AirlockError(.usage, "--role must be admin, operator or viewer")) }
            let seconds: Double
            do { seconds = try parseTTL(ttl) } catch { throw fail(error) }
            let tokens = Tokens(store: try location.store())
            do {
                let (record, text) = try tokens.create(role: r, ttl: seconds, name: name, createdBy: "cli:uid=\(getuid())")
                print(text)
                printError("airlock: token \(record.id) (\(r.rawValue)) expires \(record.expiresAt); it is shown only now")
            } catch { throw fail(error) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
        @OptionGroup var location: Location

        func run() throws {
            for t in try location.store().tokens() {
                let state = t.revokedAt != nil ? "revoked" : t.expiresAt < Date() ? "expired" : "active"
                print("\(t.id)  \(t.role.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))  \(state.padding(toLength: 7, withPad: " ", startingAt: 0))  expires \(t.expiresAt)  \(t.name)")
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token at once.")
        @Argument(help: "The token's id (the 12 hex digits after alk_).") var id: String
        @OptionGroup var location: Location

        func run() throws {
            guard try location.store().revokeToken(id: id, at: Date()) else { throw fail(AirlockError(.usage, "there is no token \(id)")) }
            printError("airlock: token \(id) revoked")
        }
    }
}

/// "30d", "12h", "90m", "45s".
func parseTTL(_ text: String) throws(AirlockError) -> Double {
    if text.hasSuffix("d"), let n = Double(text.dropLast()), n > 0 { return n * 86400 }
    let d = try Units.parseDuration(text)
    return Double(d.components.seconds)
}
