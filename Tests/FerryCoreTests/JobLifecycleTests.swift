import FerryCore
import Foundation
import Testing

/// Creation, resume, the full path to `ACKNOWLEDGED`, and complete (BITS §1).
@Suite("Job lifecycle")
struct JobLifecycleTests {
    @Test("a new job starts SUSPENDED with default settings")
    func newJobStartsSuspended() {
        let job = Job(displayName: "new", owner: 1000, createdAt: origin)
        #expect(job.state == .suspended)
        #expect(job.files.isEmpty)
        #expect(job.priority == .normal)
        #expect(job.minimumRetryDelay == 600)
        #expect(job.noProgressTimeout == 1_209_600)
        #expect(job.lastError == nil)
        #expect(job.transferCompletionTime == nil)
    }

    @Test("resume on a job without files throws EMPTY and changes nothing")
    func resumeWithoutFilesIsEmpty() throws {
        let job = try Job.sample(files: 0)
        job.expectRefusal(of: .resume, with: .empty)
    }

    @Test("resume on a suspended job with files queues it")
    func resumeQueues() throws {
        var job = try Job.sample(files: 1)
        let actions = try job.apply(.resume, at: at(5))
        #expect(actions == [.enqueue])
        #expect(job.state == .queued)
        #expect(job.modificationTime == at(5))
    }

    @Test("resume on an active job is a no-op", arguments: [JobState.queued, .connecting, .transferring])
    func resumeWhileActiveIsNoOp(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        let actions = try job.apply(.resume, at: later)
        #expect(actions == [])
        #expect(job == before)
    }

    @Test("the happy path: SUSPENDED → QUEUED → CONNECTING → TRANSFERRING → TRANSFERRED → ACKNOWLEDGED")
    func happyPath() throws {
        var job = try Job.sample(files: 2)

        #expect(try job.apply(.resume, at: at(1)) == [.enqueue])
        #expect(job.state == .queued)

        #expect(try job.apply(.scheduled, at: at(2)) == [])
        #expect(job.state == .connecting)

        let response = JobEvent.responseReceived(
            file: 0, bytesTotal: 100, etag: "\"abc\"", lastModified: "Tue, 14 Nov 2023 22:13:20 GMT",
            restartFromZero: false)
        #expect(try job.apply(response, at: at(3)) == [])
        #expect(job.state == .transferring)
        #expect(job.files[0].bytesTotal == 100)
        #expect(job.files[0].remoteETag == "\"abc\"")
        #expect(job.files[0].remoteLastModified == "Tue, 14 Nov 2023 22:13:20 GMT")

        #expect(try job.apply(.bytesWritten(file: 0, bytes: 100), at: at(4)) == [])
        #expect(job.files[0].bytesTransferred == 100)

        #expect(try job.apply(.fileTransferred(file: 0), at: at(5)) == [.notifyFileTransferred(0)])
        #expect(job.files[0].isTransferred)
        #expect(job.state == .transferring, "one file is still pending")
        #expect(job.transferCompletionTime == nil)

        let second = JobEvent.responseReceived(file: 1, bytesTotal: 50, etag: nil, lastModified: nil, restartFromZero: false)
        _ = try job.apply(second, at: at(6))
        _ = try job.apply(.bytesWritten(file: 1, bytes: 50), at: at(7))
        #expect(try job.apply(.fileTransferred(file: 1), at: at(8)) == [.notifyFileTransferred(1), .notifyJobTransferred])
        #expect(job.state == .transferred)
        #expect(job.transferCompletionTime == at(8))
        #expect(Counts(job.progress) == Counts(bytesTotal: 150, bytesTransferred: 150, filesTotal: 2, filesTransferred: 2))

        #expect(try job.apply(.complete, at: at(9)) == [.stopTransfers, .commitFiles([0, 1])])
        #expect(job.state == .transferred, "complete waits for the renames to be reported")

        #expect(try job.apply(.committed, at: at(10)) == [])
        #expect(job.state == .acknowledged)
        #expect(job.files.map(\.isCommitted) == [true, true])
        #expect(job.modificationTime == at(10))
    }

    @Test("bytes written while CONNECTING move the job to TRANSFERRING")
    func bytesWrittenStartsTransferring() throws {
        var job = try Job.sample(files: 1)
        _ = try job.apply(.resume, at: at(1))
        _ = try job.apply(.scheduled, at: at(2))
        #expect(try job.apply(.bytesWritten(file: 0, bytes: 10), at: at(3)) == [])
        #expect(job.state == .transferring)
        #expect(job.files[0].bytesTransferred == 10)
    }

    @Test("scheduled only moves a QUEUED job", arguments: [JobState.suspended, .connecting, .transferring, .transferred, .transientError, .error])
    func scheduledOutsideQueuedIsIgnored(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        #expect(try job.apply(.scheduled, at: later) == [])
        #expect(job == before)
    }

    @Test("partial complete commits only transferred files and discards the rest")
    func partialComplete() throws {
        var job = try Job.sample(files: 3)
        for event: JobEvent in [
            .resume, .scheduled,
            .responseReceived(file: 0, bytesTotal: 10, etag: nil, lastModified: nil, restartFromZero: false),
            .bytesWritten(file: 0, bytes: 10), .fileTransferred(file: 0),
            .responseReceived(file: 1, bytesTotal: 80, etag: "\"e1\"", lastModified: nil, restartFromZero: false),
            .bytesWritten(file: 1, bytes: 40),
        ] {
            _ = try job.apply(event, at: at(1))
        }

        #expect(try job.apply(.complete, at: at(2)) == [.stopTransfers, .commitFiles([0])])

        #expect(try job.apply(.committed, at: at(3)) == [.discardTemporaries([1, 2])])
        #expect(job.state == .acknowledged)
        #expect(job.files[0].isCommitted)
        #expect(job.files[0].bytesTransferred == 10, "a committed file keeps its progress")
        #expect(!job.files[1].isCommitted)
        #expect(!job.files[2].isCommitted)
        #expect(job.files[1].bytesTransferred == 0)
        #expect(job.files[1].bytesTotal == nil)
        #expect(job.files[1].remoteETag == nil)
    }

    @Test("a failed rename keeps the state and records the files renamed before it")
    func commitFailedKeepsState() throws {
        var job = try Job.sample(in: .transferred)
        #expect(try job.apply(.complete, at: later) == [.stopTransfers, .commitFiles([0, 1])])

        let renameError = FerryError(code: .localFileError, context: .localFile, fileIndex: 1, message: "rename failed")
        #expect(try job.apply(.commitFailed(renameError, committed: [0]), at: later) == [])
        #expect(job.state == .transferred)
        #expect(job.files[0].isCommitted)
        #expect(!job.files[1].isCommitted)
    }

    @Test("complete after a failed rename commits only the files not yet renamed")
    func completeAgainAfterCommitFailed() throws {
        var job = try Job.sample(in: .transferred)
        _ = try job.apply(.complete, at: later)
        let renameError = FerryError(code: .localFileError, context: .localFile, fileIndex: 1, message: "rename failed")
        _ = try job.apply(.commitFailed(renameError, committed: [0]), at: later)

        #expect(try job.apply(.complete, at: later) == [.stopTransfers, .commitFiles([1])])
    }

    @Test("addFiles to a TRANSFERRED job keeps it TRANSFERRED; resume then queues it")
    func addFilesToTransferredJob() throws {
        var job = try Job.sample(in: .transferred)

        #expect(try job.apply(.addFiles([sampleFile(2)]), at: later) == [])
        #expect(job.state == .transferred)
        #expect(job.files.count == 3)
        #expect(job.pendingFileIndices == [2])

        #expect(try job.apply(.resume, at: later) == [.enqueue])
        #expect(job.state == .queued)
    }

    @Test("resume on a TRANSFERRED job with nothing pending is a no-op")
    func resumeTransferredIsNoOp() throws {
        var job = try Job.sample(in: .transferred)
        let before = job
        #expect(try job.apply(.resume, at: later) == [])
        #expect(job == before)
    }

    @Test("addFiles to an active job asks for it to be enqueued again", arguments: [JobState.queued, .connecting, .transferring])
    func addFilesToActiveJob(state: JobState) throws {
        var job = try Job.sample(in: state)
        #expect(try job.apply(.addFiles([sampleFile(2)]), at: later) == [.enqueue])
        #expect(job.state == state)
        #expect(job.files.count == 3)
    }

    @Test("setPriority changes the priority; an active job is enqueued again")
    func setPriority() throws {
        var queued = try Job.sample(in: .queued)
        #expect(try queued.apply(.setPriority(.foreground), at: later) == [.enqueue])
        #expect(queued.priority == .foreground)

        var suspended = try Job.sample(in: .suspended)
        #expect(try suspended.apply(.setPriority(.low), at: later) == [])
        #expect(suspended.priority == .low)
    }

    @Test("setRemoteURL repoints a pending file and restarts an active job's transfers")
    func setRemoteURL() throws {
        var job = try Job.sample(in: .transferring)
        let actions = try job.apply(.setRemoteURL(file: 1, url: "https://mirror.example.com/1.bin"), at: later)
        #expect(actions == [.stopTransfers, .enqueue])
        #expect(job.files[1].remoteURL == "https://mirror.example.com/1.bin")
    }

    @Test("setRemoteURL is refused for a missing file and for a transferred one")
    func setRemoteURLRefusals() throws {
        let job = try Job.sample(in: .transferred)
        job.expectRefusal(of: .setRemoteURL(file: 5, url: "https://example.com/x"), with: .invalidArgument)
        job.expectRefusal(of: .setRemoteURL(file: 0, url: "https://example.com/x"), with: .invalidState)
    }
}
