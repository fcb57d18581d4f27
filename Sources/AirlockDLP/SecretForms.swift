/// The literal byte strings a secret value can appear as in a request or a log line.
struct SecretForm: Hashable {
    var bytes: [UInt8]
    var encoding: String
    /// Base64 only: the form is the stable middle of an encoding, and one character
    /// before it (`lead`) or after it (`trail`) also carries bits of the secret.
    var lead = false
    var trail = false
    var alphabet: Base64Alphabet? = nil
}

enum Base64Alphabet: Hashable {
    case standard, url

    var table: [UInt8] {
        switch self {
        case .standard: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        case .url: Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        }
    }
    var set: ByteSet { self == .standard ? .base64 : .base64URL }
}

enum SecretForms {
    /// Every form of `value`, deduplicated, the raw form first. Forms equal to the raw
    /// bytes (a URL encoding of a value with nothing to escape) are left out.
    static func all(_ value: [UInt8]) -> [SecretForm] {
        var forms = [SecretForm(bytes: value, encoding: "raw")]
        for alphabet in [Base64Alphabet.standard, .url] {
            for shift in 0..<3 {
                forms.append(base64Middle(value, shift: shift, alphabet: alphabet))
            }
        }
        forms.append(SecretForm(bytes: hex(value, upper: false), encoding: "hex"))
        forms.append(SecretForm(bytes: hex(value, upper: true), encoding: "hex"))
        for keep in urlKeepSets {
            for upper in [true, false] {
                for plus in [false, true] {
                    forms.append(SecretForm(bytes: percent(value, keep: keep, upper: upper, plusForSpace: plus), encoding: "url"))
                }
            }
        }
        forms.append(SecretForm(bytes: json(value, escapeSlash: false), encoding: "json"))
        forms.append(SecretForm(bytes: json(value, escapeSlash: true), encoding: "json"))
        var seen = Set<[UInt8]>()
        return forms.filter { seen.insert($0.bytes).inserted }
    }

    /// The characters of base64(k arbitrary bytes + value + anything) that depend on the
    /// value alone, for k = `shift`: the same characters whatever surrounds the value, so
    /// the value is found at any of the three byte alignments inside a longer encoding,
    /// padded or not.
    static func base64Middle(_ value: [UInt8], shift: Int, alphabet: Base64Alphabet) -> SecretForm {
        let table = alphabet.table
        let bits = 8 * (shift + value.count)
        let first = (8 * shift + 5) / 6  // first character whose 6 bits all come from value
        let end = bits / 6  // one past the last such character
        var out: [UInt8] = []
        out.reserveCapacity(end - first)
        for c in first..<end {
            var v = 0
            for bit in (6 * c)..<(6 * c + 6) {
                let byte = value[bit / 8 - shift]
                v = v << 1 | Int(byte >> (7 - UInt8(bit % 8)) & 1)
            }
            out.append(table[v])
        }
        let encoding = alphabet == .standard ? "base64" : "base64url"
        return SecretForm(
            bytes: out, encoding: encoding, lead: (8 * shift) % 6 != 0, trail: bits % 6 != 0, alphabet: alphabet)
    }

    static func hex(_ value: [UInt8], upper: Bool) -> [UInt8] {
        let digits = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        var out: [UInt8] = []
        out.reserveCapacity(2 * value.count)
        for b in value {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return out
    }

    /// What common encoders leave unescaped: RFC 3986 unreserved (Go's QueryEscape,
    /// most libraries), WHATWG form encoding, JavaScript's encodeURIComponent, Python's
    /// quote() (keeps `/`) and encodeURI (keeps the reserved set).
    static let urlKeepSets: [ByteSet] = [
        ByteSet("A-Za-z0-9._~-"),
        ByteSet("A-Za-z0-9*._-"),
        ByteSet("A-Za-z0-9!'()*._~-"),
        ByteSet("A-Za-z0-9/._~-"),
        ByteSet("A-Za-z0-9!#$&'()*+,/:;=?@._~-"),
    ]

    static func percent(_ value: [UInt8], keep: ByteSet, upper: Bool, plusForSpace: Bool) -> [UInt8] {
        let digits = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        var out: [UInt8] = []
        for b in value {
            if keep.contains(b) {
                out.append(b)
            } else if b == 0x20, plusForSpace {
                out.append(UInt8(ascii: "+"))
            } else {
                out += [UInt8(ascii: "%"), digits[Int(b >> 4)], digits[Int(b & 15)]]
            }
        }
        return out
    }

    /// The value inside a JSON string: `"` `\` and control characters escaped, `/` as
    /// is or as `\/`.
    static func json(_ value: [UInt8], escapeSlash: Bool) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in value {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x2F where escapeSlash: out += [0x5C, 0x2F]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0..<0x20: out += Array("\\u00".utf8) + [digits[Int(b >> 4)], digits[Int(b & 15)]]
            default: out.append(b)
            }
        }
        return out
    }
}
