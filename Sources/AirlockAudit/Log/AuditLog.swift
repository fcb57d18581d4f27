#if canImport(Glibc)
import Glibc
#endif
import AirlockCore
import Crypto
import Synchronization

/// The tamper-evident audit log: append-only segment files of hash-chained records
/// (`LogRecord`), Ed25519-signed checkpoints, and durable group commit.
///
/// An append is acknowledged only once its record is on disk (`fdatasync`) and a
/// signature covers it: every batch ends with a signed checkpoint, written with it.
/// Callers encode and redact their own events in parallel; one writer thread takes
/// whatever is queued, chains and frames it, signs the batch once, writes it with one
/// `write(2)` and syncs once, so throughput grows with the number of concurrent
/// writers while each waits for at most one sync and one signature. Several processes
/// can share a directory: each batch is written under an exclusive `flock`, after
/// re-reading the tail if another process moved it. Whatever follows the last valid
/// signature is not covered by one: a crashed writer's partial batch or records someone
/// appended without the key (never acknowledged), or signed records whose signature
/// someone removed. Either way the next writer moves it aside to a `cut-*.log`
/// file and records the cut in a signed `audit.recovered` record; it never signs
/// records it did not write. See docs/audit.md for the format and the guarantees.
public final class AuditLog: EventSink, @unchecked Sendable {
    public struct Options: Sendable {
        public var directory: String
        /// Every batch ends with a signed checkpoint; a batch longer than this also gets
        /// one after every this many records.
        public var checkpointEvery: Int = 1000
        /// A new segment once the current one reaches this size…
        public var maxSegmentBytes: Int = 64 << 20
        /// …or this age.
        public var maxSegmentAge: Duration = .seconds(24 * 3600)
        /// Segments whose newest record is older than this are deleted (never the
        /// current one); nil keeps everything.
        public var retention: Duration?
        /// Applied to every string of every event before it is encoded: the log never
        /// sees what this removes.
        public var redact: (@Sendable (String) -> String)?
        /// Called on the writer thread after each durable batch, just before its callers
        /// are released, with the number of records and each caller's wait (enqueue to
        /// acknowledgement) in nanoseconds.
        public var onCommit: (@Sendable (_ records: Int, _ latenciesNanos: [UInt64]) -> Void)?
        /// Called on the writer thread with each new signed head, after the batch's callers
        /// were released (e.g. to hand it to an `AuditWitness`, which must not block).
        public var onHead: (@Sendable (SignedHead) -> Void)?
        /// Called when an `emit` (which cannot throw) fails.
        public var onError: (@Sendable (AirlockError) -> Void)?
        /// Called on the writer thread with what a recovery did after `open` returned
        /// (another process left an unsigned tail, the key changed): the same lines
        /// `openReport` holds for what was found at open.
        public var onReport: (@Sendable (String) -> Void)?
        /// The most events written in one batch.
        public var maxBatch = 8192

        public init(directory: String) { self.directory = directory }
    }

    public let options: Options
    public let publicKey: AuditPublicKey
    private let key: AuditSigningKey
    private let lockFD: Int32
    private let writersFD: Int32

    // Shared between callers and the writer thread, under `mutex`.
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var acked = pthread_cond_t()
    private var pending: [Pending] = []
    private var closing = false
    private var finished = false
    private var failure: AirlockError?
    private var thread: pthread_t?

    // The writer thread's own state (and `open`'s, before the thread starts).
    private var tail: Tail
    /// The newest durable signed head, for readers on any thread.
    private let durableHead = Mutex<SignedHead?>(nil)
    /// Set by `flush` when a new head became durable; the writer thread hands it to `onHead`.
    private var headToPublish: SignedHead?

    /// The newest signed head: the last record a durable signature covers.
    public var head: SignedHead? { durableHead.withLock { $0 } }

    /// What the log looked like when it was opened: repairs made, chains started.
    public private(set) var openReport: [String] = []
    /// Set once `open` has filled `openReport`: later lines go to `options.onReport`.
    private var opened = false

    private struct Pending {
        var event: [UInt8]
        var enqueued: UInt64
        var waiter: Waiter
    }

    private enum Waiter {
        case async(CheckedContinuation<UInt64, any Error>)
        case sync(SyncSlot)
        case batch(BatchWaiter)
    }

    /// One continuation for a whole `append(contentsOf:)`: resumed once every event of
    /// it is durable (or any failed). Touched only by the writer thread after enqueue.
    final class BatchWaiter: @unchecked Sendable {
        private var seqs: [UInt64]
        private var remaining: Int
        private var continuation: CheckedContinuation<[UInt64], any Error>?

        init(count: Int, continuation: CheckedContinuation<[UInt64], any Error>) {
            seqs = []
            seqs.reserveCapacity(count)
            remaining = count
            self.continuation = continuation
        }

        func deliver(_ r: Result<UInt64, AirlockError>) {
            guard let c = continuation else { return }
            switch r {
            case .success(let s):
                seqs.append(s)
                remaining -= 1
                if remaining == 0 {
                    continuation = nil
                    c.resume(returning: seqs)
                }
            case .failure(let e):
                continuation = nil
                c.resume(throwing: e)
            }
        }

        func fail(_ e: AirlockError) { deliver(.failure(e)) }
    }

    final class SyncSlot: @unchecked Sendable {
        var result: Result<UInt64, AirlockError>?
    }

    /// Where the log ends, as this writer last saw it.
    private struct Tail {
        var segment: String = ""
        var fd: Int32 = -1
        var size: Int = 0
        var openedAt: Int64 = 0
        var lastSeq: UInt64 = 0
        var lastHash: Digest32 = .zero
        var chain: String = ""
        var lastIsCheckpoint = true
        var uncheckpointed = 0
        /// The head the last checkpoint appended signs (durable once flushed).
        var head: SignedHead?
    }

    /// Opens (creating if needed) the log in `options.directory`. Whatever follows the
    /// last valid signature is moved to a `cut-*.log` file and the cut is recorded.
    public static func open(_ options: Options) throws(AirlockError) -> AuditLog {
        let dir = options.directory
        try LogFiles.makeDirectory(dir)
        let key = try AuditSigningKey.loadOrCreate(at: dir + "/" + LogFiles.keyFile)
        let lockFD = try LogFiles.openRegular(dir + "/" + LogFiles.lockFile, O_RDWR | O_CREAT)
        let writersFD: Int32
        do { writersFD = try LogFiles.openRegular(dir + "/" + LogFiles.writersFile, O_RDWR | O_CREAT) } catch {
            Glibc.close(lockFD)
            throw error
        }
        let log = AuditLog(options: options, key: key, lockFD: lockFD, writersFD: writersFD)
        try log.start()
        return log
    }

    private init(options: Options, key: AuditSigningKey, lockFD: Int32, writersFD: Int32) {
        self.options = options
        self.key = key
        self.publicKey = key.publicKey
        self.lockFD = lockFD
        self.writersFD = writersFD
        self.tail = Tail()
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&acked, nil)
    }

    deinit {
        if tail.fd >= 0 { Glibc.close(tail.fd) }
        Glibc.close(lockFD)
        Glibc.close(writersFD)
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&wake)
        pthread_cond_destroy(&acked)
    }

    private var dir: String { options.directory }

    private func start() throws(AirlockError) {
        // `writers` only tells `audit verify` that a writer is live: recovery does not need
        // it, since every batch is written and signed under `lock`.
        guard flock(writersFD, LOCK_SH) == 0 else { throw systemError("flock", errno, "cannot register as a writer of \(dir)") }
        try publishPublicKey()
        try locked { () throws(AirlockError) in
            var out: [UInt8] = []
            try reload(into: &out)
            try flush(&out, reason: "recovery")
            try applyRetention(into: &out)
            try flush(&out)
        }
        if let h = headToPublish {
            headToPublish = nil
            options.onHead?(h)
        }
        opened = true
        var t = pthread_t()
        let box = Unmanaged.passRetained(self)
        let rc = pthread_create(&t, nil, { arg in
            let log = Unmanaged<AuditLog>.fromOpaque(arg!).takeRetainedValue()
            log.writerLoop()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw systemError("pthread_create", rc, "cannot start the audit log writer")
        }
        thread = t
    }

    private func publishPublicKey() throws(AirlockError) {
        let path = dir + "/" + LogFiles.publicKeyFile
        let text = Array((publicKey.description + "\n").utf8)
        // (A symlink, FIFO or device there reads as nil, and the rename below replaces it.)
        if let existing = LogFiles.read(path, upTo: 4096), existing == text { return }
        // A fresh name each time (created exclusively, never through a symlink): two
        // writers starting at once do not share a temporary file, and nobody can point it
        // elsewhere.
        var fd: Int32 = -1
        var tmp = ""
        for _ in 0..<16 where fd < 0 {
            tmp = path + "." + Self.randomID() + ".tmp"
            fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o644)
            if fd < 0 && errno != EEXIST { break }
        }
        guard fd >= 0 else { throw systemError("open", errno, "cannot create a temporary file to write \(path)") }
        defer { Glibc.close(fd) }
        guard fchmod(fd, 0o644) == 0, POSIXIO.writeAll(fd, text) == 0, fsync(fd) == 0, rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw systemError("write", e, "cannot write \(path)")
        }
    }

    // MARK: Appending

    /// Appends an event; returns its sequence number once it is on disk.
    public func append(_ event: AuditEvent) async throws -> UInt64 {
        let bytes = encode(event)
        return try await withCheckedThrowingContinuation { c in
            enqueue(Pending(event: bytes, enqueued: Clock.monotonicNanos(), waiter: .async(c)))
        }
    }

    /// Appends several events as one unit of work (one wait for all of them); returns
    /// their sequence numbers, in order, once they are on disk.
    public func append(contentsOf events: [AuditEvent]) async throws -> [UInt64] {
        guard !events.isEmpty else { return [] }
        let encoded = events.map(encode)
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt64], any Error>) in
            let t = Clock.monotonicNanos()
            pthread_mutex_lock(&mutex)
            let batch = BatchWaiter(count: encoded.count, continuation: c)
            var ok = true
            for e in encoded where ok { ok = enqueueLocked(Pending(event: e, enqueued: t, waiter: .batch(batch))) }
            let f = failure
            pthread_mutex_unlock(&mutex)
            if !ok { batch.fail(f ?? AirlockError(.usage, "the audit log is closed")) }
        }
    }

    /// Appends an event and blocks until it is on disk.
    @discardableResult
    public func appendAndWait(_ event: AuditEvent) throws(AirlockError) -> UInt64 {
        let slot = SyncSlot()
        let bytes = encode(event)
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        guard enqueueLocked(Pending(event: bytes, enqueued: Clock.monotonicNanos(), waiter: .sync(slot))) else {
            throw failure ?? AirlockError(.usage, "the audit log is closed")
        }
        while slot.result == nil { pthread_cond_wait(&acked, &mutex) }
        return try slot.result!.get()
    }

    /// `EventSink`: appends and waits until the record is durable; a failure goes to
    /// `options.onError`.
    public func emit(_ event: AuditEvent) {
        do { try appendAndWait(event) } catch { options.onError?(error) }
    }

    /// Writes what is still queued (signed, as every batch) and stops the writer. Idempotent.
    public func close() throws(AirlockError) {
        pthread_mutex_lock(&mutex)
        if !closing {
            closing = true
            pthread_cond_signal(&wake)
        }
        while !finished { pthread_cond_wait(&acked, &mutex) }
        let f = failure
        pthread_mutex_unlock(&mutex)
        if let t = thread {
            pthread_join(t, nil)
            thread = nil
        }
        flock(writersFD, LOCK_UN)
        if let f { throw f }
    }

    private func encode(_ event: AuditEvent) -> [UInt8] {
        var e = event
        if let redact = options.redact { e = e.redacted(redact) }
        var out: [UInt8] = []
        out.reserveCapacity(512)
        e.write(into: &out)
        return out
    }

    private func enqueue(_ p: Pending) {
        pthread_mutex_lock(&mutex)
        let ok = enqueueLocked(p)
        let f = failure
        pthread_mutex_unlock(&mutex)
        if !ok, case .async(let c) = p.waiter { c.resume(throwing: f ?? AirlockError(.usage, "the audit log is closed")) }
    }

    private func enqueueLocked(_ p: Pending) -> Bool {
        guard !closing, failure == nil else { return false }
        pending.append(p)
        if pending.count == 1 { pthread_cond_signal(&wake) }
        return true
    }

    // MARK: The writer thread

    private func writerLoop() {
        pthread_mutex_lock(&mutex)
        while true {
            while pending.isEmpty && !closing { pthread_cond_wait(&wake, &mutex) }
            let take = min(pending.count, options.maxBatch)
            let batch = Array(pending.prefix(take))
            pending.removeFirst(take)
            let shutdown = closing && pending.isEmpty
            pthread_mutex_unlock(&mutex)

            var result: Result<[UInt64], AirlockError>
            if let f = failureSnapshot() {
                result = .failure(f)
            } else {
                result = commit(batch, shutdown: shutdown)
            }
            let now = Clock.monotonicNanos()
            var latencies: [UInt64] = []
            latencies.reserveCapacity(batch.count)
            for p in batch { latencies.append(now &- p.enqueued) }
            // Before anyone is released, so a caller that waits for its events also waits
            // for their accounting.
            if case .success = result, !batch.isEmpty { options.onCommit?(batch.count, latencies) }

            pthread_mutex_lock(&mutex)
            if case .failure(let f) = result, failure == nil { failure = f }
            var resumes: [(CheckedContinuation<UInt64, any Error>, Result<UInt64, AirlockError>)] = []
            var batchResults: [(BatchWaiter, Result<UInt64, AirlockError>)] = []
            for (i, p) in batch.enumerated() {
                let r: Result<UInt64, AirlockError> = result.map { $0[i] }
                switch p.waiter {
                case .sync(let slot): slot.result = r
                case .async(let c): resumes.append((c, r))
                case .batch(let b): batchResults.append((b, r))
                }
            }
            if shutdown { finished = true }
            pthread_cond_broadcast(&acked)
            pthread_mutex_unlock(&mutex)
            for (c, r) in resumes {
                switch r {
                case .success(let s): c.resume(returning: s)
                case .failure(let e): c.resume(throwing: e)
                }
            }
            for (b, r) in batchResults { b.deliver(r) }
            if let h = headToPublish {
                headToPublish = nil
                options.onHead?(h)
            }
            pthread_mutex_lock(&mutex)
            if shutdown { break }
        }
        // Nothing can be queued once closing (enqueue refuses), but never leave a waiter hanging.
        let leftovers = pending
        pending.removeAll()
        let closed = AirlockError(.usage, "the audit log is closed")
        for p in leftovers { if case .sync(let slot) = p.waiter { slot.result = .failure(closed) } }
        pthread_cond_broadcast(&acked)
        pthread_mutex_unlock(&mutex)
        for p in leftovers {
            switch p.waiter {
            case .async(let c): c.resume(throwing: closed)
            case .batch(let b): b.fail(closed)
            case .sync: break
            }
        }
    }

    private func failureSnapshot() -> AirlockError? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return failure
    }

    private func commit(_ batch: [Pending], shutdown: Bool) -> Result<[UInt64], AirlockError> {
        do throws(AirlockError) {
            var seqs: [UInt64] = []
            seqs.reserveCapacity(batch.count)
            try locked { () throws(AirlockError) in
                var out: [UInt8] = []
                out.reserveCapacity(batch.reduce(0) { $0 + $1.event.count + 200 })
                try syncTail(into: &out)
                for p in batch {
                    try rotateIfNeeded(adding: p.event.count, into: &out)
                    seqs.append(append(event: p.event, into: &out))
                    if tail.uncheckpointed >= options.checkpointEvery { try checkpoint(reason: "count", into: &out) }
                }
                // The batch's signature is written with it: nothing is acknowledged unsigned.
                try flush(&out, reason: shutdown ? "shutdown" : "batch")
            }
            return .success(seqs)
        } catch {
            return .failure(error)
        }
    }

    /// Runs `body` holding the log's exclusive lock.
    private func locked(_ body: () throws(AirlockError) -> Void) throws(AirlockError) {
        while flock(lockFD, LOCK_EX) != 0 {
            guard errno == EINTR else { throw systemError("flock", errno, "cannot lock the audit log \(dir)") }
        }
        defer { flock(lockFD, LOCK_UN) }
        try body()
    }

    // MARK: Records

    @discardableResult
    private func append(event: [UInt8], into out: inout [UInt8]) -> UInt64 {
        let seq = tail.lastSeq + 1
        let hash = LogRecord.chainHash(seq: seq, prev: tail.lastHash, event: event)
        LogRecord(seq: seq, prev: tail.lastHash, hash: hash, event: event).write(into: &out)
        tail.lastSeq = seq
        tail.lastHash = hash
        tail.lastIsCheckpoint = false
        tail.uncheckpointed += 1
        return seq
    }

    private func internalEvent(_ type: String, _ attributes: [(String, JSONValue)]) -> [UInt8] {
        internalEventAt(Clock.realtimeNanos(), type, attributes)
    }

    private func internalEventAt(_ nanos: Int64, _ type: String, _ attributes: [(String, JSONValue)]) -> [UInt8] {
        var out: [UInt8] = []
        AuditEvent(type: type, identity: Identity(instance: ""), attributes: attributes, timeNanos: nanos).encodedObject(seq: nil).write(into: &out)
        return out
    }

    private func checkpoint(reason: String, into out: inout [UInt8]) throws(AirlockError) {
        let signature = try key.sign(CheckpointMessage.bytes(chain: tail.chain, seq: tail.lastSeq, hash: tail.lastHash))
        let now = Clock.realtimeNanos()
        tail.head = SignedHead(seq: tail.lastSeq, hash: tail.lastHash, time: Clock.rfc3339(now), chain: tail.chain, key: publicKey, signature: signature)
        append(event: internalEventAt(now, "audit.checkpoint", [
            ("audit.chain.id", .string(tail.chain)), ("audit.key.id", .string(publicKey.id)),
            ("audit.checkpoint.seq", .int(Int64(tail.lastSeq))), ("audit.checkpoint.hash", .string(tail.lastHash.description)),
            ("audit.checkpoint.reason", .string(reason)), ("audit.signature", .string(Hex.string(signature))),
        ]), into: &out)
        tail.lastIsCheckpoint = true
        tail.uncheckpointed = 0
    }

    /// Signs what `out` holds (a checkpoint for `reason`, unless it already ends with
    /// one), writes it to the current segment and makes it durable. Nothing reaches the
    /// log unsigned.
    private func flush(_ out: inout [UInt8], reason: String = "batch") throws(AirlockError) {
        guard !out.isEmpty else { return }
        if !tail.lastIsCheckpoint { try checkpoint(reason: reason, into: &out) }
        let e = POSIXIO.writeAll(tail.fd, out)
        guard e == 0 else {
            // Cut whatever part of the batch reached the file: nothing half-written stays.
            _ = ftruncate(tail.fd, off_t(tail.size))
            throw systemError("write", e, "cannot write the audit log segment \(dir)/\(tail.segment)")
        }
        guard fdatasync(tail.fd) == 0 else {
            throw systemError("fdatasync", errno, "cannot make the audit log durable (\(dir)/\(tail.segment))")
        }
        tail.size += out.count
        out.removeAll(keepingCapacity: true)
        if let h = tail.head {
            durableHead.withLock { $0 = h }
            headToPublish = h
        }
    }

    // MARK: Segments

    private func rotateIfNeeded(adding bytes: Int, into out: inout [UInt8]) throws(AirlockError) {
        let tooBig = tail.size + out.count + bytes > options.maxSegmentBytes && tail.size + out.count > 0
        let tooOld = Clock.realtimeNanos() - tail.openedAt >= options.maxSegmentAge.nanoseconds
        guard tooBig || tooOld else { return }
        try flush(&out)
        try rotate(into: &out, previousChain: nil)
        try flush(&out)
        try applyRetention(into: &out)
    }

    /// Starts a new segment. With `previousChain` (or for the very first segment) it
    /// starts a new chain, explicitly linked to the previous one.
    private func rotate(into out: inout [UInt8], previousChain: (String, AuditPublicKey)?) throws(AirlockError) {
        precondition(out.isEmpty)
        let previous = tail.segment
        let name = LogFiles.segmentName(firstSeq: tail.lastSeq + 1)
        let path = dir + "/" + name
        let fd = try LogFiles.openRegular(path, O_RDWR | O_CREAT | O_EXCL | O_APPEND)
        if tail.fd >= 0 { Glibc.close(tail.fd) }
        tail.fd = fd
        tail.segment = name
        tail.size = 0
        tail.openedAt = Clock.realtimeNanos()
        let newChain = previousChain != nil || tail.lastSeq == 0
        if newChain { tail.chain = Self.randomID() }
        var attrs: [(String, JSONValue)] = [
            ("audit.chain.id", .string(tail.chain)), ("audit.key.id", .string(publicKey.id)),
            ("audit.key.public", .string(publicKey.description)),
            ("audit.segment.previous", previous.isEmpty ? .null : .string(previous)),
        ]
        if let (chain, key) = previousChain {
            attrs.append(("audit.chain.previous", .object([
                ("audit.chain.id", .string(chain)), ("audit.key.id", .string(key.id)),
                ("audit.checkpoint.seq", .int(Int64(tail.lastSeq))), ("audit.checkpoint.hash", .string(tail.lastHash.description)),
            ])))
        }
        append(event: internalEvent(newChain ? "audit.chain.started" : "audit.segment.opened", attrs), into: &out)
        try flush(&out, reason: "segment")
        fsyncDirectory()
    }

    /// Deletes segments past retention, after recording (durably) what goes and where
    /// the remaining chain starts, so verification still accounts for every record.
    private func applyRetention(into out: inout [UInt8]) throws(AirlockError) {
        guard let retention = options.retention else { return }
        let cutoff = Clock.realtimeNanos() - retention.nanoseconds
        let segments = try LogFiles.segments(in: dir)
        var doomed: [String] = []
        for (i, name) in segments.enumerated() where i < segments.count - 1 {
            var st = stat()
            guard lstat(dir + "/" + name, &st) == 0 else { break }
            let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
            guard mtime < cutoff else { break }
            doomed.append(name)
        }
        guard !doomed.isEmpty else { return }
        let keep = segments[doomed.count]
        guard let first = LogFiles.read(dir + "/" + keep, upTo: 64 << 10).flatMap({ SegmentLines(bytes: $0).first(where: { _ in true }) }),
            case .success(let record) = LogRecord.parse(first.line)
        else { throw AirlockError(.system, "retention: cannot read the first record of \(dir)/\(keep)") }
        append(event: internalEvent("audit.retention", [
            ("audit.retention.segments", .array(doomed.map { .string($0) })),
            ("audit.retention.through_seq", .int(Int64(record.seq - 1))),
            ("audit.retention.through_hash", .string(record.prev.description)),
        ]), into: &out)
        try flush(&out, reason: "retention")  // signed and durable before anything is deleted
        for name in doomed { unlink(dir + "/" + name) }
        fsyncDirectory()
    }

    private func fsyncDirectory() {
        let d = Glibc.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 {
            fsync(d)
            Glibc.close(d)
        }
    }

    /// Under the lock: if another process wrote since this writer last did, re-read
    /// where the log ends (cutting, and recording, anything unsigned after it).
    private func syncTail(into out: inout [UInt8]) throws(AirlockError) {
        var st = stat()
        if tail.fd >= 0, fstat(tail.fd, &st) == 0, Int(st.st_size) == tail.size, st.st_nlink > 0 {
            // Same size: nobody appended here. Did anyone rotate past it?
            let next = dir + "/" + LogFiles.segmentName(firstSeq: tail.lastSeq + 1)
            if access(next, F_OK) != 0 { return }
        }
        try reload(into: &out)
        try flush(&out, reason: "recovery")
    }

    /// Under the lock: finds where the signed log ends, cuts anything after it (moved to
    /// a `cut-*.log` file), starts a new chain if the key changed or nothing is left, and
    /// appends the `audit.recovered` record for a cut to `out` (the caller signs it).
    private func reload(into out: inout [UInt8]) throws(AirlockError) {
        let segments = try LogFiles.segments(in: dir)
        let cut = try loadTail(segments: segments)
        if tail.fd < 0 {
            try rotate(into: &out, previousChain: nil)
        } else {
            let header = try Self.header(fd: tail.fd, path: dir + "/" + tail.segment)
            if header.key != publicKey {
                // A different key: never continue the old chain with it.
                report("the signing key changed (\(header.key.id) → \(publicKey.id)): starting a new chain linked to chain \(header.chain) at seq \(tail.lastSeq)")
                try rotate(into: &out, previousChain: (header.chain, header.key))
            }
        }
        if let cut {
            let range = cut.firstSeq.map { "records \($0)–\(cut.lastSeq ?? $0) (\(cut.records))" } ?? "no complete record"
            report("cut what followed the last signature (seq \(cut.afterSeq)): \(range), \(cut.bytes) bytes, moved to \(cut.file); it was not covered by a signature: either never acknowledged (a writer crashed mid-batch, or someone without the key appended it) or its signature was removed (by someone without the key)")
            append(event: internalEvent("audit.recovered", [
                ("audit.segment", .string(cut.segment)),
                ("audit.recovered.after_seq", .int(Int64(cut.afterSeq))),
                ("audit.recovered.after_hash", .string(cut.afterHash.description)),
                ("audit.recovered.cut_records", .int(Int64(cut.records))),
                ("audit.recovered.cut_first_seq", cut.firstSeq.map { .int(Int64($0)) } ?? .null),
                ("audit.recovered.cut_last_seq", cut.lastSeq.map { .int(Int64($0)) } ?? .null),
                ("audit.recovered.cut_bytes", .int(Int64(cut.bytes))),
                ("audit.recovered.cut_sha256", .string(cut.sha256.description)),
                ("audit.recovered.cut_file", .string(cut.file)),
                ("audit.recovered.segments_removed", .array(cut.segmentsRemoved.map { .string($0) })),
                ("audit.recovered.reason", .string("not covered by a signature: either never acknowledged (a writer crashed mid-batch, or someone without the key appended them) or their signature was removed (by someone without the key, e.g. to rewrite them)")),
            ]), into: &out)
        }
    }

    /// Records what a recovery did: in `openReport` while opening, through
    /// `options.onReport` afterwards.
    private func report(_ line: String) {
        if opened { options.onReport?(line) } else { openReport.append(line) }
    }

    /// What a recovery cut: everything after the last valid signature.
    struct Cut {
        var segment: String
        var afterSeq: UInt64
        var afterHash: Digest32
        var records = 0
        var firstSeq: UInt64?
        var lastSeq: UInt64?
        var bytes = 0
        var sha256 = Digest32.zero
        var file = ""
        var segmentsRemoved: [String] = []
    }

    /// A checkpoint that verifies: it covers the record just before it, names the
    /// segment's chain and is signed with the segment's key.
    struct SignedEnd {
        /// The byte offset just after the checkpoint's line.
        var end: Int
        var record: LogRecord
        var head: SignedHead
    }

    /// Sets `tail` to the end of the last valid signature in `segments`. What follows it
    /// (records, a torn line, whole segments) is moved to a `cut-*.log` file and
    /// described in the returned `Cut`. With no valid signature anywhere, everything is
    /// cut and `tail` is left empty (no segment).
    ///
    /// Each segment is opened once (`LogFiles.openRegular`: no symlink, no FIFO) and
    /// everything after that (reading, truncating, appending) uses that descriptor: a
    /// name swapped for a symlink in between is never followed.
    private func loadTail(segments: [String]) throws(AirlockError) -> Cut? {
        if tail.fd >= 0 { Glibc.close(tail.fd) }
        tail = Tail()
        guard !segments.isEmpty else { return nil }
        var index = segments.count - 1
        var found: SignedEnd?
        var foundHeader: Header?
        // The open segments[index...] and their sizes, oldest first.
        var files: [(fd: Int32, size: Int)] = []
        defer { for o in files { Glibc.close(o.fd) } }
        while index >= 0 {
            let path = dir + "/" + segments[index]
            let fd = try LogFiles.openRegular(path, O_RDWR | O_APPEND)
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                let e = errno
                Glibc.close(fd)
                throw systemError("fstat", e, "cannot inspect the audit log segment \(path)")
            }
            let size = Int(st.st_size)
            files.insert((fd, size), at: 0)
            if let header = try? Self.header(fd: fd, path: path) {
                // Usually the last line is the signature: read only the end of the file first.
                let window = 64 << 10
                if size > window, let bytes = LogFiles.read(fd: fd, from: size - window, upTo: window).map({ Array($0.prefix(window)) }) {
                    found = Self.lastValidCheckpoint(bytes, base: size - window, partialFirst: true, header: header)
                }
                if found == nil {
                    guard let bytes = LogFiles.read(fd: fd, from: 0, upTo: size).map({ Array($0.prefix(size)) }) else {
                        throw systemError("read", errno, "cannot read the audit log segment \(path)")
                    }
                    found = Self.lastValidCheckpoint(bytes, base: 0, partialFirst: false, header: header)
                }
                if found != nil { foundHeader = header }
            }
            if found != nil { break }
            index -= 1
        }
        // `files` holds segments[max(index, 0)...].
        let end = found?.end ?? 0
        var cut: Cut?
        if index < 0 || end < files[0].size || index < segments.count - 1 {
            cut = try moveAside(segments: segments, from: index < 0 ? 0 : index, files: files, offset: end, found: found)
        }
        guard let found, let header = foundHeader, index >= 0 else { return cut }
        let name = segments[index]
        let fd = files[0].fd
        try Self.checkStillNamed(fd: fd, path: dir + "/" + name)
        files.removeFirst()  // kept as the tail's
        tail.fd = fd
        tail.segment = name
        tail.size = found.end
        tail.openedAt = header.time
        tail.chain = header.chain
        tail.lastSeq = found.record.seq
        tail.lastHash = found.record.hash
        tail.lastIsCheckpoint = true
        tail.uncheckpointed = 0
        tail.head = found.head
        durableHead.withLock { $0 = found.head }
        return cut
    }

    /// Fails unless `path` still names the file open as `fd` (not, say, a symlink renamed
    /// over it since it was opened): the writer must not append to a file no longer in the log.
    static func checkStillNamed(fd: Int32, path: String) throws(AirlockError) {
        var a = stat()
        var b = stat()
        guard fstat(fd, &a) == 0, lstat(path, &b) == 0, a.st_dev == b.st_dev, a.st_ino == b.st_ino else {
            throw AirlockError(
                .usage,
                "the audit log segment \(path) was replaced while it was being recovered (by a symlink or another file); nothing more was written to it. Someone who can write the directory did this: run `airlock audit verify` on it")
        }
    }

    /// Copies everything from `offset` in `segments[from]` to the end of the log into a
    /// new `cut-<first>-<last>-<random>.log` (0600, never read as log), durably, then
    /// truncates that segment there and removes the later ones. `files` are the open
    /// segments `segments[from...]` with their sizes.
    private func moveAside(segments: [String], from: Int, files: [(fd: Int32, size: Int)], offset: Int, found: SignedEnd?)
        throws(AirlockError) -> Cut
    {
        var bytes: [UInt8] = []
        for (i, file) in files.enumerated() {
            let start = i == 0 ? offset : 0
            guard let b = LogFiles.read(fd: file.fd, from: start, upTo: max(0, file.size - start)) else {
                throw systemError("read", errno, "cannot read the audit log segment \(dir)/\(segments[from + i])")
            }
            bytes += b.prefix(max(0, file.size - start))
        }
        var cut = Cut(
            segment: segments[from], afterSeq: found?.record.seq ?? 0, afterHash: found?.record.hash ?? .zero,
            bytes: bytes.count, sha256: Digest32(SHA256.hash(data: bytes)))
        for (_, line) in SegmentLines(bytes: bytes) {
            guard case .success(let r) = LogRecord.parse(line) else { continue }
            cut.records += 1
            cut.firstSeq = cut.firstSeq ?? r.seq
            cut.lastSeq = r.seq
        }
        let first = cut.firstSeq ?? cut.afterSeq + 1
        let last = cut.lastSeq ?? first
        // A random suffix, created exclusively: names someone created in advance cannot
        // exhaust it (a clash just draws again).
        var fd: Int32 = -1
        for _ in 0..<64 where fd < 0 {
            cut.file = "cut-\(first)-\(last)-\(Self.randomID()).log"
            fd = Glibc.open(dir + "/" + cut.file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
            if fd < 0 && errno != EEXIST { break }
        }
        guard fd >= 0 else { throw systemError("open", errno, "cannot create \(dir)/\(cut.file) to move an unsigned tail aside") }
        defer { Glibc.close(fd) }
        guard POSIXIO.writeAll(fd, bytes) == 0, fsync(fd) == 0 else {
            throw systemError("write", errno, "cannot write \(dir)/\(cut.file) (the unsigned tail is left in place)")
        }
        fsyncDirectory()
        // Only once the evidence is durable elsewhere: cut it from the log.
        for (i, name) in segments.enumerated().reversed() where i >= from {
            let path = dir + "/" + name
            if i == from && found != nil {
                let sfd = files[0].fd
                guard ftruncate(sfd, off_t(offset)) == 0, fdatasync(sfd) == 0 else {
                    throw systemError("ftruncate", errno, "cannot cut the unsigned tail of \(path)")
                }
            } else {
                // unlink never follows a symlink: at worst it removes one someone put here.
                guard unlink(path) == 0 else { throw systemError("unlink", errno, "cannot remove the unsigned segment \(path)") }
                cut.segmentsRemoved.insert(name, at: 0)
            }
        }
        fsyncDirectory()
        return cut
    }

    /// The last checkpoint in `bytes` (the segment from byte `base`; its first line is
    /// skipped when it may be partial) that covers the record just before it, names the
    /// header's chain and verifies with the header's key.
    static func lastValidCheckpoint(_ bytes: [UInt8], base: Int, partialFirst: Bool, header: Header) -> SignedEnd? {
        var lines = Array(SegmentLines(bytes: bytes))
        if partialFirst && !lines.isEmpty { lines.removeFirst() }
        var i = lines.count - 1
        while i >= 1 {
            defer { i -= 1 }
            let (offset, line) = lines[i]
            guard case .success(let r) = LogRecord.parse(line), r.seq > 1,
                AuditVerifier.fastType(r.event) == "audit.checkpoint" || AuditVerifier.fastType(r.event) == nil,
                let e = try? JSONParser.parse(r.event), e["type"]?.stringValue == "audit.checkpoint",
                e["audit.checkpoint.seq"]?.intValue == Int64(r.seq - 1), e["audit.checkpoint.hash"]?.stringValue == r.prev.description,
                e["audit.chain.id"]?.stringValue == header.chain,
                let sig = e["audit.signature"]?.stringValue.flatMap({ Hex.decode($0) }),
                header.key.isValidSignature(sig, for: CheckpointMessage.bytes(chain: header.chain, seq: r.seq - 1, hash: r.prev)),
                case .success(let before) = LogRecord.parse(lines[i - 1].line), before.seq == r.seq - 1, before.hash == r.prev,
                LogRecord.chainHash(seq: r.seq, prev: r.prev, event: r.event) == r.hash
            else { continue }
            let head = SignedHead(
                seq: r.seq - 1, hash: r.prev, time: e["time"]?.stringValue ?? "", chain: header.chain, key: header.key, signature: sig)
            return SignedEnd(end: base + offset + line.count + 1, record: r, head: head)
        }
        return nil
    }

    struct Header {
        var chain: String
        var key: AuditPublicKey
        var time: Int64
    }

    /// The chain and key a segment's first record declares (read from the open `fd`).
    static func header(fd: Int32, path: String) throws(AirlockError) -> Header {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0, let nl = buf[0..<n].firstIndex(of: 0x0A), case .success(let r) = LogRecord.parse(buf[0..<nl]),
            let event = try? JSONParser.parse(r.event), let chain = event["audit.chain.id"]?.stringValue,
            let keyText = event["audit.key.public"]?.stringValue, let key = AuditPublicKey(keyText)
        else { throw AirlockError(.system, "\(path) does not start with a segment header; run `airlock audit verify` on its directory") }
        return Header(chain: chain, key: key, time: event["time"]?.stringValue.flatMap(Clock.parseRFC3339) ?? 0)
    }

    static func randomID() -> String {
        var g = SystemRandomNumberGenerator()
        return Hex.string(withUnsafeBytes(of: g.next() as UInt64) { Array($0) })
    }
}
