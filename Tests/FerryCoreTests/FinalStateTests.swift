import FerryCore
import Foundation
import Testing

/// Calls from the job's owner; each is refused on a final job.
let callEvents: [JobEvent] = [
    .addFiles([sampleFile(9)]),
    .resume,
    .suspend,
    .cancel,
    .complete,
    .setPriority(.high),
    .setMinimumRetryDelay(30),
    .setNoProgressTimeout(30),
    .setCustomHeaders(["X-Trace: 1"]),
    .setProperties(["team": "infra"]),
    .setAutoComplete(true),
    // File 1 was never transferred, so only the final state can refuse this.
    .setRemoteURL(file: 1, url: "https://mirror.example.com/1.bin"),
]

/// News from the engine that would change a job that is not final.
let newsEvents: [JobEvent] = [
    .scheduled,
    .preempted,
    .responseReceived(file: 1, bytesTotal: 50, etag: "\"v2\"", lastModified: nil, restartFromZero: true),
    .bytesWritten(file: 1, bytes: 10),
    .fileTransferred(file: 1),
    .failed(transientFailure),
    .failed(fatalFailure),
    .validationFailed(invalidFile),
    .retryTimerFired,
    .committed,
    .restarted,
]

/// `ACKNOWLEDGED` and `CANCELLED` are final: nothing changes such a job (BITS §1).
@Suite("Final states")
struct FinalStateTests {
    @Test("every call on a final job throws INVALID_STATE and leaves it unchanged", arguments: finalStates, callEvents)
    func callsAreRefused(state: JobState, event: JobEvent) throws {
        let job = try Job.sample(in: state)
        job.expectRefusal(of: event, with: .invalidState)
    }

    @Test("engine news for a final job returns no action and changes nothing", arguments: finalStates, newsEvents)
    func newsIsIgnored(state: JobState, event: JobEvent) throws {
        var job = try Job.sample(in: state)
        let before = job
        let actions = try job.apply(event, at: later)
        #expect(actions == [])
        #expect(job == before)
    }

    @Test("a rename report for a final job changes nothing", arguments: finalStates)
    func commitFailedIsIgnored(state: JobState) throws {
        var job = try Job.sample(in: state)
        let before = job
        let renameError = FerryError(code: .localFileError, context: .localFile, fileIndex: 1, message: "rename failed")
        let actions = try job.apply(.commitFailed(renameError, committed: [1]), at: later)
        #expect(actions == [])
        #expect(job == before)
    }
}
