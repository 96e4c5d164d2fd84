import FerryCore
import FerryPluginHost
import Foundation

/// A file to add to a job.
public struct NewFile: Sendable, Equatable {
    public var remoteURL: String
    public var localPath: String
    public var properties: [String: String]

    public init(remoteURL: String, localPath: String, properties: [String: String] = [:]) {
        self.remoteURL = remoteURL
        self.localPath = localPath
        self.properties = properties
    }
}

/// A job to create whole: its settings and files are checked first, then it is stored and
/// shown in one step, so that nobody ever sees it half made.
public struct NewJob: Sendable {
    public var displayName: String
    public var description: String
    public var owner: UInt32
    /// The owner's identity as the kernel reported it for the caller (groups included);
    /// every file of the job is handled with it. `nil` uses the account database's entry.
    public var ownerCredentials: Credentials?
    public var priority: JobPriority
    /// Settings to apply before the job is stored: only `set…` events (``Engine/settingEvents``).
    public var settings: [JobEvent]
    public var files: [NewFile]
    /// The most jobs the owner may hold, this one included; `nil`: no limit. Checked on the
    /// engine's thread against the owner's jobs and those being created, so that callers
    /// creating at the same time cannot pass it together.
    public var ownerQuota: JobQuota?

    public init(displayName: String, description: String = "", owner: UInt32, ownerCredentials: Credentials? = nil,
                priority: JobPriority = .normal, settings: [JobEvent] = [], files: [NewFile] = [], ownerQuota: JobQuota? = nil) {
        self.displayName = displayName
        self.description = description
        self.owner = owner
        self.ownerCredentials = ownerCredentials
        self.priority = priority
        self.settings = settings
        self.files = files
        self.ownerQuota = ownerQuota
    }
}

/// A limit on the jobs one owner may hold, and the setting that gives it (named when a job
/// is refused).
public struct JobQuota: Sendable, Equatable {
    public var maximum: Int
    public var setting: String

    public init(maximum: Int, setting: String) {
        self.maximum = maximum
        self.setting = setting
    }
}

extension Engine {
    /// Creates a job in `SUSPENDED`.
    /// - Parameter ownerCredentials: the owner's identity as the kernel reported it for the
    ///   caller (groups included); every file of the job is handled with it. `nil` uses the
    ///   account database's entry for `owner`.
    public func createJob(displayName: String, description: String = "", owner: UInt32, ownerCredentials: Credentials? = nil,
                          priority: JobPriority = .normal) throws(FerryError) -> Job {
        try createJob(NewJob(displayName: displayName, description: description, owner: owner,
                             ownerCredentials: ownerCredentials, priority: priority))
    }

    /// Creates a job in `SUSPENDED` with its settings and files, all or nothing: the files
    /// are checked as the owner on the caller's thread, the settings applied, and only then
    /// is the job stored and shown. It returns once the job is durable; jobs created at the
    /// same time share one commit.
    /// - Throws: the first refusal (a setting, a file: `file N: …`, the owner's quota, the
    ///   store); nothing is stored.
    public func createJob(_ new: NewJob) throws(FerryError) -> Job {
        let made = try checked(new)
        let box = ResultBox<Job>()
        let done = DispatchSemaphore(value: 0)
        try onLoop { engine throws(FerryError) in
            try engine.stage(made, quota: new.ownerQuota) { result in
                box.result = result
                done.signal()
            }
        }
        done.wait()
        return try box.result!.get()
    }

    /// ``createJob(_:)`` for a caller on Swift concurrency's threads: while the job waits for
    /// its commit, the caller's thread serves other work.
    public func createJob(_ new: NewJob) async throws(FerryError) -> Job {
        let made = try checked(new)
        let outcome: Result<Job, FerryError> = await withCheckedContinuation { continuation in
            do throws(FerryError) {
                try onLoop { engine throws(FerryError) in
                    try engine.stage(made, quota: new.ownerQuota) { continuation.resume(returning: $0) }
                }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try outcome.get()
    }

    /// The job `new` makes, its settings applied and its files admitted as the owner.
    private func checked(_ new: NewJob) throws(FerryError) -> Job {
        try InputRules.checkDisplayName(new.displayName)
        let now = Date()
        var job = Job(displayName: new.displayName, description: new.description, owner: new.owner, ownerCredentials: new.ownerCredentials,
                      priority: new.priority, createdAt: now, minimumRetryDelay: configuration.defaultMinimumRetryDelay,
                      noProgressTimeout: configuration.defaultNoProgressTimeout)
        for event in try prepared(new.settings, for: job) { _ = try job.apply(event, at: now) }
        if !new.files.isEmpty { _ = try job.apply(.addFiles(try FileAdmission.admit(new.files, to: job)), at: now) }
        return job
    }

    /// Changes a job's settings, all or nothing: `settings` holds only `set…` events
    /// (``settingEvents``); if one is refused, none is applied.
    public func update(_ id: JobID, _ settings: [JobEvent]) throws(FerryError) -> Job {
        let events = try prepared(settings, for: try job(id))
        var job = try onLoop { engine throws(FerryError) in
            var trial = try engine.existingJob(id)
            let now = Date()
            for event in events { _ = try trial.apply(event, at: now) }
            var job = trial
            for event in events { job = try engine.apply(event, to: id, durable: false) }
            engine.durability.writeBatch(wait: true)
            return job
        }
        if events.contains(.setAutoComplete(true)), job.state == .transferred { job = try complete(id) }
        return job
    }

    /// Adds files to a job. Each URL must be `http`, `https` or `file`; each local path
    /// absolute, in a directory that exists.
    public func addFiles(_ id: JobID, _ files: [NewFile]) throws(FerryError) -> Job {
        // Checked on the caller's thread, as the job's owner: the engine's thread never
        // waits on a file system for a caller.
        let accepted = try FileAdmission.admit(files, to: try job(id))
        return try onLoop { engine throws(FerryError) in
            let job = try engine.existingJob(id)
            let before = job.files.count
            return try engine.apply(.addFiles(accepted), to: id, files: Array(before..<(before + accepted.count)))
        }
    }

    public func resume(_ id: JobID) throws(FerryError) -> Job { try call(.resume, id) }
    public func suspend(_ id: JobID) throws(FerryError) -> Job { try call(.suspend, id) }
    public func cancel(_ id: JobID) throws(FerryError) -> Job { try call(.cancel, id) }
    public func setPriority(_ id: JobID, _ priority: JobPriority) throws(FerryError) -> Job { try update(id, [.setPriority(priority)]) }
    public func setMinimumRetryDelay(_ id: JobID, seconds: Double) throws(FerryError) -> Job { try update(id, [.setMinimumRetryDelay(seconds)]) }
    public func setNoProgressTimeout(_ id: JobID, seconds: Double) throws(FerryError) -> Job { try update(id, [.setNoProgressTimeout(seconds)]) }
    public func setCustomHeaders(_ id: JobID, _ headers: [String]) throws(FerryError) -> Job { try update(id, [.setCustomHeaders(headers)]) }
    public func setProperties(_ id: JobID, _ properties: [String: String]) throws(FerryError) -> Job { try update(id, [.setProperties(properties)]) }
    public func setDisplayName(_ id: JobID, _ name: String) throws(FerryError) -> Job { try update(id, [.setDisplayName(name)]) }
    public func setDescription(_ id: JobID, _ text: String) throws(FerryError) -> Job { try update(id, [.setDescription(text)]) }
    public func setNotifyFlags(_ id: JobID, _ flags: NotifyFlags) throws(FerryError) -> Job { try update(id, [.setNotifyFlags(flags)]) }
    public func setNotifyCommand(_ id: JobID, _ command: [String]) throws(FerryError) -> Job { try update(id, [.setNotifyCommand(command)]) }
    /// Completes the job by itself once every file is transferred and validated.
    public func setAutoComplete(_ id: JobID, _ enabled: Bool) throws(FerryError) -> Job { try update(id, [.setAutoComplete(enabled)]) }
    /// BITS' `DYNAMIC_CONTENT`: no size or ranges needed, an interrupted file starts again from
    /// zero; `maxFileBytes` bounds every file of the job (`nil`: the agent's limit only).
    public func setDynamicContent(_ id: JobID, _ enabled: Bool, maxFileBytes: UInt64?) throws(FerryError) -> Job {
        try update(id, [.setDynamicContent(enabled, maxFileBytes: maxFileBytes)])
    }
    /// Adds a CA file the job's `https` servers may chain to, and/or a public key they must
    /// present. Nothing here can weaken verification. `nil` removes an option.
    ///
    /// The CA file is read here, once, as the job's owner (a regular file of at most 1 MiB,
    /// holding PEM certificates), and its bytes are what libcurl gets.
    public func setTLSOptions(_ id: JobID, caFile: String?, pinnedPublicKey: String?) throws(FerryError) -> Job {
        try update(id, [.setTLSOptions(caFile: caFile, pinnedPublicKey: pinnedPublicKey)])
    }

    /// Makes the job act, from now on, with `credentials` (its owner's, as the process naming
    /// a path or program for it holds them now): groups a process dropped are not used for it.
    public func setOwnerCredentials(_ id: JobID, _ credentials: Credentials) throws(FerryError) -> Job {
        try call(.setOwnerCredentials(credentials), id)
    }

    /// Swaps a URL prefix on every file not yet transferred (BITS' `ReplaceRemotePrefix`).
    public func replaceRemotePrefix(_ id: JobID, old: String, new: String) throws(FerryError) -> Job {
        try InputRules.checkRemoteURL(new + "x")
        return try call(.replaceRemotePrefix(old: old, new: new), id)
    }

    /// Adds alternative URLs for one file (its `mirrors` property). Each must be one word
    /// and an `http`, `https` or `file` URL (``InputRules/checkMirrorURL(_:)``); the engine starts the file from the healthiest one and
    /// the `mirror-failover` policy switches between them on errors.
    public func addMirrors(_ id: JobID, file: Int, urls: [String]) throws(FerryError) -> Job {
        guard !urls.isEmpty else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "no mirror URLs given")
        }
        let owner = try job(id)
        for url in urls {
            try InputRules.checkMirrorURL(url)
            try FileAdmission.checkLocalSource(url, for: owner)
        }
        return try call(.addMirrors(file: file, urls: urls), id)
    }

    /// Points one file at another URL (BITS' `SetRemoteName`).
    public func setRemoteURL(_ id: JobID, file: Int, url: String) throws(FerryError) -> Job {
        try InputRules.checkRemoteURL(url)
        return try call(.setRemoteURL(file: file, url: url), id)
    }

    /// Renames every transferred file to its final name and acknowledges the job.
    ///
    /// Files that never finished are deleted, not renamed (BITS' partial complete).
    /// - Throws: ``ErrorCode/localFileError`` when a rename fails; the job then keeps its state.
    public func complete(_ id: JobID) throws(FerryError) -> Job {
        try onLoop { engine throws(FerryError) in
            let current = try engine.existingJob(id)
            if !current.state.isFinal, engine.coordinator.hasValidators(for: current), current.hasPendingFiles {
                throw FerryError(code: .invalidState, context: .validation,
                                 message: "\(current.pendingFileCount) of \(current.files.count) files are not transferred and validated yet; validators apply to this job, so it cannot be completed (cancel it instead)")
            }
            let job = try engine.apply(.complete, to: id)
            if job.state != .acknowledged, let failure = engine.lastCommitError.removeValue(forKey: id) { throw failure }
            return job
        }
    }

    /// What the engine remembers of every source it fetched from, by origin.
    public func sources() -> [SourceHealth] {
        (try? onLoop { engine throws(FerryError) in engine.sourceBook.all }) ?? []
    }

    /// A snapshot of one job.
    public func job(_ id: JobID) throws(FerryError) -> Job {
        try onLoop { engine throws(FerryError) in try engine.existingJob(id) }
    }

    /// Snapshots of every job that is not final, oldest first.
    public func allJobs() -> [Job] {
        (try? onLoop { engine throws(FerryError) in
            engine.jobs.values.sorted { ($0.creationTime, $0.id) < ($1.creationTime, $1.id) }
        }) ?? []
    }

    /// Registers an observer; it is called on the engine's thread until removed.
    @discardableResult
    public func addObserver(_ observer: @escaping @Sendable (EngineEvent) -> Void) -> UUID {
        let token = UUID()
        _ = try? onLoop { engine throws(FerryError) in engine.addObserver(token, observer) }
        return token
    }

    public func removeObserver(_ token: UUID) {
        _ = try? onLoop { engine throws(FerryError) in engine.removeObserver(token: token) }
    }

    /// Whether `event` is a setting (``NewJob/settings``, ``update(_:_:)``): a `set…` call
    /// that changes how the job runs, not its state or files.
    public static func isSetting(_ event: JobEvent) -> Bool {
        switch event {
        case .setPriority, .setMinimumRetryDelay, .setNoProgressTimeout, .setCustomHeaders, .setProperties, .setDisplayName,
             .setDescription, .setNotifyFlags, .setNotifyCommand, .setAutoComplete, .setDynamicContent, .setTLSOptions:
            true
        default:
            false
        }
    }

    /// The settings as the job gets them: each checked to be a setting, names and headers
    /// checked, and a CA file read once, as the owner (its bytes go with the event).
    private func prepared(_ settings: [JobEvent], for job: Job) throws(FerryError) -> [JobEvent] {
        var events: [JobEvent] = []
        for event in settings {
            guard Self.isSetting(event) else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "not a setting: \(event)")
            }
            switch event {
            case .setDisplayName(let name):
                try InputRules.checkDisplayName(name)
                events.append(event)
            case .setCustomHeaders(let headers):
                try InputRules.checkHeaders(headers)
                events.append(event)
            case .setTLSOptions(let caFile?, let pin, nil) where caFile.hasPrefix("/"):
                events.append(.setTLSOptions(caFile: caFile, pinnedPublicKey: pin, caData: try FileAdmission.readCAFile(caFile, for: job)))
            default:
                events.append(event)
            }
        }
        return events
    }
}
