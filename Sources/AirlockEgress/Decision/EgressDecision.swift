/// The answer of the egress policy for one connection, request or address.
public struct EgressDecision: Sendable, Equatable {
    public var allowed: Bool
    /// The rule that decided, as written in events: the allow rule's `EgressRule.label`, or
    /// `deny:` and the deny rule's label. nil when no rule decided (deny by default, a
    /// public address, a malformed request).
    public var rule: String?
    /// Why, in a short sentence ("no allow rule matches evil.com:443",
    /// "169.254.169.254 is a cloud metadata address").
    public var reason: String
    /// How to allow it, for the person reading the refusal; nil when allowed.
    public var hint: String?

    public init(allowed: Bool, rule: String? = nil, reason: String, hint: String? = nil) {
        self.allowed = allowed
        self.rule = rule
        self.reason = reason
        self.hint = hint
    }

    static func deny(_ reason: String, rule: String? = nil, hint: String? = nil) -> EgressDecision {
        EgressDecision(allowed: false, rule: rule, reason: reason, hint: hint)
    }
}
