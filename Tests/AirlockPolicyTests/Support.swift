import AirlockCore
import Testing

@testable import AirlockPolicy

/// Every diagnostic of `yaml`, read as `policy.yaml`.
func diagnostics(_ yaml: String) -> [PolicyDiagnostic] {
    Policy.check(yaml, file: "policy.yaml")
}

/// The document of a policy that must be valid; records an issue (and returns nil) otherwise.
func document(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> PolicyDocument? {
    let found = Policy.check(yaml, file: "policy.yaml")
    #expect(found.isEmpty, "unexpected diagnostics:\n\(found.map(\.description).joined(separator: "\n"))", sourceLocation: sourceLocation)
    guard found.isEmpty, case .success(let doc) = Policy.parse(yaml, file: "policy.yaml") else { return nil }
    return doc
}

/// The flattened profile `name` of a valid policy.
func flat(_ name: String, _ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> Profile? {
    guard let doc = document(yaml, sourceLocation: sourceLocation) else { return nil }
    switch Policy.flatten(name, in: doc) {
    case .success(let p): return p
    case .failure(let f):
        Issue.record("flatten failed: \(f)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The error a request is refused with, or nil when it resolves.
func refusal(_ r: RunRequest) -> AirlockError? {
    do {
        _ = try Resolver.resolve(r)
        return nil
    } catch {
        return error
    }
}

let GiB: UInt64 = 1 << 30
let MiB: UInt64 = 1 << 20
