/// A set of bytes as a 256-bit mask: membership is two shifts and an and.
///
/// Written in the bracket-expression syntax without the brackets: `"A-Za-z0-9_-"`
/// (a `-` first or last is literal).
public struct ByteSet: Sendable, Hashable {
    private var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    public init(_ spec: String) {
        let b = Array(spec.utf8)
        var i = 0
        while i < b.count {
            if i + 2 < b.count, b[i + 1] == UInt8(ascii: "-"), b[i] <= b[i + 2] {
                for x in b[i]...b[i + 2] { insert(x) }
                i += 3
            } else {
                insert(b[i])
                i += 1
            }
        }
    }

    @inline(__always) public func contains(_ b: UInt8) -> Bool {
        let bit = UInt64(1) &<< UInt64(b & 63)
        switch b >> 6 {
        case 0: return w0 & bit != 0
        case 1: return w1 & bit != 0
        case 2: return w2 & bit != 0
        default: return w3 & bit != 0
        }
    }

    public mutating func insert(_ b: UInt8) {
        let bit = UInt64(1) &<< UInt64(b & 63)
        switch b >> 6 {
        case 0: w0 |= bit
        case 1: w1 |= bit
        case 2: w2 |= bit
        default: w3 |= bit
        }
    }

    static let alphanumeric = ByteSet("A-Za-z0-9")
    static let base64 = ByteSet("A-Za-z0-9+/")
    static let base64URL = ByteSet("A-Za-z0-9_-")
}
