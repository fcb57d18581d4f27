import Foundation

/// Runs the Python helpers in Tests/Tools with the `python3` found on PATH.
enum PythonTool {
    static let toolsDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tools")

    static func process(_ script: String, _ arguments: [String]) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", toolsDirectory.appendingPathComponent(script).path] + arguments
        return process
    }

    /// Runs `script` to completion with `input` on stdin; returns stdout, or throws
    /// with stderr when it fails.
    static func run(_ script: String, _ arguments: [String] = [], input: String) throws -> Data {
        let process = process(script, arguments)
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ToolError(message: "\(script) failed: " + String(decoding: err, as: UTF8.self))
        }
        return out
    }
}

struct ToolError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A real OTLP/HTTP receiver (Tests/Tools/otlp_receiver.py) on loopback, which
/// records each span it receives as one JSON line. Stopped by `stop()`.
final class OTLPReceiver {
    let port: Int
    let output: URL
    private let process: Process

    init() throws {
        output = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-\(UUID().uuidString).jsonl")
        process = PythonTool.process("otlp_receiver.py", ["--out", output.path])
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        // The first line is "PORT <n>", printed once the socket is listening.
        var line = Data()
        while true {
            let byte = stdout.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw ToolError(message: "the OTLP receiver did not start (is opentelemetry-proto installed?): \(text)")
        }
        self.port = port
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// The spans received so far, one dictionary per span.
    func spans() throws -> [[String: Any]] {
        guard let data = FileManager.default.contents(atPath: output.path) else { return [] }
        return try String(decoding: data, as: UTF8.self).split(separator: "\n").map {
            guard let object = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] else {
                throw ToolError(message: "the receiver wrote a line that is not an object: \($0)")
            }
            return object
        }
    }

    func stop() {
        // SIGKILL: the test runner blocks SIGTERM and the child inherits that mask.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: output)
    }
}
