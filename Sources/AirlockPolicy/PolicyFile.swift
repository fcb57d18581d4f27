import AirlockCore
#if canImport(Glibc)
import Glibc
#endif

/// Reading policy files, for every entry point (`airlock run`, `policy check`, `profiles`,
/// `serve --policy`): bounded in size, UTF-8, with errors that name the file.
public enum PolicyFile {
    public static let maxBytes = 1 << 20

    public static func read(_ path: String) throws(AirlockError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw AirlockError(.usage, "cannot read the policy file \(path)", cause: errnoDescription(errno))
        }
        defer { close(fd) }
        guard let data = POSIXIO.readAll(fd, upTo: maxBytes) else {
            throw AirlockError(.usage, "cannot read the policy file \(path)", cause: errnoDescription(errno))
        }
        guard data.count <= maxBytes else {
            throw AirlockError(.policy, "\(path) is larger than 1 MiB; a policy file is a few KiB of YAML")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw AirlockError(.policy, "\(path) is not valid UTF-8 text")
        }
        return text
    }

    public static func load(_ path: String) throws(AirlockError) -> PolicyDocument {
        try Policy.load(try read(path), file: path)
    }
}
