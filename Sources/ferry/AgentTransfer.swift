import FerryControl
import FerryCore
import FerryEngine
import Foundation

/// `ferry transfer` run by ferryd: the agent holds the job, this process creates it,
/// shows its progress and ends it, as ``OneShotTransfer`` does in-process.
///
/// A rerun finds the caller's unfinished job with the same URL and destination pairs and
/// waits for it again. Ctrl-C leaves the job running in the agent.
struct AgentTransfer {
    let plan: TransferPlan
    let link: AgentLink
    let quiet: Bool

    /// Runs the transfer and returns the process exit status.
    func run() -> Int32 {
        let interrupted = InterruptLatch()
        let id: String
        do { id = try prepareJob() } catch { return link.fail(error, job: nil).rawValue }
        return wait(for: id, interrupted: interrupted)
    }

    /// The files as the API takes them.
    private var files: [NewFileDocument] {
        plan.files.map { NewFileDocument(url: $0.remoteURL, path: $0.localPath, properties: $0.properties.isEmpty ? nil : $0.properties) }
    }

    /// The caller's unfinished job for the same files, resumed with this run's settings, or a new one.
    private func prepareJob() throws(ControlError) -> String {
        let files = self.files
        let pairs = files.map { [$0.url, $0.path] }
        let owner = getuid()
        let candidates = try link.client.listJobs().filter { job in
            !job.state.isFinal && job.owner == owner && job.files.map { [$0.url, $0.path] } == pairs
        }
        let properties = files.map { $0.properties ?? [:] }
        for job in candidates where job.files.map(\.properties) != properties {
            // Same files, other expectations (a new hash, say): the old bytes prove nothing now.
            say("The files' properties changed since job \(job.id); starting over")
            _ = try? link.client.perform("cancel", on: job.id)
        }
        let settings = JobSettings(priority: plan.priority, minRetryDelaySec: plan.minimumRetryDelay,
                                   noProgressTimeoutSec: plan.noProgressTimeout)
        if let existing = candidates.first(where: { $0.files.map(\.properties) == properties }) {
            say("Continuing job \(existing.id) (\(existing.progress.bytesTransferred) bytes already here)")
            _ = try link.client.update(existing.id, settings)
            _ = try link.client.perform("resume", on: existing.id)
            return existing.id
        }
        let name = plan.displayName ?? "ferry transfer (\(files.count) file\(files.count == 1 ? "" : "s"))"
        var creation = settings
        creation.priority = nil
        let job = try link.client.createJob(CreateJobRequest(displayName: name, priority: plan.priority, files: files, settings: creation),
                                            includingFiles: false)
        do { _ = try link.client.perform("resume", on: job.id, includingFiles: false) } catch {
            _ = try? link.client.perform("cancel", on: job.id)
            throw error
        }
        say("Created job \(job.id)")
        return job.id
    }

    private func wait(for id: String, interrupted: InterruptLatch) -> Int32 {
        let started = Date()
        let output = ProgressOutput()
        var lastState: JobState?
        while true {
            if interrupted.fired {
                output.finishLine()
                say("Interrupted: job \(id) keeps running in ferryd.\n  Run the same command again to wait for it and complete it, or stop it with: ferry cancel \(id)")
                return ExitStatus.interrupted
            }
            var job: JobDocument
            do { job = try link.client.jobSummary(id) } catch {
                output.finishLine()
                // The agent forgets final jobs: another client completed or cancelled this one.
                if error.status == 404 {
                    printError("ferry: job \(id) was completed or cancelled by someone else")
                    return ExitStatus.jobFailed
                }
                return link.fail(error, job: id).rawValue
            }
            if !quiet { output.show(ProgressSnapshot(job), elapsed: Date().timeIntervalSince(started), stateChanged: job.state != lastState) }
            lastState = job.state
            // The polls leave the files out; the endings below need them.
            if job.state == .error || job.state == .acknowledged, let full = try? link.client.job(id) { job = full }
            switch job.state {
            case .transferred:
                let done: JobDocument
                do { done = try link.client.perform("complete", on: id, includingFiles: false) } catch {
                    output.finishLine()
                    if error.status == 0 { return link.fail(error, job: id).rawValue }
                    printError("ferry: job \(id) could not be completed: \(error.error)\n  fix that and run the same command again: the files are kept")
                    return ExitStatus.jobFailed
                }
                output.finishLine()
                say("Transferred \(done.progress.filesTotal) file\(done.progress.filesTotal == 1 ? "" : "s"), \(Format.bytes(done.progress.bytesTransferred)) in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
                return ExitStatus.success
            case .error where !job.deciding:
                output.finishLine()
                printError(Self.failure(job))
                _ = try? link.client.perform("cancel", on: id)
                return ExitStatus.jobFailed
            case .acknowledged where job.files.allSatisfy(\.committed):
                // Completed by the agent itself (auto-complete) or by another client: the files are in place.
                output.finishLine()
                say("Transferred \(job.files.count) file\(job.files.count == 1 ? "" : "s"); job \(id) was completed by someone else")
                return ExitStatus.success
            case .acknowledged, .cancelled:
                output.finishLine()
                printError("ferry: job \(id) was \(job.state.rawValue.lowercased()) by someone else")
                return ExitStatus.jobFailed
            default:
                _ = interrupted.wait(seconds: 0.25)
            }
        }
    }

    /// The failure as the in-process mode prints it: code and context, the file, the reason.
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

extension ProgressSnapshot {
    /// What the agent reports of a job, for the shared progress display.
    init(_ job: JobDocument) {
        let retry = job.state == .transientError ? job.error.map { error in
            (seconds: job.retryAt.map { max(0, Int($0.timeIntervalSinceNow.rounded(.up))) } ?? 0, code: error.code)
        } : nil
        self.init(state: job.state.rawValue, bytesTransferred: job.progress.bytesTransferred, bytesTotal: job.progress.bytesTotal,
                  filesTransferred: job.progress.filesTransferred, filesTotal: job.progress.filesTotal, retry: retry)
    }
}
