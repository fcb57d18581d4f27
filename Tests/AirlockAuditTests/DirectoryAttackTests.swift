import AirlockCore
import Foundation
import Synchronization
import Testing

@testable import AirlockAudit

#if canImport(Glibc)
    import Glibc
#endif

/// Attacks by someone who can write the log directory (but has no key) on the writer
/// and the verifier themselves, which may run as root: symlinks, FIFOs and races that
/// try to make them write outside the directory, hang, or fail. Each runs against a
/// real log on disk and checks that nothing outside the log directory changed.
@Suite(.serialized) struct DirectoryAttackTests {
    /// A fresh temporary directory holding the log (`log/`) and a file outside it
    /// (`outside`) that the attacks aim at.
    struct Scene {
        let t: TempDir
        var outside: String { t.path + "/outside" }
        static let outsideBytes = Array("outside the log, must stay as it is\n".utf8)

        init(_ tag: String) {
            t = TempDir(tag)
            writeFile(outside, Self.outsideBytes)
        }

        /// Names in the temporary directory outside `log/`, and the outside file's bytes.
        func outsideState() -> [String] {
            var names: [String] = []
            if let d = opendir(t.path) {
                while let e = readdir(d) {
                    let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                    if name != "." && name != ".." && name != "log" { names.append(name) }
                }
                closedir(d)
            }
            var st = stat()
            lstat(outside, &st)
            return names.sorted() + [String(decoding: readFile(outside), as: UTF8.self), "mode \(st.st_mode)"]
        }
    }

    /// A log whose last segment ends with bytes no signature covers, so the next writer cuts them.
    func logWithUnsignedTail(_ dir: String) throws -> String {
        try writeLog(dir, events: 20)
        let seg = dir + "/" + segments(dir).last!
        writeFile(seg, readFile(seg) + Array("unsigned bytes someone appended\n".utf8))
        return seg
    }

    /// B5: the writer checks a segment, then (in the old code) re-opened it by name to
    /// truncate and append. The attacker renames a symlink to a file outside the directory
    /// over the segment the moment the cut file appears (inotify), as the attack did.
    @Test func segmentSwappedForASymlinkDuringRecoveryIsNotFollowed() throws {
        for round in 0..<4 {
            let s = Scene("attack-toctou")
            defer { s.t.cleanup() }
            let seg = try logWithUnsignedTail(s.t.log)
            let before = s.outsideState()
            let swap = s.t.log + "/.swap"
            #expect(symlink(s.outside, swap) == 0)
            let race = RaceOnCreate(dir: s.t.log, prefix: "cut-", rename: swap, over: seg)
            var opened: AuditLog?
            var failure: AirlockError?
            do { opened = try openLog(s.t.log) } catch { failure = error as? AirlockError }
            #expect(race.wait(), "round \(round): the race never ran (no cut file was created)")
            if let log = opened {
                // Whatever the writer did, it must not reach the outside file, and it must
                // not go on acknowledging records into a file no longer in the log.
                #expect(throws: AirlockError.self) { try log.appendAndWait(event(1)) }
                try? log.close()
            } else {
                #expect(failure?.message.contains("was replaced") == true, "\(failure.map(\.description) ?? "")")
            }
            #expect(s.outsideState() == before, "round \(round): a file outside the log directory changed")
        }
    }

    /// B6: symlinks planted where the writer creates or writes files: `audit.pub.tmp`
    /// (the old fixed temporary name) and `audit.pub` pointing at the outside file, `lock`
    /// and `writers` dangling into the directory above (the writer created them there).
    @Test func plantedSymlinksAreNeverFollowed() throws {
        for name in ["audit.pub.tmp", "audit.pub"] {
            let s = Scene("attack-symlink")
            defer { s.t.cleanup() }
            try writeLog(s.t.log, events: 3)
            unlink(s.t.log + "/" + LogFiles.publicKeyFile)
            let before = s.outsideState()
            #expect(symlink(s.outside, s.t.log + "/" + name) == 0)
            try writeLog(s.t.log, events: 3)  // the key is rewritten through a fresh name
            #expect(s.outsideState() == before, "\(name): a file outside the log directory changed")
            let pub = try LogFiles.readRegular(s.t.log + "/" + LogFiles.publicKeyFile)
            #expect(AuditPublicKey(String(decoding: pub, as: UTF8.self)) == (try verify(s.t.log)).chains.last?.key)
        }
        for name in [LogFiles.lockFile, LogFiles.writersFile] {
            let s = Scene("attack-symlink")
            defer { s.t.cleanup() }
            try writeLog(s.t.log, events: 3)
            unlink(s.t.log + "/" + name)
            #expect(symlink(s.t.path + "/created-by-root", s.t.log + "/" + name) == 0)
            let before = s.outsideState()
            let e = #expect(throws: AirlockError.self) { try openLog(s.t.log) }
            #expect(e?.message.contains("is a symlink") == true, "\(e.map(\.description) ?? "")")
            #expect(s.outsideState() == before, "\(name): a file outside the log directory was created")
            // Also when it points at an existing file: not opened, not locked, not changed.
            unlink(s.t.log + "/" + name)
            #expect(symlink(s.outside, s.t.log + "/" + name) == 0)
            #expect(throws: AirlockError.self) { try openLog(s.t.log) }
            #expect(s.outsideState() == before)
        }
    }

    /// W5: two writers opening a fresh log at the same moment, many times: both must
    /// open it (they used to share `audit.pub.tmp`, and one failed).
    @Test func twoWritersStartingAtOnceBothOpenTheLog() throws {
        for round in 0..<30 {
            let t = TempDir("attack-start-race")
            defer { t.cleanup() }
            let failures = Mutex<[String]>([])
            let done = Mutex(0)
            for w in 0..<2 {
                Thread.detachNewThread {
                    do {
                        let log = try openLog(t.log)
                        try log.appendAndWait(event(w))
                        try log.close()
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                    done.withLock { $0 += 1 }
                }
            }
            while done.withLock({ $0 }) < 2 { usleep(1000) }
            #expect(failures.withLock { $0 } == [], "round \(round)")
            #expect(try verify(t.log).ok, "round \(round)")
        }
    }

    /// W6: a FIFO under any of the log's names must not make the writer or `verify` hang
    /// (a watchdog writes to the FIFO after a few seconds to unblock a hung open and
    /// records that it had to).
    @Test func fifosInTheLogDirectoryFailInsteadOfHanging() throws {
        for name in [LogFiles.writersFile, LogFiles.lockFile, "segment", LogFiles.publicKeyFile, LogFiles.keyFile] {
            let s = Scene("attack-fifo")
            defer { s.t.cleanup() }
            try writeLog(s.t.log, events: 3)
            let target = s.t.log + "/" + (name == "segment" ? segments(s.t.log).last! : name)
            unlink(target)
            #expect(mkfifo(target, 0o600) == 0)
            let before = s.outsideState()
            let dog = FIFOWatchdog(target)
            let report = try? verify(s.t.log)
            #expect(!dog.fired(), "\(name): verify hung on a FIFO")
            if name == "segment" { #expect(report?.ok == false) }
            if name == LogFiles.writersFile { #expect(report?.ok == true && report?.open == false) }
            let dog2 = FIFOWatchdog(target)
            var opened = false
            do {
                let log = try openLog(s.t.log)
                opened = true
                try log.close()
            } catch {
                #expect("\(error)".contains("not a regular file"), "\(name): \(error)")
            }
            #expect(!dog2.fired(), "\(name): the writer hung on a FIFO")
            // audit.pub is only published: a FIFO there is replaced. Anything else stops the writer.
            #expect(opened == (name == LogFiles.publicKeyFile), "\(name)")
            #expect(s.outsideState() == before)
        }
    }

    /// W6: recovery names its cut file with a random suffix, so names created in advance
    /// cannot exhaust it (1000 of them made every run fail).
    @Test func preCreatedCutNamesDoNotStopRecovery() throws {
        let s = Scene("attack-cut-names")
        defer { s.t.cleanup() }
        try writeLog(s.t.log, events: 9)
        let seg = s.t.log + "/" + segments(s.t.log).last!
        let next = records(s.t.log).last!.seq + 1
        writeFile(seg, readFile(seg) + Array("torn".utf8))
        writeFile(s.t.log + "/cut-\(next)-\(next).log", [])
        for n in 2...1000 { writeFile(s.t.log + "/cut-\(next)-\(next)-\(n).log", []) }
        let log = try openLog(s.t.log)
        try log.close()
        #expect(log.openReport.contains { $0.contains("cut what followed") }, "\(log.openReport)")
        #expect(try verify(s.t.log).recoveries.count == 1)
    }

    /// The query index: a symlink or FIFO planted as index.sqlite is removed (it is a
    /// cache), not followed or waited on. (A race against SQLite's own open remains.)
    @Test func aPlantedIndexIsNotFollowed() throws {
        for fifo in [false, true] {
            let s = Scene("attack-index")
            defer { s.t.cleanup() }
            try writeLog(s.t.log, events: 3)
            let path = s.t.log + "/" + LogFiles.indexFile
            // A dangling symlink: SQLite would create the file it names (outside the log).
            #expect(fifo ? mkfifo(path, 0o600) == 0 : symlink(s.t.path + "/created-by-the-index", path) == 0)
            let before = s.outsideState()
            let dog = FIFOWatchdog(path)
            let index = try AuditIndex(logDirectory: s.t.log)
            #expect(try index.catchUp() > 0)
            #expect(!dog.fired())
            #expect(s.outsideState() == before)
        }
    }
}

/// Renames `rename` over `over` as soon as a file whose name starts with `prefix` is
/// created in `dir` (watched with inotify from another thread): an attacker racing the writer.
final class RaceOnCreate: Sendable {
    private let state = Mutex<Bool?>(nil)  // nil: waiting; true: renamed; false: gave up

    init(dir: String, prefix: String, rename from: String, over to: String) {
        let fd = inotify_init1(Int32(IN_CLOEXEC))
        precondition(fd >= 0)
        precondition(inotify_add_watch(fd, dir, UInt32(IN_CREATE)) >= 0)
        Thread.detachNewThread { [self] in
            defer { close(fd) }
            let deadline = Clock.monotonicNanos() + 10_000_000_000
            var buf = [UInt8](repeating: 0, count: 4096)
            while Clock.monotonicNanos() < deadline {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { continue }
                var i = 0
                while i + 16 <= n {
                    let len = Int(buf[i + 12]) | Int(buf[i + 13]) << 8 | Int(buf[i + 14]) << 16 | Int(buf[i + 15]) << 24
                    let name = String(decoding: buf[(i + 16)..<min(n, i + 16 + len)].prefix(while: { $0 != 0 }), as: UTF8.self)
                    i += 16 + len
                    if name.hasPrefix(prefix) {
                        Glibc.rename(from, to)
                        self.state.withLock { $0 = true }
                        return
                    }
                }
            }
            self.state.withLock { $0 = false }
        }
    }

    /// Waits for the watcher to finish; whether it renamed.
    func wait() -> Bool {
        let deadline = Clock.monotonicNanos() + 12_000_000_000
        while Clock.monotonicNanos() < deadline {
            if let s = state.withLock({ $0 }) { return s }
            usleep(10_000)
        }
        return false
    }
}

/// Unblocks whoever is stuck opening a FIFO: after `seconds`, opens it for writing
/// (which succeeds only while a reader waits) and records that it had to.
final class FIFOWatchdog: Sendable {
    private let state = Mutex<(stop: Bool, fired: Bool)>((false, false))

    init(_ path: String, seconds: Int = 3) {
        Thread.detachNewThread { [self] in
            let deadline = Clock.monotonicNanos() + UInt64(seconds) * 1_000_000_000
            while !self.state.withLock({ $0.stop }) {
                if Clock.monotonicNanos() > deadline {
                    let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                    if fd >= 0 {
                        self.state.withLock { $0.fired = true }
                        close(fd)
                    }
                }
                usleep(20_000)
            }
        }
    }

    /// Stops the watchdog; whether it had to unblock anyone.
    func fired() -> Bool {
        state.withLock {
            $0.stop = true
            return $0.fired
        }
    }
}
