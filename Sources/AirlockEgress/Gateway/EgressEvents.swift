import AirlockEvents
import AirlockCore
import Dispatch

/// Hands the gateway's events to the run's sink off the event loop: the audit log
/// acknowledges an event only once it is on disk, and a proxy must not wait for a disk.
/// Events keep their order; ``drain()`` waits until every one is delivered.
final class EgressEvents: Sendable {
    let instance: String
    private let sink: any EventSink
    private let queue = DispatchQueue(label: "airlock.egress.events")

    init(instance: String, sink: any EventSink) {
        self.instance = instance
        self.sink = sink
    }

    func emit(_ type: String, decision: Decision? = nil, _ attributes: [(String, JSONValue)]) {
        let event = AuditEvent(type: type, identity: Identity(instance: instance), decision: decision, attributes: attributes)
        let sink = self.sink
        queue.async { sink.emit(event) }
    }

    func drain() { queue.sync {} }
}

/// What one request or tunnel did, recorded when it ends (or is refused).
struct EgressRecord {
    /// `http` (plain, forward proxy), `https` (inspected, inside a tunnel) or `connect` (a tunnel).
    var kind: String
    var host: String
    var port: Int
    var address: String?
    var method: String?
    var path: String?
    var status: Int?
    var bytesOut = 0
    var bytesIn = 0
    var started = Clock.monotonicNanos()
    var sni: String?
    var findings: [String] = []

    func attributes(ended: UInt64 = Clock.monotonicNanos()) -> [(String, JSONValue)] {
        var a: [(String, JSONValue)] = [
            ("airlock.egress.kind", .string(kind)), ("server.address", .string(host)), ("server.port", .int(Int64(port))),
        ]
        if let address { a.append(("network.peer.address", .string(address))) }
        if let method { a.append(("http.request.method", .string(method))) }
        if let path { a.append(("url.path", .string(path))) }
        if let sni { a.append(("tls.client.server_name", .string(sni))) }
        if let status { a.append(("http.response.status_code", .int(Int64(status)))) }
        if !findings.isEmpty { a.append(("airlock.dlp.findings", .array(findings.map { .string($0) }))) }
        a.append(("airlock.egress.bytes_out", .int(Int64(bytesOut))))
        a.append(("airlock.egress.bytes_in", .int(Int64(bytesIn))))
        a.append(("airlock.duration_us", .int(Int64((ended &- started) / 1000))))
        return a
    }

    var destination: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(h):\(port)"
    }
}
