/// A path glob of an egress rule: `/repos/acme/*/issues`, `/v1/**`.
///
/// The pattern is split at `/` into segments. A segment `**` matches any number of whole
/// segments, none included (`/v1/**` matches `/v1`, `/v1/` and `/v1/a/b`). In any other
/// segment `*` matches any run of characters within that segment, none included
/// (`/repos/*` matches `/repos/x` and `/repos/`, not `/repos/x/y`); everything else is
/// literal. The pattern is normalised like a request path (`RequestPath`) before use, so
/// `%61` and `a` are the same character and matching is on decoded unreserved characters.
struct PathPattern: Sendable, CustomStringConvertible {
    enum Segment: Sendable, Equatable {
        /// `**`.
        case anyDepth
        /// A segment glob; `*` is the only special character.
        case glob([UInt8])
    }

    let description: String
    let segments: [Segment]
    /// The same pattern lower-cased, for deny rules (matched case-insensitively).
    let foldedSegments: [Segment]

    init(_ text: String) throws(PathProblem) {
        guard !text.contains("?"), !text.contains("#") else {
            throw PathProblem("a path pattern has no query or fragment ('?', '#')")
        }
        let path: RequestPath
        switch RequestPath.normalize(text) {
        case .success(let p): path = p
        case .failure(let problem): throw problem
        }
        var segments: [Segment] = []
        for k in path.segments.indices {
            let s = Array(path.segment(k))
            if s == Array("**".utf8) {
                if segments.last != .anyDepth { segments.append(.anyDepth) }
            } else if s.indices.dropFirst().contains(where: { s[$0] == UInt8(ascii: "*") && s[$0 - 1] == UInt8(ascii: "*") }) {
                throw PathProblem("'**' must be a whole segment, as in /a/**/b")
            } else {
                segments.append(.glob(s))
            }
        }
        description = text
        self.segments = segments
        foldedSegments = segments.map {
            if case .glob(let g) = $0 { return .glob(g.map(RequestPath.lowercased)) }
            return $0
        }
    }

    /// Whether the normalised path matches (case-sensitively).
    func matches(_ path: RequestPath) -> Bool { PathPattern.match(segments, path) }

    /// Whether any of the (lower-cased) variants matches the lower-cased pattern.
    func matchesFolded(_ variants: [RequestPath]) -> Bool {
        variants.contains { PathPattern.match(foldedSegments, $0) }
    }

    /// Wildcard matching over segments, `**` backtracking like `*` over characters:
    /// O(pattern × path) at worst, no recursion.
    static func match(_ pattern: [Segment], _ path: RequestPath) -> Bool {
        var p = 0
        var s = 0
        var starP = -1
        var starS = 0
        while s < path.segments.count {
            if p < pattern.count, pattern[p] == .anyDepth {
                starP = p
                starS = s
                p += 1
                continue
            }
            if p < pattern.count, case .glob(let g) = pattern[p], globMatch(g, path.segment(s)) {
                p += 1
                s += 1
                continue
            }
            guard starP >= 0 else { return false }
            p = starP + 1
            starS += 1
            s = starS
        }
        while p < pattern.count, pattern[p] == .anyDepth { p += 1 }
        return p == pattern.count
    }

    /// `*` within one segment.
    static func globMatch(_ pattern: [UInt8], _ text: ArraySlice<UInt8>) -> Bool {
        let star = UInt8(ascii: "*")
        var p = 0
        var t = text.startIndex
        var starP = -1
        var starT = t
        while t < text.endIndex {
            if p < pattern.count, pattern[p] == star {
                starP = p
                starT = t
                p += 1
            } else if p < pattern.count, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if starP >= 0 {
                p = starP + 1
                starT += 1
                t = starT
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == star { p += 1 }
        return p == pattern.count
    }
}
