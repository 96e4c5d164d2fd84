import FerryCore
import Foundation
import Testing

/// Cancel and Suspend from every state that allows them (BITS §1).
@Suite("Cancel and suspend")
struct CancelSuspendTests {
    @Test("cancel from any non-final state → CANCELLED, transfers stopped, temporaries discarded", arguments: nonFinalStates)
    func cancel(state: JobState) throws {
        var job = try Job.sample(in: state)
        try #require(job.files[0].bytesTransferred > 0, "the fixture should have made progress")

        let actions = try job.apply(.cancel, at: later)
        #expect(actions == [.stopTransfers, .discardTemporaries([0, 1])])
        #expect(job.state == .cancelled)
        #expect(job.modificationTime == later)
        for file in job.files {
            #expect(file.bytesTransferred == 0)
            #expect(file.bytesTotal == nil)
            #expect(!file.isTransferred)
            #expect(file.remoteETag == nil)
        }
    }

    @Test("cancel keeps files that were already renamed")
    func cancelKeepsCommittedFiles() throws {
        var job = try Job.sample(in: .transferred)
        _ = try job.apply(.complete, at: later)
        let renameError = FerryError(code: .localFileError, context: .localFile, fileIndex: 1, message: "rename failed")
        _ = try job.apply(.commitFailed(renameError, committed: [0]), at: later)

        #expect(try job.apply(.cancel, at: later) == [.stopTransfers, .discardTemporaries([1])])
        #expect(job.state == .cancelled)
        #expect(job.files[0].bytesTransferred == 100)
        #expect(job.files[1].bytesTransferred == 0)
    }

    @Test(
        "suspend → SUSPENDED; transfers are stopped only when the job was active",
        arguments: nonFinalStates.filter { $0 != .suspended })
    func suspend(state: JobState) throws {
        var job = try Job.sample(in: state)
        let actions = try job.apply(.suspend, at: later)
        #expect(actions == (state.isActive ? [.stopTransfers] : []))
        #expect(job.state == .suspended)
        #expect(job.retryAt == nil, "a suspended job must not be retried by a timer")
        #expect(job.modificationTime == later)
    }

    @Test("suspend on a SUSPENDED job is a no-op")
    func suspendWhileSuspended() throws {
        var job = try Job.sample(in: .suspended)
        let before = job
        #expect(try job.apply(.suspend, at: later) == [])
        #expect(job == before)
    }

    @Test("suspend keeps the progress made so far")
    func suspendKeepsProgress() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.suspend, at: later)
        #expect(job.files[0].bytesTransferred == 40)
        #expect(job.files[0].remoteETag == "\"v1\"")
    }

    @Test("a suspended job is queued again by resume", arguments: [JobState.queued, .transferring, .transientError, .error])
    func resumeAfterSuspend(state: JobState) throws {
        var job = try Job.sample(in: state)
        _ = try job.apply(.suspend, at: later)
        #expect(try job.apply(.resume, at: later) == [.enqueue])
        #expect(job.state == .queued)
    }
}
