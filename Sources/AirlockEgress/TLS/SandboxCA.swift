import AirlockCore
import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// The certificate authority of one sandbox, for the hosts listed in `inspect_tls`.
///
/// Generated in memory when the gateway starts (ECDSA P-256), valid from an hour ago
/// (clock skew) until `lifetime` from now, and never written to disk: only its
/// certificate leaves the process (`/run/airlock/ca.pem` inside the sandbox). Leaf
/// certificates are minted on first use for each inspected host, cached, and signed
/// with the same lifetime. The CA is a path-length-0 CA: it can sign leaves only.
/// ``erase()`` drops the private key and every minted context when the run ends.
public final class SandboxCA: Sendable {
    public let certificatePEM: String
    private let certificate: Certificate
    private let key: Mutex<Certificate.PrivateKey?>
    private let notBefore: Date
    private let notAfter: Date
    private let contexts = Mutex<[String: NIOSSLContext]>([:])

    public init(instance: String, lifetime: Duration = .seconds(86_400)) throws(AirlockError) {
        let signing = P256.Signing.PrivateKey()
        let key = Certificate.PrivateKey(signing)
        notBefore = Date(timeIntervalSinceNow: -3600)
        notAfter = Date(timeIntervalSinceNow: Double(lifetime.components.seconds))
        do {
            let name = try DistinguishedName {
                OrganizationName("Airlock")
                CommonName("Airlock sandbox CA \(instance)")
            }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            }
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: name, subject: name,
                signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: key)
            certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
        } catch {
            throw AirlockError(.sandboxSetup, "cannot create the sandbox's TLS certificate authority: \(error)")
        }
        self.key = Mutex(key)
    }

    /// A TLS server context presenting a certificate for `host` (a DNS name or an IP
    /// literal), minted on first use. Offers HTTP/1.1 only, so clients do not switch to h2.
    public func serverContext(for host: HostName) throws(AirlockError) -> NIOSSLContext {
        let cacheKey = host.description
        if let c = contexts.withLock({ $0[cacheKey] }) { return c }
        guard let caKey = key.withLock({ $0 }) else {
            throw AirlockError(.sandboxSetup, "the sandbox CA has been erased")
        }
        let leafSigning = P256.Signing.PrivateKey()
        let leafKey = Certificate.PrivateKey(leafSigning)
        let context: NIOSSLContext
        do {
            let san: GeneralName
            switch host {
            case .name(let n): san = .dnsName(n)
            case .address(let a): san = .ipAddress(ASN1OctetString(contentBytes: ArraySlice(a.bytes)))
            }
            let subject = try DistinguishedName { CommonName(String(cacheKey.prefix(64))) }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([san])
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: caKey.publicKey).keyIdentifier)
            }
            let leaf = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: leafKey.publicKey,
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: certificate.subject, subject: subject,
                signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: caKey)
            var serializer = DER.Serializer()
            try serializer.serialize(leaf)
            var caSerializer = DER.Serializer()
            try caSerializer.serialize(certificate)
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: [
                    .certificate(try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der)),
                    .certificate(try NIOSSLCertificate(bytes: caSerializer.serializedBytes, format: .der)),
                ],
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(leafSigning.derRepresentation), format: .der)))
            config.applicationProtocols = ["http/1.1"]
            config.minimumTLSVersion = .tlsv12
            config.shutdownTimeout = .milliseconds(250)
            context = try NIOSSLContext(configuration: config)
        } catch {
            throw AirlockError(.sandboxSetup, "cannot mint a TLS certificate for \(cacheKey): \(error)")
        }
        return contexts.withLock { cache in
            if let existing = cache[cacheKey] { return existing }
            cache[cacheKey] = context
            return context
        }
    }

    /// Forgets the private key and every minted leaf; later ``serverContext(for:)`` calls fail.
    public func erase() {
        key.withLock { $0 = nil }
        contexts.withLock { $0.removeAll() }
    }

    public var isErased: Bool { key.withLock { $0 == nil } }
}
