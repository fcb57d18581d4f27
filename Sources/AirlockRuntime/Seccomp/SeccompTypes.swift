import AirlockCore

/// The system-call ABIs the seccomp table knows. A filter is compiled for exactly one;
/// a syscall made through any other ABI kills the process (see `docs/seccomp.md`).
public enum SeccompArch: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case x86_64
    case aarch64

    /// The ABI of the machine this code runs on.
    public static var native: SeccompArch {
        #if arch(x86_64)
        return .x86_64
        #elseif arch(arm64)
        return .aarch64
        #else
        #error("Airlock's seccomp table covers x86_64 and aarch64 only")
        #endif
    }

    /// `AUDIT_ARCH_*` as the kernel reports it in `seccomp_data.arch` (64-bit, little-endian).
    public var auditArch: UInt32 {
        switch self {
        case .x86_64: return 0xC000_003E
        case .aarch64: return 0xC000_00B7
        }
    }

    public var description: String { rawValue }
}

/// What the filter does with a system call.
public enum SeccompAction: Sendable, Hashable, CustomStringConvertible {
    /// Let the call through to the kernel.
    case allow
    /// Fail the call with this errno without entering the kernel's implementation.
    case errno(UInt16)
    /// Kill the whole process (thread group) with SIGSYS.
    case killProcess

    public static let eperm = SeccompAction.errno(1)
    public static let enosys = SeccompAction.errno(38)

    /// `SECCOMP_RET_*` value the filter returns.
    public var returnValue: UInt32 {
        switch self {
        case .allow: return 0x7FFF_0000  // SECCOMP_RET_ALLOW
        case .errno(let e): return 0x0005_0000 | UInt32(e)  // SECCOMP_RET_ERRNO | data
        case .killProcess: return 0x8000_0000  // SECCOMP_RET_KILL_PROCESS
        }
    }

    public var description: String {
        switch self {
        case .allow: return "allow"
        case .errno(1): return "EPERM"
        case .errno(38): return "ENOSYS"
        case .errno(let e): return "errno \(e)"
        case .killProcess: return "kill"
        }
    }
}

/// One argument of a system call, named for people reading the table.
public struct SyscallArgument: Sendable, Hashable {
    /// Position in `seccomp_data.args` (0...5).
    public let index: Int
    public let name: String

    public init(_ index: Int, _ name: String) {
        self.index = index
        self.name = name
    }
}

/// A constant with the name it has in the kernel headers.
public struct SyscallConstant: Sendable, Hashable {
    public let name: String
    public let value: UInt32

    public init(_ name: String, _ value: UInt32) {
        self.name = name
        self.value = value
    }
}

/// When a rule's action applies, as a predicate over the call's arguments.
///
/// Every comparison looks at the low 32 bits of an argument only. All the arguments
/// the table checks are `int`, `unsigned int` or `mode_t` in the kernel (or, for
/// `clone`/`unshare` flags, an `unsigned long` whose namespace bits all sit in the low
/// word), so the kernel ignores the upper half and so must the filter: comparing all
/// 64 bits would let a caller dodge an equality test by setting garbage up there.
public indirect enum ArgumentCondition: Sendable, Hashable, CustomStringConvertible {
    /// `argument & (bits…) != 0`
    case hasAnyBit(SyscallArgument, [SyscallConstant])
    /// `argument ∈ {values…}`
    case isAnyOf(SyscallArgument, [SyscallConstant])
    /// `argument ∉ {values…}`
    case isNoneOf(SyscallArgument, [SyscallConstant])
    /// Every condition holds.
    case all([ArgumentCondition])
    /// At least one condition holds.
    case any([ArgumentCondition])

    public var description: String {
        switch self {
        case .hasAnyBit(let arg, let bits):
            let names = bits.map(\.name).joined(separator: "|")
            return bits.count == 1 ? "\(arg.name) & \(names)" : "\(arg.name) & (\(names))"
        case .isAnyOf(let arg, let values):
            return "\(arg.name) ∈ {\(values.map(\.name).joined(separator: ", "))}"
        case .isNoneOf(let arg, let values):
            return "\(arg.name) ∉ {\(values.map(\.name).joined(separator: ", "))}"
        case .all(let conditions):
            return conditions.map { $0.parenthesizedIfCompound }.joined(separator: " and ")
        case .any(let conditions):
            return conditions.map { $0.parenthesizedIfCompound }.joined(separator: " or ")
        }
    }

    private var parenthesizedIfCompound: String {
        switch self {
        case .all, .any: return "(\(description))"
        default: return description
        }
    }

    /// Argument positions the condition reads.
    var argumentIndices: [Int] {
        switch self {
        case .hasAnyBit(let a, _), .isAnyOf(let a, _), .isNoneOf(let a, _): return [a.index]
        case .all(let cs), .any(let cs): return cs.flatMap(\.argumentIndices)
        }
    }
}

/// One row of the reviewed table (`docs/seccomp.md`).
public struct SyscallRule: Sendable, Hashable {
    /// The system call's name as in `unistd.h`, without `__NR_`.
    public let name: String
    /// What happens when the rule matches (when `condition` holds, or always).
    public let action: SeccompAction
    /// nil: the action applies to every call. Otherwise only when the condition holds;
    /// other calls are allowed.
    public let condition: ArgumentCondition?
    /// The profiles that include this row.
    public let profiles: Set<SyscallProfile>
    /// Why the row exists, in one line.
    public let rationale: String

    public init(
        _ name: String, _ action: SeccompAction = .eperm, when condition: ArgumentCondition? = nil,
        profiles: Set<SyscallProfile> = [.default, .strict], why rationale: String
    ) {
        self.name = name
        self.action = action
        self.condition = condition
        self.profiles = profiles
        self.rationale = rationale
    }
}

/// One classic-BPF instruction, `struct sock_filter`.
public struct SockFilter: Sendable, Hashable, CustomStringConvertible {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32

    public init(code: UInt16, jt: UInt8 = 0, jf: UInt8 = 0, k: UInt32) {
        self.code = code
        self.jt = jt
        self.jf = jf
        self.k = k
    }

    public var description: String {
        func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
        switch code {
        case ClassicBPF.ldAbsW: return "ld [\(k)]"
        case ClassicBPF.ja: return "ja +\(k)"
        case ClassicBPF.jeq: return "jeq \(hex(k)) +\(jt) +\(jf)"
        case ClassicBPF.jgt: return "jgt \(hex(k)) +\(jt) +\(jf)"
        case ClassicBPF.jge: return "jge \(hex(k)) +\(jt) +\(jf)"
        case ClassicBPF.jset: return "jset \(hex(k)) +\(jt) +\(jf)"
        case ClassicBPF.ret: return "ret \(hex(k))"
        default: return "code \(hex(UInt32(code))) \(jt) \(jf) \(hex(k))"
        }
    }
}

/// The classic-BPF opcodes the compiler emits (`linux/bpf_common.h`).
enum ClassicBPF {
    /// BPF_LD | BPF_W | BPF_ABS
    static let ldAbsW: UInt16 = 0x20
    /// BPF_JMP | BPF_JA
    static let ja: UInt16 = 0x05
    /// BPF_JMP | BPF_JEQ | BPF_K
    static let jeq: UInt16 = 0x15
    /// BPF_JMP | BPF_JGT | BPF_K
    static let jgt: UInt16 = 0x25
    /// BPF_JMP | BPF_JGE | BPF_K
    static let jge: UInt16 = 0x35
    /// BPF_JMP | BPF_JSET | BPF_K
    static let jset: UInt16 = 0x45
    /// BPF_RET | BPF_K
    static let ret: UInt16 = 0x06
    /// BPF_MAXINSNS: the kernel refuses longer classic programs.
    static let maxInstructions = 4096
}

/// Offsets into `struct seccomp_data` (little-endian: an argument's low word comes first).
enum SeccompDataLayout {
    static let nr: UInt32 = 0
    static let arch: UInt32 = 4
    static func argumentLowWord(_ index: Int) -> UInt32 { 16 + 8 * UInt32(index) }
}
