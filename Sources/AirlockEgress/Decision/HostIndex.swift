/// Host patterns indexed for lookups that do not grow with the number of rules: exact
/// names and `*.` suffixes in hash tables keyed by a hash of their bytes taken from the
/// end, so that one backward pass over a host name yields the key of the name and of
/// every suffix after a dot; addresses in a hash table; CIDR blocks scanned.
struct HostIndex: Sendable {
    private var exact: [UInt64: [Int]] = [:]
    private var suffixes: [UInt64: [Int]] = [:]
    /// The name or suffix bytes of every name pattern, by id, to confirm a hash match.
    private var text: [[UInt8]] = []
    private var addresses: [IPAddress: [Int]] = [:]
    private var networks: [(network: IPNetwork, id: Int)] = []

    mutating func insert(_ pattern: HostPattern, id: Int) {
        switch pattern {
        case .exact(let n):
            exact[Self.reverseHash(n.utf8), default: []].append(id)
            setText(n, id)
        case .subdomains(let n):
            suffixes[Self.reverseHash(n.utf8), default: []].append(id)
            setText(n, id)
        case .address(let a): addresses[a, default: []].append(id)
        case .network(let n): networks.append((n, id))
        }
    }

    private mutating func setText(_ name: String, _ id: Int) {
        if text.count <= id { text += Array(repeating: [], count: id + 1 - text.count) }
        text[id] = Array(name.utf8)
    }

    static let hashSeed: UInt64 = 0xcbf2_9ce4_8422_2325
    @inline(__always) static func mix(_ h: UInt64, _ c: UInt8) -> UInt64 { (h ^ UInt64(c)) &* 0x100_0000_01b3 }

    /// FNV-1a over the bytes from last to first.
    static func reverseHash(_ bytes: some BidirectionalCollection<UInt8>) -> UInt64 {
        bytes.reversed().reduce(hashSeed, mix)
    }

    /// Calls `body` with the id of every pattern matching `host`. For an address,
    /// `viaEmbedding` is true when the pattern matched only the IPv4 address the destination
    /// embeds (NAT64, 6to4, Teredo, ISATAP, IPv4-compatible), which deny rules honour and
    /// allow rules do not; an id may then be reported twice.
    @inline(__always)
    func forEachMatch(_ host: HostName, _ body: (Int, Bool) -> Void) {
        switch host {
        case .name(let name):
            guard !exact.isEmpty || !suffixes.isEmpty else { return }
            var name = name
            name.withUTF8 { forEachMatch(name: $0, body) }
        case .address(let address):
            forEachMatch(address: address, body)
        }
    }

    private func forEachMatch(name: UnsafeBufferPointer<UInt8>, _ body: (Int, Bool) -> Void) {
        var h = Self.hashSeed
        var i = name.count
        let trySuffixes = !suffixes.isEmpty
        while i > 0 {
            i -= 1
            let c = name[i]
            if c == UInt8(ascii: "."), trySuffixes, let ids = suffixes[h] {
                for id in ids where confirm(id, UnsafeBufferPointer(rebasing: name[(i + 1)...])) { body(id, false) }
            }
            h = Self.mix(h, c)
        }
        if let ids = exact[h] {
            for id in ids where confirm(id, name) { body(id, false) }
        }
    }

    @inline(__always)
    private func confirm(_ id: Int, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        text[id].withUnsafeBufferPointer { $0.count == bytes.count && $0.elementsEqual(bytes) }
    }

    func forEachMatch(address: IPAddress, _ body: (Int, Bool) -> Void) {
        guard !addresses.isEmpty || !networks.isEmpty else { return }
        let direct = HostPattern.unmapped(address)
        visit(direct, viaEmbedding: false, body)
        if case .v6 = direct {
            for embedded in direct.embeddedIPv4Candidates { visit(embedded, viaEmbedding: true, body) }
        }
    }

    @inline(__always)
    private func visit(_ a: IPAddress, viaEmbedding: Bool, _ body: (Int, Bool) -> Void) {
        if let ids = addresses[a] { for id in ids { body(id, viaEmbedding) } }
        for (network, id) in networks where network.contains(a) { body(id, viaEmbedding) }
    }
}
