import FerryCore
import Foundation
import Testing

/// News from the queue manager and the transport: preemption, restarts, responses, late files.
@Suite("Engine news")
struct EngineNewsTests {
    @Test("preempted while CONNECTING or TRANSFERRING → QUEUED, transfers stopped, enqueued again",
          arguments: [JobState.connecting, .transferring])
    func preempted(state: JobState) throws {
        var job = try Job.sample(in: state)
        #expect(try job.apply(.preempted, at: later) == [.stopTransfers, .enqueue])
        #expect(job.state == .queued)
        #expect(job.files[0].bytesTransferred == 40, "preemption keeps the progress")
    }

    @Test("preempted in any other state is a no-op",
          arguments: [JobState.suspended, .queued, .transferred, .transientError, .error])
    func preemptedElsewhere(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        #expect(try job.apply(.preempted, at: later) == [])
        #expect(job == before)
    }

    @Test("after a restart of the agent, a job that was moving bytes is QUEUED again",
          arguments: [JobState.connecting, .transferring])
    func restartedWhileMoving(state: JobState) throws {
        var job = try Job.sample(in: state)
        #expect(try job.apply(.restarted, at: later) == [.enqueue])
        #expect(job.state == .queued)
    }

    @Test("after a restart of the agent, a QUEUED job is enqueued again")
    func restartedWhileQueued() throws {
        var job = try Job.sample(in: .queued)
        #expect(try job.apply(.restarted, at: later) == [.enqueue])
        #expect(job.state == .queued)
    }

    @Test("after a restart of the agent, a job that was not active keeps its state",
          arguments: [JobState.suspended, .transferred, .transientError, .error])
    func restartedWhileInactive(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        #expect(try job.apply(.restarted, at: later) == [])
        #expect(job == before)
    }

    @Test("a response that restarts from zero resets that file's progress")
    func responseRestartingFromZero() throws {
        var job = try Job.sample(in: .transferring)  // file 0: 40 of 100 bytes, ETag "v1"
        let response = JobEvent.responseReceived(
            file: 0, bytesTotal: 120, etag: "\"v2\"", lastModified: nil, restartFromZero: true)

        #expect(try job.apply(response, at: later) == [])

        #expect(job.files[0].bytesTransferred == 0)
        #expect(job.files[0].bytesTotal == 120)
        #expect(job.files[0].remoteETag == "\"v2\"")
        #expect(job.state == .transferring)
    }

    @Test("a response that resumes keeps the bytes already written")
    func responseResuming() throws {
        var job = try Job.sample(in: .transferring)  // file 0: 40 of 100 bytes
        let response = JobEvent.responseReceived(
            file: 0, bytesTotal: 100, etag: "\"v1\"", lastModified: nil, restartFromZero: false)

        _ = try job.apply(response, at: later)

        #expect(job.files[0].bytesTransferred == 40)
    }

    @Test("transfer news for a file index the job does not have is ignored")
    func newsForUnknownFile() throws {
        var job = try Job.sample(in: .transferring)
        let before = job
        #expect(try job.apply(.bytesWritten(file: 7, bytes: 10), at: later) == [])
        #expect(try job.apply(.fileTransferred(file: 7), at: later) == [])
        #expect(
            try job.apply(.responseReceived(file: 7, bytesTotal: 1, etag: nil, lastModified: nil, restartFromZero: true), at: later)
                == [])
        #expect(job == before)
    }

    @Test("bytes written after the job was suspended are ignored")
    func bytesWrittenAfterSuspend() throws {
        var job = try Job.sample(in: .suspended)
        let before = job
        #expect(try job.apply(.bytesWritten(file: 0, bytes: 90), at: later) == [])
        #expect(job == before)
    }

    @Test("a file finishing after its job was suspended is transferred, and the job stays SUSPENDED")
    func fileTransferredAfterSuspend() throws {
        var job = try Job.sample(in: .transferring)  // file 0: 40 bytes, size known
        _ = try job.apply(.bytesWritten(file: 0, bytes: 100), at: later)
        _ = try job.apply(.suspend, at: later)

        #expect(try job.apply(.fileTransferred(file: 0), at: later) == [.notifyFileTransferred(0)])
        #expect(job.files[0].isTransferred)
        #expect(job.state == .suspended)
        #expect(job.transferCompletionTime == nil)
    }

    @Test("a file of unknown size takes the written length as its size when it is transferred")
    func fileTransferredFixesUnknownSize() throws {
        var job = try Job.sample(files: 1)
        _ = try job.apply(.resume, at: at(1))
        _ = try job.apply(.scheduled, at: at(1))
        _ = try job.apply(
            .responseReceived(file: 0, bytesTotal: nil, etag: nil, lastModified: nil, restartFromZero: false), at: at(2))
        _ = try job.apply(.bytesWritten(file: 0, bytes: 77), at: at(3))

        _ = try job.apply(.fileTransferred(file: 0), at: at(4))

        #expect(job.files[0].bytesTotal == 77)
    }

    @Test("a file reported transferred twice is notified once")
    func fileTransferredTwice() throws {
        var job = try Job.sample(in: .transferred)
        let before = job
        #expect(try job.apply(.fileTransferred(file: 0), at: later) == [])
        #expect(job == before)
    }

    @Test("resuming a job whose every file finished while it was suspended reaches TRANSFERRED")
    func resumeWithNothingPending() throws {
        var job = try Job.sample(in: .transferring)
        for event: JobEvent in [
            .bytesWritten(file: 0, bytes: 100), .fileTransferred(file: 0),
            .responseReceived(file: 1, bytesTotal: 50, etag: nil, lastModified: nil, restartFromZero: false),
            .bytesWritten(file: 1, bytes: 50), .suspend, .fileTransferred(file: 1),
        ] {
            _ = try job.apply(event, at: later)
        }
        try #require(job.state == .suspended)
        try #require(job.pendingFileIndices.isEmpty)

        var actions = try job.apply(.resume, at: later)
        if job.state == .queued { actions += try job.apply(.scheduled, at: later) }

        #expect(job.state == .transferred)
        #expect(actions.contains(.notifyJobTransferred))
    }
}
