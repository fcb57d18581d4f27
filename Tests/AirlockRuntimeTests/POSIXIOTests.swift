import AirlockCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct POSIXIOTests {
    @Test func readAllStopsOneBytePastTheLimitAndWriteAllWritesEverything() {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        // larger than a pipe buffer: write from a thread while we read
        let writer = fds[1]
        var thread = pthread_t()
        let box = UnsafeMutablePointer<(Int32, [UInt8])>.allocate(capacity: 1)
        box.initialize(to: (writer, payload))
        pthread_create(&thread, nil, { arg in
            let p = arg!.assumingMemoryBound(to: (Int32, [UInt8]).self)
            POSIXIO.writeAll(p.pointee.0, p.pointee.1)
            close(p.pointee.0)
            return nil
        }, box)
        let all = POSIXIO.readAll(fds[0], upTo: 1 << 20)
        pthread_join(thread, nil)
        box.deinitialize(count: 1)
        box.deallocate()
        #expect(all == payload)
        close(fds[0])

        #expect(pipe(&fds) == 0)
        #expect(POSIXIO.writeAll(fds[1], Array("0123456789".utf8)) == 0)
        close(fds[1])
        #expect(POSIXIO.readAll(fds[0], upTo: 4).map { String(decoding: $0, as: UTF8.self) } == "01234")
        close(fds[0])
        #expect(POSIXIO.writeAll(-1, [1]) == EBADF)
    }
}
