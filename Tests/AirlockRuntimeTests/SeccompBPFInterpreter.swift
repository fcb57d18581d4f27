@testable import AirlockRuntime

/// `struct seccomp_data` as the kernel hands it to a filter.
struct SeccompTestData {
    var nr: Int32
    var arch: UInt32
    var instructionPointer: UInt64 = 0x7F00_1234_5678
    var args: [UInt64] = [0, 0, 0, 0, 0, 0]

    init(nr: Int32, arch: UInt32, args: [UInt64] = []) {
        self.nr = nr
        self.arch = arch
        for (i, a) in args.enumerated() { self.args[i] = a }
    }

    /// The 64 bytes, little-endian, as on x86_64 and aarch64.
    var bytes: [UInt8] {
        var out: [UInt8] = []
        func put(_ v: UInt64, _ width: Int) {
            for i in 0..<width { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        put(UInt64(UInt32(bitPattern: nr)), 4)
        put(UInt64(arch), 4)
        put(instructionPointer, 8)
        for a in args { put(a, 8) }
        return out
    }
}

enum SeccompBPFFault: Error, Equatable {
    case ranOffTheEnd(pc: Int)
    case jumpOutOfRange(pc: Int)
    case badLoad(pc: Int, offset: UInt32)
    case unknownOpcode(pc: Int, code: UInt16)
    case divisionByZero(pc: Int)
}

/// A classic-BPF interpreter with the kernel's seccomp semantics: 32-bit A and X,
/// 16 scratch words, absolute word loads from `seccomp_data` (4-byte aligned, inside
/// its 64 bytes), unsigned comparisons, forward jumps only.
struct SeccompBPFInterpreter {
    let program: [SockFilter]

    struct Outcome {
        let value: UInt32
        /// Instructions executed, the `ret` included.
        let steps: Int
    }

    /// Decodes the bytes `SeccompCompiler.compile` produces.
    static func decode(_ bytes: [UInt8]) -> [SockFilter]? {
        guard bytes.count % 8 == 0 else { return nil }
        return stride(from: 0, to: bytes.count, by: 8).map { i in
            let code = UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
            var k: UInt32 = 0
            for j in 0..<4 { k |= UInt32(bytes[i + 4 + j]) << (8 * UInt32(j)) }
            return SockFilter(code: code, jt: bytes[i + 2], jf: bytes[i + 3], k: k)
        }
    }

    func run(_ data: SeccompTestData) throws(SeccompBPFFault) -> Outcome {
        let mem = data.bytes
        var a: UInt32 = 0
        var x: UInt32 = 0
        var scratch = [UInt32](repeating: 0, count: 16)
        var pc = 0
        var steps = 0
        func word(at offset: UInt32, _ pc: Int) throws(SeccompBPFFault) -> UInt32 {
            guard offset % 4 == 0, offset + 4 <= UInt32(mem.count) else { throw .badLoad(pc: pc, offset: offset) }
            let o = Int(offset)
            return UInt32(mem[o]) | UInt32(mem[o + 1]) << 8 | UInt32(mem[o + 2]) << 16 | UInt32(mem[o + 3]) << 24
        }
        func jump(_ by: Int, _ pc: Int) throws(SeccompBPFFault) -> Int {
            let target = pc + 1 + by
            guard target < program.count else { throw .jumpOutOfRange(pc: pc) }
            return target
        }
        while true {
            guard pc < program.count else { throw .ranOffTheEnd(pc: pc) }
            let ins = program[pc]
            steps += 1
            let cls = ins.code & 0x07
            let src: UInt32 = (ins.code & 0x08) != 0 ? x : ins.k
            switch cls {
            case 0x00, 0x01:  // BPF_LD, BPF_LDX
                let mode = ins.code & 0xE0
                let size = ins.code & 0x18
                let value: UInt32
                switch mode {
                case 0x20 where size == 0x00: value = try word(at: ins.k, pc)  // ABS, W
                case 0x00: value = ins.k  // IMM
                case 0x60 where ins.k < 16: value = scratch[Int(ins.k)]  // MEM
                case 0x80: value = UInt32(mem.count)  // LEN
                default: throw .unknownOpcode(pc: pc, code: ins.code)
                }
                if cls == 0x00 { a = value } else { x = value }
                pc += 1
            case 0x02, 0x03:  // BPF_ST, BPF_STX
                guard ins.k < 16 else { throw .unknownOpcode(pc: pc, code: ins.code) }
                scratch[Int(ins.k)] = cls == 0x02 ? a : x
                pc += 1
            case 0x04:  // BPF_ALU
                switch ins.code & 0xF0 {
                case 0x00: a = a &+ src
                case 0x10: a = a &- src
                case 0x20: a = a &* src
                case 0x30:
                    guard src != 0 else { throw .divisionByZero(pc: pc) }
                    a /= src
                case 0x40: a |= src
                case 0x50: a &= src
                case 0x60: a = src >= 32 ? 0 : a << src
                case 0x70: a = src >= 32 ? 0 : a >> src
                case 0x80: a = 0 &- a
                case 0x90:
                    guard src != 0 else { throw .divisionByZero(pc: pc) }
                    a %= src
                case 0xA0: a ^= src
                default: throw .unknownOpcode(pc: pc, code: ins.code)
                }
                pc += 1
            case 0x05:  // BPF_JMP
                let op = ins.code & 0xF0
                if op == 0x00 {
                    pc = try jump(Int(ins.k), pc)
                    continue
                }
                let taken: Bool
                switch op {
                case 0x10: taken = a == src
                case 0x20: taken = a > src
                case 0x30: taken = a >= src
                case 0x40: taken = (a & src) != 0
                default: throw .unknownOpcode(pc: pc, code: ins.code)
                }
                pc = try jump(Int(taken ? ins.jt : ins.jf), pc)
            case 0x06:  // BPF_RET
                switch ins.code & 0x18 {
                case 0x00: return Outcome(value: ins.k, steps: steps)
                case 0x10: return Outcome(value: a, steps: steps)
                default: throw .unknownOpcode(pc: pc, code: ins.code)
                }
            default:  // BPF_MISC: TAX, TXA
                switch ins.code {
                case 0x07: x = a
                case 0x87: a = x
                default: throw .unknownOpcode(pc: pc, code: ins.code)
                }
                pc += 1
            }
        }
    }
}
