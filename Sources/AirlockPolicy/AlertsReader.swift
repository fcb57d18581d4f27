import AirlockCore
import Yams

/// The `alerts:` and `monitor:` sections of a profile (docs/policy.md, "Alerts").
extension PolicyReader {
    static let alertKeys = ["name", "cpu", "memory", "pids", "exec", "action"]
    static let alertMetrics = ["cpu", "memory", "pids", "exec"]
    static let cpuKeys = ["above", "for"]
    static let memoryKeys = ["above", "for"]
    static let pidsKeys = ["above", "for", "increase", "within"]
    static let execKeys = ["allow"]
    static let monitorKeys = ["interval"]

    /// The largest CPU percentage: 1024 cores, the most `limits.cpus` allows.
    static let maximumCPUPercent = 102_400.0

    mutating func readMonitor(_ node: Node) -> Duration? {
        if isNull(node) { return nil }
        guard let entries = mappingEntries(node, field: "monitor", expecting: "a mapping with the key 'interval' (e.g. monitor: {interval: 1s})")
        else { return nil }
        let known = checkKeys(entries, allowed: Self.monitorKeys, in: "monitor")
        guard let v = known["interval"]?.value, let interval = readDuration(v, field: "monitor.interval") else { return nil }
        let range = MonitorSpec.intervalRange
        guard range.contains(interval) else {
            error(
                v,
                "monitor.interval must be from \(Units.formatDuration(range.lowerBound)) to \(Units.formatDuration(range.upperBound)); found \(Units.formatDuration(interval))"
            )
            return nil
        }
        return interval
    }

    /// The rules of `alerts:`; nil when any rule had a problem (each is reported).
    mutating func readAlerts(_ node: Node) -> [AlertRule]? {
        let shape = "a mapping such as {name: cpu-spin, cpu: {above: 90%, for: 60s}, action: stop}"
        guard let items = sequenceItems(node, field: "alerts", expecting: "a list of rules, each \(shape)") else { return nil }
        var rules: [AlertRule] = []
        var names: [String: SourcePosition] = [:]
        var complete = true
        for item in items {
            guard let rule = readAlert(item, shape: shape, names: &names) else {
                complete = false
                continue
            }
            rules.append(rule)
        }
        return complete ? rules : nil
    }

    private mutating func readAlert(_ item: Node, shape: String, names: inout [String: SourcePosition]) -> AlertRule? {
        guard let entries = mappingEntries(item, field: "each alert rule", expecting: shape) else { return nil }
        var known: [String: Entry] = [:]
        var ok = true
        var egress = false
        for entry in entries {
            if Self.alertKeys.contains(entry.name) {
                known[entry.name] = entry
            } else if entry.name == "egress" {
                error(
                    entry.key,
                    "egress alert rules come with the egress gateway and are not available yet; to limit bytes and requests, use network.budgets; allowed keys: \(Self.alertKeys.joined(separator: ", "))"
                )
                ok = false
                egress = true
            } else {
                error(
                    entry.key,
                    "unknown key '\(entry.name.escapedForMessage)' in an alert rule; allowed keys: \(Self.alertKeys.joined(separator: ", "))"
                        + Suggestion.didYouMean(entry.name, among: Self.alertKeys))
                ok = false
            }
        }

        var name: String?
        if let v = known["name"]?.value, let text = readString(v, field: "alert name") {
            if !Self.isValidProfileName(text) {
                error(
                    v,
                    "alert name '\(text.escapedForMessage)' is not allowed; names are 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
                )
            } else if let first = names[text] {
                error(
                    v,
                    "two alert rules are named '\(text)' (the first at line \(first.line), column \(first.column)); each rule needs its own name"
                )
            } else {
                names[text] = position(v)
                name = text
            }
        } else if known["name"] == nil {
            error(item, "an alert rule needs a 'name' (\(shape))")
        }

        let metrics = Self.alertMetrics.filter { known[$0] != nil }
        var condition: AlertCondition?
        if metrics.count > 1, let second = known[metrics[1]] {
            error(
                second.key,
                "an alert rule watches one metric; this one gives \(metrics.map { "'\($0)'" }.joined(separator: " and ")); write one rule for each"
            )
        } else if let metric = metrics.first, let entry = known[metric] {
            switch metric {
            case "cpu": condition = readCPUCondition(entry.value)
            case "memory": condition = readMemoryCondition(entry.value)
            case "pids": condition = readPidsCondition(entry.value)
            default: condition = readExecCondition(entry.value)
            }
        } else if !egress {
            error(
                item,
                "an alert rule needs one metric to watch: \(Self.alertMetrics.joined(separator: ", ")) (egress rules come with the egress gateway)"
            )
        }

        var action = AlertAction.alert
        if let v = known["action"]?.value {
            if let a = readEnum(v, field: "alert action", AlertAction.self) { action = a } else { ok = false }
        }
        guard ok, let name, let condition else { return nil }
        return AlertRule(name: name, condition: condition, action: action)
    }

    // MARK: Conditions

    private mutating func readCPUCondition(_ node: Node) -> AlertCondition? {
        let shape = "a mapping such as {above: 90%, for: 60s}"
        guard let entries = conditionEntries(node, field: "cpu", shape: shape) else { return nil }
        let known = checkKeys(entries, allowed: Self.cpuKeys, in: "an alert's cpu")
        guard let above = known["above"] else {
            error(node, "cpu needs 'above', a percentage of the sandbox's CPU quota (\(shape))")
            return nil
        }
        let duration = readSustained(known["for"], field: "cpu.for")
        guard let percent = readPercent(above.value, field: "cpu.above", maximum: Self.maximumCPUPercent), let duration else { return nil }
        return .cpu(percent: percent, for: duration)
    }

    private mutating func readMemoryCondition(_ node: Node) -> AlertCondition? {
        let shape = "a mapping such as {above: 80%} or {above: 1G, for: 10s}"
        guard let entries = conditionEntries(node, field: "memory", shape: shape) else { return nil }
        let known = checkKeys(entries, allowed: Self.memoryKeys, in: "an alert's memory")
        guard let above = known["above"] else {
            error(node, "memory needs 'above', a size or a percentage of the memory limit (\(shape))")
            return nil
        }
        let duration = readSustained(known["for"], field: "memory.for")
        let threshold: MemoryThreshold?
        if let s = scalarText(above.value), s.trimmingSpaces().hasSuffix("%") {
            threshold = readPercent(above.value, field: "memory.above", maximum: 100).map { .percent($0) }
        } else {
            threshold = readBytes(above.value, field: "memory.above").map { .bytes($0) }
        }
        guard let threshold, let duration else { return nil }
        return .memory(threshold, for: duration)
    }

    private mutating func readPidsCondition(_ node: Node) -> AlertCondition? {
        let shape = "a mapping such as {increase: 50, within: 5s} or {above: 200, for: 10s}"
        guard let entries = conditionEntries(node, field: "pids", shape: shape) else { return nil }
        let known = checkKeys(entries, allowed: Self.pidsKeys, in: "an alert's pids")
        let range = 1...Self.maximumPids
        switch (known["above"], known["increase"]) {
        case (let above?, nil):
            if let within = known["within"] {
                error(within.key, "pids.within goes with 'increase'; with 'above', use 'for' (\(shape))")
                return nil
            }
            let duration = readSustained(known["for"], field: "pids.for")
            guard let count = readInteger(above.value, field: "pids.above", in: range, example: "200"), let duration else { return nil }
            return .pidsAbove(count, for: duration)
        case (nil, let increase?):
            if let f = known["for"] {
                error(f.key, "pids.for goes with 'above'; with 'increase', use 'within' (\(shape))")
                return nil
            }
            guard let w = known["within"] else {
                error(increase.key, "pids.increase needs 'within', the window the increase happens in, e.g. {increase: 50, within: 5s}")
                return nil
            }
            let window = readDuration(w.value, field: "pids.within")
            guard let count = readInteger(increase.value, field: "pids.increase", in: range, example: "50"), let window else { return nil }
            return .pidsIncrease(count, within: window)
        case (let above?, _?):
            error(above.key, "pids takes either 'above' or 'increase', not both; write one rule for each")
            return nil
        case (nil, nil):
            error(node, "pids needs 'above' or 'increase' (\(shape))")
            return nil
        }
    }

    private mutating func readExecCondition(_ node: Node) -> AlertCondition? {
        let shape = "a mapping such as {allow: [/usr/bin/python3*, /bin/sh]}"
        guard let entries = conditionEntries(node, field: "exec", shape: shape) else { return nil }
        let known = checkKeys(entries, allowed: Self.execKeys, in: "an alert's exec")
        guard let allow = known["allow"] else {
            error(node, "exec needs 'allow', the executables the sandbox may run (\(shape))")
            return nil
        }
        guard
            let patterns = readStringList(allow.value, field: "exec.allow", problem: { pattern in
                if !pattern.hasPrefix("/") {
                    return "'\(pattern.escapedForMessage)' is not an absolute path; write the executable's full path inside the sandbox, e.g. /usr/bin/python3*"
                }
                if pattern.unicodeScalars.contains("\0") { return "a pattern cannot contain a NUL character" }
                return nil
            })
        else { return nil }
        return .exec(allow: patterns)
    }

    // MARK: Pieces

    private mutating func conditionEntries(_ node: Node, field: String, shape: String) -> [Entry]? {
        if isNull(node) {
            error(node, "\(field) has no value; expected \(shape)")
            return nil
        }
        return mappingEntries(node, field: field, expecting: shape)
    }

    /// `for`: how long a condition must hold; zero (the default) fires on the first sample.
    /// Nil (reported) when given and invalid.
    private mutating func readSustained(_ entry: Entry?, field: String) -> Duration? {
        guard let entry else { return .zero }
        return readDuration(entry.value, field: field)
    }

    private func scalarText(_ node: Node) -> String? {
        if case .scalar(let s) = node { return s.string }
        return nil
    }

    /// `90%`: a number greater than 0 and at most `maximum`, followed by `%`.
    private mutating func readPercent(_ node: Node, field: String, maximum: Double) -> Double? {
        let expecting = "a percentage greater than 0% and at most \(Self.formatPercent(maximum)), such as 90%"
        guard let s = scalar(node, field: field, expecting: expecting) else { return nil }
        let text = s.string.trimmingSpaces()
        guard text.hasSuffix("%") else {
            error(node, "\(field) must be \(expecting); found '\(s.string.escapedForMessage)' (add the '%')")
            return nil
        }
        guard let value = Double(String(text.dropLast()).trimmingSpaces()), value.isFinite, value > 0, value <= maximum else {
            error(node, "\(field) must be \(expecting); found '\(s.string.escapedForMessage)'")
            return nil
        }
        return value
    }

    static func formatPercent(_ p: Double) -> String {
        p == p.rounded() && abs(p) < 1e15 ? "\(Int64(p))%" : "\(p)%"
    }
}
