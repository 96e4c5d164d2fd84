import FerryCore
import Foundation
import Testing

/// The verdict of the error policies is part of the job: a job that entered ERROR or
/// TRANSIENT_ERROR is `deciding` until its policies answered, and only then is the error
/// announced (jobError, notify commands) or a retry run.
@Suite("Error policies deciding")
struct DecidingTests {
    @Test("a fatal failure → ERROR, deciding, policies asked; nobody is told yet")
    func fatalFailureDecides() throws {
        var job = try Job.sample(in: .transferring)
        let actions = try job.apply(.failed(fatalFailure), at: later)
        #expect(actions == [.stopTransfers, .consultErrorPolicies])
        #expect(!actions.contains(.notifyJobError))
        #expect(job.state == .error)
        #expect(job.deciding)
    }

    @Test("the policies answer and the error stands → jobError, no longer deciding")
    func answeredErrorIsAnnounced() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.failed(fatalFailure), at: later)
        #expect(try job.apply(.errorPoliciesAnswered, at: later) == [.notifyJobError])
        #expect(job.state == .error)
        #expect(!job.deciding)
        #expect(try job.apply(.errorPoliciesAnswered, at: later) == [], "announced once")
    }

    @Test("a policy that resumes ends the decision without any jobError")
    func resumingPolicyAnnouncesNothing() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.failed(fatalFailure), at: later)
        _ = try job.apply(.recordPolicyDecision("range-fallback: set priority foreground, resume", resumes: true), at: later)
        _ = try job.apply(.setPriority(.foreground), at: later)
        #expect(job.deciding, "still deciding while the acting policy's requests are carried out")
        #expect(try job.apply(.resume, at: later) == [.enqueue])
        #expect(!job.deciding)
        #expect(try job.apply(.errorPoliciesAnswered, at: later) == [], "the error is gone: nothing to announce")
        #expect(job.state == .queued)
    }

    @Test("a validation failure → ERROR, deciding; the file is reset at once")
    func validationFailureDecides() throws {
        var job = try Job.sample(in: .transferred)
        #expect(try job.apply(.validationFailed(invalidFile), at: later) == [.stopTransfers, .discardTemporaries([0]), .consultErrorPolicies])
        #expect(job.deciding)
        #expect(job.files[0].bytesTransferred == 0)
    }

    @Test("a transient failure decides too, and its retry waits for the verdict")
    func transientRetryWaitsForTheVerdict() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.failed(transientFailure), at: at(200))
        #expect(job.state == .transientError)
        #expect(job.deciding)
        #expect(try job.apply(.retryTimerFired, at: at(900)) == [], "no retry while the policies decide")
        #expect(job.state == .transientError)
        // A policy postpones the retry, then the round ends.
        _ = try job.apply(.setRetryDelay(1_000), at: at(300))
        #expect(try job.apply(.errorPoliciesAnswered, at: at(300)) == [], "a transient error is never announced as jobError")
        #expect(!job.deciding)
        #expect(!(try job.apply(.retryTimerFired, at: at(900))).contains(.enqueue), "postponed to 1300")
        #expect(try job.apply(.retryTimerFired, at: at(1_300)) == [.enqueue])
        #expect(job.state == .queued)
    }

    @Test("the no-progress deadline turns a transient error into ERROR, deciding again")
    func noProgressDeadlineDecides() throws {
        var job = try Job.sample(files: 1, minimumRetryDelay: 600, noProgressTimeout: 60)
        _ = try job.apply(.resume, at: at(0))
        _ = try job.apply(.failed(transientFailure), at: at(10))
        _ = try job.apply(.errorPoliciesAnswered, at: at(10))
        #expect(try job.apply(.retryTimerFired, at: at(70)) == [.consultErrorPolicies])
        #expect(job.state == .error)
        #expect(job.deciding)
        #expect(try job.apply(.errorPoliciesAnswered, at: at(71)) == [.notifyJobError])
    }

    @Test("suspend and cancel end a decision", arguments: [JobEvent.suspend, .cancel])
    func leavingTheErrorEndsTheDecision(event: JobEvent) throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.failed(fatalFailure), at: later)
        _ = try job.apply(event, at: later)
        #expect(!job.deciding)
        #expect(!(try job.apply(.errorPoliciesAnswered, at: later)).contains(.notifyJobError))
    }

    @Test("an answer with no decision under way changes nothing",
          arguments: [JobState.suspended, .queued, .transferring, .transferred, .error, .transientError])
    func strayAnswer(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        #expect(try job.apply(.errorPoliciesAnswered, at: later) == [])
        #expect(job == before)
    }

    @Test("deciding is kept across a restart (the record holds it) and decodes as false from old records")
    func decidingIsPersisted() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.failed(fatalFailure), at: later)
        let data = try JSONEncoder().encode(job)
        let decoded = try JSONDecoder().decode(Job.self, from: data)
        #expect(decoded.deciding)
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        object["deciding"] = nil
        let old = try JSONDecoder().decode(Job.self, from: try JSONSerialization.data(withJSONObject: object))
        #expect(!old.deciding)
    }
}
