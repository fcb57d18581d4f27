import AirlockAudit
import AirlockCore
import AirlockPolicy
import AirlockRuntime
import Foundation

/// A sandbox built in advance for a profile, waiting to be claimed by a create request.
struct WarmSandbox: Sendable {
    let id: String
    let service: ServiceSandbox
    let spec: SandboxSpec
    /// The spec as the store keeps it, encoded while building rather than when claimed.
    let specJSON: String
    let area: WorkspaceArea?
    let built: Date
}

/// The warm pool: for the profiles given with `airlock serve --warm PROFILE=N`, N sandboxes are
/// kept built (namespaces, cgroups, mounts, seccomp, Landlock, a fresh empty workspace) so that
/// creating one only claims it. Only requests that change nothing but labels, TTL, idle timeout
/// and exec budget are served from it; only profiles without a proxied network are pooled (a
/// gateway is per sandbox and holds its secrets). An unclaimed sandbox is rebuilt after
/// ``maxAge`` so a claimed one is never old; its helper's wall-clock backstop allows for that
/// until it is claimed, and is then re-armed to the claim's own TTL (the backstop that holds
/// when the daemon does not).
extension Supervisor {
    static let warmMaxAge: Double = 120

    /// A pooled sandbox of `profile` whose helper now ends it `wallClock` from now, or nil
    /// (the pool is empty). One that can no longer be re-armed (it ended) is discarded.
    func claimWarm(_ profile: String, wallClock: Duration) -> WarmSandbox? {
        while let w = takeWarm(profile) {
            if w.service.rearmWallClock(wallClock) { return w }
            w.service.stop()
            Task {
                await w.service.ended()
                w.area?.remove()
            }
        }
        return nil
    }

    func takeWarm(_ profile: String) -> WarmSandbox? {
        warm.withLock { pools in
            guard var list = pools[profile], !list.isEmpty else { return nil }
            let w = list.removeFirst()
            pools[profile] = list
            return w
        }
    }

    func drainWarm() async {
        let all = warm.withLock { pools in
            defer { pools = [:] }
            return pools.values.flatMap { $0 }
        }
        for w in all { w.service.stop() }
        for w in all {
            await w.service.ended()
            w.area?.remove()
        }
    }

    /// Keeps the pool full until cancelled (one build at a time: the pool must never starve
    /// the requests it serves).
    public func keepWarm(_ targets: [String: Int]) async {
        guard !targets.isEmpty else { return }
        while !Task.isCancelled && !shuttingDown.isSet {
            var built = false
            for (profile, target) in targets.sorted(by: { $0.key < $1.key }) {
                // Rebuild what waited too long.
                let stale: [WarmSandbox] = warm.withLock { pools in
                    let list = pools[profile] ?? []
                    let old = list.filter { Date().timeIntervalSince($0.built) > Self.warmMaxAge || $0.service.hasEnded }
                    pools[profile] = list.filter { w in !old.contains { $0.id == w.id } }
                    return old
                }
                for w in stale {
                    w.service.stop()
                    await w.service.ended()
                    w.area?.remove()
                }
                let count = warm.withLock { $0[profile]?.count ?? 0 }
                guard count < target else { continue }
                if let w = await buildWarm(profile) {
                    if shuttingDown.isSet {
                        w.service.stop()
                        await w.service.ended()
                        w.area?.remove()
                        return
                    }
                    warm.withLock { $0[profile, default: []].append(w) }
                    built = true
                } else {
                    try? await Task.sleep(for: .seconds(1))  // a profile that cannot be built: do not spin
                }
            }
            if !built { try? await Task.sleep(for: .milliseconds(10)) }
        }
    }

    /// Builds one sandbox of `profile` exactly as a create without overrides would.
    func buildWarm(_ profile: String) async -> WarmSandbox? {
        guard case .success(let p) = Policy.flatten(profile, in: policy) else { return nil }
        let id = Identifiers.random("sbx-")
        let wsMode = p.filesystem.workspace ?? .ro
        guard let base = try? profileSpec(profile, workspace: wsMode) else { return nil }
        guard base.network.mode == .none, base.secrets.isEmpty else { return nil }
        var area: WorkspaceArea?
        if wsMode != .none {
            do { area = try WorkspaceArea.make(under: settings.workspacesDirectory, id: id, size: base.filesystem.tmpSize) } catch { return nil }
        }
        let ttl = base.limits.wallClock.map { Double($0.components.seconds) } ?? 3600
        guard let spec = try? daemonSpec(RunRequest(
            profile: profile, policy: policy, command: ["/bin/true"], workspace: area?.path,
            wallClock: .seconds(ttl + Self.warmMaxAge + 5), currentDirectory: "/", hostEnvironment: settings.environment))
        else {
            area?.remove()
            return nil
        }
        let launchSpec = spec
        let runner = self.runner
        let started: ServiceSandbox? = await Blocking.run {
            try? ServiceSandbox.start(launchSpec, instance: id, runner: runner)
        }
        guard let started else {
            area?.remove()
            return nil
        }
        return WarmSandbox(id: id, service: started, spec: spec, specJSON: Self.json(Self.stored(spec, audit)), area: area, built: Date())
    }
}
