import NIOCore
import NIOHTTP1

/// Why the gateway answered a request itself instead of forwarding it: a policy
/// decision (403), a spent budget (403/429), a request it cannot inspect (413/415),
/// a malformed request (400) or an upstream that could not be reached (502/504).
struct Refusal: Error, Sendable {
    var status: HTTPResponseStatus
    var reason: String
    /// The rule that decided, as written in events (nil: default deny or not a policy decision).
    var rule: String?
    /// How to allow it, for a person reading the 403.
    var hint: String?
    /// "deny" for policy refusals, "error" for failures that are nobody's decision.
    var verdict: String

    init(status: HTTPResponseStatus, reason: String, rule: String? = nil, hint: String? = nil, verdict: String? = nil) {
        self.status = status
        self.reason = reason
        self.rule = rule
        self.hint = hint
        self.verdict = verdict ?? (status == .badGateway || status == .gatewayTimeout ? "error" : "deny")
    }

    init(_ decision: EgressDecision, status: HTTPResponseStatus = .forbidden) {
        self.init(status: status, reason: decision.reason, rule: decision.rule, hint: decision.hint)
    }

    /// The plain-text body: what was refused, why, and what to do about it.
    func body(destination: String) -> String {
        var s = "airlock: the egress gateway refused this request\n"
        s += "  destination: \(destination)\n"
        s += "  reason: \(reason)\n"
        s += "  rule: \(rule ?? (verdict == "deny" ? "(no allow rule: deny by default)" : "-"))\n"
        if let hint { s += "  to allow it: \(hint)\n" }
        return s
    }

    func response(destination: String, allocator: ByteBufferAllocator) -> (HTTPResponseHead, ByteBuffer) {
        let text = body(destination: destination)
        var buffer = allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(buffer.readableBytes))
        headers.add(name: "Connection", value: "close")
        headers.add(name: "X-Airlock-Decision", value: verdict)
        if let rule { headers.add(name: "X-Airlock-Rule", value: Self.headerSafe(rule)) }
        return (HTTPResponseHead(version: .http1_1, status: status, headers: headers), buffer)
    }

    /// Header values may not carry control characters; rules are ASCII anyway.
    private static func headerSafe(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7f }))
    }
}
