import FerryControl
import FerryCore
import FerryEngine
import Foundation

/// Why a step of a transfer failed: the exit status, and what to print (nil when it was printed).
struct TransferFailure: Error {
    var status: Int32
    var message: String?

    /// The exit status when the job is refused, the same in this process and through the
    /// agent: the error table's (``ErrorCode/exitStatus``), except that a destination or
    /// source the caller may not use (`ACCESS_DENIED`) is bad input (65), as a refused URL is
    /// (docs/cli.md).
    static func refusalStatus(_ code: ErrorCode) -> Int32 {
        code == .accessDenied ? ExitStatus.badInput : code.exitStatus
    }
}

/// Wakes the session when its job changes or an interrupt arrives; it sleeps otherwise.
final class Doorbell: @unchecked Sendable {
    private let condition = NSCondition()
    private var rung = false

    func ring() {
        condition.lock()
        rung = true
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps until the bell rings or `seconds` pass, and clears it.
    func wait(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        while !rung && condition.wait(until: deadline) {}
        rung = false
        condition.unlock()
    }
}

/// How a session ended: its exit status, and whether the job is kept for a rerun.
enum SessionOutcome {
    /// The job ended (completed, failed and cancelled, or ended by someone else).
    case finished(Int32)
    /// The job is kept so that the same command continues it (interrupted, or arrived but not completed).
    case keptForRerun(Int32)
    /// No job was made or found (a refused request, bad input).
    case noJob(Int32)

    var status: Int32 {
        switch self {
        case .finished(let status), .keptForRerun(let status), .noJob(let status): status
        }
    }
}

/// Where a `ferry transfer` job lives: the engine in this process, or ferryd.
///
/// The session decides everything (which job, when it ended, what to print, the exit
/// status); a backend only carries out requests and tells when the job changed.
protocol TransferBackend: AnyObject {
    /// The caller's jobs that are not final, with their files.
    func unfinishedJobs() throws(TransferFailure) -> [JobDocument]
    /// Creates the job for `plan`, with its files and settings, and resumes it.
    func create(_ plan: TransferPlan) throws(TransferFailure) -> String
    /// Gives an existing job this run's settings and resumes it.
    func continueJob(_ id: String, _ plan: TransferPlan) throws(TransferFailure)
    /// The job without its files; nil when it is gone (final jobs are forgotten).
    func summary(_ id: String) throws(TransferFailure) -> JobDocument?
    /// The job with its files, for the last words; nil when it cannot be read.
    func full(_ id: String) -> JobDocument?
    /// Completes the job: its files take their final names.
    func complete(_ id: String) throws(TransferFailure) -> JobDocument
    /// Cancels the job, deleting its temporaries; errors are ignored.
    func cancel(_ id: String)
    /// Starts ringing `doorbell` whenever the job changes.
    func follow(_ id: String, doorbell: Doorbell)
    /// The longest the session sleeps without news (news may be dropped or arrive late).
    var heartbeat: Double { get }
    /// Whether a new job is announced ("Created job …").
    var announcesNewJobs: Bool { get }
    /// What Ctrl-C means for the job.
    func interruptedMessage(_ id: String) -> String
    /// Ends the backend's part once the session is over.
    func finish(_ outcome: SessionOutcome)
}

/// One `ferry transfer`, whichever backend holds the job: finds the job an earlier run left
/// (or creates it), waits for it while showing progress, completes it, or prints why it
/// failed and cancels it, handles Ctrl-C, and decides the exit status.
///
/// The end is decided on the job's state alone: `TRANSFERRED` completes it, `ERROR` fails it
/// only once its error policies have answered (`deciding` is false), since a policy may
/// still fall back, switch mirrors or retry.
struct TransferSession {
    let plan: TransferPlan
    let backend: TransferBackend
    let quiet: Bool

    /// Runs the transfer and returns the process exit status.
    func run() -> Int32 {
        let doorbell = Doorbell()
        let interrupted = SignalLatch { doorbell.ring() }
        let outcome: SessionOutcome
        do {
            let id = try prepareJob()
            backend.follow(id, doorbell: doorbell)
            outcome = wait(for: id, doorbell: doorbell, interrupted: interrupted)
        } catch {
            if let message = error.message { printError(message) }
            outcome = .noJob(error.status)
        }
        backend.finish(outcome)
        return outcome.status
    }

    /// The caller's unfinished job for the same files, resumed with this run's settings, or a new one.
    private func prepareJob() throws(TransferFailure) -> String {
        let pairs = plan.files.map { [$0.remoteURL, $0.localPath] }
        let owner = getuid()
        let candidates = try backend.unfinishedJobs().filter { job in
            job.owner == owner && job.files.map { [$0.url, $0.path] } == pairs
        }
        let properties = plan.files.map(\.properties)
        for job in candidates where job.files.map(\.properties) != properties {
            // Same files, other expectations (a new hash, say): the old bytes prove nothing now.
            say("The files' properties changed since job \(job.id); starting over")
            backend.cancel(job.id)
        }
        if let existing = candidates.first(where: { $0.files.map(\.properties) == properties }) {
            say("Continuing job \(existing.id) (\(existing.progress.bytesTransferred) bytes already here)")
            try backend.continueJob(existing.id, plan)
            return existing.id
        }
        let id = try backend.create(plan)
        if backend.announcesNewJobs { say("Created job \(id)") }
        return id
    }

    private func wait(for id: String, doorbell: Doorbell, interrupted: SignalLatch) -> SessionOutcome {
        let started = Date()
        let output = ProgressOutput()
        var lastState: JobState?
        var lastDeciding = false
        while true {
            if interrupted.fired {
                output.finishLine()
                say(backend.interruptedMessage(id))
                return .keptForRerun(ExitStatus.interrupted)
            }
            let summary: JobDocument?
            do { summary = try backend.summary(id) } catch {
                output.finishLine()
                if let message = error.message { printError(message) }
                return .keptForRerun(error.status)
            }
            guard let job = summary else {
                output.finishLine()
                // Final jobs are forgotten: another client completed or cancelled this one.
                printError("ferry: job \(id) was completed or cancelled by someone else")
                return .finished(ExitStatus.jobFailed)
            }
            let changed = job.state != lastState || job.deciding != lastDeciding
            if !quiet { output.show(ProgressSnapshot(job), elapsed: Date().timeIntervalSince(started), stateChanged: changed) }
            lastState = job.state
            lastDeciding = job.deciding
            switch job.state {
            case .transferred:
                let done: JobDocument
                do { done = try backend.complete(id) } catch {
                    output.finishLine()
                    if let message = error.message { printError(message) }
                    return .keptForRerun(error.status)
                }
                output.finishLine()
                say("Transferred \(done.progress.filesTotal) file\(done.progress.filesTotal == 1 ? "" : "s"), \(Format.bytes(done.progress.bytesTransferred)) in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
                return .finished(ExitStatus.success)
            case .error where !job.deciding:
                // The policies answered and none saved the job: this error is the end.
                output.finishLine()
                printError(Self.failure(backend.full(id) ?? job))
                backend.cancel(id)
                return .finished(ExitStatus.jobFailed)
            case .acknowledged, .cancelled:
                output.finishLine()
                if job.state == .acknowledged, let full = backend.full(id), full.files.allSatisfy(\.committed) {
                    // Completed by the agent itself (auto-complete) or by another client: the files are in place.
                    say("Transferred \(full.files.count) file\(full.files.count == 1 ? "" : "s"); job \(id) was completed by someone else")
                    return .finished(ExitStatus.success)
                }
                printError("ferry: job \(id) was \(job.state.rawValue.lowercased()) by someone else")
                return .finished(ExitStatus.jobFailed)
            default:
                doorbell.wait(seconds: backend.heartbeat)
            }
        }
    }

    /// The failure: code and context, the file, the reason.
    static func failure(_ job: JobDocument) -> String {
        var text = "ferry: job \(job.id) failed: \(job.error.map { "\($0.code) (\($0.context))" } ?? "ERROR")"
        if let index = job.error?.file, let file = job.files.first(where: { $0.index == index }) {
            text += "\n  file \(index): \(file.url) -> \(file.path)"
        }
        if let error = job.error { text += "\n  \(error.message)" }
        return text
    }

    private func say(_ text: String) {
        if !quiet { printError(text) }
    }
}
