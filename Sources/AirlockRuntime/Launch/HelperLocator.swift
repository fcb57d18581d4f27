#if canImport(Glibc)
import Glibc
#endif
import AirlockCore

/// Finds the `airlock-sandbox` helper: `$AIRLOCK_SANDBOX_HELPER`, else next to the
/// running executable (`swift build` puts them side by side), else `/usr/libexec/airlock/`.
public enum HelperLocator {
    public static let name = "airlock-sandbox"

    public static func locate(environment: [String: String]) throws(AirlockError) -> String {
        var candidates: [String] = []
        if let explicit = environment["AIRLOCK_SANDBOX_HELPER"], !explicit.isEmpty { candidates.append(explicit) }
        if let dir = executableDirectory() { candidates.append(dir + "/" + name) }
        candidates.append("/usr/libexec/airlock/" + name)
        for c in candidates where access(c, X_OK) == 0 { return c }
        throw AirlockError(
            .sandboxSetup,
            "the sandbox helper '\(name)' was not found (looked in: \(candidates.joined(separator: ", "))); build it with `swift build` or set AIRLOCK_SANDBOX_HELPER to its path")
    }

    static func executableDirectory() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let path = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return nil }
        return String(path[..<slash])
    }
}
