import AirlockCore
import Testing

@testable import AirlockAudit

#if canImport(Glibc)
    import Glibc
#endif

/// A fresh directory under /tmp, removed by `cleanup()`.
struct TempDir {
    let path: String

    init(_ tag: String = "audit") {
        var template = Array("/tmp/airlock-\(tag)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil)
        path = String(cString: p!)
    }

    var log: String { path + "/log" }

    func cleanup() { removeTree(path) }
}

func event(_ i: Int, instance: String = "sbx-test", type: String = "process.started", extra: [(String, JSONValue)] = []) -> AuditEvent {
    AuditEvent(type: type, identity: Identity(instance: instance), attributes: [("n", .int(Int64(i)))] + extra)
}

/// Opens a log with small thresholds so tests exercise checkpoints and rotation.
func openLog(_ dir: String, checkpointEvery: Int = 10, maxSegmentBytes: Int = 64 << 20, configure: (inout AuditLog.Options) -> Void = { _ in })
    throws -> AuditLog
{
    var o = AuditLog.Options(directory: dir)
    o.checkpointEvery = checkpointEvery
    o.maxSegmentBytes = maxSegmentBytes
    configure(&o)
    return try AuditLog.open(o)
}

/// Writes `n` events and closes the log.
func writeLog(_ dir: String, events n: Int, checkpointEvery: Int = 10, maxSegmentBytes: Int = 64 << 20) throws {
    let log = try openLog(dir, checkpointEvery: checkpointEvery, maxSegmentBytes: maxSegmentBytes)
    for i in 0..<n { try log.appendAndWait(event(i)) }
    try log.close()
}

func verify(
    _ dir: String, keys: [AuditPublicKey] = [], anchors: [(UInt64, Digest32)] = [], witnessed: [(source: String, head: SignedHead)] = []
) throws -> AuditVerifier.Report {
    var v = AuditVerifier(directory: dir)
    v.trustedKeys = keys
    v.anchors = anchors
    v.witnessedHeads = witnessed
    return try v.verify()
}

func readFile(_ path: String) -> [UInt8] { LogFiles.read(path) ?? [] }

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0o600)
    precondition(fd >= 0)
    POSIXIO.writeAll(fd, bytes)
    close(fd)
}

/// A segment's lines (without newlines), for tampering.
func lines(_ path: String) -> [[UInt8]] {
    readFile(path).split(separator: 0x0A).map(Array.init)
}

func writeLines(_ path: String, _ lines: [[UInt8]]) {
    writeFile(path, lines.flatMap { $0 + [0x0A] })
}

func segments(_ dir: String) -> [String] { (try? LogFiles.segments(in: dir)) ?? [] }

func records(_ dir: String) -> [LogRecord] {
    segments(dir).flatMap { name in
        lines(dir + "/" + name).compactMap { try? LogRecord.parse($0[...]).get() }
    }
}

func eventJSON(_ r: LogRecord) -> JSONValue { (try? JSONParser.parse(r.event)) ?? .null }

extension String {
    func contains(_ s: String) -> Bool { self.firstRange(of: s) != nil }
}

/// Removes a directory tree without following symlinks.
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT == S_IFDIR, let d = opendir(path) {
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(d)
        for n in names { removeTree(path + "/" + n) }
        rmdir(path)
    } else {
        unlink(path)
    }
}
