import FerryCore
import FerryEngine
import FerryTestSupport
import Foundation
import XCTest

/// End to end through the real engine, libcurl and a loopback HTTP server.
final class TransferTests: XCTestCase {
    var h: EngineHarness!

    override func setUpWithError() throws { h = try EngineHarness() }
    override func tearDown() { h.tearDown() }

    func testMultiFileJobCompletesByteIdenticalAndStaysInvisibleUntilComplete() throws {
        let big = testBytes(3 << 20, seed: 1)
        let small = Array("hello ferry\n".utf8)
        h.server.setFile("/big.bin", data: big)
        h.server.setFile("/small.txt", data: small)
        h.server.setFile("/empty", data: [])
        let id = try h.startJob([("/big.bin", "big.bin"), ("/small.txt", "small.txt"), ("/empty", "empty")])

        let transferred = try h.wait(id, for: .transferred)
        XCTAssertEqual(transferred.progress.bytesTotal, UInt64(big.count + small.count))
        XCTAssertEqual(transferred.progress.filesTransferred, 3)
        XCTAssertNotNil(transferred.transferCompletionTime)
        // Nobody sees the final names before complete; the temporaries are hidden.
        for name in ["big.bin", "small.txt", "empty"] { XCTAssertFalse(exists(h.destination(name)), name) }
        XCTAssertEqual(h.temporaries.count, 3)

        let completed = try h.engine.complete(id)
        XCTAssertEqual(completed.state, .acknowledged)
        XCTAssertTrue(fileHolds(h.destination("big.bin"), big))
        XCTAssertTrue(fileHolds(h.destination("small.txt"), small))
        XCTAssertEqual(contentsOf(h.destination("empty")), [])
        XCTAssertEqual(h.temporaries, [])
        // Final jobs are gone from the engine, as BITS no longer enumerates them.
        XCTAssertThrowsError(try h.engine.job(id))
    }

    func testCompleteReplacesAnExistingDestinationAtomically() throws {
        _ = FileManager.default.createFile(atPath: h.destination("pkg.deb"), contents: Data("old".utf8))
        let fresh = testBytes(100_000, seed: 2)
        h.server.setFile("/pkg.deb", data: fresh)
        let id = try h.startJob([("/pkg.deb", "pkg.deb")])
        try h.wait(id, for: .transferred)
        XCTAssertEqual(contentsOf(h.destination("pkg.deb")), Array("old".utf8), "the old file stays until complete")
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("pkg.deb"), fresh))
    }

    func testCancelDeletesTemporariesAndNeverCreatesTheDestination() throws {
        h.server.setFile("/slow.bin", data: testBytes(2 << 20))
        h.server.hold("/slow.bin", afterBytes: 100_000)
        let id = try h.startJob([("/slow.bin", "slow.bin")])
        _ = try h.waitForProgress(id, atLeast: 100_000, timeout: 60)
        XCTAssertEqual(h.temporaries.count, 1)
        let cancelled = try h.engine.cancel(id)
        XCTAssertEqual(cancelled.state, .cancelled)
        XCTAssertEqual(h.temporaries, [])
        XCTAssertFalse(exists(h.destination("slow.bin")))
        // Every call on a final job fails with INVALID_STATE... and the job is gone.
        XCTAssertThrowsError(try h.engine.resume(id)) { error in
            XCTAssertEqual((error as? FerryError)?.code, .notFound)
        }
    }

    func testCompleteIsRefusedWhileValidatedFilesAreMissing() throws {
        h.server.setFile("/done.txt", data: Array("done".utf8))
        h.server.setFile("/slow.bin", data: testBytes(4 << 20))
        h.server.hold("/slow.bin", afterBytes: 64 << 10)
        let id = try h.startJob([("/done.txt", "done.txt"), ("/slow.bin", "slow.bin")])
        XCTAssertTrue(try waitUntil(timeout: 60) { try h.engine.job(id).files[0].isTransferred })
        XCTAssertThrowsError(try h.engine.complete(id)) { error in
            XCTAssertEqual((error as? FerryError)?.code, .invalidState)
            XCTAssertEqual((error as? FerryError)?.context, .validation)
        }
        XCTAssertTrue(try h.engine.job(id).state.isActive, "the refused job goes on")
        XCTAssertFalse(exists(h.destination("done.txt")))
    }

    func testPartialCompleteRenamesOnlyFinishedFiles() throws {
        // BITS' partial complete, for jobs no validator applies to.
        h.tearDown()
        h = try EngineHarness { $0.plugins = [] }
        h.server.setFile("/done.txt", data: Array("done".utf8))
        h.server.setFile("/slow.bin", data: testBytes(4 << 20))
        h.server.hold("/slow.bin", afterBytes: 64 << 10)
        let id = try h.startJob([("/done.txt", "done.txt"), ("/slow.bin", "slow.bin")])
        XCTAssertTrue(try waitUntil(timeout: 60) { try h.engine.job(id).files[0].isTransferred })
        let completed = try h.engine.complete(id)
        XCTAssertEqual(completed.state, .acknowledged)
        XCTAssertEqual(contentsOf(h.destination("done.txt")), Array("done".utf8))
        XCTAssertFalse(exists(h.destination("slow.bin")), "an unfinished file is never renamed into place")
        XCTAssertEqual(h.temporaries, [])
    }

    func testNotFoundIsAFatalErrorWithRemoteFileContext() throws {
        let id = try h.startJob([("/missing.bin", "missing.bin")])
        let job = try h.wait(id, for: .error)
        let error = try XCTUnwrap(job.lastError)
        XCTAssertEqual(error.code, .httpError(404))
        XCTAssertEqual(error.code.rawValue, "HTTP_ERROR_404")
        XCTAssertEqual(error.context, .remoteFile)
        XCTAssertEqual(error.httpStatus, 404)
        XCTAssertEqual(error.fileIndex, 0)
        XCTAssertFalse(error.isTransient)
        // The error page is never written into the file.
        XCTAssertEqual(job.files[0].bytesTransferred, 0)
        XCTAssertFalse(exists(h.destination("missing.bin")))
    }

    func testConnectionRefusedIsTransientAndRecoversWhenTheServerComesBack() throws {
        let data = testBytes(200_000, seed: 3)
        h.server.setFile("/a.bin", data: data)
        let port = h.server.port
        h.server.stop()
        let id = try h.startJob([("/a.bin", "a.bin")]) { id in
            _ = try self.h.engine.setMinimumRetryDelay(id, seconds: 5)
        }
        let failing = try h.wait(id, for: .transientError)
        XCTAssertEqual(failing.lastError?.code, .networkDisconnected)
        XCTAssertEqual(failing.lastError?.context, .transport)
        let retryAt = try XCTUnwrap(failing.retryAt)
        XCTAssertGreaterThanOrEqual(retryAt.timeIntervalSince(failing.modificationTime), 4.9)

        let revived = try FaultServer(port: port)
        defer { revived.stop() }
        revived.setFile("/a.bin", data: data)
        try h.wait(id, for: .transferred, timeout: 60)
        XCTAssertGreaterThanOrEqual(Date(), retryAt, "the retry waited for the minimum retry delay")
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("a.bin"), data))
    }

    func testServiceUnavailableHonoursRetryAfterAndSucceedsLater() throws {
        let data = testBytes(50_000, seed: 4)
        h.server.setFile("/busy.bin", data: data)
        h.server.addFault("/busy.bin", .status(503, retryAfter: "7"))
        let id = try h.startJob([("/busy.bin", "busy.bin")]) { id in
            _ = try self.h.engine.setMinimumRetryDelay(id, seconds: 5)
        }
        let failing = try h.wait(id, for: .transientError)
        XCTAssertEqual(failing.lastError?.code, .httpError(503))
        XCTAssertEqual(failing.lastError?.retryAfterSeconds, 7)
        let wait = try XCTUnwrap(failing.retryAt).timeIntervalSince(failing.modificationTime)
        XCTAssertGreaterThanOrEqual(wait, 6.9, "Retry-After outranks a shorter retry delay")
        // resume retries at once, without waiting out the delay.
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred, timeout: 60)
        let retried = try XCTUnwrap(h.server.requests(for: "/busy.bin").last?.receivedAt)
        XCTAssertLessThan(retried, try XCTUnwrap(failing.retryAt), "the resumed job asked again before the retry time")
    }
}
