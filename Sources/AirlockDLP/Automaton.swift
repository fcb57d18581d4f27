/// An Aho–Corasick automaton compiled to a dense DFA over byte classes: one table
/// load per input byte, whatever the number of keywords.
///
/// Bytes that occur in no keyword share class 0, so a row is (distinct keyword bytes + 1)
/// entries wide. A transition's top bit says that the state it leads to ends at least
/// one keyword, so the scan loop tests one bit and looks at the keyword list only then.
struct Automaton: Sendable {
    static let outputBit: UInt32 = 0x8000_0000

    /// byte → class.
    let classes: [UInt8]
    let stride: Int
    /// state * stride + class → next state * stride, `outputBit` set when the next state
    /// has outputs. Rows are premultiplied so the scan loop has no multiply on its chain.
    let table: [UInt32]
    /// Keywords ending at state s: `outputs[outputStart[s]..<outputStart[s + 1]]` (indices
    /// into the keyword list given to init).
    let outputStart: [Int32]
    let outputs: [Int32]

    var stateCount: Int { outputStart.count - 1 }

    init(keywords: [[UInt8]]) {
        // Byte classes: 0 for bytes in no keyword.
        var classes = [UInt8](repeating: 0, count: 256)
        var classCount = 1
        for k in keywords {
            for b in k where classes[Int(b)] == 0 {
                classes[Int(b)] = UInt8(classCount)
                classCount += 1
            }
        }
        precondition(classCount <= 256)
        precondition(keywords.reduce(1) { $0 + $1.count } * classCount < Int(Automaton.outputBit))

        // The trie.
        var children: [[Int32]] = [[Int32](repeating: -1, count: classCount)]
        var ends: [[Int32]] = [[]]
        for (index, k) in keywords.enumerated() {
            var s = 0
            for b in k {
                let c = Int(classes[Int(b)])
                if children[s][c] < 0 {
                    children[s][c] = Int32(children.count)
                    children.append([Int32](repeating: -1, count: classCount))
                    ends.append([])
                }
                s = Int(children[s][c])
            }
            ends[s].append(Int32(index))
        }

        // Failure links breadth-first, completing the trie into a DFA as we go: a
        // missing edge of s is the same edge of fail(s), which is already complete.
        let n = children.count
        var fail = [Int](repeating: 0, count: n)
        var delta = [[Int32]](repeating: [], count: n)
        var queue: [Int] = []
        delta[0] = children[0].map { $0 < 0 ? 0 : $0 }
        for c in 0..<classCount where children[0][c] > 0 { queue.append(Int(children[0][c])) }
        var head = 0
        while head < queue.count {
            let s = queue[head]
            head += 1
            ends[s] += ends[fail[s]]
            var row = children[s]
            for c in 0..<classCount {
                if row[c] < 0 {
                    row[c] = delta[fail[s]][c]
                } else {
                    let t = Int(row[c])
                    fail[t] = Int(delta[fail[s]][c])
                    queue.append(t)
                }
            }
            delta[s] = row
        }

        var table = [UInt32](repeating: 0, count: n * classCount)
        for s in 0..<n {
            for c in 0..<classCount {
                let t = Int(delta[s][c])
                table[s * classCount + c] = UInt32(t * classCount) | (ends[t].isEmpty ? 0 : Automaton.outputBit)
            }
        }
        var outputStart: [Int32] = [0]
        var outputs: [Int32] = []
        for s in 0..<n {
            outputs += ends[s]
            outputStart.append(Int32(outputs.count))
        }
        self.classes = classes
        self.stride = classCount
        self.table = table
        self.outputStart = outputStart
        self.outputs = outputs
    }
}
