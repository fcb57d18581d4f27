import AirlockCore

/// The compiled allow and deny rules of one sandbox, and the decisions made with them.
///
/// Matching semantics (docs/egress.md, "Rules"):
///
/// - **Hosts.** A destination is canonicalised by `HostName.parse`: lower case, one trailing
///   dot removed, any spelling of an IP literal parsed to its address. A rule host is one of
///   `example.com` (exactly that name), `*.example.com` (any name ending in `.example.com`,
///   at any depth: `a.example.com`, `a.b.example.com`; never `example.com` itself), an IP
///   address (`10.0.0.5`, `::1`) or a CIDR block (`10.0.0.0/8`, `fd00::/8`). `*` may only be
///   the whole leading label; `*` alone is refused. A name rule never matches an IP literal
///   destination, and an address rule never matches a name (names are checked again by
///   address after resolution: `checkAddress`). An IPv4-mapped IPv6 address
///   (`::ffff:10.0.0.5`) is the same destination as its IPv4 address, in rules and in
///   destinations.
/// - **Ports.** A rule matches host *and* port. Allow rules without `ports` mean 80 and 443;
///   deny rules without `ports` mean every port.
/// - **Deny wins.** Deny rules are checked first; a matching deny rule refuses even when an
///   allow rule matches too. Otherwise the first matching allow rule (in file order) allows,
///   and with none the destination is refused (deny by default).
/// - **Two levels.** `decide(host:port:)` is the connection gate, before any request is
///   seen: it allows when some allow rule matches host and port, whatever its methods and
///   paths; deny rules with methods or paths do not act there. `decide(host:port:method:path:)`
///   is the request gate for a visible HTTP request (plain HTTP, or inspected HTTPS): deny
///   rules act when their methods (if any) include the method and their paths (if any)
///   match; an allow rule allows when its methods and paths, if any, match. A CONNECT whose
///   allowance depends on methods or paths, or to a host with a deny rule that has them,
///   cannot be decided without inspecting it (`needsRequestView`).
/// - **Methods** are upper-case tokens, compared with the request's method upper-cased.
/// - **Paths** are globs matched against the request path normalised by `RequestPath`
///   (query removed, unreserved escapes decoded, ambiguous paths refused): `*` matches
///   within one segment, `**` any number of segments. A path that cannot be normalised
///   unambiguously (`..`, `%2F`, `//`, double encoding, …) is refused whenever a rule for
///   the host and port has paths; when none has, the path plays no part. Allow paths match
///   case-sensitively; deny paths match case-insensitively, and also the path with `;`
///   parameters and a trailing `/` removed, so that no server's reading escapes them.
/// - **Addresses.** After resolution, `checkAddress` allows a public address. A special
///   address (`AddressClass`: loopback, private, link-local, cloud metadata, …, an IPv6
///   address embedding a special IPv4 address, or an address of the host's own
///   interfaces) is refused unless an allow rule with that port names the address or a
///   CIDR block containing it; a cloud metadata address must be named exactly, a block
///   never opens it. Deny rules naming an address or block refuse it on every path to it,
///   including IPv6 addresses that embed it.
/// - `inspect_tls` entries use the same host syntax and matching, without ports.
/// - `NetworkSpec.mode` is not consulted: with mode `none` no gateway runs at all.
public struct EgressPolicy: Sendable {
    /// Everything compiled, behind one reference: a policy is copied into every
    /// connection's handlers, and a decision reads it without copying it.
    final class Compiled: Sendable {
        /// Deny rules first, then allow rules; an id in `index` is a position here.
        let rules: [CompiledRule]
        let index: HostIndex
        let inspected: HostIndex
        let localAddresses: Set<IPAddress>

        init(rules: [CompiledRule], index: HostIndex, inspected: HostIndex, localAddresses: Set<IPAddress>) {
            self.rules = rules
            self.index = index
            self.inspected = inspected
            self.localAddresses = localAddresses
        }
    }

    let compiled: Compiled
    var rules: [CompiledRule] { compiled.rules }
    var index: HostIndex { compiled.index }

    /// Validates and compiles the rules of `spec`; the error names the first invalid rule.
    public init(_ spec: NetworkSpec, localAddresses: Set<IPAddress> = LocalAddresses.current()) throws(AirlockError) {
        var rules: [CompiledRule] = []
        for (i, r) in spec.deny.enumerated() { rules.append(try CompiledRule(r, deny: true, index: i)) }
        for (i, r) in spec.allow.enumerated() { rules.append(try CompiledRule(r, deny: false, index: i)) }
        var index = HostIndex()
        for (id, r) in rules.enumerated() { index.insert(r.host, id: id) }
        var inspected = HostIndex()
        for (i, p) in spec.inspectTLS.enumerated() {
            do { inspected.insert(try HostPattern(p), id: i) } catch {
                throw AirlockError(.policy, "network.inspect_tls[\(i)] (\(p)): \(error.message)")
            }
        }
        compiled = Compiled(
            rules: rules, index: index, inspected: inspected, localAddresses: Set(localAddresses.map(HostPattern.unmapped)))
    }

    // MARK: Connection gate

    /// May a connection to `host:port` be made at all (before any request is seen)?
    public func decide(host: HostName, port: Int) -> EgressDecision {
        let c = compiled
        var deny = Int.max
        var allow = Int.max
        c.index.forEachMatch(host) { id, viaEmbedding in
            let r = c.rules[id]
            guard r.matches(port: port) else { return }
            if r.isDeny {
                if !r.isConstrained { deny = min(deny, id) }
            } else if !viaEmbedding {
                allow = min(allow, id)
            }
        }
        if deny != .max { return refusal(by: c.rules[deny], host: host, port: port) }
        if allow != .max { return c.rules[allow].allowed }
        return defaultDeny(host: host, port: port)
    }

    /// True when a CONNECT to `host` must be terminated and inspected (`inspect_tls`).
    public func inspects(host: HostName) -> Bool {
        var found = false
        compiled.inspected.forEachMatch(host) { _, viaEmbedding in found = found || !viaEmbedding }
        return found
    }

    /// True when the decision for `host:port` depends on the requests inside the connection:
    /// every allow rule matching it has methods or paths, or a deny rule matching it has
    /// them. An uninspected CONNECT to it must then be refused ("add the host to inspect_tls").
    public func needsRequestView(host: HostName, port: Int) -> Bool {
        let c = compiled
        var constrainedDeny = false
        var constrainedAllow = false
        var plainAllow = false
        c.index.forEachMatch(host) { id, viaEmbedding in
            let r = c.rules[id]
            guard r.matches(port: port) else { return }
            if r.isDeny {
                constrainedDeny = constrainedDeny || r.isConstrained
            } else if !viaEmbedding {
                if r.isConstrained { constrainedAllow = true } else { plainAllow = true }
            }
        }
        return constrainedDeny || (constrainedAllow && !plainAllow)
    }

    // MARK: Address gate

    /// May the gateway connect to `address` for a connection to `host:port`? Deny rules
    /// naming the address (or a block holding it, or the IPv4 address it embeds) refuse it.
    /// A public address is allowed. A special one is allowed only by an allow rule for
    /// `port` naming the address or a block holding it (a cloud metadata address: naming it).
    public func checkAddress(_ address: IPAddress, host: HostName, port: Int) -> EgressDecision {
        let c = compiled
        var deny = Int.max
        var allow = Int.max
        let addressClass = effectiveClass(address)
        c.index.forEachMatch(address: address) { id, viaEmbedding in
            let r = c.rules[id]
            guard r.matches(port: port) else { return }
            if r.isDeny {
                if !r.isConstrained { deny = min(deny, id) }
            } else if !viaEmbedding {
                if addressClass == .cloudMetadata, case .network = r.host { return }
                allow = min(allow, id)
            }
        }
        if deny != .max {
            let r = rules[deny]
            return .deny(
                "\(address)\(resolvedFrom(host, address)) is refused by the deny rule \(r.label.dropFirst(5))", rule: r.label,
                hint: "deny rules win over allow rules; remove the rule from network.deny to allow it")
        }
        guard addressClass.isSpecial else { return Self.publicAddress }
        if allow != .max { return c.rules[allow].allowed }
        var what = "\(address)\(resolvedFrom(host, address)) is \(addressClass.phrase)"
        if !address.isIPv4, let embedded = address.embeddedIPv4Candidates.first(where: { effectiveClass($0) == addressClass }) {
            what = "\(address)\(resolvedFrom(host, address)) leads to \(embedded), \(addressClass.phrase)"
        }
        let rule = Self.ruleSnippet(host: .address(address), port: port, explicitPort: true)
        let hint =
            addressClass == .cloudMetadata
            ? "cloud metadata services hand out the host's credentials; only if this is really intended, add `\(rule)` to network.allow"
            : "if this is intended, add `\(rule)` to network.allow (naming the address or a block holding it)"
        return .deny(what, hint: hint)
    }

    /// The class the policy gives `address`: cloud metadata, else its own special class,
    /// else `thisHost` for an address of the host (or one it embeds), else `public`.
    public func effectiveClass(_ address: IPAddress) -> AddressClass {
        let own = address.addressClass
        if own.isSpecial { return own }
        let direct = HostPattern.unmapped(address)
        let local = compiled.localAddresses
        if local.contains(direct) || (!direct.isIPv4 && direct.embeddedIPv4Candidates.contains(where: local.contains)) {
            return .thisHost
        }
        return .public
    }

    static let publicAddress = EgressDecision(allowed: true, reason: "a public address")

    private func resolvedFrom(_ host: HostName, _ address: IPAddress) -> String {
        if case .name(let n) = host { return " (resolved from \(n))" }
        if case .address(let a) = host, a != address { return " (for \(a))" }
        return ""
    }

    // MARK: Refusals

    func refusal(by r: CompiledRule, host: HostName, port: Int) -> EgressDecision {
        .deny(
            "\(host.uriHost):\(port) matches the deny rule \(r.label.dropFirst(5))", rule: r.label,
            hint: "deny rules win over allow rules; remove the rule from network.deny to allow it")
    }

    /// No allow rule matches: say whether one matches the host on other ports.
    func defaultDeny(host: HostName, port: Int) -> EgressDecision {
        var otherPorts: [CompiledRule] = []
        index.forEachMatch(host) { id, viaEmbedding in
            if !rules[id].isDeny, !viaEmbedding { otherPorts.append(rules[id]) }
        }
        if let r = otherPorts.first, let ports = r.ports {
            let list = ports.map(String.init).joined(separator: ", ")
            return .deny(
                "\(host) is allowed only on port\(ports.count == 1 ? "" : "s") \(list) (rule \(r.label)), not \(port)",
                hint: "add \(port) to the ports of the rule \(r.label) in network.allow")
        }
        let flag = port == 80 || port == 443 ? host.uriHost : "\(host.uriHost):\(port)"
        return .deny(
            "no allow rule matches \(host.uriHost):\(port)",
            hint: "add `\(Self.ruleSnippet(host: host, port: port))` to network.allow, or run with --allow-host \(flag)")
    }

    /// A YAML list entry allowing `host:port` (the port left out when it is 80 or 443,
    /// unless `explicitPort`).
    static func ruleSnippet(host: HostName, port: Int, explicitPort: Bool = false) -> String {
        let h = yaml(host)
        return !explicitPort && (port == 80 || port == 443) ? "- host: \(h)" : "- {host: \(h), ports: [\(port)]}"
    }

    /// A host as a YAML scalar (IPv6 quoted: a plain scalar may not contain ": ").
    static func yaml(_ host: HostName) -> String {
        host.description.contains(":") ? "\"\(host)\"" : host.description
    }
}
