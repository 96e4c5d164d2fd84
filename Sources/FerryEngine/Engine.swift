import Dispatch
import FerryCore
import FerryPluginHost
import FerryStore
import FerryTransport
import Foundation
import Logging
import Synchronization

/// What the engine tells its observers. Delivered on the engine's thread: observers must return quickly.
public enum EngineEvent: Sendable {
    /// The job changed state, files or settings (not sent for every byte).
    case jobChanged(Job)
    /// Bytes arrived for the job; sent at most every ``EngineConfiguration/progressEventInterval`` seconds per job.
    case jobProgressed(Job)
    case fileTransferred(Job, file: Int)
    case jobTransferred(Job)
    case jobError(Job)
}

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

/// Runs download jobs with BITS semantics and keeps them through crashes.
///
/// The engine owns one thread. It drives every transfer through a libcurl
/// multi handle, applies events to the jobs' state machines, and carries out
/// the actions they return. Public methods may be called from any thread:
/// they run on the engine's thread and wait for the result.
///
/// Durability: each temporary is flushed (`fdatasync`) before its length is
/// recorded in the store, at least every ``EngineConfiguration/checkpointBytes``
/// bytes or ``EngineConfiguration/checkpointIntervalSeconds`` seconds. On
/// ``start()``, every temporary is cut back to its last recorded length and
/// interrupted jobs are queued again.
public final class Engine: @unchecked Sendable {
    public let configuration: EngineConfiguration
    /// The job store; the agent keeps its pending notifications there too.
    public let store: JobStore
    private let logger: Logger
    private let loop: TransferLoop
    /// The loaded plugins; validators prove every file before it counts as transferred.
    public let plugins: PluginHost
    /// Validation runs here, one serial queue per job (callbacks for one job are serialized).
    private var validationQueues: [JobID: DispatchQueue] = [:]

    // ---- state owned by the engine's thread --------------------------------------
    private var jobs: [JobID: Job] = [:]
    private var running: [JobID: [Int: FileTransfer]] = [:]
    /// Round-robin order: a job gets a higher number each time it is (re)queued.
    private var queueOrder: [JobID: UInt64] = [:]
    private var nextQueueNumber: UInt64 = 0
    private var sliceStart: [JobID: Date] = [:]
    private var needsScheduling = true
    private var lastScheduled = Date.distantPast
    private var lastProgressEvent: [JobID: Date] = [:]
    private var activeSince: [JobID: Date] = [:]
    private var observers: [UUID: @Sendable (EngineEvent) -> Void] = [:]
    /// What is known of every source (mirror origin), by origin; written to the store in batches.
    private var sourceHealth: [String: SourceHealth] = [:]
    private var changedSources: Set<String> = []
    private var lastSourceFlush = Date()

    // ---- cross-thread ---------------------------------------------------------------
    private let commands = Mutex<[@Sendable () -> Void]>([])
    private let lifecycle = Mutex<Lifecycle>(.created)
    private enum Lifecycle { case created, running, stopping, stopped }
    private var loopThread: Thread?
    private let loopExited = DispatchSemaphore(value: 0)
    private let loopThreadID = Mutex<pthread_t?>(nil)
    /// Flushes and checkpoint records, off the transfer thread, in order.
    private let durability = DispatchQueue(label: "ferry.engine.durability")

    /// Opens the store and prepares the transport. Call ``start()`` to recover jobs and run.
    /// - Throws: ``FerryError`` when the store cannot be opened or libcurl cannot start.
    public init(configuration: EngineConfiguration, logger: Logger = Logger(label: "ferry.engine")) throws(FerryError) {
        self.configuration = configuration
        self.logger = logger
        do {
            store = try JobStore(path: configuration.storePath)
        } catch {
            throw FerryError(code: .localFileError, context: .queueManager, message: "cannot open the job store: \(error)")
        }
        loop = try TransferLoop(limits: .init(maxTotalConnections: configuration.maxConnections,
                                              maxConnectionsPerHost: configuration.maxConnectionsPerHost))
        do {
            plugins = try PluginHost(specs: configuration.plugins, directories: configuration.pluginDirectories, logger: logger)
        } catch {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "\(error)")
        }
        if let directory = configuration.pluginCallRecordsDirectory {
            plugins.crashRecords = try PluginCrashRecords(directory: directory, limit: configuration.pluginCrashLimit,
                                                          configuration: PluginSpec.describe(configuration.plugins), logger: logger)
        }
    }

    // MARK: - Lifecycle

    /// Recovers every job from the store and starts the engine's thread.
    public func start() throws(FerryError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(FerryError) in
            guard state == .created else {
                throw FerryError(code: .invalidState, context: .queueManager, message: "the engine was already started")
            }
            try recover()
            state = .running
        }
        let thread = Thread { [self] in runLoop() }
        thread.name = "ferry-transfers"
        thread.stackSize = 1 << 20
        loopThread = thread
        thread.start()
        // A job that was deciding when the engine stopped asks its policies again.
        post { [self] in
            for job in jobs.values where job.deciding { consultErrorPolicies(about: job) }
        }
    }

    /// Stops every transfer, flushes and records its progress, and ends the engine's thread.
    /// Jobs keep their states: the next ``start()`` resumes them.
    public func shutdown() {
        let wasRunning = lifecycle.withLock { (state: inout Lifecycle) -> Bool in
            guard state == .running else { return false }
            state = .stopping
            return true
        }
        guard wasRunning else { return }
        loop.wakeup()
        loopExited.wait()
        durability.sync {}
        for queue in validationQueues.values { queue.sync {} }
        plugins.shutdown()
        lifecycle.withLock { $0 = .stopped }
    }

    deinit { shutdown() }

    // MARK: - Public API

    /// Creates a job in `SUSPENDED`.
    /// - Parameter ownerCredentials: the owner's identity as the kernel reported it for the
    ///   caller (groups included); every file of the job is handled with it. `nil` uses the
    ///   account database's entry for `owner`.
    public func createJob(displayName: String, description: String = "", owner: UInt32, ownerCredentials: Credentials? = nil,
                          priority: JobPriority = .normal) throws(FerryError) -> Job {
        try onLoop { engine throws(FerryError) in
            let job = Job(displayName: displayName, description: description, owner: owner, ownerCredentials: ownerCredentials, priority: priority,
                          createdAt: Date(), minimumRetryDelay: engine.configuration.defaultMinimumRetryDelay,
                          noProgressTimeout: engine.configuration.defaultNoProgressTimeout)
            try engine.persist(job)
            engine.jobs[job.id] = job
            engine.logger.info("job created", metadata: ["job": "\(job.id)", "name": "\(displayName)"])
            engine.emit(.jobChanged(job))
            return job
        }
    }

    /// Adds files to a job. Each URL must be `http`, `https` or `file`; each local path
    /// absolute, in a directory that exists.
    public func addFiles(_ id: JobID, _ files: [NewFile]) throws(FerryError) -> Job {
        // Checked on the caller's thread, as the job's owner: the engine's thread never
        // waits on a file system for a caller.
        let owner = try job(id)
        var checked: [JobFile] = []
        checked.reserveCapacity(files.count)
        // A package set puts thousands of files in a few directories: check each once.
        var verifiedDirectories: [String: DirectoryHandle] = [:]
        for (offset, file) in files.enumerated() {
            do throws(FerryError) {
                checked.append(try Engine.validate(file, for: owner, verifiedDirectories: &verifiedDirectories))
            } catch {
                var failure = error
                if files.count > 1 { failure.message = "file \(offset): " + failure.message }
                throw failure
            }
        }
        let accepted = checked
        return try onLoop { engine throws(FerryError) in
            let job = try engine.existingJob(id)
            let before = job.files.count
            return try engine.apply(.addFiles(accepted), to: id, files: Array(before..<(before + accepted.count)))
        }
    }

    public func resume(_ id: JobID) throws(FerryError) -> Job { try call(.resume, id) }
    public func suspend(_ id: JobID) throws(FerryError) -> Job { try call(.suspend, id) }
    public func cancel(_ id: JobID) throws(FerryError) -> Job { try call(.cancel, id) }
    public func setPriority(_ id: JobID, _ priority: JobPriority) throws(FerryError) -> Job { try call(.setPriority(priority), id) }
    public func setMinimumRetryDelay(_ id: JobID, seconds: Double) throws(FerryError) -> Job { try call(.setMinimumRetryDelay(seconds), id) }
    public func setNoProgressTimeout(_ id: JobID, seconds: Double) throws(FerryError) -> Job { try call(.setNoProgressTimeout(seconds), id) }
    public func setCustomHeaders(_ id: JobID, _ headers: [String]) throws(FerryError) -> Job { try call(.setCustomHeaders(headers), id) }
    public func setProperties(_ id: JobID, _ properties: [String: String]) throws(FerryError) -> Job { try call(.setProperties(properties), id) }
    public func setDisplayName(_ id: JobID, _ name: String) throws(FerryError) -> Job { try call(.setDisplayName(name), id) }
    public func setDescription(_ id: JobID, _ text: String) throws(FerryError) -> Job { try call(.setDescription(text), id) }
    public func setNotifyFlags(_ id: JobID, _ flags: NotifyFlags) throws(FerryError) -> Job { try call(.setNotifyFlags(flags), id) }
    public func setNotifyCommand(_ id: JobID, _ command: [String]) throws(FerryError) -> Job { try call(.setNotifyCommand(command), id) }
    /// Makes the job act, from now on, with `credentials` (its owner's, as the process naming
    /// a path or program for it holds them now): groups a process dropped are not used for it.
    public func setOwnerCredentials(_ id: JobID, _ credentials: Credentials) throws(FerryError) -> Job {
        try call(.setOwnerCredentials(credentials), id)
    }

    /// Swaps a URL prefix on every file not yet transferred (BITS' `ReplaceRemotePrefix`).
    public func replaceRemotePrefix(_ id: JobID, old: String, new: String) throws(FerryError) -> Job {
        try Engine.checkRemoteURL(new + "x")
        return try call(.replaceRemotePrefix(old: old, new: new), id)
    }
    /// Completes the job by itself once every file is transferred and validated.
    public func setAutoComplete(_ id: JobID, _ enabled: Bool) throws(FerryError) -> Job {
        let job = try call(.setAutoComplete(enabled), id)
        if enabled, job.state == .transferred { return try complete(id) }
        return job
    }

    /// Adds alternative URLs for one file (its `mirrors` property). Each must be an
    /// `http`, `https` or `file` URL; the engine starts the file from the healthiest one and
    /// the `mirror-failover` policy switches between them on errors.
    public func addMirrors(_ id: JobID, file: Int, urls: [String]) throws(FerryError) -> Job {
        guard !urls.isEmpty else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "no mirror URLs given")
        }
        let owner = try job(id)
        for url in urls {
            try Engine.checkRemoteURL(url, kind: "mirror")
            try Engine.checkLocalSource(url, for: owner)
        }
        return try call(.addMirrors(file: file, urls: urls), id)
    }

    /// BITS' `DYNAMIC_CONTENT`: no size or ranges needed, an interrupted file starts again from
    /// zero; `maxFileBytes` bounds every file of the job (`nil`: the agent's limit only).
    public func setDynamicContent(_ id: JobID, _ enabled: Bool, maxFileBytes: UInt64?) throws(FerryError) -> Job {
        try call(.setDynamicContent(enabled, maxFileBytes: maxFileBytes), id)
    }

    /// Adds a CA file the job's `https` servers may chain to, and/or a public key they must
    /// present. Nothing here can weaken verification. `nil` removes an option.
    ///
    /// The CA file is read here, once, as the job's owner (a regular file of at most
    /// ``maxCAFileBytes``, holding PEM certificates), and its bytes are what libcurl gets.
    public func setTLSOptions(_ id: JobID, caFile: String?, pinnedPublicKey: String?) throws(FerryError) -> Job {
        var caData: String?
        if let caFile, caFile.hasPrefix("/") {
            caData = try Engine.readCAFile(caFile, for: try job(id))
        }
        return try call(.setTLSOptions(caFile: caFile, pinnedPublicKey: pinnedPublicKey, caData: caData), id)
    }

    /// The most bytes a job's CA file may have.
    public static let maxCAFileBytes = 1 << 20

    /// Reads a CA file as `job`'s owner and checks that it holds PEM certificates.
    static func readCAFile(_ path: String, for job: Job) throws(FerryError) -> String {
        let bytes: [UInt8]
        do { bytes = try OwnedFile.read(path, as: job, what: "the CA file", limit: maxCAFileBytes) } catch {
            guard error.code == .accessDenied else { throw error }
            // An option the caller gave that cannot be used: a bad argument, as the API documents.
            throw FerryError(code: .invalidArgument, context: .localFile, message: "cannot read the CA file \(path) as uid \(job.owner): " + (error.message.components(separatedBy: ": ").last ?? ""))
        }
        guard let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN CERTIFICATE-----") else {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "the CA file \(path) holds no PEM certificate")
        }
        return text
    }

    /// What the engine remembers of every source it fetched from, by origin.
    public func sources() -> [SourceHealth] {
        (try? onLoop { engine throws(FerryError) in engine.sourceHealth.values.sorted { $0.origin < $1.origin } }) ?? []
    }

    /// Points one file at another URL (BITS' `SetRemoteName`).
    public func setRemoteURL(_ id: JobID, file: Int, url: String) throws(FerryError) -> Job {
        try Engine.checkRemoteURL(url)
        return try call(.setRemoteURL(file: file, url: url), id)
    }

    /// Renames every transferred file to its final name and acknowledges the job.
    ///
    /// Files that never finished are deleted, not renamed (BITS' partial complete).
    /// - Throws: ``ErrorCode/localFileError`` when a rename fails; the job then keeps its state.
    public func complete(_ id: JobID) throws(FerryError) -> Job {
        try onLoop { engine throws(FerryError) in
            let current = try engine.existingJob(id)
            if !current.state.isFinal, !engine.plugins.validators(for: current).isEmpty, current.hasPendingFiles {
                throw FerryError(code: .invalidState, context: .validation,
                                 message: "\(current.pendingFileCount) of \(current.files.count) files are not transferred and validated yet; validators apply to this job, so it cannot be completed (cancel it instead)")
            }
            let job = try engine.apply(.complete, to: id)
            if job.state != .acknowledged, let failure = engine.lastCommitError.removeValue(forKey: id) { throw failure }
            return job
        }
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
        _ = try? onLoop { engine throws(FerryError) in engine.observers[token] = observer }
        return token
    }

    public func removeObserver(_ token: UUID) {
        _ = try? onLoop { engine throws(FerryError) in engine.observers[token] = nil }
    }

    // MARK: - Running work on the engine's thread

    private var isOnLoopThread: Bool {
        loopThreadID.withLock { id in id.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Runs `body` on the engine's thread and returns its result.
    private func onLoop<T>(_ body: @escaping (Engine) throws(FerryError) -> T) throws(FerryError) -> T {
        if isOnLoopThread { return try body(self) }
        let state = lifecycle.withLock { $0 }
        guard state == .running else {
            throw FerryError(code: .invalidState, context: .queueManager, message: "the engine is not running")
        }
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let work = UncheckedSendable { [unowned self] in
            box.result = Result { () throws(FerryError) -> T in try body(self) }
            done.signal()
        }
        post { work.value() }
        done.wait()
        guard let result = box.result else {
            throw FerryError(code: .invalidState, context: .queueManager, message: "the engine stopped before answering")
        }
        return try result.get()
    }

    /// Queues `command` for the engine's thread and wakes it.
    func post(_ command: @escaping @Sendable () -> Void) {
        commands.withLock { $0.append(command) }
        loop.wakeup()
    }

    private func runLoop() {
        loopThreadID.withLock { $0 = pthread_self() }
        while lifecycle.withLock({ $0 }) == .running {
            let pending = commands.withLock { queue -> [@Sendable () -> Void] in
                let taken = queue
                queue.removeAll()
                return taken
            }
            for command in pending { command() }
            let now = Date()
            fireTimers(now: now)
            // Time slices end without any event: look again a few times a second.
            if needsScheduling || now.timeIntervalSince(lastScheduled) >= 0.25 {
                needsScheduling = false
                lastScheduled = now
                schedule(now: now)
            }
            checkpointIdleTransfers(now: now)
            if !changedSources.isEmpty, now.timeIntervalSince(lastSourceFlush) >= 2 { flushSourceHealth() }
            // One batch at a time, at most every batchInterval: what arrives meanwhile joins
            // the next one, so a thousand small files cost tens of flushes, not thousands.
            if batchesInFlight == 0, hasPendingDurableWork,
               checkpointIsUrgent || Date().timeIntervalSince(lastBatchStart) >= Engine.batchInterval || pendingCheckpoints.count >= 512 {
                writeBatch(wait: false)
            }
            loop.runOnce(timeoutMilliseconds: pollTimeout(now: now))
        }
        // Stopping: keep states, stop the transfers, flush what they wrote.
        let stopping = running.values.reduce(0) { $0 + $1.count }
        for id in Array(running.keys) { stopTransfers(of: id) }
        writeBatch(wait: true)
        flushSourceHealth()
        if stopping > 0 { logger.info("transfers stopped for shutdown", metadata: ["count": "\(stopping)"]) }
        let leftovers = commands.withLock { queue -> [@Sendable () -> Void] in
            let taken = queue
            queue.removeAll()
            return taken
        }
        for command in leftovers { command() }
        loopThreadID.withLock { $0 = nil }
        loopExited.signal()
    }

    private func pollTimeout(now: Date) -> Int32 {
        var next = now.addingTimeInterval(0.5)
        if hasPendingDurableWork, batchesInFlight == 0 { next = min(next, lastBatchStart.addingTimeInterval(Engine.batchInterval)) }
        for job in jobs.values where job.state == .transientError {
            if let at = job.retryAt, at < next { next = at }
            if let at = job.noProgressDeadline, at < next { next = at }
        }
        return Int32(max(0, min(500, next.timeIntervalSince(now) * 1000)))
    }

    // MARK: - Applying events

    private var lastCommitError: [JobID: FerryError] = [:]

    private func existingJob(_ id: JobID) throws(FerryError) -> Job {
        guard let job = jobs[id] else {
            throw FerryError(code: .notFound, context: .queueManager, message: "no job \(id)")
        }
        return job
    }

    private func call(_ event: JobEvent, _ id: JobID) throws(FerryError) -> Job {
        try onLoop { engine throws(FerryError) in try engine.apply(event, to: id) }
    }

    /// Applies an event to a job, stores the result, carries out the actions and tells observers.
    /// - Parameters:
    ///   - files: the file rows to store; `nil` stores those the event changed.
    ///   - durable: the record is in the store when this returns (a caller's request).
    ///     News from transfers is recorded with the next batch instead: losing it in a crash
    ///     only repeats work, since bytes count only once a checkpoint recorded them.
    @discardableResult
    private func apply(_ event: JobEvent, to id: JobID, files: [Int]? = nil, durable: Bool = true) throws(FerryError) -> Job {
        // The job as it was, kept only to find the file rows an event changed when the caller
        // did not say: holding it makes the change copy the chunk of files it touches.
        let previous = files == nil ? try existingJob(id) : nil
        let before = try existingJob(id).state
        // Out of the table while it changes: the job's storage is then not shared, and only
        // the chunk of files an event touches is copied.
        var job = jobs.removeValue(forKey: id)!
        let now = Date()
        let actions: [JobAction]
        do { actions = try job.apply(event, at: now) } catch {
            jobs[id] = job
            throw error
        }
        // BITS' MaxDownloadTime counts only CONNECTING and TRANSFERRING.
        let moving: (JobState) -> Bool = { $0 == .connecting || $0 == .transferring }
        if moving(job.state), !moving(before) { activeSince[id] = now }
        if moving(before), !moving(job.state), let since = activeSince.removeValue(forKey: id) {
            _ = try? job.apply(.addActiveTime(now.timeIntervalSince(since)), at: now)
        }
        jobs[id] = job
        pendingRecords[id, default: []].formUnion(files ?? previous.map { job.files.changedIndices(since: $0.files) } ?? [])
        // A job that reaches TRANSFERRED says so only once that is in the store: a caller
        // that completes it on seeing the state must find it so after a crash too.
        if durable || (before != job.state && job.state == .transferred) { writeBatch(wait: true) }
        if before != job.state {
            logger.info("job state", metadata: ["job": "\(id)", "from": "\(before.rawValue)", "to": "\(job.state.rawValue)"])
        }
        for action in actions { perform(action, for: id) }
        // An action may have finished the job (complete → committed), which forgets it.
        guard let current = jobs[id] else { return lastFinished?.id == id ? lastFinished ?? job : job }
        emit(.jobChanged(current))
        if current.state.isFinal { forget(id) }
        return current
    }

    private func persist(_ job: Job) throws(FerryError) {
        // Anything pending first: the store sees changes in the order they happened.
        writeBatch(wait: true)
        do { try store.save(job) } catch {
            throw FerryError(code: .localFileError, context: .queueManager, message: "cannot record job \(job.id): \(error)")
        }
    }

    /// The last job that reached a final state, for the call that finished it.
    private var lastFinished: Job?

    private func forget(_ id: JobID) {
        lastFinished = jobs[id]
        jobs[id] = nil
        queueOrder[id] = nil
        sliceStart[id] = nil
        lastCommitError[id] = nil
        destinations.forget(id)
        validationQueues[id] = nil
        firstStartable[id] = nil
        preopened[id] = nil
        lastProgressEvent[id] = nil
        activeSince[id] = nil
        pendingRecords[id] = nil
        pendingDeletes.append(id)
        plugins.crashRecords?.forget(job: id)
    }

    private func emit(_ event: EngineEvent) {
        for observer in observers.values { observer(event) }
    }

    private func perform(_ action: JobAction, for id: JobID) {
        switch action {
        case .stopTransfers:
            stopTransfers(of: id)
        case .discardTemporaries(let indices):
            guard let job = jobs[id] else { return }
            let found = indices.compactMap { index in (try? destinations.directory(of: job, file: index)).map { (index, $0) } }
            try? OwnerIdentity.run(as: job) { () throws(FerryError) in
                for (index, directory) in found { directory.remove(job.temporaryName(ofFile: index)) }
            }
        case .commitFiles(let indices):
            commit(indices, of: id)
        case .enqueue:
            // A job already running keeps its place and its time slice.
            if jobs[id]?.state == .queued || queueOrder[id] == nil {
                nextQueueNumber += 1
                queueOrder[id] = nextQueueNumber
                sliceStart[id] = nil
            }
            needsScheduling = true
        case .scheduleRetry:
            // fireTimers() reads the job's retryAt and deadline.
            break
        case .consultErrorPolicies:
            if let job = jobs[id] { consultErrorPolicies(about: job) }
        case .notifyFileTransferred(let index):
            if let job = jobs[id] { emit(.fileTransferred(job, file: index)) }
        case .notifyJobTransferred:
            if let job = jobs[id] {
                logger.info("job transferred", metadata: ["job": "\(id)"])
                emit(.jobTransferred(job))
                if job.autoComplete {
                    // After this event's own bookkeeping, on the next turn of the loop.
                    post { [weak self] in _ = try? self?.complete(id) }
                }
            }
        case .notifyJobError:
            if let job = jobs[id] {
                // The policies have answered and the error stands.
                logger.warning("job error", metadata: ["job": "\(id)", "error": "\(job.lastError.map { "\($0)" } ?? "-")"])
                emit(.jobError(job))
            }
        }
    }

    // MARK: - Complete

    /// Renames temporaries to their final names: rename (atomic, replacing an existing
    /// file), then fsync each directory touched. Reports back through an event.
    ///
    /// Both names are relative to the directory descriptor the temporary was created
    /// through (opened once as the owner): a directory swapped for a link meanwhile cannot
    /// redirect the rename.
    private func commit(_ indices: [Int], of id: JobID) {
        guard let job = jobs[id] else { return }
        var renamed: [Int] = []
        var touched: [ObjectIdentifier: DirectoryHandle] = [:]
        var failure: FerryError?
        var found: [(Int, DirectoryHandle)] = []
        for index in indices {
            do { found.append((index, try destinations.directory(of: job, file: index))) } catch {
                var missing = error
                missing.fileIndex = index
                failure = missing
                break
            }
        }
        // As the owner: rename replaces a symbolic link planted at the destination (it never
        // follows it), and the kernel refuses a directory the owner may not write.
        try? OwnerIdentity.run(as: job) { () throws(FerryError) in
            for (index, directory) in found {
                let temporary = job.temporaryName(ofFile: index)
                let destination = job.files[index].localPath
                if !directory.rename(temporary, to: Job.split(destination).name) {
                    failure = FerryError(code: .localFileError, context: .localFile, fileIndex: index,
                                         message: "cannot rename \(job.temporaryPath(ofFile: index)) to \(destination): \(errnoText())")
                    break
                }
                renamed.append(index)
                touched[ObjectIdentifier(directory)] = directory
            }
            for directory in touched.values { directory.sync() }
        }
        do {
            if let failure {
                lastCommitError[id] = failure
                try apply(.commitFailed(failure, committed: renamed), to: id)
            } else {
                logger.info("job completed", metadata: ["job": "\(id)", "files": "\(renamed.count)"])
                try apply(.committed, to: id)
            }
        } catch {
            logger.error("cannot record completion", metadata: ["job": "\(id)", "error": "\(error)"])
        }
    }

    static func localMinuteOfDay(_ date: Date) -> Int {
        let components = Calendar.current.dateComponents([.hour, .minute], from: date)
        return (components.hour ?? 0) * 60 + (components.minute ?? 0)
    }

    /// The destination directories of the jobs, opened as their owners.
    private let destinations = DestinationDirectories()

    // MARK: - Scheduling

    private func fireTimers(now: Date) {
        for (id, job) in jobs where job.state == .transientError && !job.deciding {
            let due = [job.retryAt, job.noProgressDeadline].compactMap { $0 }.min()
            if let due, due <= now { _ = try? apply(.retryTimerFired, to: id, durable: false) }
        }
        let maxDownload = configuration.maxDownloadTimeSeconds
        if maxDownload > 0 {
            for (id, since) in activeSince {
                guard let job = jobs[id], job.activeSeconds + now.timeIntervalSince(since) >= maxDownload else { continue }
                _ = try? apply(.failed(FerryError(code: .maxDownloadTimeout, context: .queueManager,
                                                  message: "the job spent more than \(Int(maxDownload)) s connecting or transferring (the maximum download time)")),
                               to: id, durable: false)
            }
        }
        // BITS' JobInactivityTimeout: a job nobody touched for that long is cancelled.
        let inactivity = configuration.jobInactivityTimeoutSeconds
        guard inactivity > 0, now.timeIntervalSince(lastInactivitySweep) >= 60 else { return }
        lastInactivitySweep = now
        for (id, job) in jobs where !job.state.isActive && now.timeIntervalSince(job.modificationTime) >= inactivity {
            logger.notice("job cancelled after inactivity", metadata: ["job": "\(id)", "idle": "\(Int(now.timeIntervalSince(job.modificationTime))) s"])
            _ = try? apply(.cancel, to: id)
        }
    }

    private var lastInactivitySweep = Date.distantPast

    /// Decides which jobs run: every foreground job, then the highest background level,
    /// round-robin within it; starts their files within the connection caps.
    private func schedule(now: Date) {
        let active = jobs.values.filter { $0.state.isActive }
        let foreground = active.filter { $0.priority == .foreground }.sorted { order($0.id) < order($1.id) }
        var chosen = foreground.map(\.id)

        let background = active.filter { $0.priority.isBackground }
        if let topRank = background.map(\.priority.rank).min() {
            var level = background.filter { $0.priority.rank == topRank }.sorted { order($0.id) < order($1.id) }
            let slots = max(1, configuration.maxActiveBackgroundJobs)
            // A job whose slice ended yields to a waiting job of the same level.
            if level.count > slots {
                for job in level.prefix(slots) where job.state != .queued {
                    if let start = sliceStart[job.id], now.timeIntervalSince(start) >= configuration.timeSliceSeconds {
                        _ = try? apply(.preempted, to: job.id, durable: false)
                    }
                }
                level = level.compactMap { jobs[$0.id] }.filter { $0.state.isActive }.sorted { order($0.id) < order($1.id) }
            }
            chosen += level.prefix(slots).map(\.id)
        }

        let chosenSet = Set(chosen)
        for job in active where (job.state == .connecting || job.state == .transferring) && !chosenSet.contains(job.id) {
            _ = try? apply(.preempted, to: job.id, durable: false)
        }
        for id in chosen {
            guard let job = jobs[id], job.state.isActive else { continue }
            if job.state == .queued {
                _ = try? apply(.scheduled, to: id, durable: false)
                sliceStart[id] = now
            }
            startFiles(of: id, now: now)
        }
    }

    private func order(_ id: JobID) -> UInt64 { queueOrder[id] ?? 0 }

    /// Transfers moving bytes. A file whose bytes all arrived waits for its flush and its
    /// validators without holding a connection slot, so the next file starts at once.
    private var runningTransferCount: Int { movingTransfers - finishingTransfers }
    /// Every transfer not released yet, and those of them that are finishing.
    private var movingTransfers: Int { running.values.reduce(0) { $0 + $1.count } }
    private var finishingTransfers = 0
    /// Finished files waiting for their flush and validators; past this, no new file starts
    /// (each holds an open temporary).
    static let maxFinishingTransfers = 512
    /// Per job: no file below this index needs starting (see ``startFiles(of:now:)``).
    private var firstStartable: [JobID: Int] = [:]

    private func startFiles(of id: JobID, now: Date) {
        guard let job = jobs[id] else { return }
        let finishingHere = running[id]?.values.reduce(0) { $0 + ($1.isFinishing ? 1 : 0) } ?? 0
        var slots = min(configuration.maxParallelFilesPerJob - ((running[id]?.count ?? 0) - finishingHere),
                        configuration.maxConnections - runningTransferCount,
                        Engine.maxFinishingTransfers - finishingTransfers)
        // Every file before the hint is transferred or running: a job of n files is not
        // scanned from its start each time one of them finishes.
        var index = firstStartable[id] ?? 0
        while slots > 0, index < job.files.count {
            // Its temporary is being created ahead: it starts when that is done, never beside it.
            if preopening[id]?.contains(index) ?? false { break }
            defer { index += 1 }
            guard !job.files[index].isTransferred, running[id]?[index] == nil else { continue }
            do {
                try startFile(index, of: job, now: now)
                slots -= 1
            } catch {
                var failure = error
                failure.fileIndex = index
                _ = try? apply(.failed(failure), to: id, durable: false)
                return
            }
        }
        firstStartable[id] = index
        preopenTemporaries(of: job, from: index)
        if !job.hasPendingFiles, job.state.isActive, running[id]?.isEmpty ?? true {
            // Nothing left to fetch (files were added to a transferred job, then finished).
            needsScheduling = true
        }
    }

    private func startFile(_ index: Int, of original: Job, now: Date) throws(FerryError) {
        var job = original
        // A file with mirrors that has no bytes yet starts from the healthiest of its sources.
        if job.files[index].bytesTransferred == 0, !job.files[index].mirrors.isEmpty {
            let best = preferredSource(of: job.files[index])
            if best != job.files[index].remoteURL, let updated = try? apply(.useSource(file: index, url: best), to: job.id, files: [index], durable: false) {
                logger.info("starting file from a healthier source", metadata: ["job": "\(job.id)", "file": "\(index)", "url": "\(best)"])
                job = updated
            }
        }
        var file = job.files[index]
        // Dynamic content: no ranges, no size to rely on. Whatever an earlier try left is dropped.
        let restartsFromZero = job.dynamicContent && file.bytesTransferred > 0
        if job.dynamicContent { file.resetProgress() }
        let temporary: TemporaryFile
        if let ready = preopened[job.id]?.removeValue(forKey: index), file.bytesTransferred == 0, ready.snapshot.length == 0 {
            temporary = ready
        } else {
            let directory = try destinations.directory(of: job, file: index)
            temporary = try OwnerIdentity.run(as: job) { () throws(FerryError) in
                try TemporaryFile(in: directory, name: job.temporaryName(ofFile: index), length: file.bytesTransferred,
                                  bytesTotal: file.bytesTotal, etag: file.remoteETag, lastModified: file.remoteLastModified)
            }
        }
        var request = TransferRequest(url: file.remoteURL, offset: file.bytesTransferred,
                                      ifRange: file.remoteETag ?? file.remoteLastModified, headers: job.customHeaders,
                                      connectTimeoutSeconds: configuration.connectTimeoutSeconds,
                                      stallTimeoutSeconds: configuration.stallTimeoutSeconds)
        request.caData = job.tlsCAData
        request.pinnedPublicKey = job.tlsPinnedPublicKey
        let cap = configuration.backgroundCap(atMinute: Engine.localMinuteOfDay(now))
        if job.priority.isBackground, cap > 0 {
            let backgroundTransfers = running.filter { jobs[$0.key]?.priority.isBackground ?? false }.reduce(0) { $0 + $1.value.count }
            request.maxBytesPerSecond = max(1024, cap / Int64(backgroundTransfers + 1))
        }
        let limit = [configuration.maxFileBytes, job.maxFileBytes].compactMap { $0 }.min()
        let fileTransfer = try FileTransfer(engine: self, jobID: job.id, fileIndex: index, file: temporary, request: request,
                                            jobFile: file, mayRestartWithoutRanges: job.priority == .foreground || job.dynamicContent,
                                            restartsFromZero: restartsFromZero, maxFileBytes: limit, now: now)
        running[job.id, default: [:]][index] = fileTransfer
        guard fileTransfer.needsHashingFirst else {
            try beginMoving(fileTransfer, of: job)
            return
        }
        // The bytes already here enter the digests on a worker: hashing gigabytes must not
        // hold the engine's thread. The file holds its slot meanwhile.
        let waiting = UncheckedSendable(fileTransfer)
        let owner = UncheckedSendable(job)
        DispatchQueue.global(qos: .utility).async { [weak self] in
            let outcome = Result { () throws(FerryError) in try waiting.value.hashBytesAlreadyHere() }
            self?.post { [weak self] in
                let id = owner.value.id
                guard let self, self.running[id]?[index] === waiting.value else { return }
                do throws(FerryError) {
                    try outcome.get()
                    try self.beginMoving(waiting.value, of: owner.value)
                } catch {
                    var failure = error
                    failure.fileIndex = index
                    if self.running[id]?[index] === waiting.value {
                        self.fileFailed(waiting.value, failure)
                    } else {
                        _ = try? self.apply(.failed(failure), to: id, durable: false)
                    }
                }
            }
        }
    }

    /// Starts moving a file's bytes: libcurl for `http` and `https`; Ferry's own reader, from
    /// a descriptor opened as the owner, off this thread, for `file:`.
    private func beginMoving(_ fileTransfer: FileTransfer, of job: Job) throws(FerryError) {
        let request = fileTransfer.request
        if request.isLocalFile {
            let path = URL(string: request.url)?.path ?? ""
            fileTransfer.localSource = LocalSource.start(path: path, offset: request.offset, job: job, transfer: fileTransfer, engine: self)
        } else {
            do { fileTransfer.transfer = try loop.start(request, delegate: fileTransfer) } catch {
                running[job.id]?[fileTransfer.fileIndex] = nil
                if running[job.id]?.isEmpty ?? false { running[job.id] = nil }
                throw error
            }
        }
        logger.debug("transfer started", metadata: ["job": "\(job.id)", "file": "\(fileTransfer.fileIndex)", "offset": "\(request.offset)"])
    }

    // MARK: - Temporaries opened ahead

    /// Temporaries of files about to start, created off the engine's thread: creating a file
    /// can cost hundreds of microseconds on a busy file system, which the transfer thread of
    /// a job of many small files would otherwise spend once per file.
    private var preopened: [JobID: [Int: TemporaryFile]] = [:]
    private var preopening: [JobID: Set<Int>] = [:]
    private let opener = DispatchQueue(label: "ferry.engine.opener")

    /// Opens, ahead, the temporaries of the next files of `job` that have no bytes yet.
    private func preopenTemporaries(of job: Job, from start: Int) {
        let wanted = configuration.maxParallelFilesPerJob
        var ready = (preopened[job.id]?.count ?? 0) + (preopening[job.id]?.count ?? 0)
        var index = start
        var batch: [(Int, DirectoryHandle, String)] = []
        while ready < wanted, index < job.files.count, index < start + 4 * wanted {
            defer { index += 1 }
            let file = job.files[index]
            guard !file.isTransferred, file.bytesTransferred == 0, !job.dynamicContent || file.bytesTransferred == 0,
                  running[job.id]?[index] == nil, preopened[job.id]?[index] == nil, !(preopening[job.id]?.contains(index) ?? false) else { continue }
            guard let directory = try? destinations.directory(of: job, file: index) else { continue }
            batch.append((index, directory, job.temporaryName(ofFile: index)))
            preopening[job.id, default: []].insert(index)
            ready += 1
        }
        guard !batch.isEmpty else { return }
        let id = job.id
        let owner = OwnerIdentity.credentials(of: job)
        let names = UncheckedSendable(batch)
        opener.async { [weak self] in
            var opened: [(Int, TemporaryFile?)] = []
            for (index, directory, name) in names.value {
                let file = try? OwnerIdentity.run(as: owner) { () throws(FerryError) in
                    try TemporaryFile(in: directory, name: name, length: 0, bytesTotal: nil, etag: nil, lastModified: nil)
                }
                opened.append((index, file))
            }
            let result = UncheckedSendable(opened)
            self?.post { [weak self] in self?.receivePreopened(result.value, for: id, owner: owner) }
        }
    }

    private func receivePreopened(_ opened: [(Int, TemporaryFile?)], for id: JobID, owner: Credentials) {
        for (index, file) in opened {
            preopening[id]?.remove(index)
            guard let file else { continue }
            guard let job = jobs[id], job.state.isActive else {
                // Cancelled or finished meanwhile: the temporary must not outlive its job.
                if jobs[id] == nil { try? OwnerIdentity.run(as: owner) { () throws(FerryError) in file.directory.remove(file.name) } }
                continue
            }
            guard job.files.indices.contains(index), job.files[index].bytesTransferred == 0, running[id]?[index] == nil else { continue }
            preopened[id, default: [:]][index] = file
        }
        if preopening[id]?.isEmpty ?? false { preopening[id] = nil }
        needsScheduling = true
    }

    // MARK: - Source health

    /// The candidate URL to start a file from: fewest failures since the last success, then
    /// clearly faster, then the order given.
    private func preferredSource(of file: JobFile) -> String {
        let candidates = file.candidateURLs.enumerated().map { (url: $0.element, position: $0.offset) }
        let best = candidates.min { a, b in
            SourceHealth.preferred((health(of: a.url), a.position), (health(of: b.url), b.position))
        }
        return best?.url ?? file.remoteURL
    }

    private func health(of url: String) -> SourceHealth? {
        SourceHealth.origin(of: url).flatMap { sourceHealth[$0] }
    }

    /// What error policies may know of the sources of the file an error concerns.
    private func sourceHealth(for job: Job, file index: Int?) -> [String: SourceHealth] {
        guard let index, job.files.indices.contains(index) else { return [:] }
        var known: [String: SourceHealth] = [:]
        for url in job.files[index].candidateURLs {
            if let origin = SourceHealth.origin(of: url), let health = sourceHealth[origin] { known[origin] = health }
        }
        return known
    }

    private func recordSourceOutcome(_ url: String, success: (bytes: UInt64, seconds: Double)?) {
        guard let origin = SourceHealth.origin(of: url) else { return }
        var health = sourceHealth[origin] ?? SourceHealth(origin: origin)
        if let success {
            health.recordSuccess(at: Date(), bytes: success.bytes, seconds: success.seconds)
        } else {
            health.recordFailure(at: Date())
        }
        sourceHealth[origin] = health
        changedSources.insert(origin)
    }

    private func recordSourceSuccess(_ transfer: FileTransfer) {
        let bytes = transfer.file.snapshot.length - min(transfer.file.snapshot.length, transfer.request.offset)
        recordSourceOutcome(transfer.request.url, success: (bytes, Date().timeIntervalSince(transfer.startedAt)))
    }

    /// Writes the sources whose health changed, in one transaction, off the engine's thread.
    private func flushSourceHealth() {
        lastSourceFlush = Date()
        guard !changedSources.isEmpty else { return }
        let changed = changedSources.compactMap { sourceHealth[$0] }
        changedSources.removeAll()
        let store = self.store
        let logger = self.logger
        durability.async {
            do { try store.saveSourceHealth(changed) } catch {
                logger.error("cannot record the sources' health", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Stops every transfer of a job and flushes what each wrote.
    private func stopTransfers(of id: JobID) {
        firstStartable[id] = nil
        preopened[id] = nil
        guard let transfers = running.removeValue(forKey: id) else { return }
        for fileTransfer in transfers.values {
            if fileTransfer.isFinishing { finishingTransfers -= 1 }
            if let transfer = fileTransfer.transfer { loop.cancel(transfer) }
            fileTransfer.transfer = nil
            fileTransfer.localSource?.cancel()
            fileTransfer.localSource = nil
            checkpoint(fileTransfer, transferred: false, force: true, then: nil)
        }
        needsScheduling = true
    }

    // MARK: - News from file transfers (engine thread)

    func fileResponded(_ transfer: FileTransfer, restartFromZero: Bool) {
        let contents = transfer.file.snapshot
        if restartFromZero {
            transfer.lastCheckpointLength = 0
            logger.info("remote file changed, restarting it from zero",
                        metadata: ["job": "\(transfer.jobID)", "file": "\(transfer.fileIndex)"])
        }
        _ = try? apply(.responseReceived(file: transfer.fileIndex, bytesTotal: contents.bytesTotal, etag: contents.etag,
                                         lastModified: contents.lastModified, restartFromZero: restartFromZero),
                       to: transfer.jobID, files: [transfer.fileIndex], durable: false)
    }

    func fileProgressed(_ transfer: FileTransfer) {
        let length = transfer.file.snapshot.length
        if jobs[transfer.jobID] != nil {
            // Bytes move often: update in memory only (in place); checkpoints make them durable.
            let now = Date()
            _ = try? jobs[transfer.jobID]!.apply(.bytesWritten(file: transfer.fileIndex, bytes: length), at: now)
            if now.timeIntervalSince(lastProgressEvent[transfer.jobID] ?? .distantPast) >= configuration.progressEventInterval {
                lastProgressEvent[transfer.jobID] = now
                emit(.jobProgressed(jobs[transfer.jobID]!))
            }
        }
        // Asked for at a quarter of the interval: the recorded length trails the bytes written
        // by that much plus what arrives during two flushes (the one under way and the next),
        // and a crash must never cost more than one interval.
        if length >= transfer.lastCheckpointLength + max(64 << 10, configuration.checkpointBytes / 4) {
            checkpoint(transfer, transferred: false, then: nil)
        }
    }

    func fileFailed(_ transfer: FileTransfer, _ failure: FerryError) {
        guard running[transfer.jobID]?[transfer.fileIndex] === transfer else { return }
        // The job's record of the file follows what the temporary really holds.
        fileProgressed(transfer)
        logger.warning("transfer failed", metadata: ["job": "\(transfer.jobID)", "file": "\(transfer.fileIndex)", "error": "\(failure)"])
        // The source is to blame for what came (or did not come) over the wire; not for a full disk.
        if failure.context == .remoteFile || failure.context == .transport, failure.code != .insufficientRangeSupport {
            recordSourceOutcome(transfer.request.url, success: nil)
        }
        _ = try? apply(.failed(failure), to: transfer.jobID, durable: false)
    }

    /// The server's file changed under a resume (a 206 of another version): the answer
    /// was ignored and the file starts again from zero at once.
    func fileRestartRequested(_ transfer: FileTransfer, reason: String) {
        guard running[transfer.jobID]?[transfer.fileIndex] === transfer else { return }
        logger.info("remote file changed during resume, restarting it from zero",
                    metadata: ["job": "\(transfer.jobID)", "file": "\(transfer.fileIndex)", "reason": "\(reason)"])
        release(transfer)
        _ = try? apply(.responseReceived(file: transfer.fileIndex, bytesTotal: nil, etag: nil, lastModified: nil, restartFromZero: true),
                       to: transfer.jobID, files: [transfer.fileIndex], durable: false)
    }

    func fileFinished(_ transfer: FileTransfer) {
        guard running[transfer.jobID]?[transfer.fileIndex] === transfer else { return }
        transfer.isFinishing = true
        finishingTransfers += 1
        needsScheduling = true
        let id = transfer.jobID
        // The final flush records the full length but not "transferred": that waits for the
        // validators, so a crash in between validates the file again.
        checkpoint(transfer, transferred: false) { [unowned self] error in
            if let error {
                self.release(transfer)
                _ = try? self.apply(.failed(error), to: id, durable: false)
                return
            }
            self.validate(transfer, attempt: 0)
        }
    }

    private func release(_ transfer: FileTransfer) {
        let id = transfer.jobID
        // The file may need starting again (it failed, or restarts from zero).
        if let hint = firstStartable[id], transfer.fileIndex < hint { firstStartable[id] = transfer.fileIndex }
        if running[id]?[transfer.fileIndex] === transfer {
            running[id]?[transfer.fileIndex] = nil
            if running[id]?.isEmpty ?? false { running[id] = nil }
            if transfer.isFinishing { finishingTransfers -= 1 }
        }
        needsScheduling = true
    }

    // MARK: - Error policies

    /// Calls the error policies that apply, off the engine's thread, then carries out what the
    /// first one that acted asked for, within the per-job bound on automatic resumes. The job
    /// stays ``Job/deciding`` until they answered (``JobEvent/errorPoliciesAnswered``).
    private func consultErrorPolicies(about job: Job) {
        guard job.deciding else { return }
        guard let error = job.lastError else {
            _ = try? apply(.errorPoliciesAnswered, to: job.id, durable: false)
            return
        }
        let policies = plugins.errorPolicies(for: job, transient: job.state == .transientError)
        guard !policies.isEmpty else {
            _ = try? apply(.errorPoliciesAnswered, to: job.id, durable: false)
            return
        }
        let view = PluginJobView(job: job, sourceHealth: sourceHealth(for: job, file: error.fileIndex))
        let plugins = self.plugins
        let state = job.state
        let id = job.id
        let finish = UncheckedSendable { [unowned self] (decisions: [PolicyDecision]) in
            self.carryOut(decisions, for: id, error: error, expectedState: state)
        }
        validationQueue(for: id).async { [weak self] in
            let decisions = plugins.handleError(view: view, error: error, policies: policies)
            self?.post { finish.value(decisions) }
        }
    }

    private func carryOut(_ decisions: [PolicyDecision], for id: JobID, error: FerryError, expectedState: JobState) {
        // A job that left the error meanwhile (resumed, suspended, cancelled) is no longer deciding.
        guard let job = jobs[id], job.state == expectedState, job.deciding else { return }
        // However the round ends (unless a policy asked to be called again), the policies have answered.
        var answered = true
        defer { if answered { _ = try? apply(.errorPoliciesAnswered, to: id, durable: false) } }
        for decision in decisions where decision.status != 0 && decision.status != 1 {
            logger.error("error policy failed", metadata: ["job": "\(id)", "plugin": "\(decision.plugin)", "status": "\(decision.status)", "error": "\(decision.message)"])
        }
        let stamp = ISO8601DateFormatter().string(from: Date())
        guard let acting = decisions.last(where: { $0.status == 0 && !$0.actions.isEmpty }) else {
            // RETRY_LATER (1): BITS calls a callback again until it answers; here after 5 s, while the error lasts.
            if let waiting = decisions.first(where: { $0.status == 1 }) {
                logger.info("error policy asked to be called again", metadata: ["job": "\(id)", "plugin": "\(waiting.plugin)"])
                answered = false
                let again = UncheckedSendable { [unowned self] in
                    if let current = self.jobs[id], current.state == expectedState { self.consultErrorPolicies(about: current) }
                }
                validationQueue(for: id).asyncAfter(deadline: .now() + 5) { [weak self] in self?.post { again.value() } }
                return
            }
            let names = decisions.map(\.plugin).joined(separator: ", ")
            _ = try? apply(.recordPolicyDecision("\(stamp) \(error.code): no policy acted (\(names)); the error stands", resumes: false), to: id, durable: false)
            return
        }
        let resumes = acting.actions.contains(.resume)
        if resumes, job.policyResumes >= configuration.maxPolicyResumes {
            logger.warning("error policy bound reached; the error stands", metadata: ["job": "\(id)", "plugin": "\(acting.plugin)"])
            _ = try? apply(.recordPolicyDecision("\(stamp) \(error.code): \(acting.plugin) wanted to resume, but policies already resumed this job \(job.policyResumes) times (the limit); the error stands", resumes: false), to: id, durable: false)
            return
        }
        let summary = acting.actions.map(\.description).joined(separator: ", ")
        logger.notice("error policy acted", metadata: ["job": "\(id)", "plugin": "\(acting.plugin)", "error": "\(error.code)", "actions": "\(summary)"])
        _ = try? apply(.recordPolicyDecision("\(stamp) \(error.code): \(acting.plugin): \(summary)", resumes: resumes), to: id, durable: false)
        for action in acting.actions {
            do {
                switch action {
                case .setPriority(let priority): _ = try apply(.setPriority(priority), to: id, durable: false)
                case .suspend: _ = try apply(.suspend, to: id, durable: false)
                case .setRemoteURL(let file, let url):
                    try Engine.checkRemoteURL(url)
                    _ = try apply(.setRemoteURL(file: file, url: url), to: id, durable: false)
                case .resume: _ = try apply(.resume, to: id, durable: false)
                case .setRetryDelay(let seconds): _ = try apply(.setRetryDelay(seconds), to: id, durable: false)
                }
            } catch {
                logger.error("an error policy's action was refused", metadata: ["job": "\(id)", "action": "\(action)", "error": "\(error)"])
            }
        }
    }

    // MARK: - Validation

    /// Runs the job's validators on a finished file, off the engine's thread, then
    /// reports the verdict: valid → the file is transferred; invalid → the job fails
    /// with VALIDATION_FAILED and the file starts again from zero.
    private func validate(_ transfer: FileTransfer, attempt: Int, digests known: [DigestName: [UInt8]]? = nil) {
        let id = transfer.jobID
        let index = transfer.fileIndex
        guard let job = jobs[id] else { return }
        let digests = known ?? transfer.finishDigests()
        let validators = plugins.validators(for: job)
        guard !validators.isEmpty else {
            release(transfer)
            recordSourceSuccess(transfer)
            _ = try? apply(.fileTransferred(file: index), to: id, files: [index], durable: false)
            return
        }
        let length = transfer.file.snapshot.length
        let view = PluginJobView(job: job, digests: [index: digests], completeFiles: [index], finishedLengths: [index: length],
                                 temporaryPaths: [index: transfer.file.descriptorPath])
        let queue = validationQueue(for: id)
        let plugins = self.plugins
        let work = UncheckedSendable { [unowned self] (outcome: ValidationOutcome) in
            self.finishValidation(transfer, outcome: outcome, attempt: attempt, digests: digests)
        }
        queue.async { [weak self] in
            let outcome = plugins.validate(file: index, view: view)
            self?.post { work.value(outcome) }
        }
    }

    private func finishValidation(_ transfer: FileTransfer, outcome: ValidationOutcome, attempt: Int, digests: [DigestName: [UInt8]]) {
        let id = transfer.jobID
        let index = transfer.fileIndex
        switch outcome {
        case .valid(let verdicts):
            release(transfer)
            recordSourceSuccess(transfer)
            if !verdicts.isEmpty {
                logger.info("file validated", metadata: ["job": "\(id)", "file": "\(index)",
                                                         "verdicts": "\(verdicts.map { "\($0.plugin): \($0.reason)" }.joined(separator: "; "))"])
            }
            _ = try? apply(.fileTransferred(file: index), to: id, files: [index], durable: false)
        case .invalid(let verdict):
            release(transfer)
            recordSourceOutcome(transfer.request.url, success: nil)
            logger.warning("file failed validation", metadata: ["job": "\(id)", "file": "\(index)", "plugin": "\(verdict.plugin)", "reason": "\(verdict.reason)"])
            let error = FerryError(code: .validationFailed, context: .validation, fileIndex: index,
                                   message: "\(verdict.plugin): \(verdict.reason)")
            _ = try? apply(.validationFailed(error), to: id, files: [index], durable: false)
        case .retryLater(let plugin):
            // BITS calls a callback that did not answer OK again later; back off up to a minute.
            let delay = min(60, 0.5 * pow(2, Double(min(attempt, 7))))
            logger.info("validator asked to be called again", metadata: ["job": "\(id)", "file": "\(index)", "plugin": "\(plugin)", "in": "\(delay)s"])
            let retry = UncheckedSendable { [unowned self] in
                guard self.running[id]?[index] === transfer else { return }
                self.validate(transfer, attempt: attempt + 1, digests: digests)
            }
            validationQueue(for: id).asyncAfter(deadline: .now() + delay) { [weak self] in self?.post { retry.value() } }
        case .pluginCrashed(let verdict):
            // Not the source's fault: its health is left alone.
            release(transfer)
            logger.error("file failed: its validator cannot be called", metadata: ["job": "\(id)", "file": "\(index)", "plugin": "\(verdict.plugin)", "reason": "\(verdict.reason)"])
            let error = FerryError(code: .pluginCrashed, context: .validation, fileIndex: index, message: verdict.reason)
            _ = try? apply(.validationFailed(error), to: id, files: [index], durable: false)
        }
    }

    /// What a stopped agent left of its plugin calls (recovery, before the engine's thread runs).
    /// A call the process died in of a plugin's fatal signal fails its file with PLUGIN_CRASHED
    /// (a validator), or is kept in the job's history as a policy that did not act (an error
    /// policy, whose job is asked again without it). A call cut short by something else is
    /// simply made again.
    /// - Returns: the jobs this changed, to be written back.
    private func settleUnfinishedPluginCalls() -> [Job] {
        guard let records = plugins.crashRecords else { return [] }
        var changed: [JobID: Job] = [:]
        let stamp = ISO8601DateFormatter().string(from: Date())
        for call in records.collectUnfinishedCalls() {
            let target = "job \(call.job)" + (call.file.map { " file \($0)" } ?? "")
            guard let signal = call.signal else {
                logger.notice("the agent stopped during a plugin call; it is made again", metadata: ["plugin": "\(call.plugin)", "callback": "\(call.callback)", "on": "\(target)"])
                continue
            }
            let cause = "plugin \(call.plugin) crashed (\(Engine.signalName(signal))) in \(call.callback)"
            logger.error("\(cause); it is not called about this file again", metadata: ["plugin": "\(call.plugin)", "path": "\(call.path)", "on": "\(target)"])
            guard let id = JobID(call.job), var job = jobs[id] else { continue }
            if call.callback == "file_transferred", let index = call.file, job.files.indices.contains(index), !job.files[index].isTransferred {
                let error = FerryError(code: .pluginCrashed, context: .validation, fileIndex: index,
                                       message: "\(cause) while checking file \(index); it is not called about this file again")
                _ = try? job.apply(.validationFailed(error), at: Date())
                if let directory = try? destinations.directory(of: job, file: index) {
                    let name = job.temporaryName(ofFile: index)
                    try? OwnerIdentity.run(as: job) { () throws(FerryError) in directory.remove(name) }
                }
            } else if call.callback == "job_error" {
                let code = job.lastError?.code.rawValue ?? "error"
                _ = try? job.apply(.recordPolicyDecision("\(stamp) \(code): \(cause); no policy acted for it", resumes: false), at: Date())
            }
            jobs[id] = job
            changed[id] = job
        }
        return Array(changed.values)
    }

    static func signalName(_ number: Int32) -> String {
        let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL", SIGFPE: "SIGFPE",
                                      SIGABRT: "SIGABRT", SIGSYS: "SIGSYS", SIGTRAP: "SIGTRAP"]
        return names[number].map { "\($0), signal \(number)" } ?? "signal \(number)"
    }

    private func validationQueue(for id: JobID) -> DispatchQueue {
        if let queue = validationQueues[id] { return queue }
        let queue = DispatchQueue(label: "ferry.validate.\(id)", target: .global())
        validationQueues[id] = queue
        return queue
    }


    // MARK: - Checkpoints

    private func checkpointIdleTransfers(now: Date) {
        // A local source that stops giving bytes (a hung file system) fails like a stalled
        // server; its reader thread is left to end by itself.
        let stall = Double(configuration.stallTimeoutSeconds)
        for transfers in running.values {
            for transfer in transfers.values where transfer.localSource != nil && now.timeIntervalSince(transfer.lastActivity) > stall {
                transfer.localSourceFailed(FerryError(code: .timeout, context: .remoteFile, isTransient: true, fileIndex: transfer.fileIndex,
                                                      message: "the source \(transfer.request.url) gave no bytes for \(Int(stall)) s"))
            }
        }
        for transfers in running.values {
            for transfer in transfers.values where !transfer.isFinishing && !transfer.checkpointInFlight {
                if transfer.file.snapshot.length != transfer.lastCheckpointLength,
                   now.timeIntervalSince(transfer.lastCheckpointTime) >= configuration.checkpointIntervalSeconds {
                    checkpoint(transfer, transferred: false, then: nil)
                }
            }
        }
    }

    /// Asks for a temporary to be flushed and its length recorded, with the next batch.
    /// `then` runs back on the engine's thread with the flush's error, if any.
    private func checkpoint(_ transfer: FileTransfer, transferred: Bool, force: Bool = false, then: ((FerryError?) -> Void)?) {
        // Periodic checkpoints do not pile up; a stop's or a finish's always runs (batches keep order).
        if transfer.checkpointInFlight && !force && !transferred && then == nil { return }
        let contents = transfer.file.snapshot
        transfer.checkpointInFlight = true
        transfer.lastCheckpointLength = contents.length
        transfer.lastCheckpointTime = Date()
        let record = Checkpoint(job: transfer.jobID, file: transfer.fileIndex, bytes: contents.length,
                                bytesTotal: transferred ? (contents.bytesTotal ?? contents.length) : contents.bytesTotal,
                                etag: contents.etag, lastModified: contents.lastModified, transferred: transferred)
        pendingCheckpoints.append(PendingCheckpoint(transfer: transfer, generation: contents.generation, record: record, then: then))
        // A checkpoint of a file still moving bytes does not wait for the batch pacing: at a
        // few hundred MiB/s, 20 ms more is megabytes a crash would cost.
        if then == nil, !transferred { checkpointIsUrgent = true }
    }

    /// A periodic checkpoint is pending: the next batch starts without waiting its turn.
    private var checkpointIsUrgent = false

    /// What the next batch makes durable.
    private var pendingRecords: [JobID: Set<Int>] = [:]
    private var pendingDeletes: [JobID] = []
    private var pendingCheckpoints: [PendingCheckpoint] = []
    private var batchesInFlight = 0
    private var lastBatchStart = Date.distantPast
    /// The shortest time between two batches started by the loop (a caller's request never waits for it).
    static let batchInterval = 0.02

    private var hasPendingDurableWork: Bool { !pendingRecords.isEmpty || !pendingDeletes.isEmpty || !pendingCheckpoints.isEmpty }

    private struct PendingCheckpoint {
        let transfer: FileTransfer
        let generation: UInt64
        let record: Checkpoint
        let then: ((FerryError?) -> Void)?
    }

    /// Makes everything pending durable in one batch on the durability queue: the
    /// temporaries are flushed first (one `syncfs` per file system when the batch holds
    /// several files, else `fdatasync`), then one transaction records the jobs' changes,
    /// the deletions and the checkpoints. A file's length is never recorded before its
    /// bytes are on disk. `wait` returns only once the batch is written.
    private func writeBatch(wait: Bool) {
        guard !pendingRecords.isEmpty || !pendingDeletes.isEmpty || !pendingCheckpoints.isEmpty else {
            if wait, batchesInFlight > 0 { durability.sync {} }
            return
        }
        var records: [(header: Job, files: [(Int, JobFile)])] = []
        records.reserveCapacity(pendingRecords.count)
        for (id, indices) in pendingRecords {
            guard let job = jobs[id] else { continue }
            records.append((Job(persistedHeader: job, files: JobFileList()),
                            indices.sorted().compactMap { job.files.indices.contains($0) ? ($0, job.files[$0]) : nil }))
        }
        let recorded = pendingRecords
        let deletes = pendingDeletes
        let checkpoints = pendingCheckpoints
        pendingRecords.removeAll(keepingCapacity: true)
        pendingDeletes.removeAll()
        pendingCheckpoints.removeAll()
        batchesInFlight += 1
        lastBatchStart = Date()
        checkpointIsUrgent = false
        let store = self.store
        let logger = self.logger
        let finish = UncheckedSendable { [unowned self] (failures: [Int: FerryError], storeFailure: FerryError?) in
            self.batchesInFlight -= 1
            if storeFailure != nil {
                // Nothing of this batch was recorded: its jobs and deletions go into the next one.
                for (id, indices) in recorded where self.jobs[id] != nil { self.pendingRecords[id, default: []].formUnion(indices) }
                self.pendingDeletes.append(contentsOf: deletes)
            }
            for (offset, pending) in checkpoints.enumerated() {
                let transfer = pending.transfer
                transfer.checkpointInFlight = false
                let error = failures[offset] ?? storeFailure
                if let then = pending.then {
                    then(error)
                } else if let error {
                    // A flush that fails (disk full, I/O error) stops the job: nothing more can be made durable.
                    self.logger.error("checkpoint failed", metadata: ["job": "\(transfer.jobID)", "file": "\(transfer.fileIndex)", "error": "\(error)"])
                    var failure = error
                    failure.fileIndex = transfer.fileIndex
                    _ = try? self.apply(.failed(failure), to: transfer.jobID, durable: false)
                }
            }
        }
        let work = UncheckedSendable { [weak self] in
            let failures = Engine.flush(checkpoints.map(\.transfer.file))
            let durable = checkpoints.enumerated().compactMap { offset, pending -> Checkpoint? in
                guard failures[offset] == nil, pending.transfer.file.snapshot.generation == pending.generation else { return nil }
                return pending.record
            }
            var storeFailure: FerryError?
            do { try store.write(records: records, deleting: deletes, checkpoints: durable) } catch {
                logger.error("cannot record jobs", metadata: ["jobs": "\(records.count)", "error": "\(error)"])
                storeFailure = FerryError(code: .localFileError, context: .queueManager, message: "cannot record progress in the job store: \(error)")
            }
            let outcome = storeFailure
            self?.post { finish.value(failures, outcome) }
        }
        if wait { durability.sync { work.value() } } else { durability.async { work.value() } }
    }

    /// Flushes temporaries to disk; returns the failures by position.
    private static func flush(_ files: [TemporaryFile]) -> [Int: FerryError] {
        var failures: [Int: FerryError] = [:]
        guard files.count >= 4 else {
            for (offset, file) in files.enumerated() {
                do { try file.flush() } catch { failures[offset] = error }
            }
            return failures
        }
        // Many files: one syncfs per local file system writes them all with one journal commit.
        // Elsewhere (FUSE, network file systems) syncfs may not reach the storage: fdatasync each.
        var byDevice: [UInt64: [Int]] = [:]
        for (offset, file) in files.enumerated() {
            if file.device != 0, file.isOnLocalFileSystem {
                byDevice[file.device, default: []].append(offset)
            } else {
                do { try file.flush() } catch { failures[offset] = error }
            }
        }
        for offsets in byDevice.values {
            do { try files[offsets[0]].flushFileSystem() } catch {
                for offset in offsets { failures[offset] = error }
            }
        }
        return failures
    }

    // MARK: - Recovery

    /// Loads every job, cuts each temporary back to its last recorded length and
    /// queues the jobs that were moving bytes.
    private func recover() throws(FerryError) {
        let stored: [Job]
        do { stored = try store.loadJobs() } catch {
            throw FerryError(code: .localFileError, context: .queueManager, message: "cannot read the job store: \(error)")
        }
        var changed: [Job] = []
        for var job in stored {
            let recorded = job
            if job.state.isFinal {
                try? store.delete(job.id)
                continue
            }
            var files = job.files
            // As the owner, through each directory opened once, and never through a link: a
            // planted link must not make root cut a file.
            try? OwnerIdentity.run(as: job) { () throws(FerryError) in
                var directories: [String: DirectoryHandle?] = [:]
                for index in files.indices where !files[index].isCommitted {
                    let (path, name) = Job.split(files[index].localPath)
                    if directories[path] == nil { directories[path] = .some(try? DirectoryHandle(opening: path)) }
                    Engine.reconcile(&files[index], in: directories[path]!, temporary: job.temporaryName(ofFile: index), final: name)
                }
            }
            job = Job(persistedHeader: job, files: files)
            // Recorded before the CA file's bytes were kept: read it now, once, as the owner.
            if let caFile = job.tlsCAFile, job.tlsCAData == nil, !job.state.isFinal {
                if let text = try? Engine.readCAFile(caFile, for: job) {
                    _ = try? job.apply(.setTLSOptions(caFile: caFile, pinnedPublicKey: job.tlsPinnedPublicKey, caData: text), at: job.modificationTime)
                } else {
                    logger.warning("the job's CA file cannot be read; its https sources are checked against the system's CAs only",
                                   metadata: ["job": "\(job.id)", "file": "\(caFile)"])
                }
            }
            _ = try? job.apply(.restarted, at: Date())
            jobs[job.id] = job
            if job.state.isActive {
                nextQueueNumber += 1
                queueOrder[job.id] = nextQueueNumber
            }
            // Only what recovery changed is written back, in one transaction: an agent with many
            // jobs must not pay one commit per job before it serves.
            if job != recorded { changed.append(job) }
        }
        changed += settleUnfinishedPluginCalls()
        if !changed.isEmpty { try? store.save(changed) }
        do {
            for health in try store.loadSourceHealth() { sourceHealth[health.origin] = health }
        } catch {
            logger.warning("cannot read the sources' health; starting without it", metadata: ["error": "\(error)"])
        }
        if !jobs.isEmpty { logger.info("jobs recovered", metadata: ["count": "\(jobs.count)", "rewritten": "\(changed.count)"]) }
    }

    /// Makes a file's record and its temporary agree after a stop of any kind.
    /// - Parameters:
    ///   - directory: the destination directory, opened as the owner (`nil`: it is gone).
    ///   - temporary: the temporary's name in it; `final`, the destination's.
    static func reconcile(_ file: inout JobFile, in directory: DirectoryHandle?, temporary: String, final: String) {
        let info = directory?.status(of: temporary)
        let exists = info.map { ($0.st_mode & S_IFMT) == S_IFREG } ?? false
        let size = exists ? UInt64(info!.st_size) : 0
        if file.isTransferred {
            if exists, size == file.bytesTotal ?? size { return }
            // Renamed by a complete whose record was lost: the destination holds it.
            if !exists, let done = directory?.status(of: final), UInt64(done.st_size) == file.bytesTotal {
                file.isCommitted = true
                return
            }
            file.resetProgress()
            if exists { directory?.cut(temporary, to: 0) }
            return
        }
        if !exists || size < file.bytesTransferred {
            // The temporary lost bytes that were recorded: trust nothing of it.
            file.resetProgress()
            if exists { directory?.cut(temporary, to: 0) }
            return
        }
        if size > file.bytesTransferred { directory?.cut(temporary, to: file.bytesTransferred) }
    }

    // MARK: - Input checks

    static func validate(_ file: NewFile, for job: Job, checkDirectory: Bool = true) throws(FerryError) -> JobFile {
        var verified: [String: DirectoryHandle] = [:]
        return try validate(file, for: job, checkDirectory: checkDirectory, verifiedDirectories: &verified)
    }

    /// Checks a file to add to `job`; `verifiedDirectories` remembers the destination
    /// directories already found usable by its owner in this call.
    ///
    /// Every look-up is made as the job's owner: an answer tells the caller only what the
    /// kernel would have told it (a directory it may not search is "permission denied",
    /// whether or not something is there).
    static func validate(_ file: NewFile, for job: Job, checkDirectory: Bool = true,
                         verifiedDirectories: inout [String: DirectoryHandle]) throws(FerryError) -> JobFile {
        try checkRemoteURL(file.remoteURL)
        if checkDirectory { try checkLocalSource(file.remoteURL, for: job) }
        guard file.localPath.hasPrefix("/") else {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "the local path must be absolute: \(file.localPath)")
        }
        guard !file.localPath.hasSuffix("/"), !file.localPath.split(separator: "/").contains("..") else {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "the local path must name a file, without '..': \(file.localPath)")
        }
        // Mirrors are checked as the URL itself is (a file: mirror must be readable by the owner).
        for mirror in JobFile.mirrors(in: file.properties[JobFile.mirrorsProperty] ?? "") {
            try checkRemoteURL(mirror, kind: "mirror")
            if checkDirectory { try checkLocalSource(mirror, for: job) }
        }
        if checkDirectory {
            let (directory, name) = Job.split(file.localPath)
            let known = verifiedDirectories[directory]
            let handle = try OwnerIdentity.run(as: job) { () throws(FerryError) -> DirectoryHandle in
                if let known { return known }
                let handle = try DirectoryHandle(opening: directory)
                guard handle.allowsCreatingFiles() else {
                    throw FerryError(code: .accessDenied, context: .localFile,
                                     message: "uid \(job.owner) may not create files in \(directory)")
                }
                return handle
            }
            if let existing = handle.status(of: name), (existing.st_mode & S_IFMT) == S_IFDIR {
                throw FerryError(code: .invalidArgument, context: .localFile, message: "the destination \(file.localPath) is a directory")
            }
            // A few directories are kept open for the files that follow; a request naming many
            // directories opens each again rather than hold a descriptor per directory.
            if known == nil, verifiedDirectories.count < 64 { verifiedDirectories[directory] = handle }
        }
        return JobFile(remoteURL: file.remoteURL, localPath: file.localPath, properties: file.properties)
    }

    /// Checks that `url` is one Ferry fetches: `http` or `https` with a host, or `file` with
    /// an absolute path.
    /// - Parameter kind: how messages name the URL (`"mirror"`); `nil` for a file's own URL.
    /// - Throws: ``ErrorCode/unsupportedURL`` naming the URL and what is wrong with it.
    public static func checkRemoteURL(_ url: String, kind: String? = nil) throws(FerryError) {
        let named = kind.map { "\($0) " } ?? ""
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased() else {
            throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "not a URL: \(named)\(url)")
        }
        switch scheme {
        case "http", "https":
            guard let host = parsed.host, !host.isEmpty else {
                throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "the \(named)URL has no host: \(url)")
            }
        case "file":
            guard parsed.path.hasPrefix("/") else {
                throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "a file \(named)URL needs an absolute path: \(url)")
            }
            guard (parsed.host ?? "").isEmpty || parsed.host?.lowercased() == "localhost" else {
                throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "a file \(named)URL names this machine only (file:///path), not '\(parsed.host!)': \(url)")
            }
        default:
            throw FerryError(code: .unsupportedURL, context: .remoteFile,
                             message: "unsupported URL scheme '\(scheme)' in \(named)\(url); use http, https or file")
        }
    }

    /// An early answer for a `file:` source: the job's owner must be able to open it, and it
    /// must be a regular file. (The transfer opens it again, as the owner, and reads only
    /// what that open gives: this check grants nothing.)
    static func checkLocalSource(_ url: String, for job: Job) throws(FerryError) {
        guard url.lowercased().hasPrefix("file:"), let path = URL(string: url)?.path else { return }
        let (fd, _) = try OwnedFile.open(path, as: job, what: "the source", context: .remoteFile)
        close(fd)
    }
}

/// Carries a result from the engine's thread to a waiting caller.
private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, FerryError>?
}

/// Moves a value across threads where the engine guarantees the access is serialized.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
