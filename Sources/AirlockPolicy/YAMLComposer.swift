import Yams

/// A 1-based line and column, counted the way libyaml counts them (columns in Unicode scalars).
struct SourcePosition: Hashable, Comparable, Sendable {
    var line: Int
    var column: Int

    static let start = SourcePosition(line: 1, column: 1)

    init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    init(_ mark: Mark?) {
        self = mark.map { SourcePosition(line: $0.line, column: $0.column) } ?? .start
    }

    static func < (a: SourcePosition, b: SourcePosition) -> Bool {
        (a.line, a.column) < (b.line, b.column)
    }
}

/// Turns policy text into a Yams node tree, reporting syntax errors with their position.
///
/// Yams stops at the first mapping with a duplicated key and reports the position of the
/// key's *first* occurrence. To keep reading (so that one run reports every problem), the
/// composer overwrites that first occurrence in a private copy of the text with a private-use
/// character of the same length — no line or column moves — records the position, and parses
/// again. The reader then sees both keys, knows which one was the earlier, and reports the
/// duplicate where people expect it: at the later occurrence.
enum YAMLComposer {
    struct Composed {
        var root: Node?
        /// Yams holds a node's anchor weakly and the parser holds the anchors: keep the parser
        /// alive while reading, or anchored (and aliased) nodes cannot be recognised.
        var parser: Parser?
        /// Position of each renamed first occurrence of a duplicated key → the key as written.
        var renamedKeys: [SourcePosition: String] = [:]
        var errors: [(SourcePosition, String)] = []
    }

    /// Enough for any real policy; a larger input is refused before parsing.
    static let maximumSize = 1 << 20
    static let maximumDuplicateRepairs = 64

    static func compose(_ text: String) -> Composed {
        var result = Composed()
        if text.utf8.count > maximumSize {
            result.errors.append((.start, "the policy is \(text.utf8.count) bytes; policies are limited to \(maximumSize) bytes"))
            return result
        }
        var work = text
        for attempt in 0...maximumDuplicateRepairs {
            do {
                let parser = try Parser(yaml: work, resolver: .basic)
                result.root = try parser.singleRoot()
                result.parser = parser
                return result
            } catch let YamlError.duplicatedKeysInMapping(duplicates, context) {
                let position = SourcePosition(context.mark)
                let key = duplicates.first ?? ""
                guard attempt < maximumDuplicateRepairs,
                    let marker = Unicode.Scalar(0xE000 + UInt32(attempt)),
                    rename(&work, at: position, key: key, to: marker)
                else {
                    // Not a simple key we can step over (a quoted key with escapes, a complex key):
                    // report it where Yams saw it and stop.
                    result.errors.append((position, "duplicate key '\(key.escapedForMessage)'; each key may appear only once in a mapping"))
                    return result
                }
                result.renamedKeys[position] = key
            } catch {
                result.errors.append(describe(error, in: text))
                return result
            }
        }
        return result
    }

    static func describe(_ error: any Error, in text: String) -> (SourcePosition, String) {
        let hint =
            "check the indentation, and quote values that contain ': ', ' #', or start with a special character such as '{', '[', '*', '&', '!', '%', '@' or '`'"
        guard let yamlError = error as? YamlError else {
            return (.start, "could not read the policy as YAML: \(error)")
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            var message = "YAML syntax error: \(problem)"
            if let context, context.mark.line > 0 {
                message += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
            }
            return (SourcePosition(mark), message + "; \(hint)")
        case .reader(let problem, let offset, _, _):
            return (position(ofCharacterOffset: offset ?? 0, in: text), "the policy is not valid UTF-8 text: \(problem)")
        default:
            return (.start, "could not read the policy as YAML: \(yamlError)")
        }
    }

    /// Overwrites the key that starts at `position` (plain, or inside simple quotes) with
    /// `marker` repeated, keeping its length. False when the text there is not exactly `key`.
    static func rename(_ text: inout String, at position: SourcePosition, key: String, to marker: Unicode.Scalar) -> Bool {
        var scalars = Array(text.unicodeScalars)
        let keyScalars = Array(key.unicodeScalars)
        guard !keyScalars.isEmpty, var i = scalarIndex(of: position, in: scalars), i < scalars.count else { return false }
        let quote = scalars[i]
        let quoted = quote == "\"" || quote == "'"
        if quoted { i += 1 }
        let end = i + keyScalars.count
        guard end <= scalars.count, Array(scalars[i..<end]) == keyScalars else { return false }
        if quoted {
            guard end < scalars.count, scalars[end] == quote else { return false }
        }
        for j in i..<end { scalars[j] = marker }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        text = String(view)
        return true
    }

    /// Index of the scalar at a libyaml position: lines end at LF, CR, CRLF, NEL, LS or PS;
    /// a leading byte-order mark is not counted.
    static func scalarIndex(of position: SourcePosition, in scalars: [Unicode.Scalar]) -> Int? {
        var line = 1
        var column = 1
        var i = scalars.first == "\u{FEFF}" ? 1 : 0
        while i < scalars.count {
            if line == position.line, column == position.column { return i }
            if line > position.line { return nil }
            switch scalars[i] {
            case "\r":
                if i + 1 < scalars.count, scalars[i + 1] == "\n" { i += 1 }
                line += 1
                column = 1
            case "\n", "\u{85}", "\u{2028}", "\u{2029}":
                line += 1
                column = 1
            default:
                column += 1
            }
            i += 1
        }
        return line == position.line && column == position.column ? i : nil
    }

    static func position(ofCharacterOffset offset: Int, in text: String) -> SourcePosition {
        var line = 1
        var column = 1
        for (n, c) in text.enumerated() {
            if n >= offset { break }
            if c.isNewline {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return SourcePosition(line: line, column: column)
    }
}
