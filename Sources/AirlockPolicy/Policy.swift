import AirlockCore

/// Policies: YAML files of named profiles, validated with line-accurate diagnostics.
///
/// A policy file is a mapping with one key, `profiles`, from profile names (1–64 ASCII
/// letters, digits, `.`, `_`, `-`, starting with a letter or digit) to profiles. Every
/// field of a profile is optional; `docs/policy.md` has the same reference with examples.
///
/// ```yaml
/// profiles:
///   default:
///     description: "Run an agent on a repository"
///     extends: default            # a profile of this file, else a built-in one
///     runtime: namespace          # namespace | microvm | kubernetes
///     user: agent                 # agent | root (uid 0 inside the user namespace only)
///     filesystem:
///       workspace: rw             # rw | ro | none
///       deny: [".env.local"]      # workspace-relative paths kept read-only, added to the built-in list
///       mounts:
///         - { source: /opt/tools, target: /opt/tools, mode: ro }   # mode: ro (default) | rw
///       tmp_size: 1G              # size of /tmp (the disk budget); same as limits.disk
///       etc: [gitconfig]          # extra names under /etc made visible, added to the built-in list
///     network:
///       mode: proxied             # none (default: loopback only) | proxied (through the egress gateway)
///       allow:                    # what the gateway lets through; everything else is refused
///         - packages.example.org                  # a host: exactly it, ports 80 and 443
///         - "*.githubusercontent.com"             # its subdomains, never the apex
///         - { host: api.github.com, ports: [443], methods: [GET], paths: ["/repos/acme/*"] }
///         - 10.0.0.0/8                            # an IP address or a CIDR block
///       deny: [uploads.github.com]                # same shape; deny wins over allow
///       inspect_tls: [api.github.com]             # host patterns whose HTTPS the gateway terminates
///       budgets: { bytes_out: 50M, bytes_in: 500M, requests_per_minute: 600 }
///       dlp: block                # block | redact
///       hosts: { upstream.test: [127.0.0.1] }     # pinned resolution, name → address(es)
///       upstream_ca: /etc/ssl/private-ca.pem      # CA certificates (PEM) for upstream TLS
///       proxy_port: 3128          # where the gateway listens on the sandbox's loopback
///     secrets:                    # credentials: the sandbox sees a placeholder, the gateway injects the value
///       - name: GITHUB_TOKEN      # the variable the sandbox sees
///         from: env:GITHUB_TOKEN  # env:NAME (airlock's environment) | file:/absolute/path (first line)
///         inject: { host: api.github.com, header: Authorization, format: "Bearer {}" }
///     environment:
///       pass: [TERM, LANG]        # copied from the host environment when set there
///       set: { PYTHONDONTWRITEBYTECODE: "1" }
///     limits:
///       wall_clock: 1h            # units ms, s, m, h; a bare number is seconds
///       memory: 4G                # units K, M, G, T (powers of 1024)
///       cpus: 2                   # cores, in (0, 1024]
///       pids: 1024                # 1 … 4194304
///       disk: 1G                  # size of /tmp; same as filesystem.tmp_size
///       open_files: 4096          # 1 … 1048576 (default 4096)
///       file_size: 1G             # largest file a process may write (default unbounded)
///     syscalls: default           # default | strict
///     landlock: best-effort       # best-effort | required
///     cgroups: best-effort        # best-effort | required
///     monitor: { interval: 1s }   # resource sampling, 100ms … 1m
///     alerts:                     # each: name, one metric (cpu | memory | pids | exec), action alert | stop
///       - { name: cpu-spin, cpu: { above: 90%, for: 60s }, action: stop }
///       - { name: fork-burst, pids: { increase: 50, within: 5s } }
///       - { name: memory-high, memory: { above: 80% } }          # or a size, e.g. 1G
///       - { name: unexpected-exec, exec: { allow: [/usr/bin/python3*, /bin/sh] } }
/// ```
///
/// **`extends`.** A child's fields override its parent's one by one; mappings merge key by
/// key (`environment.set`, `network.budgets` and `network.hosts` included); lists replace the
/// parent's, except `filesystem.deny`, `filesystem.etc`, `network.allow`, `network.deny` and
/// `network.inspect_tls`, which add to it, and `alerts` and `secrets`, which add to it by name
/// (a child's rule or binding replaces the parent's of the same name). `description` is not inherited. `extends` names a profile
/// of the same file or, when the file has no profile of that name (or a profile extends its
/// own name, as in `default: {extends: default}`), a built-in profile. Loops and unknown
/// parents are errors.
///
/// **Unset fields** of a profile that extends nothing take the most conservative value:
/// namespace runtime, user `agent`, workspace `ro`, network `none`, nothing passed from the
/// host environment, `/tmp` 1G, home 256M, no wall-clock, memory, cpu or pids limit,
/// open_files 4096, syscalls `default`, Landlock and cgroups `best-effort`. Start from
/// `extends: default` to get the built-in limits.
///
/// **Rules.** Mount sources are absolute, normalized host paths (no `.`, `..`, `//`, trailing
/// `/`) that are not `/` or `/home` and are not at or under ``PathRules/sensitiveSourceTrees``
/// and have no component named in ``PathRules/credentialNames``. Mount targets are absolute,
/// normalized, at or under `/mnt`, `/srv`, `/data`, `/workspace-extra`, or strictly under
/// `/opt` or `/home/agent`; never `/`, `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`, `/proc`,
/// `/dev`, `/sys`, `/tmp` or `/workspace` or anything under them; two mounts may not share a
/// target. `deny` entries are workspace-relative and normalized (a trailing `/` marks a
/// directory). `etc` entries are single names under `/etc`, never secrets (`shadow`,
/// `sudoers`, `ssh`, …) nor files Airlock generates (`passwd`, `group`, `hosts`, `hostname`,
/// `resolv.conf`). `environment.pass` refuses invalid names, the variables Airlock sets itself
/// (`PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`) and names that look like credentials
/// (containing `TOKEN`, `SECRET`, `PASSWORD`, `PASSWD`, `API_KEY`, `APIKEY`, `_KEY`,
/// `CREDENTIAL`, `AWS_`, or `SSH_AUTH_SOCK`): secrets are injected by the egress gateway,
/// never passed into the sandbox. `environment.set` values are text: numbers are taken as
/// written, YAML booleans (`yes`, `off`) must be quoted. `limits.disk` and
/// `filesystem.tmp_size` are the same budget; giving both with different sizes is an error.
/// Keys appear once per mapping; YAML anchors and aliases are refused (use `extends`).
///
/// **Network and secrets** (``EgressRules``, ``NetworkChecks``). A host is a DNS name, `*.`
/// and a DNS name, an IP address or a CIDR block; `*` alone, a `*` anywhere else, a `/0`
/// block and a block with host bits set are refused. Ports are 1–65535; methods are HTTP
/// tokens, upper-cased; paths start with `/`. `allow`, `deny` and `inspect_tls` written in a
/// profile whose mode (its own or inherited) is `none` are errors; under `mode: none` the
/// resolver drops any inherited `allow` and `inspect_tls`. An allow rule with methods or paths
/// on port 443 (or the default ports) needs its host in `inspect_tls`. Secret names are valid
/// variable names, unique, not one Airlock sets; an `inject` host must be covered by an allow
/// rule, refused by no host-wide deny rule, and covered by `inspect_tls`; its header is an HTTP
/// token other than hop-by-hop headers, `Host` and `Content-Length`; its format holds exactly
/// one `{}` and no control character. A secret's name may not also be in `environment.set` or
/// `environment.pass`.
public enum Policy {
    /// Reads a policy. On failure, every problem found is in the failure's diagnostics.
    /// `file` is the name used in diagnostics and as the document's ``PolicyDocument/source``.
    /// Chains of `extends` are not followed: ``check(_:file:)`` and ``load(_:file:)`` do that.
    public static func parse(_ text: String, file: String) -> Result<PolicyDocument, PolicyFailure> {
        let (document, diagnostics) = read(text, file: file)
        return diagnostics.isEmpty ? .success(document) : .failure(PolicyFailure(diagnostics: diagnostics))
    }

    /// Every problem of a policy: syntax, fields, and each profile's `extends` chain. Empty when valid.
    public static func check(_ text: String, file: String) -> [PolicyDiagnostic] {
        readAndFollowChains(text, file: file).diagnostics
    }

    /// Reads and checks a policy (as ``check(_:file:)``), throwing every problem at once.
    public static func load(_ text: String, file: String) throws(AirlockError) -> PolicyDocument {
        let (document, diagnostics) = readAndFollowChains(text, file: file)
        guard diagnostics.isEmpty else { throw PolicyFailure(diagnostics: diagnostics).airlockError }
        return document
    }

    /// The built-in profiles (`default`, `review`, `untrusted`), read from YAML embedded in
    /// this module by the same reader as policy files.
    public static let builtins: PolicyDocument = read(BuiltinProfiles.yaml, file: BuiltinProfiles.origin).document

    /// Each profile available with `doc` (the built-ins, and the file's, which win on a
    /// name clash), sorted by name, with its description and where it comes from.
    public static func profileNames(in doc: PolicyDocument?) -> [(name: String, description: String, origin: String)] {
        var rows: [String: (description: String, origin: String)] = [:]
        for (name, profile) in builtins.profiles {
            rows[name] = (profile.description ?? "", BuiltinProfiles.origin)
        }
        for (name, profile) in doc?.profiles ?? [:] {
            let origin = rows[name] == nil ? (doc?.source ?? "") : "\(doc?.source ?? "") (replaces the built-in)"
            rows[name] = (profile.description ?? "", origin)
        }
        return rows.keys.sorted().compactMap { name in
            rows[name].map { (name: name, description: $0.description, origin: $0.origin) }
        }
    }

    /// The profile `name` of `doc` (or built-in) with its `extends` chain applied, so every
    /// field holds the value that takes effect (nil where the chain leaves it unset).
    public static func flatten(_ name: String, in doc: PolicyDocument?) -> Result<Profile, PolicyFailure> {
        chain(name, in: doc).map(merged)
    }

    /// The profiles of `name`'s `extends` chain, `name`'s own first, each as written.
    static func chain(_ name: String, in doc: PolicyDocument?) -> Result<[Profile], PolicyFailure> {
        struct Link {
            var name: String
            var builtin: Bool
            var profile: Profile
            var key: String { (builtin ? "b:" : "f:") + name }
        }
        let builtins = Policy.builtins
        let start: Link
        if let p = doc?.profiles[name] {
            start = Link(name: name, builtin: false, profile: p)
        } else if let p = builtins.profiles[name] {
            start = Link(name: name, builtin: true, profile: p)
        } else {
            let file = doc?.source ?? BuiltinProfiles.origin
            return .failure(
                PolicyFailure(diagnostics: [
                    PolicyDiagnostic(
                        file: file, line: 1, column: 1,
                        message:
                            "there is no profile '\(name)'; available profiles: \(profileNames(in: doc).map(\.name).joined(separator: ", "))"
                    )
                ]))
        }
        var chain = [start]
        var current = start
        while let parentName = current.profile.extends {
            let origin = current.builtin ? builtins : (doc ?? builtins)
            let at = origin.positions[current.name]?.extends ?? .start
            func failure(_ message: String) -> Result<[Profile], PolicyFailure> {
                .failure(
                    PolicyFailure(diagnostics: [
                        PolicyDiagnostic(file: origin.source, line: at.line, column: at.column, message: message)
                    ]))
            }
            let next: Link
            if !current.builtin, parentName != current.name, let p = doc?.profiles[parentName] {
                next = Link(name: parentName, builtin: false, profile: p)
            } else if !(current.builtin && parentName == current.name), let p = builtins.profiles[parentName] {
                next = Link(name: parentName, builtin: true, profile: p)
            } else if parentName == current.name {
                return failure(
                    "profile '\(current.name)' extends itself, and there is no built-in profile '\(parentName)' it could mean; an extends chain must end at a profile that extends nothing"
                )
            } else {
                let known = profileNames(in: current.builtin ? nil : doc).map(\.name).joined(separator: ", ")
                return failure(
                    "profile '\(current.name)' extends '\(parentName)', which is neither a profile of this file nor a built-in profile; known profiles: \(known)"
                )
            }
            if let loopStart = chain.firstIndex(where: { $0.key == next.key }) {
                let loop = (chain[loopStart...].map(\.name) + [next.name]).joined(separator: " → ")
                return failure(
                    "profile '\(current.name)' extends '\(parentName)', which leads back to it (\(loop)); an extends chain must end at a profile that extends nothing"
                )
            }
            chain.append(next)
            current = next
        }
        return .success(chain.map(\.profile))
    }

    /// A chain (child first) merged into one flat profile.
    static func merged(_ chain: [Profile]) -> Profile {
        var flat = Profile()
        for profile in chain.reversed() { flat = Profile.merge(parent: flat, child: profile) }
        return flat
    }

    // MARK: Internals

    static func readAndFollowChains(_ text: String, file: String) -> (document: PolicyDocument, diagnostics: [PolicyDiagnostic]) {
        let (document, diagnostics) = read(text, file: file)
        var all = diagnostics
        for name in document.profiles.keys.sorted() {
            switch chain(name, in: document) {
            case .failure(let failure): all += failure.diagnostics
            case .success(let links): all += crossChecks(name, links, in: document)
            }
        }
        return (document, sorted(all))
    }

    /// The checks of a flattened profile (``NetworkChecks``), each reported where the profile
    /// wrote what it is about. A problem about something inherited is reported once, at the
    /// profile it comes from; only a problem the profile itself causes (say, by setting
    /// `mode: none` under a parent's injected secret) is reported at the profile's name.
    static func crossChecks(_ name: String, _ links: [Profile], in doc: PolicyDocument) -> [PolicyDiagnostic] {
        let flat = merged(links)
        let at = doc.positions[name]
        func diagnostic(_ p: SourcePosition, _ message: String) -> PolicyDiagnostic {
            PolicyDiagnostic(file: doc.source, line: p.line, column: p.column, message: message)
        }
        var out: [PolicyDiagnostic] = []
        if flat.network.mode != .proxied {
            let why =
                at?.items["network.mode"] != nil ? "" : links.count > 1 ? " (this profile inherits mode: none)" : " (none is the default mode)"
            for key in ["allow", "deny", "inspect_tls"] {
                guard let p = at?.items["network.\(key)"] else { continue }
                out.append(diagnostic(p, "network.\(key) has no effect with mode: none; set mode: proxied" + why))
            }
        }
        let parentProblems = links.count > 1 ? NetworkChecks.problems(merged(Array(links.dropFirst()))).map(\.message) : []
        for problem in NetworkChecks.problems(flat) {
            if let p = at?.items[problem.anchor] {
                out.append(diagnostic(p, problem.message))
            } else if !parentProblems.contains(problem.message) {
                out.append(diagnostic(at?.name ?? .start, "profile '\(name)', through what it inherits: \(problem.message)"))
            }
        }
        return out
    }

    /// The document (with whatever could be read) and every problem found in it.
    static func read(_ text: String, file: String) -> (document: PolicyDocument, diagnostics: [PolicyDiagnostic]) {
        let composed = YAMLComposer.compose(text)
        var reader = PolicyReader(file: file, renamedKeys: composed.renamedKeys)
        var diagnostics = composed.errors.map {
            PolicyDiagnostic(file: file, line: $0.0.line, column: $0.0.column, message: $0.1)
        }
        var document = PolicyDocument(profiles: [:], source: file)
        if composed.errors.isEmpty {
            document.profiles = withExtendedLifetime(composed.parser) { reader.readDocument(composed.root) }
            document.positions = reader.positions
            diagnostics += reader.diagnostics
        } else if !composed.renamedKeys.isEmpty {
            // A syntax error after duplicate keys were stepped over: report those duplicates too.
            for (at, key) in composed.renamedKeys {
                diagnostics.append(
                    PolicyDiagnostic(
                        file: file, line: at.line, column: at.column,
                        message:
                            "duplicate key '\(key.escapedForMessage)' (a later occurrence follows); each key may appear only once in a mapping"
                    ))
            }
        }
        return (document, sorted(diagnostics))
    }

    /// By position; exact repeats removed (an anchor is reported once however often it is used).
    static func sorted(_ diagnostics: [PolicyDiagnostic]) -> [PolicyDiagnostic] {
        var unique: [PolicyDiagnostic] = []
        for d in diagnostics where !unique.contains(d) { unique.append(d) }
        return unique.enumerated().sorted { a, b in
            (a.element.line, a.element.column, a.offset) < (b.element.line, b.element.column, b.offset)
        }.map(\.element)
    }
}

/// One problem in a policy, with the 1-based position it was found at.
public struct PolicyDiagnostic: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// What is wrong and what is allowed.
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `file:line:column: message`, the form compilers use, so editors can jump to it.
    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// A policy that could not be used, with every problem found in it.
public struct PolicyFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var diagnostics: [PolicyDiagnostic]

    public init(diagnostics: [PolicyDiagnostic]) {
        self.diagnostics = diagnostics
    }

    /// One diagnostic per line.
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }

    /// The module family's error: code `.policy`, every diagnostic on its own line.
    public var airlockError: AirlockError { AirlockError(.policy, description) }
}

/// A read policy file: its profiles by name, and where it came from.
public struct PolicyDocument: Sendable {
    public var profiles: [String: Profile]
    /// The file name given to ``Policy/parse(_:file:)`` (`built-in` for ``Policy/builtins``);
    /// used in diagnostics and by `airlock profiles`.
    public var source: String
    /// Where each profile and its `extends` were written.
    var positions: [String: ProfilePositions] = [:]

    public init(profiles: [String: Profile], source: String) {
        self.profiles = profiles
        self.source = source
    }
}
