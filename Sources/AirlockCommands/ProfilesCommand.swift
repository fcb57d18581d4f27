import ArgumentParser
import AirlockCore
import AirlockPolicy

struct ProfilesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profiles", abstract: "List the built-in profiles (and those of a policy file).")

    @Option(name: .long, help: "Also list the profiles of this policy file.")
    var policy: String?

    func run() throws {
        var doc: PolicyDocument?
        if let policy {
            do { doc = try PolicyFile.load(policy) } catch { throw fail(error) }
        }
        let rows = Policy.profileNames(in: doc)
        let width = max(8, rows.map(\.name.count).max() ?? 8)
        for row in rows {
            let pad = String(repeating: " ", count: width - row.name.count)
            print("\(row.name)\(pad)  \(row.origin.padding(9))  \(row.description)")
        }
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
