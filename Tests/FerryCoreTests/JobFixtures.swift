import FerryCore
import Foundation
import Testing

// Shared fixtures for the state machine tests: fixed times, files, errors, and
// jobs brought into each state through the events the engine would send.

/// A fixed origin for every timestamp, so that expected times are exact.
let origin = Date(timeIntervalSince1970: 1_700_000_000)

/// `origin` plus `seconds`.
func at(_ seconds: Double) -> Date { origin.addingTimeInterval(seconds) }

/// The time at which fixture jobs are brought into their state; later calls happen after it.
let fixtureTime = at(100)
/// A time after every fixture event: a call that changes the job moves its modification time here.
let later = at(1_000)

func sampleFile(_ index: Int) -> JobFile {
    JobFile(remoteURL: "https://example.com/files/\(index).bin", localPath: "/srv/downloads/file-\(index).bin")
}

let transientFailure = FerryError(
    code: .networkDisconnected, context: .transport, isTransient: true, message: "connection reset by peer")
let fatalFailure = FerryError(
    code: .httpError(404), context: .remoteFile, isTransient: false, httpStatus: 404, fileIndex: 0, message: "not found")

/// A validator's verdict on file 0.
let invalidFile = FerryError(
    code: .validationFailed, context: .validation, fileIndex: 0, message: "sha256 mismatch")

/// States a job can leave.
let nonFinalStates: [JobState] = JobState.allCases.filter { !$0.isFinal }
let finalStates: [JobState] = [.acknowledged, .cancelled]

extension Job {
    /// A new job with `fileCount` sample files, created at `origin`.
    static func sample(
        files fileCount: Int = 2, minimumRetryDelay: Double = Job.defaultMinimumRetryDelay,
        noProgressTimeout: Double = Job.defaultNoProgressTimeout
    ) throws -> Job {
        var job = Job(
            displayName: "sample", owner: 1000, createdAt: origin,
            minimumRetryDelay: minimumRetryDelay, noProgressTimeout: noProgressTimeout)
        if fileCount > 0 {
            _ = try job.apply(.addFiles((0..<fileCount).map(sampleFile)), at: origin)
        }
        return job
    }

    /// A two-file job in `state`, reached through the events the engine sends.
    ///
    /// Every fixture except the final ones has made progress on file 0 (40 of
    /// 100 bytes, or all of them in `TRANSFERRED`). The `ACKNOWLEDGED` job was
    /// partially completed: file 0 committed, file 1 never transferred.
    static func sample(in state: JobState) throws -> Job {
        var job = try Job.sample(files: 2)
        let t = fixtureTime
        func run(_ events: JobEvent...) throws {
            for event in events { _ = try job.apply(event, at: t) }
        }
        let start: [JobEvent] = [
            .resume, .scheduled,
            .responseReceived(file: 0, bytesTotal: 100, etag: "\"v1\"", lastModified: nil, restartFromZero: false),
            .bytesWritten(file: 0, bytes: 40),
        ]
        for event in start { _ = try job.apply(event, at: t) }
        switch state {
        case .suspended: try run(.suspend)
        case .queued: try run(.preempted)
        case .connecting: try run(.preempted, .scheduled)
        case .transferring: break
        case .transferred:
            try run(
                .bytesWritten(file: 0, bytes: 100), .fileTransferred(file: 0),
                .responseReceived(file: 1, bytesTotal: 50, etag: nil, lastModified: nil, restartFromZero: false),
                .bytesWritten(file: 1, bytes: 50), .fileTransferred(file: 1))
        // The error policies answered and none acted: the error stands.
        case .transientError: try run(.failed(transientFailure), .errorPoliciesAnswered)
        case .error: try run(.failed(fatalFailure), .errorPoliciesAnswered)
        case .acknowledged:
            try run(.bytesWritten(file: 0, bytes: 100), .fileTransferred(file: 0), .complete, .committed)
        case .cancelled: try run(.cancel)
        }
        try #require(job.state == state, "the fixture did not reach \(state)")
        return job
    }

    /// Applies `event`, which must be refused with `code`, and checks the job did not change.
    func expectRefusal(
        of event: JobEvent, with code: ErrorCode, at now: Date = later,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var copy = self
        do {
            let actions = try copy.apply(event, at: now)
            Issue.record("\(event) was accepted in \(state) with actions \(actions)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(event) in \(state)", sourceLocation: sourceLocation)
        }
        #expect(copy == self, "a refused \(event) changed the job", sourceLocation: sourceLocation)
    }
}

/// The fields of a ``JobProgress`` (which has no public initializer), for comparisons.
struct Counts: Equatable {
    var bytesTotal: UInt64?
    var bytesTransferred: UInt64
    var filesTotal: Int
    var filesTransferred: Int
}

extension Counts {
    init(_ progress: JobProgress) {
        self.init(
            bytesTotal: progress.bytesTotal, bytesTransferred: progress.bytesTransferred,
            filesTotal: progress.filesTotal, filesTransferred: progress.filesTransferred)
    }
}
