import AirlockCore
import Foundation

/// An RFC 9457 problem: what went wrong, for a person to act on.
public struct Problem: Error, Sendable, Equatable {
    public struct FieldError: Codable, Sendable, Equatable {
        public var field: String
        public var message: String
    }

    public var status: Int
    /// The last part of the `type` URI (`forbidden`, `validation`, …).
    public var slug: String
    public var title: String
    public var detail: String
    public var errors: [FieldError]

    public init(_ status: Int, _ slug: String, _ title: String, _ detail: String, errors: [FieldError] = []) {
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors
    }

    public static let typeBase = "https://airlock.dev/problems/"

    public static func badRequest(_ d: String) -> Problem { Problem(400, "bad-request", "Bad Request", d) }
    public static func validation(_ d: String, errors: [FieldError] = []) -> Problem {
        Problem(422, "validation", "Unprocessable Content", d, errors: errors)
    }
    public static func field(_ name: String, _ message: String) -> Problem {
        Problem(422, "validation", "Unprocessable Content", "\(name): \(message)", errors: [FieldError(field: name, message: message)])
    }
    public static func unauthorized(_ d: String) -> Problem { Problem(401, "unauthorized", "Unauthorized", d) }
    public static func forbidden(_ d: String) -> Problem { Problem(403, "forbidden", "Forbidden", d) }
    public static func notFound(_ d: String) -> Problem { Problem(404, "not-found", "Not Found", d) }
    public static func conflict(_ d: String) -> Problem { Problem(409, "conflict", "Conflict", d) }
    public static func tooLarge(_ d: String) -> Problem { Problem(413, "payload-too-large", "Content Too Large", d) }
    public static func unsupportedMedia(_ d: String) -> Problem { Problem(415, "unsupported-media-type", "Unsupported Media Type", d) }
    public static func tooMany(_ d: String) -> Problem { Problem(429, "too-many-requests", "Too Many Requests", d) }
    public static func unavailable(_ d: String) -> Problem { Problem(503, "unavailable", "Service Unavailable", d) }
    public static func internalError(_ d: String) -> Problem { Problem(500, "internal", "Internal Server Error", d) }

    /// An error of a lower layer, as the API reports it.
    public static func from(_ e: AirlockError) -> Problem {
        let text = e.description
        switch e.code {
        case .usage, .policy: return .validation(text)
        case .denied: return .forbidden(text)
        default: return Problem(500, "sandbox-failure", "Sandbox Failure", text)
        }
    }

    public var json: [UInt8] {
        var o: [String: Any] = ["type": Self.typeBase + slug, "title": title, "status": status, "detail": detail]
        if !errors.isEmpty { o["errors"] = errors.map { ["field": $0.field, "message": $0.message] } }
        return JSONResponse.encode(o)
    }
}
