extension EgressPolicy {
    /// The request gate, for a visible HTTP request (plain HTTP, or inspected HTTPS): deny
    /// rules, then allow rules, with their methods and paths. `path` is the request
    /// target's path; a query or fragment in it is ignored. An asterisk-form target (`*`,
    /// for `OPTIONS *`) matches only rules without paths.
    public func decide(host: HostName, port: Int, method rawMethod: String, path rawPath: String) -> EgressDecision {
        let method = Self.upperASCII(rawMethod)
        guard CompiledRule.isMethod(method) else {
            return .deny("'\(HostName.printable(rawMethod))' is not an HTTP method")
        }
        let rules = compiled.rules
        // The ids of the rules matching host and port, in rule order, on the stack.
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: max(1, rules.count)) { buffer in
            var count = 0
            compiled.index.forEachMatch(host) { id, viaEmbedding in
                let r = rules[id]
                guard r.matches(port: port), r.isDeny || !viaEmbedding else { return }
                if !buffer[..<count].contains(id), count < buffer.count {
                    buffer[count] = id
                    count += 1
                }
            }
            var ids = UnsafeMutableBufferPointer(rebasing: buffer[..<count])
            ids.sort()
            return decide(ids: UnsafeBufferPointer(ids), host: host, port: port, method: method, path: rawPath)
        }
    }

    private func decide(ids: UnsafeBufferPointer<Int>, host: HostName, port: Int, method: String, path rawPath: String)
        -> EgressDecision
    {
        let rules = compiled.rules
        guard ids.contains(where: { !rules[$0].isDeny || !rules[$0].isConstrained }) else {
            return defaultDeny(host: host, port: port)
        }
        // The path is normalised only when a rule has paths.
        var normalized: Result<RequestPath, PathProblem>? = nil
        func path() -> Result<RequestPath, PathProblem> {
            if let normalized { return normalized }
            let p = rawPath == "*" ? .failure(PathProblem("'*' names no path")) : RequestPath.normalize(rawPath)
            normalized = p
            return p
        }
        var denyVariants: [RequestPath]? = nil

        for id in ids where rules[id].isDeny {
            let r = rules[id]
            if let methods = r.methods, !methods.contains(method) { continue }
            if let paths = r.paths {
                switch path() {
                case .failure(let problem):
                    let shown = HostName.printable(rawPath)
                    return .deny(
                        "\(method) \(shown) on \(host): \(problem.message), and the deny rule \(r.label.dropFirst(5)) restricts paths",
                        rule: r.label, hint: "send the path in its plain form")
                case .success(let p):
                    let variants = denyVariants ?? p.denyVariants
                    denyVariants = variants
                    if !paths.contains(where: { $0.matchesFolded(variants) }) { continue }
                }
            }
            return .deny(
                "\(method) \(HostName.printable(rawPath)) on \(host.uriHost):\(port) matches the deny rule \(r.label.dropFirst(5))",
                rule: r.label, hint: "deny rules win over allow rules; remove the rule from network.deny to allow it")
        }

        var pathProblem: PathProblem? = nil
        for id in ids where !rules[id].isDeny {
            let r = rules[id]
            if let methods = r.methods, !methods.contains(method) { continue }
            if let paths = r.paths {
                switch path() {
                case .failure(let problem):
                    pathProblem = problem
                    continue
                case .success(let p):
                    if !paths.contains(where: { $0.matches(p) }) { continue }
                }
            }
            return r.allowed
        }
        let allowing = ids.filter { !rules[$0].isDeny }
        if allowing.isEmpty { return defaultDeny(host: host, port: port) }
        if let pathProblem {
            return .deny(
                "\(method) \(HostName.printable(rawPath)) on \(host): \(pathProblem.message)",
                hint: "send the path in its plain form; the rules for \(host) allow only certain paths")
        }
        let pathText = (try? path().get()).map { HostName.printable($0.text) } ?? HostName.printable(rawPath)
        return .deny(
            "\(method) \(pathText) is not allowed on \(host.uriHost):\(port); the rules for it: "
                + allowing.map { rules[$0].label }.joined(separator: "; "),
            hint:
                "add the method and path to a rule for \(host) in network.allow, e.g. "
                + "`- {host: \(Self.yaml(host)), methods: [\(method)], paths: [\(pathText)]}`")
    }

    static func upperASCII(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) else { return s }
        return String(decoding: s.utf8.map { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") ? $0 - 32 : $0 }, as: UTF8.self)
    }
}
