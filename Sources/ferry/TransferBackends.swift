import FerryControl
import FerryCore
import FerryEngine
import FerryStore
import Foundation

/// `ferry transfer` in this process: an engine on a store of its own, one per set of files,
/// kept after an interruption so that the same command continues, removed once the job ended.
final class InProcessBackend: TransferBackend {
    private let engine: Engine
    private let storePath: String
    private let lockPath: String
    private let lock: Int32
    private var observer: UUID?

    /// Opens (or creates) the transfer's store, locks it, and starts an engine on it.
    init(plan: TransferPlan, stateDirectory: String) throws(TransferFailure) {
        let directory = stateDirectory + "/transfers"
        do { try StateDirectory.ensure(directory) } catch {
            throw TransferFailure(status: ExitStatus.cannotRun,
                                  message: "ferry: cannot use the state directory \(directory): \(StateDirectory.explain(error))")
        }
        storePath = "\(directory)/\(plan.storeKey).db"
        lockPath = storePath + ".lock"
        lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            if lock >= 0 { close(lock) }
            throw TransferFailure(status: ExitStatus.busy, message: "ferry: the same transfer is already running in another process (lock \(lockPath))")
        }
        var configuration = EngineConfiguration(storePath: storePath)
        configuration.defaultMinimumRetryDelay = plan.minimumRetryDelay
        configuration.defaultNoProgressTimeout = plan.noProgressTimeout
        configuration.maxActiveBackgroundJobs = 1
        do {
            engine = try Engine(configuration: configuration)
            try engine.start()
        } catch {
            Self.removeStoreIfUnused(storePath, lockPath: lockPath)
            close(lock)
            throw TransferFailure(status: ExitStatus.cannotRun, message: "ferry: \(error.message)")
        }
    }

    var heartbeat: Double { 0.5 }
    var announcesNewJobs: Bool { false }

    func unfinishedJobs() throws(TransferFailure) -> [JobDocument] {
        engine.allJobs().filter { !$0.state.isFinal }.map { JobDocument($0) }
    }

    func create(_ plan: TransferPlan) throws(TransferFailure) -> String {
        let name = plan.displayName ?? "ferry transfer (\(plan.files.count) file\(plan.files.count == 1 ? "" : "s"))"
        do throws(FerryError) {
            // One step: the job is stored with its files and settings, or not at all.
            let job = try engine.createJob(NewJob(displayName: name, owner: getuid(), priority: plan.priority,
                                                  settings: plan.settingEvents, files: plan.files))
            do throws(FerryError) {
                _ = try engine.resume(job.id)
                return job.id.description
            } catch {
                _ = try? engine.cancel(job.id)
                throw error
            }
        } catch {
            throw Self.refusal(error)
        }
    }

    func continueJob(_ id: String, _ plan: TransferPlan) throws(TransferFailure) {
        guard let jobID = JobID(id) else { throw TransferFailure(status: ExitStatus.jobFailed, message: "ferry: no job \(id)") }
        do {
            if try engine.job(jobID).priority != plan.priority { _ = try engine.setPriority(jobID, plan.priority) }
            try settle(jobID, plan)
        } catch {
            throw Self.refusal(error)
        }
    }

    /// This run's settings, then resume.
    private func settle(_ id: JobID, _ plan: TransferPlan) throws(FerryError) {
        _ = try engine.update(id, plan.settingEvents)
        _ = try engine.resume(id)
    }

    /// What the engine refused, with ``TransferFailure/refusalStatus(_:)``.
    private static func refusal(_ error: FerryError) -> TransferFailure {
        TransferFailure(status: TransferFailure.refusalStatus(error.code), message: "ferry: \(error.message)")
    }

    func summary(_ id: String) throws(TransferFailure) -> JobDocument? {
        guard let jobID = JobID(id), let job = try? engine.job(jobID) else { return nil }
        return JobDocument(job, includingFiles: false)
    }

    func full(_ id: String) -> JobDocument? {
        guard let jobID = JobID(id), let job = try? engine.job(jobID) else { return nil }
        return JobDocument(job)
    }

    func complete(_ id: String) throws(TransferFailure) -> JobDocument {
        guard let jobID = JobID(id) else { throw TransferFailure(status: ExitStatus.jobFailed, message: "ferry: no job \(id)") }
        do { return JobDocument(try engine.complete(jobID)) } catch {
            throw TransferFailure(status: ExitStatus.jobFailed,
                                  message: "ferry: job \(id) could not be completed: \(error)\n  fix that and run the same command again: the files are kept")
        }
    }

    func cancel(_ id: String) {
        if let jobID = JobID(id) { _ = try? engine.cancel(jobID) }
    }

    func follow(_ id: String, doorbell: Doorbell) {
        guard let jobID = JobID(id) else { return }
        observer = engine.addObserver { event in
            switch event {
            case .jobChanged(let job), .jobProgressed(let job), .jobTransferred(let job), .jobError(let job), .fileTransferred(let job, _):
                if job.id == jobID { doorbell.ring() }
            }
        }
    }

    func interruptedMessage(_ id: String) -> String {
        "Interrupted: progress is saved; run the same command again to continue."
    }

    func finish(_ outcome: SessionOutcome) {
        if let observer { engine.removeObserver(observer) }
        engine.shutdown()
        switch outcome {
        case .finished:
            Self.removeStore(storePath)
            unlink(lockPath)
        case .noJob:
            Self.removeStoreIfUnused(storePath, lockPath: lockPath)
        case .keptForRerun:
            // Kept for a rerun: an interrupted transfer, and a job that arrived but could not be completed.
            break
        }
        close(lock)
    }

    /// Removes a store that holds no job (a run refused before its job was created).
    private static func removeStoreIfUnused(_ path: String, lockPath: String) {
        guard let store = try? JobStore(path: path), (try? store.jobCount()) == 0 else { return }
        removeStore(path)
        unlink(lockPath)
    }

    private static func removeStore(_ path: String) {
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
    }
}

/// `ferry transfer` through ferryd: the agent holds the job; the session follows the job's
/// event stream (`GET /v1/events?job=…`). Ctrl-C leaves the job running in the agent.
final class AgentBackend: TransferBackend {
    private let link: AgentLink

    init(link: AgentLink) {
        self.link = link
    }

    /// Events can be rate-limited or missed while the stream connects: look every 2 s anyway.
    var heartbeat: Double { 2 }
    var announcesNewJobs: Bool { true }

    /// The notifications the session follows: transferred, error, and modifications for progress.
    private static let followedFlags: NotifyFlags = [.jobTransferred, .jobError, .jobModification]

    private func failure(_ error: ControlError, job: String?) -> TransferFailure {
        TransferFailure(status: link.fail(error, job: job).rawValue, message: nil)
    }

    func unfinishedJobs() throws(TransferFailure) -> [JobDocument] {
        do { return try link.client.listJobs().filter { !$0.state.isFinal } } catch { throw failure(error, job: nil) }
    }

    private func settings(_ plan: TransferPlan) -> JobSettings {
        JobSettings(priority: plan.priority, minRetryDelaySec: plan.minimumRetryDelay, noProgressTimeoutSec: plan.noProgressTimeout,
                    tlsCAFile: plan.caFile)
    }

    func create(_ plan: TransferPlan) throws(TransferFailure) -> String {
        let files = plan.files.map { NewFileDocument(url: $0.remoteURL, path: $0.localPath, properties: $0.properties.isEmpty ? nil : $0.properties) }
        let name = plan.displayName ?? "ferry transfer (\(files.count) file\(files.count == 1 ? "" : "s"))"
        var creation = settings(plan)
        creation.priority = nil
        creation.notifyFlags = Self.followedFlags.rawValue
        do throws(ControlError) {
            let job = try link.client.createJob(CreateJobRequest(displayName: name, priority: plan.priority, files: files, settings: creation),
                                                includingFiles: false)
            do throws(ControlError) { _ = try link.client.perform("resume", on: job.id, includingFiles: false) } catch {
                _ = try? link.client.perform("cancel", on: job.id)
                throw error
            }
            return job.id
        } catch where error.status != 0 {
            _ = link.fail(error, job: nil)
            throw TransferFailure(status: TransferFailure.refusalStatus(ErrorCode(rawValue: error.error.code)), message: nil)
        } catch {
            throw failure(error, job: nil)
        }
    }

    func continueJob(_ id: String, _ plan: TransferPlan) throws(TransferFailure) {
        do {
            _ = try link.client.update(id, settings(plan))
            _ = try link.client.perform("resume", on: id, includingFiles: false)
        } catch {
            throw failure(error, job: id)
        }
    }

    func summary(_ id: String) throws(TransferFailure) -> JobDocument? {
        do { return try link.client.jobSummary(id) } catch {
            // The agent forgets final jobs.
            if error.status == 404 { return nil }
            throw failure(error, job: id)
        }
    }

    func full(_ id: String) -> JobDocument? { try? link.client.job(id) }

    func complete(_ id: String) throws(TransferFailure) -> JobDocument {
        do { return try link.client.perform("complete", on: id, includingFiles: false) } catch {
            if error.status == 0 { throw failure(error, job: id) }
            throw TransferFailure(status: ExitStatus.jobFailed,
                                  message: "ferry: job \(id) could not be completed: \(error.error)\n  fix that and run the same command again: the files are kept")
        }
    }

    func cancel(_ id: String) { _ = try? link.client.perform("cancel", on: id) }

    func follow(_ id: String, doorbell: Doorbell) {
        let client = link.client
        let thread = Thread {
            // Each event for the job rings; the session then reads the job. If the stream ends,
            // the heartbeat carries on alone.
            try? client.events(job: id, pending: false) { _ in
                doorbell.ring()
                return true
            }
        }
        thread.name = "ferry-events"
        thread.start()
    }

    func interruptedMessage(_ id: String) -> String {
        "Interrupted: job \(id) keeps running in ferryd.\n  Run the same command again to wait for it and complete it, or stop it with: ferry cancel \(id)"
    }

    func finish(_ outcome: SessionOutcome) {}
}
