import AirlockCore
import Synchronization

/// One sandbox's byte and request budgets (`network.budgets`), shared by all of its
/// connections. Requests are counted in a sliding 60-second window; bytes for the
/// whole run. Once a byte budget is spent, new requests are refused and transfers in
/// flight are cut: the budget is a ceiling, not a hint.
final class EgressBudget: Sendable {
    let limits: EgressBudgets
    private struct State {
        var bytesOut: UInt64 = 0
        var bytesIn: UInt64 = 0
        /// Monotonic times of the requests admitted in the last minute, oldest first.
        var recent: [UInt64] = []
        var head = 0
    }
    private let state = Mutex(State())
    static let window: UInt64 = 60_000_000_000

    init(_ limits: EgressBudgets) { self.limits = limits }

    /// Admits one more request or tunnel, or says which budget is spent.
    func admitRequest(now: UInt64 = Clock.monotonicNanos()) -> Refusal? {
        state.withLock { s in
            if let max = limits.bytesOut, s.bytesOut >= max { return Self.spent("bytes_out", Units.formatBytes(max)) }
            if let max = limits.bytesIn, s.bytesIn >= max { return Self.spent("bytes_in", Units.formatBytes(max)) }
            guard let rpm = limits.requestsPerMinute else { return nil }
            while s.head < s.recent.count, now &- s.recent[s.head] >= Self.window { s.head += 1 }
            if s.head > 1024, s.head * 2 > s.recent.count {
                s.recent.removeFirst(s.head)
                s.head = 0
            }
            if s.recent.count - s.head >= rpm {
                return Refusal(
                    status: .tooManyRequests, reason: "request budget spent: \(rpm) requests per minute",
                    rule: "budgets.requests_per_minute",
                    hint: "wait and retry, or raise network.budgets.requests_per_minute in the profile")
            }
            s.recent.append(now)
            return nil
        }
    }

    /// Counts bytes sent upstream; false once the outbound budget is exceeded.
    func addOut(_ n: Int) -> Bool {
        state.withLock { s in
            s.bytesOut &+= UInt64(n)
            return limits.bytesOut.map { s.bytesOut <= $0 } ?? true
        }
    }

    /// Counts bytes received from upstream; false once the inbound budget is exceeded.
    func addIn(_ n: Int) -> Bool {
        state.withLock { s in
            s.bytesIn &+= UInt64(n)
            return limits.bytesIn.map { s.bytesIn <= $0 } ?? true
        }
    }

    var totals: (out: UInt64, in: UInt64) { state.withLock { ($0.bytesOut, $0.bytesIn) } }

    private static func spent(_ field: String, _ amount: String) -> Refusal {
        Refusal(
            status: .forbidden, reason: "byte budget spent: \(field) \(amount) used up for this sandbox",
            rule: "budgets.\(field)", hint: "raise network.budgets.\(field) in the profile, or start a new sandbox")
    }
}
