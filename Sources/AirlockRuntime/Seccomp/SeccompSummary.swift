import AirlockCore

/// The system-call policy in words: a few lines for `airlock run --explain`, and the
/// reviewed table as `docs/seccomp.md` prints it.
public enum SeccompSummary {
    /// A short summary of what the filter of `profile` does on `arch`.
    public static func lines(profile: SyscallProfile, arch: SeccompArch = .native) -> [String] {
        let rules = SeccompTable.rules(for: profile).filter { SeccompTable.number(of: $0.name, on: arch) != nil }
        var out: [String] = []
        var killed = ["foreign architecture (not \(arch))"]
        if arch == .x86_64 { killed.append("x32 ABI") }
        out.append("killed: " + killed.joined(separator: ", "))

        let refused = rules.filter { $0.condition == nil && $0.action == .eperm }.map(\.name)
        if !refused.isEmpty { out.append("refused with EPERM: " + refused.joined(separator: ", ")) }

        let checked = rules.filter { $0.condition != nil }
        let byAction = Dictionary(grouping: checked, by: \.action)
        for (action, group) in byAction.sorted(by: { $0.key.returnValue < $1.key.returnValue }) {
            let calls = group.map { rule in "\(rule.name)(\(rule.condition.map(String.init(describing:)) ?? ""))" }
            out.append("argument checks (\(action)): " + calls.joined(separator: "; "))
        }

        var notImplemented = rules.filter { $0.condition == nil && $0.action == .enosys }.map(\.name)
        notImplemented.append(
            "every syscall numbered above \(SeccompTable.newestReviewedSyscall) (newer than \(SeccompTable.reviewedKernel))")
        out.append("ENOSYS (callers fall back): " + notImplemented.joined(separator: ", "))

        let other = rules.filter { $0.condition == nil && $0.action != .eperm && $0.action != .enosys }
        for rule in other { out.append("\(rule.action): \(rule.name)") }
        out.append("everything else: allowed")
        return out
    }

    /// The reviewed table as Markdown rows (header first), exactly as `docs/seccomp.md` has it.
    static func markdownTable() -> [String] {
        var rows = [
            "| syscall | action | condition | profiles | rationale |",
            "|---|---|---|---|---|",
        ]
        for rule in SeccompTable.rules {
            let missing = SeccompArch.allCases.filter { SeccompTable.number(of: rule.name, on: $0) == nil }
            let name = "`\(rule.name)`" + (missing.isEmpty ? "" : " (not on \(missing.map(\.rawValue).joined(separator: ", ")))")
            let condition = rule.condition.map { "`\($0)`" } ?? "always"
            let profiles = SyscallProfile.allCases.filter { rule.profiles.contains($0) }.map(\.rawValue).joined(separator: ", ")
            let cells = [name, rule.action.description, condition, profiles, rule.rationale]
            rows.append("| " + cells.map { $0.replacingPipes() }.joined(separator: " | ") + " |")
        }
        return rows
    }
}

extension String {
    /// Markdown table cells cannot hold a bare `|`.
    fileprivate func replacingPipes() -> String {
        var out = ""
        for ch in self {
            if ch == "|" { out += "\\|" } else { out.append(ch) }
        }
        return out
    }
}
