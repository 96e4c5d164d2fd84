import FerryCore
import FerryCrypto
import FerryPluginHost
import Foundation
import Synchronization

/// Hashes a large file on a worker thread, trailing the transfer that writes it.
///
/// The transfer appends the bytes to its temporary and says how far the file now reaches
/// (``advance(to:)``); a worker reads back what was written (from the page cache, into one
/// small buffer) and feeds the digests. SHA-256 then runs on another core than libcurl and
/// the engine's thread: on one large file it was a third of the transfer thread's time.
/// Small files never get one; their few chunks are hashed as they arrive.
///
/// The worker holds the ``TemporaryFile``, so its descriptor stays open while it reads.
final class TrailingDigests: Sendable {
    /// The file is hashed in reads of this size.
    static let readSize = 256 << 10

    private struct Progress {
        /// How far the file reaches: what the worker must hash up to.
        var target: UInt64
        /// How far the digests reach.
        var hashed: UInt64
        var workerRunning = false
        var cancelled = false
        var failure: FerryError?
        /// Called once the digests reach `target` after the last byte (``whenCaughtUp(_:)``).
        var waiter: (@Sendable (Result<[DigestName: [UInt8]], FerryError>) -> Void)?
    }

    private let file: TemporaryFile
    private let fileIndex: Int
    /// Fed only by the worker once handed over.
    private let digests: UncheckedSendable<[DigestName: StreamingDigest]>
    private let progress: Mutex<Progress>
    private let queue = DispatchQueue(label: "ferry.trailing-digests", qos: .utility)

    /// Takes over digests that already cover the first `hashed` bytes of `file`.
    init(file: TemporaryFile, fileIndex: Int, digests: [DigestName: StreamingDigest], hashed: UInt64) {
        self.file = file
        self.fileIndex = fileIndex
        self.digests = UncheckedSendable(digests)
        self.progress = Mutex(Progress(target: hashed, hashed: hashed))
    }

    /// The file now reaches `length`: the worker hashes up to there.
    func advance(to length: UInt64) {
        let start = progress.withLock { state -> Bool in
            state.target = max(state.target, length)
            guard !state.workerRunning, !state.cancelled, state.failure == nil else { return false }
            state.workerRunning = true
            return true
        }
        if start { queue.async { self.drain() } }
    }

    /// Calls `done` (on a worker) with the finished digests once every byte up to the last
    /// ``advance(to:)`` is hashed, or with why they cannot be. Call once, after the last byte.
    func whenCaughtUp(_ done: @escaping @Sendable (Result<[DigestName: [UInt8]], FerryError>) -> Void) {
        let ready = progress.withLock { state -> Bool in
            if state.failure == nil, state.hashed < state.target {
                state.waiter = done
                return false
            }
            return true
        }
        if ready { queue.async { self.finish(done) } }
    }

    /// Stops the worker after its current read; the digests are never finished.
    func cancel() {
        progress.withLock { $0.cancelled = true }
    }

    private func finish(_ done: @Sendable (Result<[DigestName: [UInt8]], FerryError>) -> Void) {
        if let failure = progress.withLock({ $0.failure }) {
            done(.failure(failure))
        } else {
            done(.success(digests.value.mapValues { $0.finish() }))
        }
    }

    /// Hashes until the digests reach the target; runs on `queue`, one drain at a time.
    private func drain() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.readSize, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let next = progress.withLock { state -> (from: UInt64, count: Int)? in
                guard !state.cancelled, state.failure == nil, state.hashed < state.target else {
                    state.workerRunning = false
                    return nil
                }
                return (state.hashed, Int(min(UInt64(Self.readSize), state.target - state.hashed)))
            }
            guard let next else { break }
            var got = 0
            var failure: FerryError?
            while got < next.count {
                let n = pread(file.descriptor, buffer + got, next.count - got, off_t(next.from + UInt64(got)))
                if n < 0, errno == EINTR { continue }
                if n <= 0 {
                    let reason = n == 0 ? "the file ended" : String(cString: strerror(errno))
                    failure = FerryError(code: .localFileError, context: .localFile, fileIndex: fileIndex,
                                         message: "cannot read back \(file.path) at byte \(next.from + UInt64(got)) to hash it: \(reason)")
                    break
                }
                got += n
            }
            if failure == nil {
                let bytes = UnsafeRawBufferPointer(start: buffer, count: got)
                for digest in digests.value.values { digest.update(bytes) }
            }
            progress.withLock { state in
                state.hashed = next.from + UInt64(got)
                if let failure { state.failure = failure }
            }
        }
        // Caught up (or stopped): hand the digests to whoever waits for the last byte.
        let waiter = progress.withLock { state -> (@Sendable (Result<[DigestName: [UInt8]], FerryError>) -> Void)? in
            guard state.failure != nil || state.hashed >= state.target, !state.workerRunning else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        if let waiter { finish(waiter) }
    }
}
