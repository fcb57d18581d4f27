import AirlockCore
import Yams

/// Reads a composed YAML tree into profiles, collecting every problem on the way.
///
/// Each `read…` function takes the node a key points at, reports what is wrong with it at the
/// node's own position, and returns what it could make of it (nil for a field it had to drop),
/// so a single run reports all problems of a file.
struct PolicyReader {
    let file: String
    let renamedKeys: [SourcePosition: String]
    private(set) var diagnostics: [PolicyDiagnostic] = []
    var positions: [String: ProfilePositions] = [:]

    init(file: String, renamedKeys: [SourcePosition: String]) {
        self.file = file
        self.renamedKeys = renamedKeys
    }

    static let topLevelKeys = ["profiles"]
    static let profileKeys = [
        "description", "extends", "runtime", "user", "filesystem", "network", "environment", "limits",
        "syscalls", "landlock", "cgroups", "alerts", "monitor", "secrets",
    ]
    static let filesystemKeys = ["workspace", "deny", "mounts", "tmp_size", "etc"]
    static let mountKeys = ["source", "target", "mode"]
    static let environmentKeys = ["pass", "set"]
    static let limitsKeys = ["wall_clock", "memory", "cpus", "pids", "disk", "open_files", "file_size"]

    static let maximumPids = 4_194_304  // PID_MAX_LIMIT on 64-bit Linux
    static let maximumOpenFiles = 1_048_576  // the kernel's default fs.nr_open

    // MARK: Document and profiles

    mutating func readDocument(_ root: Node?) -> [String: Profile] {
        let example = "e.g. 'profiles: {mine: {extends: default}}'"
        guard let root, !isNull(root) else {
            error(at: .start, "the policy is empty; it must be a mapping with the key 'profiles' holding at least one profile (\(example))")
            return [:]
        }
        guard let top = mappingEntries(root, field: "the policy", expecting: "a mapping with the key 'profiles'") else { return [:] }
        let known = checkKeys(top, allowed: Self.topLevelKeys, in: "the top level")
        guard let profilesEntry = known["profiles"] else {
            error(
                root,
                "the policy has no 'profiles' key; a policy is a mapping with the key 'profiles' holding at least one profile (\(example))")
            return [:]
        }
        let profilesNode = profilesEntry.value
        let empty = "'profiles' is empty; define at least one profile under it, each a mapping of settings (\(example))"
        if isNull(profilesNode) {
            error(profilesEntry.key, empty)
            return [:]
        }
        guard let entries = mappingEntries(profilesNode, field: "profiles", expecting: "a mapping from profile names to profiles") else {
            return [:]
        }
        if entries.isEmpty {
            error(profilesNode, empty)
            return [:]
        }
        var profiles: [String: Profile] = [:]
        for entry in entries {
            if !Self.isValidProfileName(entry.name) {
                error(
                    entry.key,
                    "profile name '\(entry.name.escapedForMessage)' is not allowed; names are 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
                )
                continue
            }
            positions[entry.name] = ProfilePositions(name: position(entry.key), extends: nil)
            profiles[entry.name] = readProfile(entry.value, name: entry.name)
        }
        return profiles
    }

    mutating func readProfile(_ node: Node, name: String) -> Profile {
        var profile = Profile()
        if isNull(node) { return profile }
        guard let entries = mappingEntries(node, field: "profile '\(name)'", expecting: "a mapping of settings") else { return profile }
        let known = checkKeys(entries, allowed: Self.profileKeys, in: "profile '\(name)'")
        var diskNode: Node?
        var tmpSizeNode: Node?
        for key in Self.profileKeys {
            guard let value = known[key]?.value else { continue }
            switch key {
            case "description":
                profile.description = readString(value, field: "description")
            case "extends":
                if let parent = readString(value, field: "extends") {
                    if Self.isValidProfileName(parent) {
                        profile.extends = parent
                        let at = position(value)
                        positions[name]?.extends = at
                    } else {
                        error(
                            value,
                            "extends names a profile; '\(parent.escapedForMessage)' is not a profile name (1 to 64 ASCII letters, digits, '.', '_' or '-')"
                        )
                    }
                }
            case "runtime": profile.runtime = readEnum(value, field: "runtime", RuntimeTier.self)
            case "user":
                switch readChoice(value, field: "user", among: ["agent", "root"]) {
                case "agent": profile.user = .agent
                case "root": profile.user = .root
                default: break
                }
            case "filesystem":
                profile.filesystem = readFilesystem(value)
                tmpSizeNode = mappingValue(value, "tmp_size")
            case "network": profile.network = readNetwork(value, profile: name)
            case "environment": profile.environment = readEnvironment(value)
            case "limits":
                profile.limits = readLimits(value)
                diskNode = mappingValue(value, "disk")
            case "syscalls": profile.syscalls = readEnum(value, field: "syscalls", SyscallProfile.self)
            case "landlock": profile.landlock = readEnum(value, field: "landlock", Enforcement.self)
            case "cgroups": profile.cgroups = readEnum(value, field: "cgroups", Enforcement.self)
            case "alerts": profile.alerts = readAlerts(value)
            case "monitor": profile.monitorInterval = readMonitor(value)
            case "secrets": profile.secrets = readSecrets(value, profile: name)
            default: break
            }
        }
        if let disk = profile.limits.disk, let tmp = profile.filesystem.tmpSize, disk != tmp, let at = diskNode ?? tmpSizeNode {
            let tmpAt = tmpSizeNode.map { " (line \(position($0).line))" } ?? ""
            error(
                at,
                "limits.disk (\(Units.formatBytes(disk))) contradicts filesystem.tmp_size (\(Units.formatBytes(tmp)))\(tmpAt): both are the size of /tmp; give only one of them, or the same size in both"
            )
        }
        return profile
    }

    // MARK: Sections

    mutating func readFilesystem(_ node: Node) -> Profile.Filesystem {
        var fs = Profile.Filesystem()
        if isNull(node) { return fs }
        guard
            let entries = mappingEntries(
                node, field: "filesystem", expecting: "a mapping with the keys \(Self.filesystemKeys.joined(separator: ", "))")
        else { return fs }
        // A retired key gets its own message rather than "unknown key": a separate home budget
        // let a sandbox write more scratch than its disk budget.
        for entry in entries where entry.name == "home_size" {
            error(entry.key, "filesystem.home_size is gone: $HOME shares the disk budget (limits.disk, the same as filesystem.tmp_size) with /tmp and /dev/shm; remove home_size and size limits.disk for all three")
        }
        let known = checkKeys(entries.filter { $0.name != "home_size" }, allowed: Self.filesystemKeys, in: "filesystem")
        if let v = known["workspace"]?.value {
            fs.workspace = readEnum(v, field: "filesystem.workspace", WorkspaceMode.self)
        }
        if let v = known["deny"]?.value {
            fs.deny = readStringList(v, field: "filesystem.deny") { PathRules.denyEntryProblem($0) }
        }
        if let v = known["mounts"]?.value { fs.mounts = readMounts(v) }
        if let v = known["tmp_size"]?.value { fs.tmpSize = bounded(v, "filesystem.tmp_size", readBytes(v, field: "filesystem.tmp_size"), LimitBounds.diskProblem) }
        if let v = known["etc"]?.value {
            fs.etc = readStringList(v, field: "filesystem.etc") { PathRules.etcEntryProblem($0) }
        }
        return fs
    }

    mutating func readMounts(_ node: Node) -> [MountGrant]? {
        let shape = "a mapping {source: /host/path, target: /mnt/path, mode: ro}"
        guard let items = sequenceItems(node, field: "filesystem.mounts", expecting: "a list of mounts, each \(shape)") else { return nil }
        var mounts: [MountGrant] = []
        var targets: [String: SourcePosition] = [:]
        var complete = true
        for item in items {
            guard let entries = mappingEntries(item, field: "each mount", expecting: shape) else {
                complete = false
                continue
            }
            let known = checkKeys(entries, allowed: Self.mountKeys, in: "a mount")
            var missing: [String] = []
            var source: String?
            var target: String?
            if let v = known["source"]?.value {
                source = readString(v, field: "mount source")
                if let s = source, let problem = PathRules.mountSourceProblem(s) {
                    error(v, problem)
                    source = nil
                }
            } else {
                missing.append("source")
            }
            if let v = known["target"]?.value {
                target = readString(v, field: "mount target")
                if let t = target, let problem = PathRules.mountTargetProblem(t) {
                    error(v, problem)
                    target = nil
                } else if let t = target {
                    if let first = targets[t] {
                        error(
                            v,
                            "two mounts have the target '\(t)' (the first at line \(first.line), column \(first.column)); each target may be mounted only once"
                        )
                        target = nil
                    } else {
                        targets[t] = position(v)
                    }
                }
            } else {
                missing.append("target")
            }
            var readOnly = true
            if let v = known["mode"]?.value {
                switch readChoice(v, field: "mount mode", among: ["ro", "rw"]) {
                case "rw": readOnly = false
                case "ro": readOnly = true
                default: complete = false
                }
            }
            if !missing.isEmpty {
                error(
                    item,
                    "a mount needs both 'source' and 'target'; missing \(missing.map { "'\($0)'" }.joined(separator: " and ")) (\(shape))")
            }
            if let source, let target {
                mounts.append(MountGrant(source: source, destination: target, readOnly: readOnly))
            } else {
                complete = false
            }
        }
        return complete ? mounts : nil
    }

    mutating func readEnvironment(_ node: Node) -> Profile.Environment {
        var env = Profile.Environment()
        if isNull(node) { return env }
        guard let entries = mappingEntries(node, field: "environment", expecting: "a mapping with the keys pass and set") else {
            return env
        }
        let known = checkKeys(entries, allowed: Self.environmentKeys, in: "environment")
        if let v = known["pass"]?.value {
            env.pass = readStringList(v, field: "environment.pass") { PathRules.passThroughProblem($0) }
        }
        if let v = known["set"]?.value, !isNull(v),
            let vars = mappingEntries(v, field: "environment.set", expecting: "a mapping from variable names to text values")
        {
            var set: [EnvironmentVariable] = []
            for entry in vars {
                guard PathRules.isValidEnvironmentName(entry.name) else {
                    error(
                        entry.key,
                        "environment.set: '\(entry.name.escapedForMessage)' is not a valid environment variable name; names use ASCII letters, digits and '_' and do not start with a digit"
                    )
                    continue
                }
                if let value = readString(entry.value, field: "environment.set.\(entry.name)") {
                    if value.unicodeScalars.contains("\0") {
                        error(entry.value, "environment.set.\(entry.name) contains a NUL character, which no environment can hold")
                    } else {
                        set.upsert(EnvironmentVariable(entry.name, value))
                    }
                }
            }
            env.set = set
        } else if let v = known["set"]?.value, isNull(v) {
            env.set = []
        }
        return env
    }

    mutating func readLimits(_ node: Node) -> Profile.Limits {
        var limits = Profile.Limits()
        if isNull(node) { return limits }
        guard
            let entries = mappingEntries(
                node, field: "limits", expecting: "a mapping with the keys \(Self.limitsKeys.joined(separator: ", "))")
        else { return limits }
        let known = checkKeys(entries, allowed: Self.limitsKeys, in: "limits")
        if let v = known["wall_clock"]?.value { limits.wallClock = readDuration(v, field: "limits.wall_clock") }
        if let v = known["memory"]?.value { limits.memory = bounded(v, "limits.memory", readBytes(v, field: "limits.memory"), LimitBounds.memoryProblem) }
        if let v = known["cpus"]?.value { limits.cpus = readCPUs(v, field: "limits.cpus") }
        if let v = known["pids"]?.value {
            limits.pids = bounded(v, "limits.pids", readInteger(v, field: "limits.pids", in: 0...Int(Int32.max), example: "1024"), LimitBounds.pidsProblem)
        }
        if let v = known["disk"]?.value { limits.disk = bounded(v, "limits.disk", readBytes(v, field: "limits.disk"), LimitBounds.diskProblem) }
        if let v = known["open_files"]?.value {
            limits.openFiles = readInteger(v, field: "limits.open_files", in: 1...Self.maximumOpenFiles, example: "4096")
        }
        if let v = known["file_size"]?.value { limits.fileSize = readBytes(v, field: "limits.file_size") }
        return limits
    }

    // MARK: Scalars

    /// A text value. Numbers are taken as written; YAML booleans (`yes`, `off`, …) and null are refused
    /// because what they mean is rarely what was meant.
    mutating func readString(_ node: Node, field: String) -> String? {
        guard let s = scalar(node, field: field, expecting: "text") else { return nil }
        if tagName(node) == .bool {
            error(node, "\(field) is the YAML boolean '\(s.string)'; write it in quotes (\"\(s.string)\") if you mean the text")
            return nil
        }
        return s.string
    }

    mutating func readChoice(_ node: Node, field: String, among allowed: [String]) -> String? {
        let list = allowed.joined(separator: ", ")
        guard let s = scalar(node, field: field, expecting: "one of \(list)") else { return nil }
        if allowed.contains(s.string) { return s.string }
        error(
            node, "\(field) must be one of \(list); found '\(s.string.escapedForMessage)'" + Suggestion.didYouMean(s.string, among: allowed)
        )
        return nil
    }

    mutating func readEnum<E: RawRepresentable & CaseIterable>(_ node: Node, field: String, _: E.Type) -> E?
    where E.RawValue == String {
        readChoice(node, field: field, among: E.allCases.map(\.rawValue)).flatMap(E.init(rawValue:))
    }

    mutating func readBytes(_ node: Node, field: String) -> UInt64? {
        let expecting = "a size such as 512M or 4G (units K, M, G, T, powers of 1024)"
        guard let s = scalar(node, field: field, expecting: expecting) else { return nil }
        let text = s.string
        if text.trimmingSpaces().hasPrefix("-") {
            error(node, "\(field) must be greater than zero; found '\(text)' (write \(expecting))")
            return nil
        }
        let bytes: UInt64
        do {
            bytes = try Units.parseBytes(text)
        } catch {
            self.error(node, "\(field): \(error.message)")
            return nil
        }
        if bytes == 0 {
            error(node, "\(field) must be greater than zero; found '\(text)' (write \(expecting))")
            return nil
        }
        return bytes
    }

    mutating func readDuration(_ node: Node, field: String) -> Duration? {
        let expecting = "a duration such as 30s, 5m or 1h (units ms, s, m, h; a bare number is seconds)"
        guard let s = scalar(node, field: field, expecting: expecting) else { return nil }
        let text = s.string
        if text.trimmingSpaces().hasPrefix("-") {
            error(node, "\(field) must be greater than zero; found '\(text)' (write \(expecting))")
            return nil
        }
        let duration: Duration
        do {
            duration = try Units.parseDuration(text)
        } catch {
            self.error(node, "\(field): \(error.message)")
            return nil
        }
        if duration <= .zero {
            error(node, "\(field) must be greater than zero; found '\(text)' (write \(expecting))")
            return nil
        }
        return duration
    }

    mutating func readCPUs(_ node: Node, field: String) -> Double? {
        let expecting = "a number of cores from 0.01 to 1024, such as 2 or 0.5"
        guard let s = scalar(node, field: field, expecting: expecting) else { return nil }
        guard let value = Double(s.string.trimmingSpaces()), value.isFinite else {
            error(node, "\(field) must be \(expecting); found '\(s.string.escapedForMessage)'")
            return nil
        }
        return bounded(node, field, value, LimitBounds.cpusProblem)
    }

    /// A value read, checked against the limits' one set of bounds (LimitBounds).
    mutating func bounded<T>(_ node: Node, _ field: String, _ value: T?, _ problem: (T) -> String?) -> T? {
        guard let value else { return nil }
        if let p = problem(value) {
            error(node, "\(field) \(p)")
            return nil
        }
        return value
    }

    mutating func readInteger(_ node: Node, field: String, in range: ClosedRange<Int>, example: String) -> Int? {
        let expecting = "a whole number from \(range.lowerBound) to \(range.upperBound), such as \(example)"
        guard let s = scalar(node, field: field, expecting: expecting) else { return nil }
        guard let value = Int(s.string.trimmingSpaces()) else {
            error(node, "\(field) must be \(expecting); found '\(s.string.escapedForMessage)'")
            return nil
        }
        guard range.contains(value) else {
            error(node, "\(field) must be \(expecting); found \(value)")
            return nil
        }
        return value
    }

    /// A list of text items, each checked by `problem`; items with a problem are reported and dropped.
    mutating func readStringList(_ node: Node, field: String, problem: (String) -> String?) -> [String]? {
        guard let items = sequenceItems(node, field: field, expecting: "a list of text items, e.g. [a, b]") else { return nil }
        var out: [String] = []
        for item in items {
            guard let text = readString(item, field: "each item of \(field)") else { continue }
            if let p = problem(text) {
                error(item, "\(field): \(p)")
            } else if !out.contains(text) {
                out.append(text)
            }
        }
        return out
    }

    // MARK: Node shapes

    struct Entry {
        var name: String
        var key: Node
        var value: Node
    }

    /// The entries of a mapping node, or nil (reported) when the node is not a mapping.
    /// Duplicated keys are reported at each later occurrence; the last value is kept.
    mutating func mappingEntries(_ node: Node, field: String, expecting: String) -> [Entry]? {
        guard refuseAnchor(node) else { return nil }
        guard case .mapping(let mapping) = node else {
            error(node, "\(field) must be \(expecting); found \(describe(node))")
            return nil
        }
        var entries: [Entry] = []
        var firstSeen: [String: (index: Int, at: SourcePosition)] = [:]
        for (key, value) in mapping {
            guard case .scalar(let k) = key, refuseAnchor(key) else {
                if key.anchor == nil {
                    error(key, "keys in \(field) must be plain names; found \(describe(key))")
                }
                continue
            }
            let at = position(key)
            let name = renamedKeys[at] ?? k.string
            if let first = firstSeen[name] {
                error(
                    key,
                    "duplicate key '\(name.escapedForMessage)' in \(field) (first given at line \(first.at.line), column \(first.at.column)); each key may appear only once"
                )
                entries[first.index] = Entry(name: name, key: key, value: value)
            } else {
                firstSeen[name] = (entries.count, at)
                entries.append(Entry(name: name, key: key, value: value))
            }
        }
        return entries
    }

    /// The items of a sequence node (null is an empty list), or nil (reported) for anything else.
    mutating func sequenceItems(_ node: Node, field: String, expecting: String) -> [Node]? {
        if isNull(node) { return [] }
        guard refuseAnchor(node) else { return nil }
        guard case .sequence(let sequence) = node else {
            error(node, "\(field) must be \(expecting); found \(describe(node))")
            return nil
        }
        return Array(sequence)
    }

    /// A scalar with a value, or nil (reported) for null, a mapping or a list.
    mutating func scalar(_ node: Node, field: String, expecting: String) -> Node.Scalar? {
        guard refuseAnchor(node) else { return nil }
        guard case .scalar(let s) = node, !isNull(node) else {
            error(
                node,
                isNull(node) ? "\(field) has no value; expected \(expecting)" : "\(field) must be \(expecting); found \(describe(node))")
            return nil
        }
        return s
    }

    /// Reports (once per anchor) and refuses anchored nodes: an alias re-uses the anchored node,
    /// so refusing anchors refuses aliases too, and keeps "billion laughs" expansions out.
    mutating func refuseAnchor(_ node: Node) -> Bool {
        guard let anchor = node.anchor else { return true }
        error(
            node,
            "anchors and aliases (&\(anchor.rawValue) / *\(anchor.rawValue)) are not supported in policies; use 'extends' to share settings between profiles"
        )
        return false
    }

    /// Checks keys against the allowed ones (reporting the others with a suggestion) and returns
    /// the allowed entries by name.
    mutating func checkKeys(_ entries: [Entry], allowed: [String], in context: String) -> [String: Entry] {
        var known: [String: Entry] = [:]
        for entry in entries {
            if allowed.contains(entry.name) {
                known[entry.name] = entry
            } else {
                error(
                    entry.key,
                    "unknown key '\(entry.name.escapedForMessage)' in \(context); allowed keys: \(allowed.joined(separator: ", "))"
                        + Suggestion.didYouMean(entry.name, among: allowed))
            }
        }
        return known
    }

    func mappingValue(_ node: Node, _ key: String) -> Node? {
        guard case .mapping(let m) = node else { return nil }
        return m.first { k, _ in k.string == key && renamedKeys[position(k)] == nil }?.value
    }

    func isNull(_ node: Node) -> Bool {
        guard case .scalar = node else { return false }
        return tagName(node) == .null
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let s):
            if isNull(node) { return "no value" }
            switch tagName(node) {
            case .bool: return "the boolean '\(s.string)'"
            case .int, .float: return "the number \(s.string)"
            default: return "the text '\(s.string.escapedForMessage)'"
            }
        }
    }

    func position(_ node: Node) -> SourcePosition { SourcePosition(node.mark) }

    /// The resolved tag: `str` for quoted scalars; `int`, `bool`, `null`, … by the YAML 1.1 rules for plain ones.
    func tagName(_ node: Node) -> Tag.Name {
        if case .scalar(let s) = node, s.style == .plain, node.tag.rawValue == Tag.Name.str.rawValue {
            return PlainScalar.tag(of: s.string)
        }
        return Tag.Name(rawValue: node.tag.rawValue)
    }

    mutating func error(_ node: Node, _ message: String) {
        error(at: position(node), message)
    }

    mutating func error(at position: SourcePosition, _ message: String) {
        diagnostics.append(PolicyDiagnostic(file: file, line: position.line, column: position.column, message: message))
    }

    static func isValidProfileName(_ name: String) -> Bool {
        let scalars = name.unicodeScalars
        guard let first = scalars.first, scalars.count <= 64, isAlphanumeric(first) else { return false }
        return scalars.allSatisfy { isAlphanumeric($0) || $0 == "." || $0 == "_" || $0 == "-" }
    }

    static func isAlphanumeric(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9")
    }
}

/// Where a profile and its `extends` were written, for messages about `extends` chains.
struct ProfilePositions: Sendable {
    var name: SourcePosition
    var extends: SourcePosition?
    /// Where the profile wrote what the checks of the flattened profile may report, by anchor
    /// (`network.allow`, `allow:<rule label>`, `deny:<rule label>`, `secret:<name>`, `secret:<name>:inject`, …).
    var items: [String: SourcePosition] = [:]
}

