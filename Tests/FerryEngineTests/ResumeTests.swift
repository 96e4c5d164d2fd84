import FerryCore
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import Testing

/// Ranges, If-Range, checkpoints and restarts.
@Suite(.serialized)
final class ResumeTests {
    let h: EngineHarness

    /// The engine's own guards, without error policies: the states they leave must stay visible.
    init() throws {
        h = try EngineHarness { $0.plugins = [PluginSpec(reference: "sha256"), PluginSpec(reference: "size")] }
    }
    deinit { h.tearDown() }

    /// Starts a download that the server holds part way, suspends it there and returns the
    /// bytes it kept.
    private func suspendPartWay(_ path: String, data: [UInt8], priority: JobPriority = .normal) throws -> (JobID, UInt64) {
        h.server.setFile(path, data: data)
        h.server.hold(path, afterBytes: 300_000)
        let id = try h.startJob([(path, "file.bin")], priority: priority)
        _ = try h.waitForProgress(id, atLeast: 300_000, timeout: 60)
        let suspended = try h.engine.suspend(id)
        #expect(suspended.state == .suspended)
        h.server.release(path)
        let kept = suspended.files[0].bytesTransferred
        #expect(kept > 0)
        #expect(kept < UInt64(data.count))
        h.server.resetRequests()
        return (id, kept)
    }

    @Test func resumeAsksForTheRestWithIfRangeAndCompletesByteIdentical() throws {
        let data = testBytes(2 << 20, seed: 10)
        let (id, kept) = try suspendPartWay("/r.bin", data: data)
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        let request = try #require(h.server.requests(for: "/r.bin").first)
        #expect(request.rangeStart == Int64(kept), "the resumed request starts where the file stopped")
        #expect(request.ifRange != nil, "a resumed request is guarded by If-Range")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("file.bin"), data))
    }

    @Test func changedContentRestartsTheFileFromZero() throws {
        let (id, _) = try suspendPartWay("/c.bin", data: testBytes(2 << 20, seed: 11))
        let newer = testBytes(1 << 20, seed: 12)
        h.server.setFile("/c.bin", data: newer)
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        let request = try #require(h.server.requests(for: "/c.bin").first)
        #expect(request.rangeStart != nil, "the engine asked for the rest...")
        #expect(request.ifRange != nil, "...guarded by the old validator, so the server sent the new file whole")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("file.bin"), newer), "no bytes of the old version are spliced in")
    }

    @Test func serverIgnoringRangesOnResumeIsInsufficientRangeSupport() throws {
        let data = testBytes(2 << 20, seed: 13)
        let (id, kept) = try suspendPartWay("/n.bin", data: data)
        h.server.addFault("/n.bin", .ignoreRanges, times: nil)
        _ = try h.engine.resume(id)
        let job = try h.wait(id, for: .error)
        #expect(job.lastError?.code == .insufficientRangeSupport)
        #expect(job.lastError?.context == .remoteFile)
        #expect(job.lastError?.remoteSize == UInt64(data.count), "the size is reported for the error policies")
        #expect(job.files[0].bytesTransferred == kept, "nothing of the 200 body was written")
    }

    @Test func foregroundJobTakesTheWholeFileWhenRangesAreIgnored() throws {
        let data = testBytes(2 << 20, seed: 14)
        let (id, _) = try suspendPartWay("/f.bin", data: data, priority: .foreground)
        h.server.addFault("/f.bin", .ignoreRanges, times: nil)
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("file.bin"), data))
    }

    @Test func wrongContentRangeIsRefusedAndNeverSpliced() throws {
        let data = testBytes(2 << 20, seed: 15)
        let (id, kept) = try suspendPartWay("/w.bin", data: data)
        h.server.addFault("/w.bin", .wrongContentRange(offsetDelta: 1000))
        _ = try h.engine.resume(id)
        let job = try h.wait(id, for: .error)
        #expect(job.lastError?.code == .invalidRange)
        #expect(job.files[0].bytesTransferred == kept)
        // A resume after the bad answer still yields the right bytes.
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("file.bin"), data))
    }

    @Test func droppedConnectionIsTransientAndTheRetryContinuesFromTheCheckpoint() throws {
        let data = testBytes(1 << 20, seed: 16)
        h.server.setFile("/d.bin", data: data)
        h.server.addFault("/d.bin", .dropAfter(bytes: 400_000))
        let id = try h.startJob([("/d.bin", "d.bin")])
        let failed = try h.wait(id, for: .transientError)
        #expect([ErrorCode.truncatedBody, .networkDisconnected].contains(failed.lastError?.code), "got \(failed.lastError.map { "\($0)" } ?? "nil")")
        #expect(failed.files[0].bytesTransferred == 400_000)
        h.server.resetRequests()
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        #expect(h.server.requests(for: "/d.bin").first?.rangeStart == 400_000)
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("d.bin"), data))
    }

    @Test func engineRestartRecoversTheJobAndResumesFromTheCheckpoint() throws {
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
        #expect(h.server.waitUntilHeld("/k.bin"), "the restarted engine asked for the file again")
        let recovered = try h.engine.job(id)
        #expect(recovered.state.isActive, "an interrupted job is queued again, got \(recovered.state)")
        #expect(recovered.files[0].bytesTransferred > 0, "progress survived the restart")
        let resumedFrom = recovered.files[0].bytesTransferred
        h.server.release("/k.bin")
        try h.wait(id, for: .transferred, timeout: 60)
        let ranged = h.server.requests(for: "/k.bin").map(\.rangeStart)
        #expect(ranged.first == Int64(resumedFrom))
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("k.bin"), data))
    }
}
