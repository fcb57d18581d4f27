import AirlockCore
import AirlockDLP
import AirlockEgress

/// The secrets of one sandbox, loaded before anything of it starts, the same way for
/// `airlock run` and `airlock serve`: the profile's bindings (`env:` / `file:`) and the
/// run's `--secret` values.
///
/// A secret bound to hosts (`inject`) is in the sandbox's environment as a placeholder that
/// only the egress gateway turns into the value, on requests to those hosts. One without
/// `inject` is set in the sandbox's environment as itself: the profile asked for it. Either
/// way its value is redacted from every event (`EventPipeline`).
public enum SandboxSecrets {
    public static func load(into spec: inout SandboxSpec, flags: [Secret], environment: [String: String]) throws(AirlockError) -> [GatewaySecret] {
        let loaded = try RunEgress.loadSecrets(spec, flags: flags, environment: environment)
        for s in loaded where s.placeholder == nil && spec.secrets.contains(where: { $0.name == s.name }) {
            spec.environment.removeAll { $0.name == s.name }
            spec.environment.append(EnvironmentVariable(s.name, s.value))
        }
        return loaded
    }

    /// The values of every secret the given bindings name that can be loaded now (an `env:`
    /// the daemon has, a readable `file:`); the others are skipped. The daemon redacts its
    /// own events and store with these, so a profile's secret pasted into a kill reason or a
    /// token name is caught as it is in that profile's sandboxes.
    public static func loadable(_ bindings: [SecretBinding], environment: [String: String]) -> [Secret] {
        var out: [Secret] = []
        for b in bindings {
            let one = SandboxSpec(profile: "", command: [], secrets: [b])
            if let loaded = try? RunEgress.loadSecrets(one, flags: [], environment: environment) {
                out += redactable(loaded)
            }
        }
        return out
    }

    /// What the event pipeline redacts.
    public static func redactable(_ loaded: [GatewaySecret]) -> [Secret] {
        loaded.map { Secret(name: $0.name, value: $0.value) }
    }
}
