import Crypto
import Foundation
import SwiftASN1
import X509

/// A throwaway certificate authority and one server certificate for the egress tests'
/// HTTPS upstream: `ca.pem`, `server.pem` and `server-key.pem` in `directory`.
public enum TestPKI {
    public struct Files: Sendable {
        public var ca: String
        public var certificate: String
        public var key: String
    }

    /// A server certificate for `names` (DNS names) and 127.0.0.1, signed by a new CA.
    public static func make(in directory: String, names: [String]) throws -> Files {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Airlock test upstream CA") }
        let now = Date()
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 86_400, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: .init(caKey))
        let key = P256.Signing.PrivateKey()
        var sans: [GeneralName] = names.map { .dnsName($0) }
        sans.append(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])))
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 86_400, issuer: caName,
            subject: try DistinguishedName { CommonName(names.first ?? "localhost") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(sans)
            },
            issuerPrivateKey: .init(caKey))
        let files = Files(ca: directory + "/ca.pem", certificate: directory + "/server.pem", key: directory + "/server-key.pem")
        try (try ca.serializeAsPEM().pemString + "\n").write(toFile: files.ca, atomically: true, encoding: .utf8)
        try (try leaf.serializeAsPEM().pemString + "\n").write(toFile: files.certificate, atomically: true, encoding: .utf8)
        try (key.pemRepresentation + "\n").write(toFile: files.key, atomically: true, encoding: .utf8)
        return files
    }
}

/// The upstream of the egress tests (Tests/Tools/upstream.py): HTTP and HTTPS servers on
/// 127.0.0.1 that echo each request and log it to a JSON-lines file.
public final class TestUpstream: @unchecked Sendable {
    public let httpPort: Int
    public let httpsPort: Int?
    public let log: String
    private let process: Process
    private let stdin: Pipe

    public init(directory: String, tls: TestPKI.Files? = nil) throws {
        log = directory + "/upstream.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tools/upstream.py").path
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        var args = [script, log]
        if let tls { args += ["--cert", tls.certificate, "--key", tls.key] }
        process.arguments = args
        stdin = Pipe()
        let out = Pipe()
        process.standardInput = stdin
        process.standardOutput = out
        try process.run()
        let line = out.fileHandleForReading.readLine()
        guard let data = line.data(using: .utf8), let ports = try? JSONSerialization.jsonObject(with: data) as? [String: Int],
            let http = ports["http"]
        else {
            process.terminate()
            throw TestSupportError("upstream.py did not start: \(line)")
        }
        httpPort = http
        httpsPort = ports["https"]
    }

    /// Every request the upstream received, oldest first.
    public func requests() -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    public func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { stop() } }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension FileHandle {
    /// One line (without the newline), read byte by byte so nothing after it is consumed.
    func readLine() -> String {
        var bytes: [UInt8] = []
        while true {
            let d = readData(ofLength: 1)
            guard let b = d.first, b != 10 else { break }
            bytes.append(b)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
