/// The one error type of Airlock's modules.
///
/// A `Code` says what class of failure this is (and so which exit status the CLI
/// uses); `message` is written for the person who will read it: what failed and
/// what to do. `cause` carries the underlying error, if any. `description` never
/// includes secret values: callers must not put them in `message`.
public struct AirlockError: Error, Sendable, CustomStringConvertible, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        private init(_ raw: String) { self.raw = raw }
        public var description: String { raw }

        /// A command-line flag or argument is wrong.
        public static let usage = Code("usage")
        /// A policy file or profile is invalid.
        public static let policy = Code("policy")
        /// The request is valid but the policy refuses it.
        public static let denied = Code("denied")
        /// The sandbox could not be built (kernel refused a step, helper missing, …).
        public static let sandboxSetup = Code("sandbox-setup")
        /// An operating-system call failed outside the sandbox setup proper.
        public static let system = Code("system")
        /// Something that must never happen happened.
        public static let internalError = Code("internal")
    }

    public var code: Code
    public var message: String
    public var cause: String?

    public init(_ code: Code, _ message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}

/// An errno-carrying failure of a named system call.
public func systemError(_ call: String, _ errnoValue: Int32, _ what: String) -> AirlockError {
    AirlockError(.system, "\(what): \(call) failed", cause: errnoDescription(errnoValue))
}

#if canImport(Glibc)
import Glibc
public func errnoDescription(_ e: Int32) -> String {
    guard let s = strerror(e) else { return "errno \(e)" }
    return String(cString: s) + " (errno \(e))"
}
#else
public func errnoDescription(_ e: Int32) -> String { "errno \(e)" }
#endif
