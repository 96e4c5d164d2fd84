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

/// Runs download jobs with BITS semantics and keeps them through crashes.
///
/// The engine owns one thread. It drives every transfer through a libcurl multi handle,
/// applies events to the jobs' state machines, and carries out the actions they return.
/// Public methods may be called from any thread: they run on the engine's thread and wait
/// for the result.
///
/// The engine itself keeps the jobs, the loop and the lifecycle; each other concern is a
/// part that owns its state, touched on the engine's thread only:
/// ``Scheduler`` (which jobs run), `RunningTransfers` (the files moving),
/// `DurabilityBatcher` (records and checkpoints, in batches), `SourceHealthBook`,
/// `TemporariesAhead`, `PluginCoordinator` (validators and error policies, with
/// `PolicyRound` deciding what their answers amount to), `FileCommit`, `Recovery`, and
/// `FileAdmission` with ``InputRules`` for what callers name.
///
/// Durability: each temporary is flushed (`fdatasync`) before its length is recorded in
/// the store, at least every ``EngineConfiguration/checkpointBytes`` bytes or
/// ``EngineConfiguration/checkpointIntervalSeconds`` seconds. On ``start()``, every
/// temporary is cut back to its last recorded length and interrupted jobs are queued again.
public final class Engine: @unchecked Sendable {
    public let configuration: EngineConfiguration
    /// The job store; the agent keeps its pending notifications there too.
    public let store: JobStore
    /// The loaded plugins; validators prove every file before it counts as transferred.
    public var plugins: PluginHost { coordinator.plugins }
    let logger: Logger
    let loop: TransferLoop
    let thread: EngineThread

    // ---- the parts, and the state they share: the engine's thread only -----------
    var jobs = JobTable()
    var scheduler: Scheduler
    var transfers = RunningTransfers()
    var sourceBook = SourceHealthBook()
    let durability: DurabilityBatcher
    let ahead: TemporariesAhead
    let coordinator: PluginCoordinator
    /// The destination directories of the jobs, opened as their owners.
    let destinations: DestinationDirectories

    var needsScheduling = true
    private var lastScheduled = Date.distantPast
    var lastProgressEvent: [JobID: Date] = [:]
    /// Since when a job is CONNECTING or TRANSFERRING (BITS' MaxDownloadTime counts only that).
    var activeSince: [JobID: Date] = [:]
    var lastInactivitySweep = Date.distantPast
    private var observers: [UUID: @Sendable (EngineEvent) -> Void] = [:]
    /// Why the last complete of a job failed, for the call that asked for it.
    var lastCommitError: [JobID: FerryError] = [:]
    /// The last job that reached a final state, for the call that finished it.
    private var lastFinished: Job?

    // ---- lifecycle, across threads -----------------------------------------------
    private let lifecycle = Mutex<Lifecycle>(.created)
    private enum Lifecycle { case created, running, stopping, stopped }
    private let loopExited = DispatchSemaphore(value: 0)

    /// Opens the store and prepares the transport. Call ``start()`` to recover jobs and run.
    /// - Throws: ``FerryError`` when the store cannot be opened or libcurl cannot start.
    public init(configuration: EngineConfiguration, logger: Logger = Logger(label: "ferry.engine")) throws(FerryError) {
        self.configuration = configuration
        self.logger = logger
        do {
            store = try JobStore(path: configuration.storePath)
        } catch {
            throw FerryError.store("cannot open the job store", error)
        }
        loop = try TransferLoop(limits: .init(maxTotalConnections: configuration.maxConnections,
                                              maxConnectionsPerHost: configuration.maxConnectionsPerHost))
        thread = EngineThread(waking: loop)
        let plugins: PluginHost
        do {
            plugins = try PluginHost(specs: configuration.plugins, directories: configuration.pluginDirectories, logger: logger)
        } catch {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "\(error)")
        }
        if let directory = configuration.pluginCallRecordsDirectory {
            plugins.crashRecords = try PluginCrashRecords(directory: directory, limit: configuration.pluginCrashLimit,
                                                          configuration: PluginSpec.describe(configuration.plugins), logger: logger)
        }
        coordinator = PluginCoordinator(plugins: plugins, thread: thread)
        scheduler = Scheduler(maxActiveBackgroundJobs: configuration.maxActiveBackgroundJobs, timeSliceSeconds: configuration.timeSliceSeconds)
        durability = DurabilityBatcher(store: store, logger: logger, thread: thread)
        let destinations = DestinationDirectories()
        self.destinations = destinations
        ahead = TemporariesAhead(thread: thread, destinations: destinations)
        durability.job = { [unowned self] id in jobs[id] }
        durability.checkpointFailed = { [unowned self] transfer, error in
            var failure = error
            failure.fileIndex = transfer.fileIndex
            _ = try? apply(.failed(failure), to: transfer.jobID, durable: false)
        }
        ahead.job = { [unowned self] id in jobs[id] }
        ahead.isRunning = { [unowned self] id, index in transfers[id, file: index] != nil }
        ahead.arrived = { [unowned self] in needsScheduling = true }
    }

    // MARK: - Lifecycle

    /// Recovers every job from the store and starts the engine's thread.
    public func start() throws(FerryError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(FerryError) in
            guard state == .created else {
                throw FerryError(code: .invalidState, context: .queueManager, message: "the engine was already started")
            }
            let recovered = try Recovery(store: store, plugins: plugins, destinations: destinations, logger: logger).run()
            jobs = JobTable(recovered.jobs)
            for id in recovered.active { scheduler.enqueue(id, state: .queued) }
            sourceBook = SourceHealthBook(recovered.sources)
            state = .running
        }
        let loopThread = Thread { [self] in runLoop() }
        loopThread.name = "ferry-transfers"
        loopThread.stackSize = 1 << 20
        loopThread.start()
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
        durability.drain()
        coordinator.shutdown()
        lifecycle.withLock { $0 = .stopped }
    }

    deinit { shutdown() }

    // MARK: - Running work on the engine's thread

    /// Runs `body` on the engine's thread and returns its result.
    func onLoop<T>(_ body: @escaping (Engine) throws(FerryError) -> T) throws(FerryError) -> T {
        if thread.isCurrent { return try body(self) }
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
        thread.post(command)
    }

    private func runLoop() {
        thread.setCurrent(true)
        while lifecycle.withLock({ $0 }) == .running {
            for command in thread.takeCommands() { command() }
            let now = Date()
            fireTimers(now: now)
            // Time slices end without any event: look again a few times a second.
            if needsScheduling || now.timeIntervalSince(lastScheduled) >= 0.25 {
                needsScheduling = false
                lastScheduled = now
                schedule(now: now)
            }
            checkpointIdleTransfers(now: now)
            if sourceBook.flushIsDue(now: now) { flushSourceHealth() }
            // One batch at a time, at most every batch interval: what arrives meanwhile joins
            // the next one, so a thousand small files cost tens of flushes, not thousands.
            if durability.isDue(now: Date()) { durability.writeBatch(wait: false) }
            loop.runOnce(timeoutMilliseconds: pollTimeout(now: now))
        }
        // Stopping: keep states, stop the transfers, flush what they wrote.
        let stopping = transfers.count
        for id in transfers.jobs { stopTransfers(of: id) }
        durability.writeBatch(wait: true)
        flushSourceHealth()
        if stopping > 0 { logger.info("transfers stopped for shutdown", metadata: ["count": "\(stopping)"]) }
        for command in thread.takeCommands() { command() }
        thread.setCurrent(false)
        loopExited.signal()
    }

    private func pollTimeout(now: Date) -> Int32 {
        var next = now.addingTimeInterval(0.5)
        if let batch = durability.nextBatchTime { next = min(next, batch) }
        for id in jobs.waiting {
            guard let job = jobs[id] else { continue }
            if let at = job.retryAt, at < next { next = at }
            if let at = job.noProgressDeadline, at < next { next = at }
        }
        return Int32(max(0, min(500, next.timeIntervalSince(now) * 1000)))
    }

    /// Writes the sources whose health changed, in one transaction, off the engine's thread.
    func flushSourceHealth() {
        let changed = sourceBook.takeChanged()
        guard !changed.isEmpty else { return }
        let store = self.store
        let logger = self.logger
        durability.queue.async {
            do { try store.saveSourceHealth(changed) } catch {
                logger.error("cannot record the sources' health", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: - Applying events

    func existingJob(_ id: JobID) throws(FerryError) -> Job {
        guard let job = jobs[id] else {
            throw FerryError(code: .notFound, context: .queueManager, message: "no job \(id)")
        }
        return job
    }

    func call(_ event: JobEvent, _ id: JobID) throws(FerryError) -> Job {
        try onLoop { engine throws(FerryError) in try engine.apply(event, to: id) }
    }

    /// Applies an event to a job, stores the result, carries out the actions and tells observers.
    /// - Parameters:
    ///   - files: the file rows to store; `nil` stores those the event changed.
    ///   - durable: the record is in the store when this returns (a caller's request).
    ///     News from transfers is recorded with the next batch instead: losing it in a crash
    ///     only repeats work, since bytes count only once a checkpoint recorded them.
    @discardableResult
    func apply(_ event: JobEvent, to id: JobID, files: [Int]? = nil, durable: Bool = true) throws(FerryError) -> Job {
        thread.assertCurrent()
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
        durability.record(id, files: files ?? previous.map { job.files.changedIndices(since: $0.files) } ?? [])
        // A job that reaches TRANSFERRED says so only once that is in the store: a caller
        // that completes it on seeing the state must find it so after a crash too.
        if durable || (before != job.state && job.state == .transferred) { durability.writeBatch(wait: true) }
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

    /// Puts a new job, whole, into the next durability batch (the owner's quota checked here,
    /// where no other creation can pass it at the same time). Once the batch is written the
    /// job joins the others and is shown, and `then` hears of it; if the store refuses it,
    /// `then` has the error and nothing is shown.
    func stage(_ made: Job, quota: JobQuota?, then: @escaping (Result<Job, FerryError>) -> Void) throws(FerryError) {
        thread.assertCurrent()
        guard lifecycle.withLock({ $0 }) == .running else {
            throw FerryError(code: .invalidState, context: .queueManager, message: "the engine is stopping")
        }
        if let quota {
            let owned = jobs.count(ownedBy: made.owner) + durability.creationsUnfinished(of: made.owner)
            guard owned < quota.maximum else {
                throw FerryError(code: .quotaExceeded, context: .queueManager,
                                 message: "uid \(made.owner) already has \(owned) jobs, the most allowed (\(quota.setting) = \(quota.maximum)); complete or cancel some first")
            }
        }
        durability.create(made) { [unowned self] error in
            if var failure = error {
                failure.message = "cannot record job \(made.id): \(failure.message)"
                return then(.failure(failure))
            }
            jobs[made.id] = made
            logger.info("job created", metadata: ["job": "\(made.id)", "name": "\(made.displayName)", "files": "\(made.files.count)"])
            emit(.jobChanged(made))
            then(.success(made))
        }
    }

    private func forget(_ id: JobID) {
        lastFinished = jobs[id]
        jobs[id] = nil
        scheduler.forget(id)
        transfers.forget(id)
        lastCommitError[id] = nil
        destinations.forget(id)
        coordinator.forget(id)
        ahead.forget(id)
        lastProgressEvent[id] = nil
        activeSince[id] = nil
        durability.delete(id)
        plugins.crashRecords?.forget(job: id)
    }

    func emit(_ event: EngineEvent) {
        for observer in observers.values { observer(event) }
    }

    func addObserver(_ token: UUID, _ observer: @escaping @Sendable (EngineEvent) -> Void) { observers[token] = observer }
    func removeObserver(token: UUID) { observers[token] = nil }

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
            if let job = jobs[id] { scheduler.enqueue(id, state: job.state) }
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

    /// Renames the files into place (``FileCommit``) and records the outcome.
    private func commit(_ indices: [Int], of id: JobID) {
        guard let job = jobs[id] else { return }
        let outcome = FileCommit.rename(indices, of: job, in: destinations)
        do {
            if let failure = outcome.failure {
                lastCommitError[id] = failure
                try apply(.commitFailed(failure, committed: outcome.renamed), to: id)
            } else {
                logger.info("job completed", metadata: ["job": "\(id)", "files": "\(outcome.renamed.count)"])
                try apply(.committed, to: id)
            }
        } catch {
            logger.error("cannot record completion", metadata: ["job": "\(id)", "error": "\(error)"])
        }
    }
}

/// Carries a result from the engine's thread to a waiting caller.
final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, FerryError>?
}

/// Moves a value across threads where the engine guarantees the access is serialized.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
