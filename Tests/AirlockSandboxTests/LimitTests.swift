import Foundation
import Testing

/// Resource attacks, each contained and reported, with the host unchanged after.
extension SandboxSuite {
@Suite("limits")
struct LimitTests {
    @Test func wallClockLimitKillsAndReports() throws {
        try Fixture.with { f in
            let r = try f.run(["run", "--timeout", "1s", "--", "/bin/sh", "-c", "while :; do :; done"])
            #expect(r.status == 124)
            #expect(r.stderr.contains("airlock: stopped: wall-clock limit 1s reached"), "\(r.stderr)")
            #expect(r.elapsed < 5)
        }
    }

    @Test func memoryBombIsKilledAndReported() throws {
        try Fixture.with { f in
            let r = try f.run([
                "run", "--memory", "64M", "--timeout", "60s", "--", "python3", "-c",
                "b = []\nwhile True: b.append(bytearray(8 << 20))",
            ])
            #expect(r.status == 124, "\(r.stderr)")
            #expect(r.stderr.contains("airlock: stopped: memory limit 64 MiB exceeded"), "\(r.stderr)")
        }
    }

    @Test func forkBombIsContainedAndHostStaysResponsive() throws {
        try Fixture.with { f in
            let bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Airlock.binary)
            p.arguments = ["run", "--pids", "64", "--timeout", "3s", "--", "python3", "-c", bomb]
            p.currentDirectoryURL = URL(fileURLWithPath: f.workspace)
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            let start = Date()
            try p.run()
            Thread.sleep(forTimeInterval: 1.0)
            // The host can still start processes quickly while the bomb runs.
            let probeStart = Date()
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: "/bin/true")
            try probe.run()
            probe.waitUntilExit()
            #expect(Date().timeIntervalSince(probeStart) < 1.0, "host became unresponsive")
            p.waitUntilExit()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(p.terminationStatus == 124, "\(stderr)")
            #expect(stderr.contains("wall-clock limit 3s reached"), "\(stderr)")
            #expect(stderr.contains("process limit 64 reached"), "\(stderr)")
            #expect(Date().timeIntervalSince(start) < 10)
        }
    }

    @Test func diskFillHitsENOSPCWithinBudget() throws {
        try Fixture.with { f in
            let r = try f.sh(
                "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1; echo size=$(stat -c %s /tmp/fill)",
                flags: ["--disk", "16M"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("No space left on device"), "\(r.stdout)")
            let size = r.stdout.split(separator: "\n").last { $0.hasPrefix("size=") }.flatMap { Int($0.dropFirst(5)) } ?? -1
            #expect(size > 0 && size <= 16 << 20, "size \(size)")
        }
    }

    /// `--disk` is the sandbox's whole writable scratch: /tmp, $HOME and /dev/shm share it.
    /// 12 MiB in each of the three would be 36 MiB; with a 16 MiB budget the writes together
    /// stop at ENOSPC, and what was written adds up to no more than the budget.
    @Test func diskBudgetIsSharedByTmpHomeAndShm() throws {
        try Fixture.with { f in
            let r = try f.sh(
                """
                for d in /tmp "$HOME" /dev/shm; do dd if=/dev/zero of="$d/fill" bs=1M count=12 2>&1 | grep -o 'No space left on device'; done
                echo total=$(( $(stat -c %s /tmp/fill) + $(stat -c %s "$HOME/fill") + $(stat -c %s /dev/shm/fill) ))
                """,
                flags: ["--disk", "16M"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("No space left on device"), "\(r.stdout)")
            let total = r.stdout.split(separator: "\n").last { $0.hasPrefix("total=") }.flatMap { Int($0.dropFirst(6)) } ?? -1
            #expect(total > 12 << 20 && total <= 16 << 20, "written in all: \(total) bytes")
        }
    }

    /// /dev is no scratch space: the sandbox cannot create files, FIFOs or directories in it
    /// (it could fill its tmpfs and spend inodes beyond the disk budget), while its devices,
    /// /dev/shm and /dev/pts still work.
    @Test func devIsReadOnlyButItsDevicesWork() throws {
        try Fixture.with { f in
            let r = try f.sh(
                """
                for op in 'touch /dev/x' 'mkfifo /dev/p' 'mkdir /dev/d'; do sh -c "$op" 2>/dev/null && echo "made: $op"; done
                echo ok > /dev/null && echo null-ok
                echo ok > /dev/shm/s && echo shm-ok
                """)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stdout.contains("made:"), "\(r.stdout)")
            #expect(r.stdout.contains("null-ok") && r.stdout.contains("shm-ok"), "\(r.stdout)")
        }
    }

    @Test func cpuSpinIsThrottledToQuota() throws {
        try Fixture.with { f in
            let events = f.workspace + "/../airlock-test-events-\(UUID().uuidString.prefix(6)).jsonl"
            defer { try? FileManager.default.removeItem(atPath: events) }
            let r = try f.run(["run", "--cpus", "0.25", "--timeout", "2s", "--events", events, "--", "python3", "-c", "while True: pass"])
            #expect(r.status == 124)
            let lines = try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n")
            let exited = try #require(lines.first { $0.contains("\"type\":\"process.exited\"") })
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(exited.utf8)) as? [String: Any])
            let cpu = try #require(obj["airlock.cpu.time_ns"] as? Int)
            // 0.25 cores for ~2 s is ~0.5 s of CPU; unthrottled it would be ~2 s.
            #expect(cpu < 800_000_000, "cpu time \(cpu) ns: not throttled")
            #expect(cpu > 200_000_000, "cpu time \(cpu) ns: the spin did not run")
        }
    }
}
}
