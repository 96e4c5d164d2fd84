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

    /// Creates the job, whole, once it is durable (``Engine/createJob(_:)``); the caller's
    /// job quota is checked by the engine, where creations at the same time cannot pass it together.
    public func create(_ request: CreateJobRequest, for caller: Caller) async throws(FerryError) -> Job {
        let limits = settings.withLock { $0 }
        try InputRules.checkDisplayName(request.displayName)
        try checkFileQuota(adding: request.files?.count ?? 0, to: 0, caller: caller, limits: limits)
        let files = try Self.newFiles(request.files ?? [])
        let quota = !caller.isAdministrator && limits.jobsPerUser > 0
            ? JobQuota(maximum: limits.jobsPerUser, setting: "quotas.jobs_per_user") : nil
        var new = NewJob(displayName: request.displayName, description: request.description ?? "",
                         owner: caller.uid, ownerCredentials: caller.credentials, priority: request.priority ?? .normal, files: files,
                         ownerQuota: quota)
        if let settings = request.settings {
            // A job not made yet has the defaults: the pairs of settings complete from those.
            let defaults = Job(displayName: new.displayName, owner: caller.uid, priority: new.priority, createdAt: Date())
            new.settings = try Self.settingEvents(settings, current: defaults)
        }
        // One step: the job appears with its settings and files, or not at all.
        return try await engine.createJob(new)
    }

    public func addFiles(_ id: String, _ files: [NewFileDocument], for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        guard !files.isEmpty else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "files is empty")
        }
        try checkFileQuota(adding: files.count, to: job.files.count, caller: caller, limits: settings.withLock { $0 })
        try actAsCaller(job, caller)
        return try engine.addFiles(job.id, try Self.newFiles(files))
    }

    /// Adds alternative URLs for one file; the engine checks each as a mirror.
    public func addMirrors(_ id: String, file: Int, urls: [String], for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        try actAsCaller(job, caller)
        return try engine.addMirrors(job.id, file: file, urls: urls)
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
        if settings.tlsCAFile != nil || settings.notifyCommand != nil { try actAsCaller(job, caller) }
        return try engine.update(job.id, try Self.settingEvents(settings, current: job))
    }

    public func setRemoteURL(_ id: String, file: Int, url: String, for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        try actAsCaller(job, caller)
        return try engine.setRemoteURL(job.id, file: file, url: url)
    }

    public func replaceRemotePrefix(_ id: String, old: String, new: String, for caller: Caller) throws(FerryError) -> Job {
        let job = try job(id, for: caller)
        try actAsCaller(job, caller)
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

    /// The health of the sources `caller` may see: every one for an administrator; for anyone
    /// else, only the origins named by the URLs and mirrors of the caller's own jobs, so that
    /// no user learns where another user's jobs download from.
    public func sources(for caller: Caller) -> [SourceHealth] {
        let all = engine.sources()
        guard !caller.isAdministrator else { return all }
        return Self.sources(all, visibleIn: engine.allJobs().filter { $0.owner == caller.uid })
    }

    /// The entries of `sources` whose origin appears in a URL or a mirror of a file of `jobs`.
    static func sources(_ sources: [SourceHealth], visibleIn jobs: [Job]) -> [SourceHealth] {
        let origins = Set(jobs.flatMap(\.files).flatMap(\.candidateURLs).compactMap(SourceHealth.origin(of:)))
        return sources.filter { origins.contains($0.origin) }
    }

    // MARK: - Helpers

    /// A request from the job's owner that names a path or a program: the job acts from now
    /// on with the identity the calling process holds (a group it dropped is dropped for the
    /// job too). Root acting on another user's job changes nothing: the job keeps its owner's.
    private func actAsCaller(_ job: Job, _ caller: Caller) throws(FerryError) {
        guard caller.uid == job.owner, job.ownerCredentials != caller.credentials else { return }
        _ = try engine.setOwnerCredentials(job.id, caller.credentials)
    }

    /// The engine's setting events for a request's settings, in the order the API documents.
    /// A setting given alone of a pair (dynamic content and its limit, the CA file and the
    /// pin) keeps `current`'s value of the other.
    static func settingEvents(_ settings: JobSettings, current job: Job) throws(FerryError) -> [JobEvent] {
        var events: [JobEvent] = []
        if let name = settings.displayName {
            try InputRules.checkDisplayName(name)
            events.append(.setDisplayName(name))
        }
        if let text = settings.description { events.append(.setDescription(text)) }
        if let priority = settings.priority { events.append(.setPriority(priority)) }
        if let seconds = settings.minRetryDelaySec { events.append(.setMinimumRetryDelay(seconds)) }
        if let seconds = settings.noProgressTimeoutSec { events.append(.setNoProgressTimeout(seconds)) }
        if let headers = settings.customHeaders {
            try InputRules.checkHeaders(headers)
            events.append(.setCustomHeaders(headers))
        }
        if let flags = settings.notifyFlags { events.append(.setNotifyFlags(NotifyFlags(rawValue: flags))) }
        if let command = settings.notifyCommand { events.append(.setNotifyCommand(command)) }
        if let properties = settings.properties { events.append(.setProperties(properties)) }
        if settings.dynamicContent != nil || settings.maxFileBytes != nil {
            // A limit of 0 removes the job's limit.
            let enabled = settings.dynamicContent ?? job.dynamicContent
            let limit = settings.maxFileBytes.map { $0 == 0 ? nil : $0 } ?? job.maxFileBytes
            events.append(.setDynamicContent(enabled, maxFileBytes: limit))
        }
        if settings.tlsCAFile != nil || settings.tlsPinnedPublicKey != nil {
            // "" removes an option.
            let caFile = settings.tlsCAFile.map { $0.isEmpty ? nil : $0 } ?? job.tlsCAFile
            let pin = settings.tlsPinnedPublicKey.map { $0.isEmpty ? nil : $0 } ?? job.tlsPinnedPublicKey
            if let caFile, !caFile.hasPrefix("/") {
                // Checked before the engine opens it: a relative path would be read against the agent's directory.
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "tlsCAFile must be an absolute path, got '\(caFile)'")
            }
            events.append(.setTLSOptions(caFile: caFile, pinnedPublicKey: pin))
        }
        if let autoComplete = settings.autoComplete { events.append(.setAutoComplete(autoComplete)) }
        return events
    }

    private func checkFileQuota(adding count: Int, to existing: Int, caller: Caller, limits: Settings) throws(FerryError) {
        guard !caller.isAdministrator, limits.filesPerJob > 0, existing + count > limits.filesPerJob else { return }
        throw FerryError(code: .quotaExceeded, context: .queueManager,
                         message: "a job may hold at most \(limits.filesPerJob) files (quotas.files_per_job); this one would have \(existing + count)")
    }

    /// The engine's form of the files of a request, mirrors checked.
    /// - Throws: the first refusal, prefixed with `file N:` when several files were given.
    static func newFiles(_ documents: [NewFileDocument]) throws(FerryError) -> [NewFile] {
        var files: [NewFile] = []
        for (offset, document) in documents.enumerated() {
            do throws(FerryError) { files.append(try newFile(document)) } catch {
                var failure = error
                if documents.count > 1 { failure.message = "file \(offset): " + failure.message }
                throw failure
            }
        }
        return files
    }

    /// One new file. Its `mirrors` are appended to those its `mirrors` property already lists
    /// (without repeats, and without the file's own URL); every one must be a usable mirror URL.
    static func newFile(_ document: NewFileDocument) throws(FerryError) -> NewFile {
        var file = JobFile(remoteURL: document.url, localPath: document.path, properties: document.properties ?? [:])
        let given = document.mirrors ?? []
        for url in given { try InputRules.checkMirrorURL(url) }
        for url in file.mirrors { try InputRules.checkMirrorURL(url) }
        if !given.isEmpty {
            var list = file.mirrors
            for url in given where url != document.url && !list.contains(url) { list.append(url) }
            file.mirrors = list
        }
        return NewFile(remoteURL: file.remoteURL, localPath: file.localPath, properties: file.properties)
    }
}
