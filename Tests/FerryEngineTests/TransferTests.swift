import FerryCore
import FerryEngine
import FerryTestSupport
import Foundation
import Testing

/// End to end through the real engine, libcurl and a loopback HTTP server.
@Suite(.serialized)
final class TransferTests {
    var h: EngineHarness

    init() throws { h = try EngineHarness() }
    deinit { h.tearDown() }

    @Test func multiFileJobCompletesByteIdenticalAndStaysInvisibleUntilComplete() throws {
        let big = testBytes(3 << 20, seed: 1)
        let small = Array("hello ferry\n".utf8)
        h.server.setFile("/big.bin", data: big)
        h.server.setFile("/small.txt", data: small)
        h.server.setFile("/empty", data: [])
        let id = try h.startJob([("/big.bin", "big.bin"), ("/small.txt", "small.txt"), ("/empty", "empty")])

        let transferred = try h.wait(id, for: .transferred)
        #expect(transferred.progress.bytesTotal == UInt64(big.count + small.count))
        #expect(transferred.progress.filesTransferred == 3)
        #expect(transferred.transferCompletionTime != nil)
        // Nobody sees the final names before complete; the temporaries are hidden.
        for name in ["big.bin", "small.txt", "empty"] { #expect(!exists(h.destination(name)), "\(name)") }
        #expect(h.temporaries.count == 3)

        let completed = try h.engine.complete(id)
        #expect(completed.state == .acknowledged)
        #expect(fileHolds(h.destination("big.bin"), big))
        #expect(fileHolds(h.destination("small.txt"), small))
        #expect(contentsOf(h.destination("empty")) == [])
        #expect(h.temporaries == [])
        // Final jobs are gone from the engine, as BITS no longer enumerates them.
        #expect(throws: (any Error).self) { try h.engine.job(id) }
    }

    @Test func completeReplacesAnExistingDestinationAtomically() throws {
        _ = FileManager.default.createFile(atPath: h.destination("pkg.deb"), contents: Data("old".utf8))
        let fresh = testBytes(100_000, seed: 2)
        h.server.setFile("/pkg.deb", data: fresh)
        let id = try h.startJob([("/pkg.deb", "pkg.deb")])
        try h.wait(id, for: .transferred)
        #expect(contentsOf(h.destination("pkg.deb")) == Array("old".utf8), "the old file stays until complete")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("pkg.deb"), fresh))
    }

    @Test func cancelDeletesTemporariesAndNeverCreatesTheDestination() throws {
        h.server.setFile("/slow.bin", data: testBytes(2 << 20))
        h.server.hold("/slow.bin", afterBytes: 100_000)
        let id = try h.startJob([("/slow.bin", "slow.bin")])
        _ = try h.waitForProgress(id, atLeast: 100_000, timeout: 60)
        #expect(h.temporaries.count == 1)
        let cancelled = try h.engine.cancel(id)
        #expect(cancelled.state == .cancelled)
        #expect(h.temporaries == [])
        #expect(!exists(h.destination("slow.bin")))
        // Every call on a final job fails with INVALID_STATE... and the job is gone.
        if let error = #expect(throws: (any Error).self, performing: { try h.engine.resume(id) }) {
            #expect((error as? FerryError)?.code == .notFound)
        }
    }

    @Test func completeIsRefusedWhileValidatedFilesAreMissing() throws {
        h.server.setFile("/done.txt", data: Array("done".utf8))
        h.server.setFile("/slow.bin", data: testBytes(4 << 20))
        h.server.hold("/slow.bin", afterBytes: 64 << 10)
        let id = try h.startJob([("/done.txt", "done.txt"), ("/slow.bin", "slow.bin")])
        #expect(try waitUntil(timeout: 60) { try h.engine.job(id).files[0].isTransferred })
        if let error = #expect(throws: (any Error).self, performing: { try h.engine.complete(id) }) {
            #expect((error as? FerryError)?.code == .invalidState)
            #expect((error as? FerryError)?.context == .validation)
        }
        #expect(try h.engine.job(id).state.isActive, "the refused job goes on")
        #expect(!exists(h.destination("done.txt")))
    }

    @Test func partialCompleteRenamesOnlyFinishedFiles() throws {
        // BITS' partial complete, for jobs no validator applies to.
        h.tearDown()
        h = try EngineHarness { $0.plugins = [] }
        h.server.setFile("/done.txt", data: Array("done".utf8))
        h.server.setFile("/slow.bin", data: testBytes(4 << 20))
        h.server.hold("/slow.bin", afterBytes: 64 << 10)
        let id = try h.startJob([("/done.txt", "done.txt"), ("/slow.bin", "slow.bin")])
        #expect(try waitUntil(timeout: 60) { try h.engine.job(id).files[0].isTransferred })
        let completed = try h.engine.complete(id)
        #expect(completed.state == .acknowledged)
        #expect(contentsOf(h.destination("done.txt")) == Array("done".utf8))
        #expect(!exists(h.destination("slow.bin")), "an unfinished file is never renamed into place")
        #expect(h.temporaries == [])
    }

    @Test func notFoundIsAFatalErrorWithRemoteFileContext() throws {
        let id = try h.startJob([("/missing.bin", "missing.bin")])
        let job = try h.wait(id, for: .error)
        let error = try #require(job.lastError)
        #expect(error.code == .httpError(404))
        #expect(error.code.rawValue == "HTTP_ERROR_404")
        #expect(error.context == .remoteFile)
        #expect(error.httpStatus == 404)
        #expect(error.fileIndex == 0)
        #expect(!error.isTransient)
        // The error page is never written into the file.
        #expect(job.files[0].bytesTransferred == 0)
        #expect(!exists(h.destination("missing.bin")))
    }

    @Test func connectionRefusedIsTransientAndRecoversWhenTheServerComesBack() throws {
        let data = testBytes(200_000, seed: 3)
        h.server.setFile("/a.bin", data: data)
        let port = h.server.port
        h.server.stop()
        let id = try h.startJob([("/a.bin", "a.bin")]) { id in
            _ = try self.h.engine.setMinimumRetryDelay(id, seconds: 5)
        }
        let failing = try h.wait(id, for: .transientError)
        #expect(failing.lastError?.code == .networkDisconnected)
        #expect(failing.lastError?.context == .transport)
        let retryAt = try #require(failing.retryAt)
        #expect(retryAt.timeIntervalSince(failing.modificationTime) >= 4.9)

        let revived = try FaultServer(port: port)
        defer { revived.stop() }
        revived.setFile("/a.bin", data: data)
        try h.wait(id, for: .transferred, timeout: 60)
        #expect(Date() >= retryAt, "the retry waited for the minimum retry delay")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("a.bin"), data))
    }

    @Test func serviceUnavailableHonoursRetryAfterAndSucceedsLater() throws {
        let data = testBytes(50_000, seed: 4)
        h.server.setFile("/busy.bin", data: data)
        h.server.addFault("/busy.bin", .status(503, retryAfter: "7"))
        let id = try h.startJob([("/busy.bin", "busy.bin")]) { id in
            _ = try self.h.engine.setMinimumRetryDelay(id, seconds: 5)
        }
        let failing = try h.wait(id, for: .transientError)
        #expect(failing.lastError?.code == .httpError(503))
        #expect(failing.lastError?.retryAfterSeconds == 7)
        let wait = try #require(failing.retryAt).timeIntervalSince(failing.modificationTime)
        #expect(wait >= 6.9, "Retry-After outranks a shorter retry delay")
        // resume retries at once, without waiting out the delay.
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred, timeout: 60)
        let retried = try #require(h.server.requests(for: "/busy.bin").last?.receivedAt)
        #expect(try retried < #require(failing.retryAt), "the resumed job asked again before the retry time")
    }
}
