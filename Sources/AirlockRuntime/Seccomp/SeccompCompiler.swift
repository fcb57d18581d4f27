import AirlockCore

/// Compiles the reviewed table into a classic-BPF seccomp program.
///
/// Layout (every jump is forward, as classic BPF requires):
///
///     ld arch;  arch != native            → KILL_PROCESS
///     ld nr;    nr == -1                  → ALLOW   (no syscall; the kernel answers ENOSYS)
///               nr & 0x40000000 (x86_64)  → KILL_PROCESS   (x32 ABI)
///               nr > newestReviewed       → ERRNO(ENOSYS)
///     binary search over the sorted numbers of the profile's rows;
///     leaves of up to four numbers: `jeq nr` per row, then `ret ALLOW`,
///     then the rows' argument checks, each ending in its own leaf's `ret`s.
///
/// An allowed call runs about fifteen instructions. Conditional jumps have 8-bit
/// offsets; the assembler turns any that would be longer into a `ja` (32-bit) trampoline.
public enum SeccompCompiler {
    /// The program as the C helper hands it to `seccomp(SECCOMP_SET_MODE_FILTER, …)`:
    /// `struct sock_filter` records, 8 bytes each, little-endian.
    public static func compile(profile: SyscallProfile, arch: SeccompArch = .native) throws(AirlockError) -> [UInt8] {
        let program = try instructions(profile: profile, arch: arch)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(program.count * 8)
        for ins in program {
            bytes.append(UInt8(truncatingIfNeeded: ins.code))
            bytes.append(UInt8(truncatingIfNeeded: ins.code >> 8))
            bytes.append(ins.jt)
            bytes.append(ins.jf)
            for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: ins.k >> UInt32(shift))) }
        }
        return bytes
    }

    /// The program as instructions (for tests, `--explain` and debugging).
    public static func instructions(profile: SyscallProfile, arch: SeccompArch = .native) throws(AirlockError) -> [SockFilter] {
        let entries = try resolve(profile: profile, arch: arch)
        var asm = BPFAssembler()
        let kill = asm.newLabel()
        let allow = asm.newLabel()
        let enosys = asm.newLabel()
        let checkNumber = asm.newLabel()
        let dispatch = asm.newLabel()

        asm.load(SeccompDataLayout.arch)
        asm.branch(ClassicBPF.jeq, arch.auditArch, ifTrue: checkNumber, ifFalse: kill)
        asm.place(checkNumber)
        asm.load(SeccompDataLayout.nr)
        // -1 is what a tracer writes to skip a call; it is not a syscall (libseccomp lets it through too).
        let notMinusOne = asm.newLabel()
        asm.branch(ClassicBPF.jeq, 0xFFFF_FFFF, ifTrue: allow, ifFalse: notMinusOne)
        asm.place(notMinusOne)
        if arch == .x86_64 {
            let native = asm.newLabel()
            asm.branch(ClassicBPF.jset, x32SyscallBit, ifTrue: kill, ifFalse: native)
            asm.place(native)
        }
        asm.branch(ClassicBPF.jgt, UInt32(bitPattern: SeccompTable.newestReviewedSyscall), ifTrue: enosys, ifFalse: dispatch)
        asm.place(dispatch)
        emitSearch(entries[...], into: &asm)

        asm.place(allow)
        asm.ret(.allow)
        asm.place(enosys)
        asm.ret(.enosys)
        asm.place(kill)
        asm.ret(.killProcess)

        let program = try asm.assemble()
        guard program.count <= ClassicBPF.maxInstructions else {
            throw AirlockError(
                .internalError,
                "the \(profile.rawValue) seccomp program for \(arch) has \(program.count) instructions; the kernel accepts at most \(ClassicBPF.maxInstructions)")
        }
        return program
    }

    /// `__X32_SYSCALL_BIT`: x86_64 syscalls with this bit set use the x32 ABI's numbers.
    static let x32SyscallBit: UInt32 = 0x4000_0000
    /// Numbers per leaf of the binary search.
    static let leafSize = 4

    struct Entry {
        let number: UInt32
        let rule: SyscallRule
    }

    /// The profile's rows that exist on `arch`, sorted by number, after checking the table is sane.
    static func resolve(profile: SyscallProfile, arch: SeccompArch) throws(AirlockError) -> [Entry] {
        var seen: [String: SyscallRule] = [:]
        var entries: [Entry] = []
        for rule in SeccompTable.rules(for: profile) {
            guard seen[rule.name] == nil else {
                throw AirlockError(.internalError, "the seccomp table lists \(rule.name) twice for the \(profile.rawValue) profile")
            }
            seen[rule.name] = rule
            if let bad = rule.condition?.argumentIndices.first(where: { !(0...5).contains($0) }) {
                throw AirlockError(.internalError, "the seccomp rule for \(rule.name) reads argument \(bad); syscalls have arguments 0 to 5")
            }
            guard SeccompArch.allCases.contains(where: { SeccompTable.number(of: rule.name, on: $0) != nil }) else {
                throw AirlockError(.internalError, "the seccomp table names \(rule.name), which has no syscall number on any architecture")
            }
            guard let number = SeccompTable.number(of: rule.name, on: arch) else { continue }
            guard number >= 0, number <= SeccompTable.newestReviewedSyscall else {
                throw AirlockError(.internalError, "syscall \(rule.name) has number \(number), outside the reviewed range")
            }
            entries.append(Entry(number: UInt32(number), rule: rule))
        }
        entries.sort { $0.number < $1.number }
        for (a, b) in zip(entries, entries.dropFirst()) where a.number == b.number {
            throw AirlockError(.internalError, "syscalls \(a.rule.name) and \(b.rule.name) share number \(a.number) on \(arch)")
        }
        return entries
    }

    /// Binary search: `jge` on the middle number splits the range until a leaf is small.
    private static func emitSearch(_ entries: ArraySlice<Entry>, into asm: inout BPFAssembler) {
        if entries.count <= leafSize {
            emitLeaf(entries, into: &asm)
            return
        }
        let mid = entries.startIndex + entries.count / 2
        let upper = asm.newLabel()
        let lower = asm.newLabel()
        asm.branch(ClassicBPF.jge, entries[mid].number, ifTrue: upper, ifFalse: lower)
        asm.place(lower)
        emitSearch(entries[..<mid], into: &asm)
        asm.place(upper)
        emitSearch(entries[mid...], into: &asm)
    }

    /// A leaf: one `jeq` per row, `ret ALLOW` for everything else, then the argument checks.
    /// Each leaf has its own `ret`s so that its jumps stay short.
    private static func emitLeaf(_ entries: ArraySlice<Entry>, into asm: inout BPFAssembler) {
        var returns: [SeccompAction: BPFAssembler.Label] = [:]
        func returnLabel(_ action: SeccompAction, _ asm: inout BPFAssembler) -> BPFAssembler.Label {
            if let label = returns[action] { return label }
            let label = asm.newLabel()
            returns[action] = label
            return label
        }
        var checks: [(BPFAssembler.Label, Entry, ArgumentCondition)] = []
        for entry in entries {
            let next = asm.newLabel()
            let target: BPFAssembler.Label
            if let condition = entry.rule.condition {
                target = asm.newLabel()
                checks.append((target, entry, condition))
            } else {
                target = returnLabel(entry.rule.action, &asm)
            }
            asm.branch(ClassicBPF.jeq, entry.number, ifTrue: target, ifFalse: next)
            asm.place(next)
        }
        asm.ret(.allow)
        // Argument checks come after the leaf's `ret ALLOW` (jumps only go forward), so
        // a check that passes needs a `ret ALLOW` of its own below.
        for (label, entry, condition) in checks {
            asm.place(label)
            let refuse = returnLabel(entry.rule.action, &asm)
            emitCondition(condition, ifTrue: refuse, ifFalse: returnLabel(.allow, &asm), into: &asm)
        }
        for (action, label) in returns.sorted(by: { $0.key.returnValue < $1.key.returnValue }) {
            asm.place(label)
            asm.ret(action)
        }
    }

    /// Short-circuit code for a condition: control reaches `ifTrue` exactly when it holds.
    private static func emitCondition(
        _ condition: ArgumentCondition, ifTrue: BPFAssembler.Label, ifFalse: BPFAssembler.Label, into asm: inout BPFAssembler
    ) {
        switch condition {
        case .hasAnyBit(let arg, let bits):
            asm.load(SeccompDataLayout.argumentLowWord(arg.index))
            asm.branch(ClassicBPF.jset, bits.reduce(0) { $0 | $1.value }, ifTrue: ifTrue, ifFalse: ifFalse)
        case .isAnyOf(let arg, let values), .isNoneOf(let arg, let values):
            let isMember: Bool
            if case .isAnyOf = condition { isMember = true } else { isMember = false }
            let (onMatch, onNoMatch) = isMember ? (ifTrue, ifFalse) : (ifFalse, ifTrue)
            asm.load(SeccompDataLayout.argumentLowWord(arg.index))
            for (i, value) in values.enumerated() {
                if i == values.count - 1 {
                    asm.branch(ClassicBPF.jeq, value.value, ifTrue: onMatch, ifFalse: onNoMatch)
                } else {
                    let next = asm.newLabel()
                    asm.branch(ClassicBPF.jeq, value.value, ifTrue: onMatch, ifFalse: next)
                    asm.place(next)
                }
            }
            if values.isEmpty { asm.jump(onNoMatch) }
        case .all(let conditions):
            for (i, c) in conditions.enumerated() {
                if i == conditions.count - 1 {
                    emitCondition(c, ifTrue: ifTrue, ifFalse: ifFalse, into: &asm)
                } else {
                    let next = asm.newLabel()
                    emitCondition(c, ifTrue: next, ifFalse: ifFalse, into: &asm)
                    asm.place(next)
                }
            }
            if conditions.isEmpty { asm.jump(ifTrue) }
        case .any(let conditions):
            for (i, c) in conditions.enumerated() {
                if i == conditions.count - 1 {
                    emitCondition(c, ifTrue: ifTrue, ifFalse: ifFalse, into: &asm)
                } else {
                    let next = asm.newLabel()
                    emitCondition(c, ifTrue: ifTrue, ifFalse: next, into: &asm)
                    asm.place(next)
                }
            }
            if conditions.isEmpty { asm.jump(ifFalse) }
        }
    }
}

/// A tiny classic-BPF assembler with symbolic labels.
///
/// `assemble` lays the program out and resolves labels; a conditional jump whose
/// target is more than 255 instructions ahead gets a `ja` trampoline right after it
/// (re-laid out until nothing changes: trampolines only ever grow distances, so this
/// terminates). Backward jumps are an error, as in the kernel.
struct BPFAssembler {
    struct Label: Hashable {
        fileprivate let id: Int
    }

    private enum Op {
        case load(UInt32)
        case jump(Label)
        case branch(code: UInt16, k: UInt32, ifTrue: Label, ifFalse: Label)
        case ret(UInt32)
        case place(Label)
    }

    private var ops: [Op] = []
    private var labelCount = 0

    mutating func newLabel() -> Label {
        labelCount += 1
        return Label(id: labelCount)
    }

    mutating func place(_ label: Label) { ops.append(.place(label)) }
    mutating func load(_ offset: UInt32) { ops.append(.load(offset)) }
    mutating func jump(_ label: Label) { ops.append(.jump(label)) }
    mutating func ret(_ action: SeccompAction) { ops.append(.ret(action.returnValue)) }
    mutating func branch(_ code: UInt16, _ k: UInt32, ifTrue: Label, ifFalse: Label) {
        ops.append(.branch(code: code, k: k, ifTrue: ifTrue, ifFalse: ifFalse))
    }

    func assemble() throws(AirlockError) -> [SockFilter] {
        var farTrue = Set<Int>()
        var farFalse = Set<Int>()
        var address: [Int] = []
        var labels: [Label: Int] = [:]
        while true {
            address = []
            labels = [:]
            var pc = 0
            for (i, op) in ops.enumerated() {
                address.append(pc)
                switch op {
                case .place(let label):
                    guard labels[label] == nil else { throw Self.bug("label placed twice") }
                    labels[label] = pc
                case .branch:
                    pc += 1 + (farTrue.contains(i) ? 1 : 0) + (farFalse.contains(i) ? 1 : 0)
                default:
                    pc += 1
                }
            }
            var changed = false
            for (i, op) in ops.enumerated() {
                guard case .branch(_, _, let t, let f) = op else { continue }
                let base = address[i] + 1
                if !farTrue.contains(i), try Self.target(t, labels) - base > 255 {
                    farTrue.insert(i)
                    changed = true
                }
                if !farFalse.contains(i), try Self.target(f, labels) - base > 255 {
                    farFalse.insert(i)
                    changed = true
                }
            }
            if !changed { break }
        }

        var program: [SockFilter] = []
        for (i, op) in ops.enumerated() {
            let base = address[i] + 1
            func offset(_ label: Label, from next: Int) throws(AirlockError) -> Int {
                let distance = try Self.target(label, labels) - next
                guard distance >= 0 else { throw Self.bug("backward jump") }
                return distance
            }
            switch op {
            case .place:
                continue
            case .load(let k):
                program.append(SockFilter(code: ClassicBPF.ldAbsW, k: k))
            case .ret(let k):
                program.append(SockFilter(code: ClassicBPF.ret, k: k))
            case .jump(let label):
                program.append(SockFilter(code: ClassicBPF.ja, k: UInt32(try offset(label, from: base))))
            case .branch(let code, let k, let t, let f):
                let isFarTrue = farTrue.contains(i)
                let isFarFalse = farFalse.contains(i)
                var jt = 0
                var jf = isFarTrue ? 1 : 0
                if !isFarTrue { jt = try offset(t, from: base) }
                if !isFarFalse { jf = try offset(f, from: base) }
                guard jt <= 255, jf <= 255 else { throw Self.bug("jump offset out of range") }
                program.append(SockFilter(code: code, jt: UInt8(jt), jf: UInt8(jf), k: k))
                if isFarTrue {
                    program.append(SockFilter(code: ClassicBPF.ja, k: UInt32(try offset(t, from: program.count + 1))))
                }
                if isFarFalse {
                    program.append(SockFilter(code: ClassicBPF.ja, k: UInt32(try offset(f, from: program.count + 1))))
                }
            }
        }
        guard let last = program.last, last.code == ClassicBPF.ret else { throw Self.bug("program does not end in ret") }
        return program
    }

    private static func target(_ label: Label, _ labels: [Label: Int]) throws(AirlockError) -> Int {
        guard let pc = labels[label] else { throw bug("jump to a label never placed") }
        return pc
    }

    private static func bug(_ what: String) -> AirlockError {
        AirlockError(.internalError, "the seccomp compiler produced an invalid program: \(what)")
    }
}
