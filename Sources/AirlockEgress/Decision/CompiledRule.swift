import AirlockCore

/// One validated allow or deny rule, in the form the decisions read (a class: decisions
/// read it by reference, without copying its fields).
final class CompiledRule: Sendable {
    let isDeny: Bool
    /// As reported in decisions: the rule's label, prefixed `deny:` for a deny rule.
    let label: String
    let host: HostPattern
    /// nil: every port (a deny rule without ports).
    let ports: [Int]?
    let methods: Set<String>?
    let paths: [PathPattern]?
    /// Method or path constraints: decidable only when the request is visible.
    let isConstrained: Bool
    /// The decision when this allow rule decides, built once.
    let allowed: EgressDecision

    /// Validates `rule`, the `index`th entry of `network.allow` or `network.deny`.
    init(_ rule: EgressRule, deny: Bool, index: Int) throws(AirlockError) {
        let place = "network.\(deny ? "deny" : "allow")[\(index)] (\(rule.label))"
        func fail(_ problem: String) -> AirlockError { AirlockError(.policy, "\(place): \(problem)") }

        do { host = try HostPattern(rule.host) } catch { throw fail(error.message) }

        if let ports = rule.ports {
            guard !ports.isEmpty else {
                throw fail("'ports' is empty, which matches nothing; leave it out for \(deny ? "every port" : "80 and 443")")
            }
            if let bad = ports.first(where: { !(1...65535).contains($0) }) {
                throw fail("port \(bad) is not a port number (1 to 65535)")
            }
            self.ports = Array(Set(ports)).sorted()
        } else {
            self.ports = deny ? nil : EgressRule.defaultPorts
        }

        if let methods = rule.methods {
            guard !methods.isEmpty else { throw fail("'methods' is empty, which matches nothing; leave it out for any method") }
            for m in methods where !CompiledRule.isMethod(m) {
                throw fail(
                    "'\(HostName.printable(m))' is not an HTTP method; write methods in upper case (GET, POST, …)")
            }
            self.methods = Set(methods)
        } else {
            self.methods = nil
        }

        if let paths = rule.paths {
            guard !paths.isEmpty else { throw fail("'paths' is empty, which matches nothing; leave it out for any path") }
            var compiled: [PathPattern] = []
            for p in paths {
                do { compiled.append(try PathPattern(p)) } catch {
                    throw fail("path '\(HostName.printable(p))': \(error.message)")
                }
            }
            self.paths = compiled
        } else {
            self.paths = nil
        }

        let label = deny ? "deny:" + rule.label : rule.label
        isDeny = deny
        self.label = label
        isConstrained = rule.methods != nil || rule.paths != nil
        allowed = EgressDecision(allowed: true, rule: label, reason: "allowed by rule \(rule.label)")
    }

    @inline(__always)
    func matches(port: Int) -> Bool {
        guard let ports else { return true }
        return ports.contains(port)
    }

    /// An HTTP method token (RFC 9110) without lower-case letters.
    static func isMethod(_ m: String) -> Bool {
        !m.isEmpty && m.utf8.count <= 32
            && m.utf8.allSatisfy { c in
                (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || IPAddress.isDigit(c)
                    || "!#$%&'*+-.^_`|~".utf8.contains(c)
            }
    }
}
