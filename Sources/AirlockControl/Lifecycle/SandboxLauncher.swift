import AirlockAudit
import AirlockCore
import AirlockDLP
import AirlockEgress
import AirlockRuntime
import Logging

/// DESIGN layer 7: the one lifecycle of a sandbox, for a one-shot `airlock run` and a
/// long-lived `airlock serve` sandbox alike. Both entry points resolve and validate their
/// spec (the policy layer), then hand it here, and nothing above this edits it:
///
/// 1. the spec is validated for the runtime;
/// 2. its secrets are loaded (`SandboxSecrets`: bound ones as placeholders, the others set
///    as themselves);
/// 3. its event pipeline is derived from the entry point's (identity stamped, its secrets
///    and every credential shape redacted, fanned out to the same sinks);
/// 4. its services start on its airlock directory (the egress gateway today; the tool
///    broker and the model gateway plug in beside it);
/// 5. the runtime starts it, one-shot (`run`) or as a service (`start`);
/// 6. `teardown` stops the services in reverse; a process that died before its teardown
///    leaves airlock directories the next launch reaps (`RunEgress.reapLeftovers`).
///
/// Call sites: `RunCommand.run` (one-shot) and `Supervisor.create` (service).
public final class SandboxLauncher: @unchecked Sendable {
    public let instance: String
    public let spec: SandboxSpec
    /// This sandbox's events. Everything about it is recorded through this.
    public let events: EventPipeline
    public let secrets: [GatewaySecret]
    public private(set) var egress: RunEgress?
    private var tornDown = false

    /// Steps 1–4. On failure nothing of the sandbox is left.
    public init(
        spec: SandboxSpec, instance: String, identity: Identity, secretFlags: [Secret] = [], events base: EventPipeline,
        environment: [String: String], service: Bool = false
    ) throws(AirlockError) {
        var spec = spec
        try SandboxRunner.validate(spec, service: service)
        secrets = try SandboxSecrets.load(into: &spec, flags: secretFlags, environment: environment)
        var id = identity
        id.instance = instance
        events = base.sandbox(identity: id, secrets: SandboxSecrets.redactable(secrets))
        self.instance = instance
        self.spec = spec
        if spec.network.mode == .proxied {
            egress = try RunEgress(spec: spec, instance: instance, secrets: secrets, sink: events, environment: environment)
        }
    }

    /// The airlock directory bound at /run/airlock, when the sandbox has services.
    public var airlockDirectory: String? { egress?.directory }

    /// A runner whose events go through this sandbox's pipeline.
    public func runner(_ base: SandboxRunner) -> SandboxRunner {
        var r = base
        r.events = events
        return r
    }

    /// Step 5, one-shot: runs the spec's command to its end, then tears down.
    public func run(_ base: SandboxRunner, marks: [(String, UInt64)] = []) throws(AirlockError) -> RunOutcome {
        defer { teardown() }
        return try runner(base).run(spec, instance: instance, marks: marks, airlockDirectory: airlockDirectory)
    }

    /// Step 5, long-lived: returns once PID 1 takes execs. The caller tears down when it ends.
    public func start(_ base: SandboxRunner) throws(AirlockError) -> ServiceSandbox {
        do { return try ServiceSandbox.start(spec, instance: instance, runner: runner(base), airlockDirectory: airlockDirectory) } catch {
            teardown()
            throw error
        }
    }

    /// Step 6: the services, in reverse order of their start (their events are delivered first).
    public func teardown() {
        guard !tornDown else { return }
        tornDown = true
        egress?.stop()
    }

    deinit { teardown() }
}
