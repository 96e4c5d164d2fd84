import FerryCore
import Foundation
import Testing

/// Transient and fatal errors, MinimumRetryDelay and NoProgressTimeout (BITS §5).
@Suite("Errors and retries")
struct ErrorAndRetryTests {
    // MARK: - Transient errors

    @Test("a transient failure in an active state → TRANSIENT_ERROR with a retry after the minimum delay",
          arguments: [JobState.queued, .connecting, .transferring])
    func transientFailureInActiveState(state: JobState) throws {
        var job = try Job.sample(in: state)
        let failedAt = at(200)

        let actions = try job.apply(.failed(transientFailure), at: failedAt)

        #expect(actions == [.stopTransfers, .scheduleRetry(at: failedAt.addingTimeInterval(600)), .consultErrorPolicies])
        #expect(job.state == .transientError)
        #expect(job.lastError == transientFailure)
        #expect(job.retryAt == failedAt.addingTimeInterval(600))
        #expect(job.noProgressSince == failedAt)
    }

    @Test("Retry-After longer than the minimum delay postpones the retry; a shorter one does not",
          arguments: [(retryAfter: 900.0, expectedDelay: 900.0), (retryAfter: 30.0, expectedDelay: 600.0)])
    func retryAfter(retryAfter: Double, expectedDelay: Double) throws {
        var job = try Job.sample(in: .transferring)
        var failure = transientFailure
        failure.retryAfterSeconds = retryAfter

        let actions = try job.apply(.failed(failure), at: at(200))

        #expect(actions == [.stopTransfers, .scheduleRetry(at: at(200 + expectedDelay)), .consultErrorPolicies])
        #expect(job.retryAt == at(200 + expectedDelay))
    }

    @Test("the retry timer firing early leaves the job in TRANSIENT_ERROR")
    func retryTimerBeforeRetryAt() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.failed(transientFailure), at: at(200))
        _ = try job.apply(.errorPoliciesAnswered, at: at(200))

        let actions = try job.apply(.retryTimerFired, at: at(799))

        #expect(!actions.contains(.enqueue))
        #expect(job.state == .transientError)
        #expect(job.retryAt == at(800))
    }

    @Test("the retry timer firing at retryAt queues the job")
    func retryTimerAtRetryAt() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.failed(transientFailure), at: at(200))
        _ = try job.apply(.errorPoliciesAnswered, at: at(200))

        #expect(try job.apply(.retryTimerFired, at: at(800)) == [.enqueue])
        #expect(job.state == .queued)
        #expect(job.retryAt == nil)
    }

    @Test("resume in TRANSIENT_ERROR queues the job at once and clears the error")
    func resumeTransientError() throws {
        var job = try Job.sample(in: .transientError)

        #expect(try job.apply(.resume, at: later) == [.enqueue])
        #expect(job.state == .queued)
        #expect(job.lastError == nil)
        #expect(job.retryAt == nil)
    }

    @Test("a retry timer for a job that is no longer in TRANSIENT_ERROR is ignored",
          arguments: [JobState.suspended, .queued, .transferring, .transferred, .error])
    func staleRetryTimer(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        #expect(try job.apply(.retryTimerFired, at: later) == [])
        #expect(job == before)
    }

    @Test("failure news for a job that is not active is ignored",
          arguments: [JobState.suspended, .transferred, .transientError, .error])
    func failureWhileInactive(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        #expect(try job.apply(.failed(fatalFailure), at: later) == [])
        #expect(job == before)
    }

    // MARK: - Fatal errors

    @Test("a fatal failure in an active state → ERROR and JobError is notified",
          arguments: [JobState.queued, .connecting, .transferring])
    func fatalFailureInActiveState(state: JobState) throws {
        var job = try Job.sample(in: state)

        #expect(try job.apply(.failed(fatalFailure), at: later) == [.stopTransfers, .consultErrorPolicies])
        #expect(job.state == .error)
        #expect(job.lastError == fatalFailure)
        #expect(job.retryAt == nil)
    }

    @Test("resume on ERROR queues the job and clears the error")
    func resumeError() throws {
        var job = try Job.sample(in: .error)

        #expect(try job.apply(.resume, at: later) == [.enqueue])
        #expect(job.state == .queued)
        #expect(job.lastError == nil)
    }

    // MARK: - Validation failures (BITS §4)

    @Test("a validation failure in TRANSFERRED → ERROR, and that file starts again from zero")
    func validationFailedWhenTransferred() throws {
        var job = try Job.sample(in: .transferred)

        let actions = try job.apply(.validationFailed(invalidFile), at: later)

        #expect(actions == [.stopTransfers, .discardTemporaries([0]), .consultErrorPolicies])
        #expect(job.state == .error)
        #expect(job.lastError == invalidFile)
        #expect(job.files[0].bytesTransferred == 0)
        #expect(!job.files[0].isTransferred)
        #expect(job.files[1].isTransferred, "the other file is not touched")
    }

    @Test("resume after a validation failure fetches only the invalid file again")
    func resumeAfterValidationFailed() throws {
        var job = try Job.sample(in: .transferred)
        _ = try job.apply(.validationFailed(invalidFile), at: later)

        #expect(try job.apply(.resume, at: later) == [.enqueue])
        #expect(job.state == .queued)
        #expect(job.pendingFileIndices == [0])
    }

    @Test("a validation failure for a suspended job discards the file but keeps the state")
    func validationFailedWhenSuspended() throws {
        var job = try Job.sample(in: .suspended)

        #expect(try job.apply(.validationFailed(invalidFile), at: later) == [.discardTemporaries([0])])
        #expect(job.state == .suspended)
        #expect(job.files[0].bytesTransferred == 0)
    }

    @Test("a validation failure that names no file of the job is ignored", arguments: [nil, 2, -1])
    func validationFailedWithoutFile(fileIndex: Int?) throws {
        var job = try Job.sample(in: .transferred)
        let before = job
        var error = invalidFile
        error.fileIndex = fileIndex

        #expect(try job.apply(.validationFailed(error), at: later) == [])
        #expect(job == before)
    }

    // MARK: - No-progress timeout

    @Test("a retry delay longer than the no-progress timeout arms the timer at the deadline")
    func timerAtNoProgressDeadline() throws {
        var job = try Job.sample(files: 1, minimumRetryDelay: 600, noProgressTimeout: 60)
        _ = try job.apply(.resume, at: at(0))

        let actions = try job.apply(.failed(transientFailure), at: at(10))

        #expect(actions == [.stopTransfers, .scheduleRetry(at: at(70)), .consultErrorPolicies])
        #expect(job.state == .transientError)
        #expect(job.noProgressDeadline == at(70))
    }

    @Test("the timer firing at the no-progress deadline → ERROR and JobError is notified")
    func noProgressDeadlineIsFatal() throws {
        var job = try Job.sample(files: 1, minimumRetryDelay: 600, noProgressTimeout: 60)
        _ = try job.apply(.resume, at: at(0))
        _ = try job.apply(.failed(transientFailure), at: at(10))
        _ = try job.apply(.errorPoliciesAnswered, at: at(10))

        #expect(try job.apply(.retryTimerFired, at: at(70)) == [.consultErrorPolicies])
        #expect(job.state == .error)
        #expect(job.retryAt == nil)
        #expect(job.lastError?.code == .networkDisconnected)
        #expect(job.lastError?.isTransient == false)
    }

    @Test("the timer firing before the no-progress deadline leaves the job in TRANSIENT_ERROR")
    func beforeNoProgressDeadline() throws {
        var job = try Job.sample(files: 1, minimumRetryDelay: 600, noProgressTimeout: 60)
        _ = try job.apply(.resume, at: at(0))
        _ = try job.apply(.failed(transientFailure), at: at(10))
        _ = try job.apply(.errorPoliciesAnswered, at: at(10))

        #expect(!(try job.apply(.retryTimerFired, at: at(69))).contains(.consultErrorPolicies))
        #expect(job.state == .transientError)
    }

    @Test("a no-progress timeout of 0 makes a transient failure fatal at once")
    func zeroNoProgressTimeout() throws {
        var job = try Job.sample(files: 1, noProgressTimeout: 0)
        _ = try job.apply(.resume, at: at(0))

        #expect(try job.apply(.failed(transientFailure), at: at(10)) == [.stopTransfers, .consultErrorPolicies])
        #expect(job.state == .error)
        #expect(job.lastError == transientFailure)
    }

    @Test("time without progress adds up over retries that make none")
    func noProgressAccumulatesOverRetries() throws {
        var job = try Job.sample(files: 1, minimumRetryDelay: 5, noProgressTimeout: 60)
        _ = try job.apply(.resume, at: at(0))
        _ = try job.apply(.failed(transientFailure), at: at(10))
        _ = try job.apply(.errorPoliciesAnswered, at: at(10))
        _ = try job.apply(.retryTimerFired, at: at(15))
        _ = try job.apply(.scheduled, at: at(15))
        try #require(job.state == .connecting)

        #expect(try job.apply(.failed(transientFailure), at: at(70)) == [.stopTransfers, .consultErrorPolicies])
        #expect(job.state == .error)
    }

    @Test("bytes written beyond the previous length reset the no-progress clock")
    func progressResetsNoProgressClock() throws {
        var job = try Job.sample(in: .transferring)  // file 0 at 40 bytes
        _ = try job.apply(.failed(transientFailure), at: at(200))
        _ = try job.apply(.errorPoliciesAnswered, at: at(200))
        _ = try job.apply(.retryTimerFired, at: at(800))
        _ = try job.apply(.scheduled, at: at(800))
        try #require(job.noProgressSince == at(200))

        _ = try job.apply(.bytesWritten(file: 0, bytes: 41), at: at(801))

        #expect(job.noProgressSince == nil)
    }

    @Test("bytes written without growth leave the no-progress clock running")
    func noGrowthKeepsNoProgressClock() throws {
        var job = try Job.sample(in: .transferring)  // file 0 at 40 bytes
        _ = try job.apply(.failed(transientFailure), at: at(200))
        _ = try job.apply(.errorPoliciesAnswered, at: at(200))
        _ = try job.apply(.retryTimerFired, at: at(800))
        _ = try job.apply(.scheduled, at: at(800))

        _ = try job.apply(.bytesWritten(file: 0, bytes: 40), at: at(801))

        #expect(job.noProgressSince == at(200))
    }

    // MARK: - Property bounds

    @Test("the minimum retry delay is raised to 1 second")
    func minimumRetryDelayFloor() throws {
        var job = try Job.sample(in: .suspended)
        #expect(try job.apply(.setMinimumRetryDelay(0.2), at: later) == [])
        #expect(job.minimumRetryDelay == 1)

        _ = try job.apply(.setMinimumRetryDelay(30), at: later)
        #expect(job.minimumRetryDelay == 30)
    }

    @Test("a new job's minimum retry delay is raised to 1 second")
    func minimumRetryDelayFloorAtCreation() {
        let job = Job(displayName: "j", owner: 0, createdAt: origin, minimumRetryDelay: 0.5)
        #expect(job.minimumRetryDelay == 1)
    }

    @Test("a new job never gets a retry delay below the floor, even when created with NaN")
    func minimumRetryDelayNaNAtCreation() {
        let job = Job(displayName: "j", owner: 0, createdAt: origin, minimumRetryDelay: .nan)
        #expect(job.minimumRetryDelay >= Job.minimumRetryDelayFloor)
    }

    @Test("a negative, NaN or infinite minimum retry delay is refused", arguments: [-1, Double.nan, .infinity])
    func invalidMinimumRetryDelay(seconds: Double) throws {
        try Job.sample(in: .suspended).expectRefusal(of: .setMinimumRetryDelay(seconds), with: .invalidArgument)
    }

    @Test("setNoProgressTimeout stores the value; 0 is allowed")
    func setNoProgressTimeout() throws {
        var job = try Job.sample(in: .suspended)
        #expect(try job.apply(.setNoProgressTimeout(0), at: later) == [])
        #expect(job.noProgressTimeout == 0)
    }

    @Test("a negative, NaN or infinite no-progress timeout is refused", arguments: [-1, Double.nan, .infinity])
    func invalidNoProgressTimeout(seconds: Double) throws {
        try Job.sample(in: .suspended).expectRefusal(of: .setNoProgressTimeout(seconds), with: .invalidArgument)
    }
}
