import AirlockCore
import AirlockDLP
import Foundation
import NIOHTTP1

/// A secret as the gateway holds it: the real value, the placeholder the sandbox sees in
/// its place, and where (if anywhere) the real value may be sent.
public struct GatewaySecret: Sendable {
    public var name: String
    public var value: String
    public var placeholder: String?
    public var inject: SecretInjection?

    public init(name: String, value: String, placeholder: String? = nil, inject: SecretInjection? = nil) {
        self.name = name
        self.value = value
        self.placeholder = placeholder
        self.inject = inject
    }
}

/// Credential injection (docs/egress.md, "Credentials"). On a request to a secret's bound
/// host inside an inspected TLS tunnel (never over plain HTTP), the placeholder in the
/// bound header is replaced by the real value; when the header is missing it is added from
/// the binding's format. A header the sandbox set to
/// something else is left alone: it chose its own credentials. A placeholder sent
/// anywhere else stays a placeholder, and the event says so.
struct CredentialInjector: Sendable {
    struct Binding: Sendable {
        var name: String
        var value: String
        var placeholder: String
        var host: HostPattern
        var header: String
        var format: String
    }
    let bindings: [Binding]
    /// Every placeholder, to notice those sent to a host they are not bound to.
    let placeholders: [(name: String, placeholder: String)]

    init(_ secrets: [GatewaySecret]) throws(AirlockError) {
        var b: [Binding] = []
        var p: [(String, String)] = []
        for s in secrets {
            guard let placeholder = s.placeholder else { continue }
            p.append((s.name, placeholder))
            if let i = s.inject {
                let host: HostPattern
                do { host = try HostPattern(i.host) } catch {
                    throw AirlockError(.policy, "secret \(s.name): inject.host \(i.host): \(error.message)")
                }
                b.append(Binding(name: s.name, value: s.value, placeholder: placeholder, host: host, header: i.header, format: i.format))
            }
        }
        bindings = b
        placeholders = p
    }

    /// Injects into `headers` for `host`; returns the names injected, and the names of
    /// placeholders that appear in `visible` (URL, headers, body) but are not bound to `host`.
    func apply(host: HostName, encrypted: Bool, headers: inout HTTPHeaders, visible: (String) -> Bool) -> (injected: [String], stray: [String]) {
        var injected: [String] = []
        var bound: Set<String> = []
        for b in bindings where encrypted && b.host.matches(host) {
            bound.insert(b.name)
            let current = headers[b.header]
            if current.isEmpty {
                headers.add(name: b.header, value: b.format.replacingFirst("{}", with: b.value))
                injected.append(b.name)
            } else if current.contains(where: { $0.contains(b.placeholder) }) {
                let replaced = current.map { $0.replacingAll(b.placeholder, with: b.value) }
                headers.remove(name: b.header)
                for v in replaced { headers.add(name: b.header, value: v) }
                injected.append(b.name)
            }
        }
        let stray = placeholders.filter { !bound.contains($0.name) && visible($0.placeholder) }.map(\.name)
        return (injected, stray)
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let r = range(of: target) else { return self }
        return replacingCharacters(in: r, with: replacement)
    }

    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        out += rest
        return out
    }
}
