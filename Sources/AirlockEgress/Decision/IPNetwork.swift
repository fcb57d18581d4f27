import AirlockCore

/// An address block, `10.0.0.0/8` or `fd00::/8`.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// The first address of the block (its host bits are zero).
    public let address: IPAddress
    public let prefixLength: Int

    /// Parses `address/length`. The address may be written in any form `IPAddress(literal:)`
    /// accepts; bits after the prefix must be zero, so that the block is what it looks like.
    public init(cidr: String) throws(AirlockError) {
        guard let slash = cidr.utf8.firstIndex(of: UInt8(ascii: "/")) else {
            throw AirlockError(.policy, "'\(cidr)' is not a CIDR block (address/length)")
        }
        let addressText = String(cidr[..<slash])
        let lengthText = cidr[cidr.index(after: slash)...]
        guard let address = IPAddress(literal: addressText) else {
            throw AirlockError(.policy, "'\(addressText)' in '\(cidr)' is not an IP address")
        }
        let bits = address.isIPv4 ? 32 : 128
        guard !lengthText.isEmpty, lengthText.utf8.count <= 3, lengthText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let length = Int(lengthText), length <= bits
        else {
            throw AirlockError(.policy, "the prefix length in '\(cidr)' must be a number from 0 to \(bits)")
        }
        let network = IPNetwork.mask(address, length)
        guard network == address else {
            throw AirlockError(
                .policy, "'\(cidr)' has bits set after the /\(length) prefix; the block is \(network)/\(length)")
        }
        self.address = address
        self.prefixLength = length
    }

    /// The block of `length` leading bits of `address` (host bits cleared).
    public init(_ address: IPAddress, prefixLength length: Int) {
        let bits = address.isIPv4 ? 32 : 128
        let clamped = max(0, min(length, bits))
        self.address = IPNetwork.mask(address, clamped)
        self.prefixLength = clamped
    }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.isIPv4 == address.isIPv4 else { return false }
        return IPNetwork.mask(other, prefixLength) == address
    }

    public var description: String { "\(address)/\(prefixLength)" }

    static func mask(_ a: IPAddress, _ length: Int) -> IPAddress {
        switch a {
        case .v4(let x):
            return .v4(length == 0 ? 0 : x & ~UInt32(0) << (32 - length))
        case .v6(let h, let l):
            let highMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << (64 - length))
            let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << (128 - length))
            return .v6(h & highMask, l & lowMask)
        }
    }
}
