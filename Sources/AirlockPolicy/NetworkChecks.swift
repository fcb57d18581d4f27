import AirlockCore

/// The checks of a flattened profile's network and secrets that no single section can make:
/// they depend on what the whole `extends` chain adds up to.
///
/// ``Policy/check(_:file:)`` reports each problem at the place the profile wrote the thing it
/// is about (or, for something inherited, at the profile's name); ``Resolver`` reports them
/// for profiles built in code.
enum NetworkChecks {
    struct Problem: Equatable {
        /// What the problem is about, as recorded in ``ProfilePositions/items``.
        var anchor: String
        /// Names no profile: the same problem inherited reads the same.
        var message: String
    }

    static func problems(_ p: Profile) -> [Problem] {
        var out: [Problem] = []
        let proxied = p.network.mode == .proxied
        let allow = proxied ? (p.network.allow ?? []) : []
        let deny = p.network.deny ?? []
        let inspect = proxied ? (p.network.inspectTLS ?? []) : []
        func inspected(_ host: String) -> Bool { inspect.contains { EgressRules.covers($0, host) } }

        // Methods and paths are visible in plain HTTP and in inspected HTTPS only. Without
        // inspection, the gateway cannot decide a CONNECT such a rule is about and refuses it.
        func constrained(_ r: EgressRule) -> Bool { r.methods != nil || r.paths != nil }
        func what(_ r: EgressRule) -> String { r.methods != nil && r.paths != nil ? "methods and paths" : r.methods != nil ? "methods" : "paths" }
        for rule in allow where constrained(rule) && EgressRules.carriesHTTPS(rule.ports) && !inspected(rule.host) {
            // A plain rule for the same host and ports already allows every request.
            let redundant = allow.contains { plain in
                !constrained(plain) && EgressRules.covers(plain.host, rule.host)
                    && Set(rule.ports ?? EgressRule.defaultPorts).isSubset(of: plain.ports ?? EgressRule.defaultPorts)
            }
            if redundant { continue }
            out.append(
                Problem(
                    anchor: "allow:" + rule.label,
                    message:
                        "network.allow rule '\(rule.label)' limits \(what(rule)), which the gateway can only see in HTTPS requests whose TLS it inspects; add \(rule.host) to network.inspect_tls, or give the rule only plain-HTTP ports (e.g. ports: [80])"
                ))
        }
        if proxied {
            for rule in deny where constrained(rule) && EgressRules.carriesHTTPS(rule.ports) && !inspected(rule.host) {
                out.append(
                    Problem(
                        anchor: "deny:" + rule.label,
                        message:
                            "network.deny rule '\(rule.label)' limits \(what(rule)), which the gateway can only see in HTTPS requests whose TLS it inspects, so it would refuse every HTTPS connection to \(rule.host); add \(rule.host) to network.inspect_tls, or drop the rule's \(what(rule)) to refuse the host outright"
                    ))
            }
        }

        for binding in p.secrets ?? [] {
            let name = binding.name
            if (p.environment.set ?? []).contains(where: { $0.name == name }) {
                out.append(
                    Problem(
                        anchor: "secret:\(name)",
                        message: "secret '\(name)' is also given a value by environment.set; the sandbox's \(name) comes from the secret: remove one of them"))
            }
            if (p.environment.pass ?? []).contains(name) {
                out.append(
                    Problem(
                        anchor: "secret:\(name)",
                        message: "secret '\(name)' is also in environment.pass; the sandbox's \(name) comes from the secret: remove it from environment.pass"))
            }
            guard let inject = binding.inject else { continue }
            let anchor = "secret:\(name):inject"
            let host = inject.host
            guard proxied else {
                out.append(
                    Problem(
                        anchor: anchor,
                        message:
                            "secret '\(name)' is injected into requests to \(host) by the egress gateway, which a profile with network mode: none does not use; set network.mode: proxied and add \(host) to network.allow and network.inspect_tls (or drop 'inject')"
                    ))
                continue
            }
            if let rule = deny.first(where: { $0.ports == nil && $0.methods == nil && $0.paths == nil && EgressRules.covers($0.host, host) }) {
                out.append(
                    Problem(
                        anchor: anchor,
                        message:
                            "the gateway would refuse \(host): network.deny has '\(rule.label)', so secret '\(name)' could never be sent; remove the deny rule or inject into another host"
                    ))
            } else if !allow.contains(where: { EgressRules.covers($0.host, host) }) {
                out.append(
                    Problem(
                        anchor: anchor,
                        message: "the gateway would refuse \(host): add it to network.allow (secret '\(name)' is injected into requests to it)"))
            }
            if !inspected(host) {
                out.append(
                    Problem(
                        anchor: anchor,
                        message:
                            "secret '\(name)': injecting a credential into HTTPS requests to \(host) needs the gateway to inspect their TLS; add \(host) to network.inspect_tls"
                    ))
            }
        }
        return out
    }

    /// Every problem of a flattened profile's network and secrets that a policy file could not
    /// contain, for profiles built in code (messages only).
    static func specProblems(_ p: Profile) -> [String] {
        var out: [String] = []
        let n = p.network
        for rule in n.allow ?? [] { out += EgressRules.ruleProblems(rule).map { "network.allow: \($0)" } }
        for rule in n.deny ?? [] { out += EgressRules.ruleProblems(rule).map { "network.deny: \($0)" } }
        for host in n.inspectTLS ?? [] { if let s = EgressRules.hostPatternProblem(host) { out.append("network.inspect_tls: \(s)") } }
        if n.budgets.bytesOut == 0 { out.append("network.budgets.bytes_out must be greater than zero") }
        if n.budgets.bytesIn == 0 { out.append("network.budgets.bytes_in must be greater than zero") }
        if let rpm = n.budgets.requestsPerMinute, !(1...EgressRules.maximumRequestsPerMinute).contains(rpm) {
            out.append("network.budgets.requests_per_minute must be from 1 to \(EgressRules.maximumRequestsPerMinute)")
        }
        for (name, addresses) in n.hosts ?? [:] {
            if let s = EgressRules.pinnedNameProblem(name) { out.append("network.hosts: \(s)") }
            if addresses.isEmpty { out.append("network.hosts.\(name) is empty") }
            for a in addresses { if let s = EgressRules.pinnedAddressProblem(a) { out.append("network.hosts: \(s)") } }
        }
        if let ca = n.upstreamCAFile, !ca.hasPrefix("/") || PathRules.hasControlCharacter(ca) {
            out.append("network.upstream_ca must be an absolute path")
        }
        if let port = n.proxyPort, let s = EgressRules.portProblem(port) { out.append("network.proxy_port: \(s)") }
        var names: Set<String> = []
        for b in p.secrets ?? [] {
            out += EgressRules.bindingProblems(b)
            if !names.insert(b.name).inserted { out.append("two secrets are named '\(b.name.escapedForMessage)'") }
        }
        return out + problems(p).map(\.message)
    }
}
