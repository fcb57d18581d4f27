import AirlockCore
import Yams

/// The `network:` and `secrets:` sections of a profile (docs/policy.md, "Network" and "Secrets").
///
/// What can be judged from one section alone is reported here; what depends on the whole
/// `extends` chain (a rule under `mode: none`, a secret injected into a host no rule
/// allows) is judged on the flattened profile by ``Policy`` (``NetworkChecks``), at the
/// positions recorded here in ``ProfilePositions/items``.
extension PolicyReader {
    static let networkKeys = ["mode", "allow", "deny", "inspect_tls", "budgets", "dlp", "hosts", "upstream_ca", "proxy_port"]
    static let ruleKeys = ["host", "ports", "methods", "paths"]
    static let budgetKeys = ["bytes_out", "bytes_in", "requests_per_minute"]
    static let secretKeys = ["name", "from", "inject"]
    static let injectKeys = ["host", "header", "format"]

    static let ruleShape = "a host such as api.example.com, or a mapping {host: api.example.com, ports: [443], methods: [GET], paths: [\"/v1/*\"]}"
    static let secretShape = "a mapping {name: GITHUB_TOKEN, from: env:GITHUB_TOKEN, inject: {host: api.github.com, header: Authorization, format: \"Bearer {}\"}}"

    mutating func readNetwork(_ node: Node, profile: String) -> Profile.Network {
        var network = Profile.Network()
        if isNull(node) { return network }
        guard
            let entries = mappingEntries(
                node, field: "network", expecting: "a mapping with the keys \(Self.networkKeys.joined(separator: ", ")) (e.g. network: {mode: none})")
        else { return network }
        let known = checkKeys(entries, allowed: Self.networkKeys, in: "network")
        if let v = known["mode"]?.value {
            network.mode = readEnum(v, field: "network.mode", NetworkSpec.Mode.self)
            if network.mode != nil { record(profile, "network.mode", v) }
        }
        for key in ["allow", "deny"] {
            guard let entry = known[key] else { continue }
            let rules = readRules(entry.value, field: "network.\(key)", profile: profile, anchorPrefix: "\(key):")
            if key == "allow" { network.allow = rules } else { network.deny = rules }
            if let rules, !rules.isEmpty { record(profile, "network.\(key)", entry.key) }
        }
        if let entry = known["inspect_tls"] {
            network.inspectTLS = readStringList(entry.value, field: "network.inspect_tls") { EgressRules.hostPatternProblem($0) }
            if let list = network.inspectTLS, !list.isEmpty { record(profile, "network.inspect_tls", entry.key) }
        }
        if let v = known["budgets"]?.value { network.budgets = readBudgets(v) }
        if let v = known["dlp"]?.value { network.dlp = readEnum(v, field: "network.dlp", DLPAction.self) }
        if let v = known["hosts"]?.value { network.hosts = readPinnedHosts(v) }
        if let v = known["upstream_ca"]?.value, let path = readString(v, field: "network.upstream_ca") {
            if path.hasPrefix("/"), !PathRules.hasControlCharacter(path) {
                network.upstreamCAFile = path
            } else {
                error(
                    v,
                    "network.upstream_ca must be the absolute host path of a PEM file of CA certificates, e.g. /etc/ssl/private-ca.pem; found '\(path.escapedForMessage)'"
                )
            }
        }
        if let v = known["proxy_port"]?.value {
            network.proxyPort = readInteger(
                v, field: "network.proxy_port", in: EgressRules.minimumPort...EgressRules.maximumPort, example: "\(NetworkSpec.defaultProxyPort)")
        }
        return network
    }

    // MARK: Rules

    /// The rules of `network.allow` or `network.deny`; nil when any rule had a problem (each is reported).
    mutating func readRules(_ node: Node, field: String, profile: String, anchorPrefix: String) -> [EgressRule]? {
        guard let items = sequenceItems(node, field: field, expecting: "a list of rules, each \(Self.ruleShape)") else { return nil }
        var rules: [EgressRule] = []
        var complete = true
        for item in items {
            guard let rule = readRule(item, field: field) else {
                complete = false
                continue
            }
            record(profile, anchorPrefix + rule.label, item)
            if !rules.contains(rule) { rules.append(rule) }
        }
        return complete ? rules : nil
    }

    mutating func readRule(_ item: Node, field: String) -> EgressRule? {
        if case .scalar = item, !isNull(item) {
            guard let host = readHostPattern(item, field: field) else { return nil }
            return EgressRule(host: host)
        }
        guard !isNull(item) else {
            error(item, "a rule of \(field) has no value; write \(Self.ruleShape)")
            return nil
        }
        guard let entries = mappingEntries(item, field: "each rule of \(field)", expecting: Self.ruleShape) else { return nil }
        var ok = true
        for entry in entries where !Self.ruleKeys.contains(entry.name) {
            ok = false
            error(
                entry.key,
                "unknown key '\(entry.name.escapedForMessage)' in a rule of \(field); allowed keys: \(Self.ruleKeys.joined(separator: ", "))"
                    + Suggestion.didYouMean(entry.name, among: Self.ruleKeys))
        }
        let known = Dictionary(entries.filter { Self.ruleKeys.contains($0.name) }.map { ($0.name, $0) }) { _, last in last }
        var host: String?
        if let v = known["host"]?.value {
            host = readHostPattern(v, field: "\(field) host")
        } else {
            error(item, "a rule of \(field) needs 'host' (\(Self.ruleShape))")
        }
        var ports: [Int]?
        if let entry = known["ports"] {
            ports = readList(entry, field: "\(field) ports", example: "[443]", empty: "leave it out for ports 80 and 443") { me, node in
                me.readInteger(node, field: "each port of \(field)", in: EgressRules.minimumPort...EgressRules.maximumPort, example: "443")
            }
            if ports == nil { ok = false }
        }
        var methods: [String]?
        if let entry = known["methods"] {
            methods = readList(entry, field: "\(field) methods", example: "[GET, HEAD]", empty: "leave it out for any method") { me, node in
                guard let text = me.readString(node, field: "each method of \(field)") else { return nil }
                if let p = EgressRules.methodProblem(text) {
                    me.error(node, "\(field) methods: \(p)")
                    return nil
                }
                return text.uppercased()
            }
            if methods == nil { ok = false }
        }
        var paths: [String]?
        if let entry = known["paths"] {
            paths = readList(entry, field: "\(field) paths", example: "[\"/v1/*\"]", empty: "leave it out for any path") { me, node in
                guard let text = me.readString(node, field: "each path of \(field)") else { return nil }
                if let p = EgressRules.pathProblem(text) {
                    me.error(node, "\(field) paths: \(p)")
                    return nil
                }
                return text
            }
            if paths == nil { ok = false }
        }
        guard ok, let host else { return nil }
        return EgressRule(host: host, ports: ports, methods: methods, paths: paths)
    }

    /// A non-empty list whose items `read` turns into values (duplicates dropped); nil (reported)
    /// when it is not a list, is empty, or an item is wrong.
    mutating func readList<T: Equatable>(
        _ entry: Entry, field: String, example: String, empty: String, _ read: (inout PolicyReader, Node) -> T?
    ) -> [T]? {
        if isNull(entry.value) {
            error(entry.value, "\(field) has no value; write a list such as \(example), or \(empty)")
            return nil
        }
        guard let items = sequenceItems(entry.value, field: field, expecting: "a list such as \(example)") else { return nil }
        if items.isEmpty {
            error(entry.value, "\(field) is empty; \(empty)")
            return nil
        }
        var out: [T] = []
        var ok = true
        for item in items {
            guard let value = read(&self, item) else {
                ok = false
                continue
            }
            if !out.contains(value) { out.append(value) }
        }
        return ok ? out : nil
    }

    mutating func readHostPattern(_ node: Node, field: String) -> String? {
        guard let text = readString(node, field: field) else { return nil }
        if let p = EgressRules.hostPatternProblem(text) {
            error(node, "\(field): \(p)")
            return nil
        }
        return text
    }

    // MARK: Budgets, pinned hosts

    mutating func readBudgets(_ node: Node) -> EgressBudgets {
        var budgets = EgressBudgets()
        if isNull(node) { return budgets }
        guard
            let entries = mappingEntries(
                node, field: "network.budgets",
                expecting: "a mapping with the keys \(Self.budgetKeys.joined(separator: ", ")) (e.g. {bytes_out: 50M, requests_per_minute: 600})")
        else { return budgets }
        let known = checkKeys(entries, allowed: Self.budgetKeys, in: "network.budgets")
        if let v = known["bytes_out"]?.value { budgets.bytesOut = readBytes(v, field: "network.budgets.bytes_out") }
        if let v = known["bytes_in"]?.value { budgets.bytesIn = readBytes(v, field: "network.budgets.bytes_in") }
        if let v = known["requests_per_minute"]?.value {
            budgets.requestsPerMinute = readInteger(
                v, field: "network.budgets.requests_per_minute", in: 1...EgressRules.maximumRequestsPerMinute, example: "600")
        }
        return budgets
    }

    mutating func readPinnedHosts(_ node: Node) -> [String: [String]]? {
        if isNull(node) { return [:] }
        guard
            let entries = mappingEntries(
                node, field: "network.hosts", expecting: "a mapping from host names to addresses, e.g. {upstream.example.com: [10.0.0.5]}")
        else { return nil }
        var hosts: [String: [String]] = [:]
        var complete = true
        for entry in entries {
            if let p = EgressRules.pinnedNameProblem(entry.name) {
                error(entry.key, "network.hosts: \(p)")
                complete = false
                continue
            }
            let field = "network.hosts.\(entry.name)"
            var nodes: [Node] = []
            var isList = false
            if case .sequence = entry.value {
                isList = true
                guard let items = sequenceItems(entry.value, field: field, expecting: "an address or a list of addresses") else { continue }
                if items.isEmpty {
                    error(entry.value, "\(field) is empty; give the address (or addresses) the name resolves to, e.g. [10.0.0.5]")
                    complete = false
                }
                nodes = items
            } else {
                nodes = [entry.value]
            }
            var addresses: [String] = []
            for n in nodes {
                guard let text = readString(n, field: isList ? "each address of \(field)" : field) else {
                    complete = false
                    continue
                }
                if let p = EgressRules.pinnedAddressProblem(text) {
                    error(n, "\(field): \(p)")
                    complete = false
                } else if !addresses.contains(text) {
                    addresses.append(text)
                }
            }
            hosts[entry.name] = addresses
        }
        return complete ? hosts : nil
    }

    // MARK: Secrets

    /// The bindings of `secrets:`; nil when any had a problem (each is reported).
    mutating func readSecrets(_ node: Node, profile: String) -> [SecretBinding]? {
        guard let items = sequenceItems(node, field: "secrets", expecting: "a list of bindings, each \(Self.secretShape)") else { return nil }
        var bindings: [SecretBinding] = []
        var names: [String: SourcePosition] = [:]
        var complete = true
        for item in items {
            guard let binding = readSecret(item, profile: profile, names: &names) else {
                complete = false
                continue
            }
            bindings.append(binding)
        }
        return complete ? bindings : nil
    }

    private mutating func readSecret(_ item: Node, profile: String, names: inout [String: SourcePosition]) -> SecretBinding? {
        if isNull(item) {
            error(item, "a secret has no value; write \(Self.secretShape)")
            return nil
        }
        guard let entries = mappingEntries(item, field: "each secret", expecting: Self.secretShape) else { return nil }
        let known = checkKeys(entries, allowed: Self.secretKeys, in: "a secret")
        var ok = known.count == entries.count
        var name: String?
        var nameNode: Node?
        var label = "secret"
        if let v = known["name"]?.value, let text = readString(v, field: "secret name") {
            label = "secret '\(text.escapedForMessage)'"
            if let p = EgressRules.secretNameProblem(text) {
                error(v, p)
            } else if let first = names[text] {
                error(
                    v,
                    "two secrets are named '\(text)' (the first at line \(first.line), column \(first.column)); each secret needs its own name")
            } else {
                names[text] = position(v)
                name = text
                nameNode = v
            }
        } else if known["name"] == nil {
            error(item, "a secret needs a 'name', the variable the sandbox sees (\(Self.secretShape))")
        }
        var source: String?
        if let v = known["from"]?.value, let text = readString(v, field: "\(label) from") {
            if let p = EgressRules.secretSourceProblem(text) {
                error(v, "\(label): \(p)")
            } else {
                source = text
            }
        } else if known["from"] == nil {
            error(
                item,
                "a secret needs 'from', where airlock reads its value: env:NAME (a variable of airlock's environment) or file:/absolute/path")
        }
        var inject: SecretInjection?
        var injectAnchor: Node?
        if let v = known["inject"]?.value, !isNull(v) {
            (inject, injectAnchor) = readInjection(v, field: "\(label) inject")
            if inject == nil { ok = false }
        }
        guard ok, let name, let source else { return nil }
        if let nameNode { record(profile, "secret:\(name)", nameNode) }
        if let injectAnchor { record(profile, "secret:\(name):inject", injectAnchor) }
        return SecretBinding(name: name, source: source, inject: inject)
    }

    private mutating func readInjection(_ node: Node, field: String) -> (SecretInjection?, Node?) {
        let shape = "a mapping {host: api.example.com, header: Authorization, format: \"Bearer {}\"}"
        guard let entries = mappingEntries(node, field: field, expecting: shape) else { return (nil, nil) }
        let known = checkKeys(entries, allowed: Self.injectKeys, in: "a secret's inject")
        var ok = known.count == entries.count
        var host: String?
        var hostNode: Node?
        if let v = known["host"]?.value, let text = readString(v, field: "\(field).host") {
            if let p = EgressRules.injectionHostProblem(text) {
                error(v, "\(field).host: \(p)")
            } else {
                host = text
                hostNode = v
            }
        }
        var header: String?
        if let v = known["header"]?.value, let text = readString(v, field: "\(field).header") {
            if let p = EgressRules.injectionHeaderProblem(text) { error(v, "\(field).header: \(p)") } else { header = text }
        }
        var format = "{}"
        if let v = known["format"]?.value {
            if let text = readString(v, field: "\(field).format") {
                if let p = EgressRules.injectionFormatProblem(text) {
                    error(v, "\(field).format: \(p)")
                    ok = false
                } else {
                    format = text
                }
            } else {
                ok = false
            }
        }
        let missing = ["host", "header"].filter { known[$0] == nil }
        if !missing.isEmpty {
            error(node, "\(field) needs \(missing.map { "'\($0)'" }.joined(separator: " and ")) (\(shape))")
        }
        guard ok, let host, let header else { return (nil, nil) }
        return (SecretInjection(host: host, header: header, format: format), hostNode)
    }

    // MARK: Positions

    /// Remembers where a profile wrote something the checks on the flattened profile may report.
    mutating func record(_ profile: String, _ anchor: String, _ node: Node) {
        let at = position(node)
        positions[profile]?.items[anchor] = at
    }
}
