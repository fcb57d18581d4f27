// The DLP scanner's cost per egress request: the gateway's budget for the block
// decision is 10 µs for a URL, ~10 headers and a 1 KB body.
import AirlockDLP

#if canImport(Glibc)
import Glibc
#endif

private func dlpClock() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Median ns of `body` over `iterations` runs (in 16 batches, so one slow batch does not count).
private func dlpMedianNanoseconds(_ iterations: Int, _ body: () -> Int) -> Double {
    let batches = 16
    let per = max(1, iterations / batches)
    var samples: [Double] = []
    var sink = 0
    for _ in 0..<batches {
        let t0 = dlpClock()
        for _ in 0..<per { sink &+= body() }
        samples.append(Double(dlpClock() - t0) / Double(per))
    }
    if sink == -1 { print("") }  // keep the work observable
    samples.sort()
    return samples[batches / 2]
}

private func dlpRequest(dirty: Bool) -> [UInt8] {
    var text = "POST https://api.example.com/v1/projects/acme/widgets?page=2&per_page=50&sort=updated HTTP/1.1\r\n"
    let headers = [
        "Host: api.example.com", "User-Agent: python-requests/2.31.0", "Accept: application/json",
        "Accept-Encoding: gzip, deflate, br", "Content-Type: application/json; charset=utf-8",
        "Connection: keep-alive", "X-Request-Id: 7f3c9a52-1e4b-4d8f-9c2a-5b6e7d8f9a0b",
        "Cache-Control: no-cache", "Accept-Language: en-US,en;q=0.9",
        dirty ? "Authorization: token ghp_16C7e42F292c6912E7710c838347Ae178B4a" : "Authorization: none",
    ]
    for h in headers { text += h + "\r\n" }
    text += "\r\n"
    var body = "{\"name\": \"widget\", \"description\": \"A small widget for the acme project, used in the demo.\", "
    var k = 0
    while body.utf8.count < 1000 {
        body += "\"field_\(k)\": \"value number \(k) of the request, ordinary text\", "
        k += 1
    }
    body += "\"end\": true}"
    return Array((text + body).utf8)
}

func runDLPBench(iterations: Int) -> [String] {
    let secrets = [
        Secret(name: "GITHUB_TOKEN", value: "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
        Secret(name: "OPENAI_API_KEY", value: "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"),
        Secret(name: "DB_PASSWORD", value: "correct horse battery staple"),
        Secret(name: "AWS_SECRET_ACCESS_KEY", value: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ]
    let scanner = DLPScanner(secrets: secrets)
    let clean = dlpRequest(dirty: false)
    let dirty = dlpRequest(dirty: true)
    var big = [UInt8]()
    big.reserveCapacity(1 << 20)
    while big.count < 1 << 20 { big += clean }
    big.removeLast(big.count - (1 << 20))

    var lines = [
        "DLP scan: \(secrets.count) secrets (\(scanner.keywordCount) literals with the pattern prefixes, "
            + "\(scanner.stateCount) DFA states), built-in patterns",
        "case".padding(34) + "ns/scan".leftPadding(12) + "ns/byte".leftPadding(10),
    ]
    func row(_ name: String, _ bytes: [UInt8], _ body: @escaping (UnsafeRawBufferPointer) -> Int) {
        let iters = bytes.count > 100_000 ? max(16, iterations / 500) : iterations
        let ns = bytes.withUnsafeBytes { buf in dlpMedianNanoseconds(iters) { body(buf) } }
        let perByte = (ns / Double(bytes.count) * 100).rounded() / 100
        lines.append("\(name) (\(bytes.count) B)".padding(34) + String(Int(ns)).leftPadding(12) + "\(perByte)".leftPadding(10))
    }
    row("firstFinding, clean request", clean) { scanner.firstFinding($0) == nil ? 0 : 1 }
    row("firstFinding, dirty request", dirty) { scanner.firstFinding($0) == nil ? 0 : 1 }
    row("scan, clean request", clean) { scanner.scan($0).count }
    row("scan, dirty request", dirty) { scanner.scan($0).count }
    row("scan, 1 MiB clean", big) { scanner.scan($0).count }
    let text = String(decoding: dirty, as: UTF8.self)
    let ns = dlpMedianNanoseconds(iterations) { scanner.redact(text).utf8.count }
    lines.append("redact, dirty request".padding(34) + String(Int(ns)).leftPadding(12))
    return lines
}

extension String {
    fileprivate func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    fileprivate func leftPadding(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
