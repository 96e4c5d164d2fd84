import FerryControl
import FerryCore
import FerryEngine
import Foundation
import Synchronization

/// The engine as callers see it: their own jobs only (root sees all), within their quotas.
///
/// Another user's job is reported exactly as a job that does not exist: a caller
/// cannot learn that it is there.
public final class AgentService: Sendable {
    public let engine: Engine
    private let settings: Mutex<Settings>

    /// What may change on a configuration reload.
    public struct Settings: Sendable, Equatable {
        public var jobsPerUser: Int
        public var filesPerJob: Int
        public init(jobsPerUser: Int, filesPerJob: Int) {
            self.jobsPerUser = jobsPerUser
            self.filesPerJob = filesPerJob
        }
    }

    public init(engine: Engine, settings: Settings) {
        self.engine = engine
        self.settings = Mutex(settings)
    }

    public func update(_ new: Settings) { settings.withLock { $0 = new } }

    // MARK: - Reading

    public func jobs(for caller: Caller, allUsers: Bool) throws(FerryError) -> [Job] {
        if allUsers && !caller.isAdministrator {
            throw FerryError(code: .accessDenied, context: .queueManager, message: "only root may list every user's jobs")
        }
        return engine.allJobs().filter { allUsers || $0.owner == caller.uid }
    }

    /// The job, if the caller may see it; otherwise NOT_FOUND, as for a job that does not exist.
    public func job(_ id: String, for caller: Caller) throws(FerryError) -> Job {
        guard let jobID = JobID(id) else {
            throw FerryError(code: .notFound, context: .queueManager, message: "no job \(id) (a job id is a UUID)")
        }
        let job: Job
        do { job = try engine.job(jobID) } catch {
            throw FerryError(code: .notFound, context: .queueManager, message: "no job \(id)")
        }
        guard job.owner == caller.uid || caller.isAdministrator else {
            throw FerryError(code: .notFound, context: .queueManager, message: "no job \(id)")
        }
        return job
    }

    // MARK: - Changing

    public func create(_ request: CreateJobRequest, for caller: Caller) throws(FerryError) -> Job {
        let limits = settings.withLock { $0 }
        guard !request.displayName.isEmpty, request.displayName.count <= 256 else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "displayName must have 1 to 256 characters")
        }
        if !caller.isAdministrator, limits.jobsPerUser > 0 {
            let owned = engine.allJobs().filter { $0.owner == caller.uid }.count
            guard owned < limits.jobsPerUser else {
                throw FerryError(code: .quotaExceeded, context: .queueManager,
                                 message: "uid \(caller.uid) already has \(owned) jobs, the most allowed (quotas.jobs_per_user = \(limits.jobsPerUser)); complete or cancel some first")
            }
        }
        try checkFileQuota(adding: request.files?.count ?? 0, to: 0, caller: caller, limits: limits)
        let job = try engine.createJob(displayName: request.displayName, description: request.description ?? "",
                                       owner: caller.uid, priority: request.priority ?? .normal)
        do {
            if let settings = request.settings { _ = try apply(settings, to: job.id) }
            if let files = request.files, !files.isEmpty { _ = try engine.addFiles(job.id, files.map(Self.newFile)) }
            return try engine.job(job.id)
        } catch {
            // All or nothing: a job whose files or settings were refused is not left behind.
            _ = try? engine.cancel(job.id)
            throw error
        }
    }

    public func addFiles(_ id: String, _ files: [NewFileDocument], for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        guard !files.isEmpty else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "files is empty")
        }
        try checkFileQuota(adding: files.count, to: job.files.count, caller: caller, limits: settings.withLock { $0 })
        return try engine.addFiles(job.id, files.map(Self.newFile))
    }

    /// `resume`, `suspend`, `cancel` or `complete`.
    public func perform(_ action: String, on id: String, for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        switch action {
        case "resume": return try engine.resume(job.id)
        case "suspend": return try engine.suspend(job.id)
        case "cancel": return try engine.cancel(job.id)
        case "complete": return try engine.complete(job.id)
        default: throw FerryError(code: .notFound, context: .queueManager, message: "no action \(action)")
        }
    }

    public func update(_ id: String, _ settings: JobSettings, for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        return try apply(settings, to: job.id)
    }

    public func setRemoteURL(_ id: String, file: Int, url: String, for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        return try engine.setRemoteURL(job.id, file: file, url: url)
    }

    public func replaceRemotePrefix(_ id: String, old: String, new: String, for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        return try engine.replaceRemotePrefix(job.id, old: old, new: new)
    }

    /// The job's error, available in ERROR and TRANSIENT_ERROR only (BITS' GetError).
    public func error(_ id: String, for caller: Caller) throws(FerryError) -> FerryError {
        let job = try job(id, for: caller)
        guard job.state == .error || job.state == .transientError, let error = job.lastError else {
            throw FerryError(code: .invalidState, context: .queueManager, message: "job \(id) is \(job.state.rawValue), not in error")
        }
        return error
    }

    // MARK: - Helpers

    private func apply(_ settings: JobSettings, to id: JobID) throws(FerryError) -> Job {
        var job = try engine.job(id)
        if let name = settings.displayName {
            guard !name.isEmpty, name.count <= 256 else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "displayName must have 1 to 256 characters")
            }
            job = try engine.setDisplayName(id, name)
        }
        if let text = settings.description { job = try engine.setDescription(id, text) }
        if let priority = settings.priority { job = try engine.setPriority(id, priority) }
        if let seconds = settings.minRetryDelaySec { job = try engine.setMinimumRetryDelay(id, seconds: seconds) }
        if let seconds = settings.noProgressTimeoutSec { job = try engine.setNoProgressTimeout(id, seconds: seconds) }
        if let headers = settings.customHeaders {
            try Self.checkHeaders(headers)
            job = try engine.setCustomHeaders(id, headers)
        }
        if let flags = settings.notifyFlags { job = try engine.setNotifyFlags(id, NotifyFlags(rawValue: flags)) }
        if let command = settings.notifyCommand { job = try engine.setNotifyCommand(id, command) }
        if let properties = settings.properties { job = try engine.setProperties(id, properties) }
        if let autoComplete = settings.autoComplete { job = try engine.setAutoComplete(id, autoComplete) }
        return job
    }

    private func checkFileQuota(adding count: Int, to existing: Int, caller: Caller, limits: Settings) throws(FerryError) {
        guard !caller.isAdministrator, limits.filesPerJob > 0, existing + count > limits.filesPerJob else { return }
        throw FerryError(code: .quotaExceeded, context: .queueManager,
                         message: "a job may hold at most \(limits.filesPerJob) files (quotas.files_per_job); this one would have \(existing + count)")
    }

    /// BITS' rules for custom headers: `Name: value` lines, 16 KiB in all, no line breaks inside.
    static func checkHeaders(_ headers: [String]) throws(FerryError) {
        var total = 0
        for header in headers {
            total += header.utf8.count + 2
            guard let colon = header.firstIndex(of: ":"), colon != header.startIndex,
                  !header.contains("\r"), !header.contains("\n"),
                  header[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "not a header line 'Name: value': \(header.prefix(80))")
            }
        }
        guard total <= 16_384 else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "custom headers take \(total) bytes; at most 16384 are allowed")
        }
    }

    static func newFile(_ document: NewFileDocument) -> NewFile {
        NewFile(remoteURL: document.url, localPath: document.path, properties: document.properties ?? [:])
    }
}
