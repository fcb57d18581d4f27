/// The rules every path and environment name in a policy, or on the command line, must follow.
///
/// Each `…Problem` function returns nil when the value is acceptable, and otherwise one
/// sentence that says what is wrong and what is allowed. They look only at the text: the
/// caller, which may touch the file system, resolves symlinks (`realpath`) and checks the
/// resolved path again, so a symlink cannot smuggle `/etc` in under another name.
public enum PathRules {
    /// Host paths that a mount source may neither be nor lie under: the host's configuration,
    /// credentials, kernel interfaces and container-runtime state (whose sockets are root on the host).
    public static let sensitiveSourceTrees = [
        "/etc", "/root", "/proc", "/sys", "/dev", "/boot", "/run", "/var/run",
        "/var/lib/docker", "/var/lib/containerd", "/var/lib/kubelet",
    ]
    /// Host paths a mount source may not be, though their subdirectories are allowed:
    /// `/` (everything) and `/home` (every user's home).
    public static let sensitiveSourceExact = ["/", "/home"]
    /// A path with a component of one of these names holds credentials and is never mounted.
    public static let credentialNames = [
        ".ssh", ".gnupg", ".aws", ".kube", ".docker", ".azure", ".netrc", ".git-credentials",
        ".pgpass", ".password-store",
    ]
    /// Where mounts may appear inside the sandbox. A target must be at or under one of these.
    public static let targetRoots = ["/mnt", "/srv", "/data", "/workspace-extra", "/opt", "/home/agent"]
    /// Target roots that hold something of their own (system tools bound from the host, the
    /// home tmpfs): a mount must go strictly below them, never replace them.
    public static let strictTargetRoots = ["/opt", "/home/agent"]
    /// Trees the sandbox needs for itself; a mount target is never one of them or under one.
    /// Every top-level `/lib…` directory is included.
    public static let reservedTargetTrees = [
        "/usr", "/bin", "/sbin", "/lib", "/etc", "/proc", "/dev", "/sys", "/tmp", "/workspace",
    ]
    /// `/etc` entries a policy may not add: secrets, privilege configuration, and the files
    /// Airlock generates for each sandbox.
    public static let refusedEtcEntries = [
        "shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "krb5.keytab",
    ]
    public static let generatedEtcEntries = ["passwd", "group", "hosts", "hostname", "resolv.conf"]
    /// Variables Airlock sets inside every sandbox; they are never copied from the host.
    public static let sandboxOwnedVariables = ["PATH", "HOME", "USER", "LOGNAME", "SHELL"]
    /// Fragments of a variable name that mark it as a credential (compared upper-cased).
    public static let credentialMarkers = [
        "TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "_KEY", "CREDENTIAL", "AWS_",
    ]

    // MARK: Mounts

    public static func mountSourceProblem(_ path: String) -> String? {
        hostPathProblem(path, what: "mount source")
    }

    static func hostPathProblem(_ path: String, what: String) -> String? {
        if let p = absoluteNormalizedProblem(path, what: what) { return p }
        let why =
            "\(what)s must not be / or /home itself, be or lie under \(sensitiveSourceTrees.joined(separator: ", ")), or have a component named \(credentialNames.joined(separator: ", "))"
        if sensitiveSourceExact.contains(where: { same($0, path) }) {
            return "\(what) '\(path)' is a sensitive host path; \(why) (a subdirectory of /home is allowed)"
        }
        if let tree = sensitiveSourceTrees.first(where: { isAtOrUnder(path, $0) }) {
            return "\(what) '\(path)' is \(same(path, tree) ? "" : "under ")\(tree), a sensitive host path; \(why)"
        }
        if let name = components(path).first(where: { c in credentialNames.contains { same($0, c) } }) {
            return "\(what) '\(path)' contains '\(name)', which holds credentials; \(why)"
        }
        return nil
    }

    public static func mountTargetProblem(_ path: String) -> String? {
        if let p = absoluteNormalizedProblem(path, what: "mount target") { return p }
        let allowed = "mount targets must be at or under /mnt, /srv, /data or /workspace-extra, or strictly under /opt or /home/agent"
        if same(path, "/") { return "mount target '/' would replace the sandbox's root; \(allowed)" }
        if isAtOrUnder(path, "/workspace") {
            return
                "mount target '\(path)' is inside /workspace, which belongs to the workspace grant; \(allowed) (e.g. /workspace-extra\(path.dropFirst("/workspace".count)))"
        }
        let first = components(path).first ?? ""
        let libTree = first.utf8.starts(with: "lib".utf8) ? "/" + first : nil
        if let tree = reservedTargetTrees.first(where: { isAtOrUnder(path, $0) }) ?? libTree {
            return "mount target '\(path)' is \(same(path, tree) ? "" : "under ")\(tree), which the sandbox needs for itself; \(allowed)"
        }
        if let root = strictTargetRoots.first(where: { same(path, $0) }) {
            return "mount target '\(path)' would replace \(root) itself; \(allowed)"
        }
        if !targetRoots.contains(where: { isAtOrUnder(path, $0) }) {
            return "mount target '\(path)' is outside the allowed roots; \(allowed)"
        }
        return nil
    }

    // MARK: Workspace

    /// The rules for the host directory granted as `/workspace`. On top of the mount-source rules,
    /// the workspace may not be the host user's home or contain it: a home holds `~/.ssh`, `~/.aws`
    /// and the rest, and the workspace is readable in full.
    public static func workspaceProblem(_ path: String, hostHome: String?) -> String? {
        if let p = hostPathProblem(path, what: "workspace") { return p }
        if let home = hostHome, home.utf8.first == slash, isAtOrUnder(home, path) {
            return
                "workspace '\(path)' \(same(home, path) ? "is" : "contains") your home directory (\(home)), which holds credentials such as ~/.ssh and ~/.aws; use a project directory as the workspace"
        }
        return nil
    }

    // MARK: Workspace deny list and /etc

    /// A `filesystem.deny` entry: a workspace-relative path; a trailing `/` marks a directory.
    public static func denyEntryProblem(_ path: String) -> String? {
        let allowed =
            "deny entries are top-level names in the workspace such as '.env.local' or 'secrets/' (a trailing '/' marks a directory)"
        if path.isEmpty { return "deny entry is empty; \(allowed)" }
        if hasControlCharacter(path) { return "deny entry '\(path.escapedForMessage)' contains a control character; \(allowed)" }
        if path.utf8.first == slash { return "deny entry '\(path)' is absolute; \(allowed)" }
        if containsDoubleSlash(path) { return "deny entry '\(path)' contains '//'; \(allowed)" }
        var parts = components(path)
        if parts.count > 1, parts.last == "" { parts.removeLast() }
        if parts.contains(where: { $0 == "." || $0 == ".." || $0.isEmpty }) {
            return "deny entry '\(path)' is not normalized; \(allowed)"
        }
        if parts.count > 1 {
            return "deny entry '\(path)' is nested; protected paths must be top-level names in the workspace, because a read-only bind on a nested path can be sidestepped by renaming its parent: protect '\(parts[0])/' instead"
        }
        return nil
    }

    /// A `filesystem.etc` entry: one name directly under `/etc`.
    public static func etcEntryProblem(_ name: String) -> String? {
        let allowed = "etc entries are single names directly under /etc, such as 'gitconfig', without '/' or '..'"
        if name.isEmpty { return "etc entry is empty; \(allowed)" }
        if hasControlCharacter(name) { return "etc entry '\(name.escapedForMessage)' contains a control character; \(allowed)" }
        if name.utf8.contains(slash) { return "etc entry '\(name)' contains '/'; \(allowed)" }
        if name == "." || name == ".." { return "etc entry '\(name)' is not a name; \(allowed)" }
        if refusedEtcEntries.contains(where: { same($0, name) }) {
            return
                "etc entry '\(name)' holds secrets or privilege configuration and is never exposed; refused entries: \(refusedEtcEntries.joined(separator: ", "))"
        }
        if generatedEtcEntries.contains(where: { same($0, name) }) {
            return
                "etc entry '\(name)' is generated for each sandbox and cannot come from the host; generated entries: \(generatedEtcEntries.joined(separator: ", "))"
        }
        return nil
    }

    // MARK: Environment

    /// POSIX-portable names: ASCII letters, digits and `_`, not starting with a digit.
    public static func isValidEnvironmentName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !(first >= "0" && first <= "9") else { return false }
        return name.unicodeScalars.allSatisfy { c in
            (c >= "A" && c <= "Z") || (c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "_"
        }
    }

    /// Whether a variable name looks like it carries a credential (so it must not be copied
    /// from the host): it contains one of `credentialMarkers`, or is `SSH_AUTH_SOCK`.
    public static func looksLikeCredential(_ name: String) -> Bool {
        let upper = name.uppercased()
        return upper == "SSH_AUTH_SOCK" || credentialMarkers.contains { upper.contains($0) }
    }

    /// Why a name may not appear in `environment.pass`, or nil.
    public static func passThroughProblem(_ name: String) -> String? {
        if !isValidEnvironmentName(name) {
            return
                "'\(name.escapedForMessage)' is not a valid environment variable name; names use ASCII letters, digits and '_' and do not start with a digit"
        }
        if looksLikeCredential(name) {
            return
                "'\(name)' looks like a credential and is not copied from the host: bind it under 'secrets' instead (docs/policy.md, \"Secrets\"), and the egress gateway injects it into requests to the host it is bound to while the sandbox sees a placeholder; pass only non-secret names such as TERM or LANG, or set a non-secret value with environment.set"
        }
        if sandboxOwnedVariables.contains(name) {
            return
                "'\(name)' is set by Airlock inside the sandbox and is not copied from the host; use environment.set to override it (variables Airlock sets: \(sandboxOwnedVariables.joined(separator: ", ")))"
        }
        return nil
    }

    // MARK: Helpers

    static func absoluteNormalizedProblem(_ path: String, what: String) -> String? {
        let rule = "\(what)s must be absolute, normalized paths such as /opt/tools (no '.', '..' or '//', no trailing '/')"
        if path.isEmpty { return "\(what) is empty; \(rule)" }
        if hasControlCharacter(path) { return "\(what) '\(path.escapedForMessage)' contains a control character; \(rule)" }
        if path.utf8.first != slash { return "\(what) '\(path)' is not absolute; \(rule)" }
        if containsDoubleSlash(path) { return "\(what) '\(path)' contains '//'; \(rule)" }
        if path.utf8.count > 1, path.utf8.last == slash { return "\(what) '\(path)' ends with '/'; \(rule)" }
        if components(path).contains(where: { $0 == "." || $0 == ".." }) {
            return "\(what) '\(path)' contains a '.' or '..' component; \(rule)"
        }
        return nil
    }

    // Paths are compared as bytes, the way the kernel sees them. `String` comparison works on
    // grapheme clusters, so "/etc/\u{301}x".hasPrefix("/etc/") is false: a bypass.

    static let slash = UInt8(ascii: "/")

    static func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// `path` equals `root` or lies below it, component-wise (`/workspace-extra` is not under `/workspace`).
    static func isAtOrUnder(_ path: String, _ root: String) -> Bool {
        if same(root, "/") { return path.utf8.first == slash }
        return same(path, root) || path.utf8.starts(with: Array(root.utf8) + [slash])
    }

    static func components(_ path: String) -> [String] {
        path.utf8.split(separator: slash, omittingEmptySubsequences: false).dropFirst(path.utf8.first == slash ? 1 : 0)
            .map { String(decoding: $0, as: UTF8.self) }
    }

    static func containsDoubleSlash(_ s: String) -> Bool {
        var previous: UInt8 = 0
        for b in s.utf8 {
            if b == slash, previous == slash { return true }
            previous = b
        }
        return false
    }

    static func hasControlCharacter(_ s: String) -> Bool {
        s.utf8.contains { $0 < 0x20 || $0 == 0x7F }
    }
}

extension String {
    /// The string with control characters shown as `\u{…}`, safe to put inside a one-line message.
    var escapedForMessage: String {
        var out = ""
        for c in unicodeScalars {
            if c.value < 0x20 || c.value == 0x7F {
                out += "\\u{\(String(c.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
