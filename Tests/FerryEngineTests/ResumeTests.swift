import FerryCore
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import XCTest

/// Ranges, If-Range, checkpoints and restarts.
final class ResumeTests: XCTestCase {
    var h: EngineHarness!

    /// The engine's own guards, without error policies: the states they leave must stay visible.
    override func setUpWithError() throws {
        h = try EngineHarness { $0.plugins = [PluginSpec(reference: "sha256"), PluginSpec(reference: "size")] }
    }
    override func tearDown() { h.tearDown() }

    /// Starts a download that the server holds part way, suspends it there and returns the
    /// bytes it kept.
    private func suspendPartWay(_ path: String, data: [UInt8], priority: JobPriority = .normal) throws -> (JobID, UInt64) {
        h.server.setFile(path, data: data)
        h.server.hold(path, afterBytes: 300_000)
        let id = try h.startJob([(path, "file.bin")], priority: priority)
        _ = try h.waitForProgress(id, atLeast: 300_000, timeout: 60)
        let suspended = try h.engine.suspend(id)
        XCTAssertEqual(suspended.state, .suspended)
        h.server.release(path)
        let kept = suspended.files[0].bytesTransferred
        XCTAssertGreaterThan(kept, 0)
        XCTAssertLessThan(kept, UInt64(data.count))
        h.server.resetRequests()
        return (id, kept)
    }

    func testResumeAsksForTheRestWithIfRangeAndCompletesByteIdentical() throws {
        let data = testBytes(2 << 20, seed: 10)
        let (id, kept) = try suspendPartWay("/r.bin", data: data)
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        let request = try XCTUnwrap(h.server.requests(for: "/r.bin").first)
        XCTAssertEqual(request.rangeStart, Int64(kept), "the resumed request starts where the file stopped")
        XCTAssertNotNil(request.ifRange, "a resumed request is guarded by If-Range")
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("file.bin"), data))
    }

    func testChangedContentRestartsTheFileFromZero() throws {
        let (id, _) = try suspendPartWay("/c.bin", data: testBytes(2 << 20, seed: 11))
        let newer = testBytes(1 << 20, seed: 12)
        h.server.setFile("/c.bin", data: newer)
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        let request = try XCTUnwrap(h.server.requests(for: "/c.bin").first)
        XCTAssertNotNil(request.rangeStart, "the engine asked for the rest...")
        XCTAssertNotNil(request.ifRange, "...guarded by the old validator, so the server sent the new file whole")
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("file.bin"), newer), "no bytes of the old version are spliced in")
    }

    func testServerIgnoringRangesOnResumeIsInsufficientRangeSupport() throws {
        let data = testBytes(2 << 20, seed: 13)
        let (id, kept) = try suspendPartWay("/n.bin", data: data)
        h.server.addFault("/n.bin", .ignoreRanges, times: nil)
        _ = try h.engine.resume(id)
        let job = try h.wait(id, for: .error)
        XCTAssertEqual(job.lastError?.code, .insufficientRangeSupport)
        XCTAssertEqual(job.lastError?.context, .remoteFile)
        XCTAssertEqual(job.lastError?.remoteSize, UInt64(data.count), "the size is reported for the error policies")
        XCTAssertEqual(job.files[0].bytesTransferred, kept, "nothing of the 200 body was written")
    }

    func testForegroundJobTakesTheWholeFileWhenRangesAreIgnored() throws {
        let data = testBytes(2 << 20, seed: 14)
        let (id, _) = try suspendPartWay("/f.bin", data: data, priority: .foreground)
        h.server.addFault("/f.bin", .ignoreRanges, times: nil)
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("file.bin"), data))
    }

    func testWrongContentRangeIsRefusedAndNeverSpliced() throws {
        let data = testBytes(2 << 20, seed: 15)
        let (id, kept) = try suspendPartWay("/w.bin", data: data)
        h.server.addFault("/w.bin", .wrongContentRange(offsetDelta: 1000))
        _ = try h.engine.resume(id)
        let job = try h.wait(id, for: .error)
        XCTAssertEqual(job.lastError?.code, .invalidRange)
        XCTAssertEqual(job.files[0].bytesTransferred, kept)
        // A resume after the bad answer still yields the right bytes.
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("file.bin"), data))
    }

    func testDroppedConnectionIsTransientAndTheRetryContinuesFromTheCheckpoint() throws {
        let data = testBytes(1 << 20, seed: 16)
        h.server.setFile("/d.bin", data: data)
        h.server.addFault("/d.bin", .dropAfter(bytes: 400_000))
        let id = try h.startJob([("/d.bin", "d.bin")])
        let failed = try h.wait(id, for: .transientError)
        XCTAssertTrue([ErrorCode.truncatedBody, .networkDisconnected].contains(failed.lastError?.code),
                      "got \(failed.lastError.map { "\($0)" } ?? "nil")")
        XCTAssertEqual(failed.files[0].bytesTransferred, 400_000)
        h.server.resetRequests()
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        XCTAssertEqual(h.server.requests(for: "/d.bin").first?.rangeStart, 400_000)
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("d.bin"), data))
    }

    func testEngineRestartRecoversTheJobAndResumesFromTheCheckpoint() throws {
        let data = testBytes(3 << 20, seed: 17)
        h.server.setFile("/k.bin", data: data)
        h.server.hold("/k.bin", afterBytes: 600_000)
        let id = try h.startJob([("/k.bin", "k.bin")])
        _ = try h.waitForProgress(id, atLeast: 600_000, timeout: 60)
        // The restarted engine's request is held before its first byte, so the job's figure
        // is read while nothing moves.
        h.server.resetRequests()
        h.server.hold("/k.bin")
        try h.restartEngine()
        XCTAssertTrue(h.server.waitUntilHeld("/k.bin"), "the restarted engine asked for the file again")
        let recovered = try h.engine.job(id)
        XCTAssertTrue(recovered.state.isActive, "an interrupted job is queued again, got \(recovered.state)")
        XCTAssertGreaterThan(recovered.files[0].bytesTransferred, 0, "progress survived the restart")
        let resumedFrom = recovered.files[0].bytesTransferred
        h.server.release("/k.bin")
        try h.wait(id, for: .transferred, timeout: 60)
        let ranged = h.server.requests(for: "/k.bin").map(\.rangeStart)
        XCTAssertEqual(ranged.first, Int64(resumedFrom))
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("k.bin"), data))
    }
}
