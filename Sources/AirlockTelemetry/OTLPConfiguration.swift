import AirlockCore

/// Where and how `OTLPTraceSink` exports, read from the standard OpenTelemetry
/// environment variables (docs/telemetry.md lists them). Every field names the
/// variable that sets it.
public struct OTLPTraceConfiguration: Sendable {
    public enum WireProtocol: String, Sendable {
        case httpProtobuf = "http/protobuf"
        case httpJSON = "http/json"
    }

    /// `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `airlock`.
    public var serviceName: String = "airlock"
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,key=value`, values percent-decoded.
    public var resourceAttributes: [String: String] = [:]
    /// The full traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended.
    public var endpoint: String
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`.
    public var headers: [(String, String)] = []
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds; default 10 s.
    public var timeout: Duration = .seconds(10)
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`; default `http/protobuf`.
    public var wireProtocol: WireProtocol = .httpProtobuf
    /// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else `OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip` or `none`.
    public var gzip: Bool = false

    public init(endpoint: String) {
        self.endpoint = endpoint
    }

    /// The configuration the environment asks for, or nil when trace export is not
    /// configured: no endpoint is set, `OTEL_SDK_DISABLED=true`, or
    /// `OTEL_TRACES_EXPORTER=none`. Throws a usage error for a value this exporter
    /// cannot honour, naming the variable.
    public static func fromEnvironment(_ env: [String: String]) throws(AirlockError) -> OTLPTraceConfiguration? {
        func value(_ name: String) -> String? {
            guard let v = env[name]?.trimmingSpaces, !v.isEmpty else { return nil }
            return v
        }
        // The signal-specific variable wins over the shared one.
        func pick(_ suffix: String) -> (name: String, value: String)? {
            for name in ["OTEL_EXPORTER_OTLP_TRACES_\(suffix)", "OTEL_EXPORTER_OTLP_\(suffix)"] {
                if let v = value(name) { return (name, v) }
            }
            return nil
        }

        if value("OTEL_SDK_DISABLED")?.lowercased() == "true" { return nil }
        if let exporters = value("OTEL_TRACES_EXPORTER") {
            let names = exporters.split(separator: ",").map { $0.trimmingSpaces.lowercased() }
            if names == ["none"] { return nil }
            guard names == ["otlp"] else {
                throw AirlockError(
                    .usage,
                    "OTEL_TRACES_EXPORTER=\(exporters) is not supported: Airlock exports traces with otlp only (or none to disable)")
            }
        }

        let endpoint: String
        if let specific = value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            endpoint = specific
        } else if let base = value("OTEL_EXPORTER_OTLP_ENDPOINT") {
            endpoint = base.hasSuffix("/") ? base + "v1/traces" : base + "/v1/traces"
        } else {
            return nil
        }
        guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
            throw AirlockError(.usage, "the OTLP endpoint \(endpoint) must start with http:// or https://")
        }
        var config = OTLPTraceConfiguration(endpoint: endpoint)

        if let (name, proto) = pick("PROTOCOL") {
            guard let wire = WireProtocol(rawValue: proto) else {
                let hint = proto == "grpc" ? "OTLP/gRPC is not built into Airlock; " : ""
                throw AirlockError(.usage, "\(name)=\(proto) is not supported: \(hint)use http/protobuf or http/json")
            }
            config.wireProtocol = wire
        }
        if let (name, raw) = pick("HEADERS") {
            config.headers = try parsePairs(raw, variable: name)
        }
        if let (name, raw) = pick("TIMEOUT") {
            guard let ms = Int64(raw), ms > 0 else {
                throw AirlockError(.usage, "\(name)=\(raw) is not a timeout: give a positive number of milliseconds")
            }
            config.timeout = .milliseconds(ms)
        }
        if let (name, raw) = pick("COMPRESSION") {
            switch raw.lowercased() {
            case "gzip": config.gzip = true
            case "none": config.gzip = false
            default: throw AirlockError(.usage, "\(name)=\(raw) is not supported: use gzip or none")
            }
        }
        if let raw = value("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in try parsePairs(raw, variable: "OTEL_RESOURCE_ATTRIBUTES") {
                config.resourceAttributes[k] = v
            }
        }
        if let name = value("OTEL_SERVICE_NAME") {
            config.serviceName = name
        } else if let name = config.resourceAttributes["service.name"] {
            config.serviceName = name
        }
        return config
    }

    /// Parses the W3C-baggage-like `key=value,key=value` list the OTel variables use.
    /// Values are percent-decoded. The error names the variable but never echoes its
    /// value: headers carry credentials.
    static func parsePairs(_ raw: String, variable: String) throws(AirlockError) -> [(String, String)] {
        var out: [(String, String)] = []
        for item in raw.split(separator: ",", omittingEmptySubsequences: true) {
            let text = item.trimmingSpaces
            if text.isEmpty { continue }
            guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                throw AirlockError(.usage, "\(variable) must be a comma-separated list of key=value pairs")
            }
            let key = String(text[..<eq]).trimmingSpaces
            let rawValue = String(text[text.index(after: eq)...]).trimmingSpaces
            guard let decoded = percentDecoded(rawValue) else {
                throw AirlockError(.usage, "\(variable) has a malformed percent-encoding for the key \(key)")
            }
            out.append((key, decoded))
        }
        return out
    }

    static func percentDecoded(_ s: String) -> String? {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            guard b == UInt8(ascii: "%") else {
                bytes.append(b)
                continue
            }
            guard it.count >= 2, let hi = hexValue(it.removeFirst()), let lo = hexValue(it.removeFirst()) else { return nil }
            bytes.append(hi << 4 | lo)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        let scalars = String(self).unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }),
            let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })
        else { return "" }
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}
