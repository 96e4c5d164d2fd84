import FerryControl
import FerryCore
import FerryEngine
import FerryStore
import Foundation
import Logging
import Synchronization

/// Delivers BITS' notifications to subscribers of the event stream, and runs notify commands.
///
/// - `jobTransferred` and `jobError` are kept in the store until their receiver
///   acknowledges them (at-least-once): a subscriber that connects later asks
///   for the pending ones.
/// - `fileTransferred` and `jobModification` are live only; `jobModification` is
///   rate-limited per job and, as in BITS, not sent on entering ERROR or TRANSFERRED.
/// - Each job's notify flags choose what it sends.
public final class NotificationCenter: Sendable {
    private let engine: Engine
    private let store: JobStore
    private let logger: Logger
    private let state = Mutex<State>(State())
    private let commands: NotifyCommandRunner

    private struct State {
        var subscribers: [UUID: Subscriber] = [:]
        var lastModification: [JobID: Date] = [:]
        var modificationInterval: Double = 0.5
    }

    private struct Subscriber {
        let caller: Caller
        let job: JobID?
        let continuation: AsyncStream<EventDocument>.Continuation
    }

    public init(engine: Engine, logger: Logger, modificationInterval: Double) {
        self.engine = engine
        self.store = engine.store
        self.logger = logger
        self.commands = NotifyCommandRunner(engine: engine, logger: logger)
        state.withLock { $0.modificationInterval = modificationInterval }
    }

    /// Starts listening to the engine.
    public func start() {
        engine.addObserver { [weak self] event in self?.handle(event) }
    }

    public func setModificationInterval(_ seconds: Double) { state.withLock { $0.modificationInterval = seconds } }

    /// Called on the engine's thread: quick, no waiting.
    private func handle(_ event: EngineEvent) {
        switch event {
        case .fileTransferred(let job, let file):
            if job.notifyFlags.delivers(.fileTransferred) { deliver("fileTransferred", job, file: file, keep: false) }
        case .jobTransferred(let job):
            if job.notifyFlags.delivers(.jobTransferred) { deliver("jobTransferred", job, file: nil, keep: true) }
            commands.run(for: job)
        case .jobError(let job):
            if job.notifyFlags.delivers(.jobError) { deliver("jobError", job, file: nil, keep: true) }
            commands.run(for: job)
        case .jobChanged(let job), .jobProgressed(let job):
            guard job.notifyFlags.delivers(.jobModification), job.state != .error, job.state != .transferred, !job.state.isFinal else { return }
            let now = Date()
            let due = state.withLock { state -> Bool in
                guard now.timeIntervalSince(state.lastModification[job.id] ?? .distantPast) >= state.modificationInterval else { return false }
                state.lastModification[job.id] = now
                return true
            }
            if due { deliver("jobModification", job, file: nil, keep: false) }
        }
        if case .jobChanged(let job) = event, job.state.isFinal {
            _ = state.withLock { $0.lastModification.removeValue(forKey: job.id) }
        }
    }

    /// Events carry the job's file list up to this many files; a larger job's events leave
    /// it out (GET the job for it): an event is not the place for megabytes.
    static let maxFilesInEvents = 1_000

    private func deliver(_ kind: String, _ job: Job, file: Int?, keep: Bool) {
        let document = JobDocument(job, includingFiles: job.files.count <= Self.maxFilesInEvents)
        let now = Date()
        var sequence: Int64 = 0
        if keep {
            do {
                let payload = String(decoding: try ControlJSON.encoder.encode(document), as: UTF8.self)
                sequence = try store.appendEvent(StoredEvent(owner: job.owner, job: job.id, kind: kind, file: file, time: now, payload: payload))
            } catch {
                logger.error("cannot keep a notification", metadata: ["job": "\(job.id)", "kind": "\(kind)", "error": "\(error)"])
            }
        }
        let event = EventDocument(sequence: sequence, kind: kind, time: now, job: document, file: file)
        let receivers = state.withLock { state in
            state.subscribers.values.filter { ($0.caller.uid == job.owner || $0.caller.isAdministrator) && ($0.job == nil || $0.job == job.id) }
        }
        for receiver in receivers { receiver.continuation.yield(event) }
    }

    /// A stream of the caller's events (every user's for root), optionally of one job,
    /// beginning with the pending ones when asked.
    public func subscribe(_ caller: Caller, job: JobID?, pending: Bool) -> AsyncStream<EventDocument> {
        let (stream, continuation) = AsyncStream<EventDocument>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let token = UUID()
        // Register first, then read what is pending: an event in between is seen twice at worst, never lost.
        state.withLock { $0.subscribers[token] = Subscriber(caller: caller, job: job, continuation: continuation) }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: token) }
        }
        if pending {
            do {
                for stored in try store.pendingEvents(owner: caller.isAdministrator ? nil : caller.uid, job: job) {
                    guard let document = try? ControlJSON.decoder.decode(JobDocument.self, from: Data(stored.payload.utf8)) else { continue }
                    continuation.yield(EventDocument(sequence: stored.sequence, kind: stored.kind, time: stored.time, job: document, file: stored.file))
                }
            } catch {
                logger.error("cannot read pending notifications", metadata: ["error": "\(error)"])
            }
        }
        return stream
    }

    /// Forgets the caller's kept notifications up to `sequence`.
    public func acknowledge(_ caller: Caller, upTo sequence: Int64) throws(FerryError) -> Int {
        do { return try store.acknowledgeEvents(owner: caller.uid, upTo: sequence) } catch {
            throw FerryError(code: .localFileError, context: .notification, message: "cannot acknowledge: \(error)")
        }
    }

    /// Ends every stream (at shutdown).
    public func finishAll() {
        let all = state.withLock { state -> [Subscriber] in
            let list = Array(state.subscribers.values)
            state.subscribers.removeAll()
            return list
        }
        for subscriber in all { subscriber.continuation.finish() }
    }
}

/// Runs a job's notify command on TRANSFERRED or ERROR, as BITS' SetNotifyCmdLine.
///
/// The program runs as the job's owner, without a shell, with the job's id and
/// state appended to its arguments and in `FERRY_JOB_ID`/`FERRY_JOB_STATE`.
/// A non-zero exit runs it again after the job's minimum retry delay, for as
/// long as the job is still in that state.
final class NotifyCommandRunner: Sendable {
    private let engine: Engine
    private let logger: Logger
    private let running = Mutex<Set<JobID>>([])

    init(engine: Engine, logger: Logger) {
        self.engine = engine
        self.logger = logger
    }

    func run(for job: Job) {
        guard let program = job.notifyCommand.first else { return }
        guard running.withLock({ $0.insert(job.id).inserted }) else { return }
        let arguments = Array(job.notifyCommand.dropFirst()) + [job.id.description, job.state.rawValue]
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "FERRY_JOB_ID": job.id.description,
                           "FERRY_JOB_STATE": job.state.rawValue, "FERRY_JOB_NAME": job.displayName]
        let state = job.state
        let id = job.id
        let owner = OwnerIdentity.credentials(of: job)
        let delay = job.minimumRetryDelay
        DispatchQueue.global().async { [self] in
            var status: Int32 = -1
            do {
                let pid = try OwnerIdentity.spawn(program, arguments: arguments, environment: environment, as: owner)
                var raw: Int32 = 0
                while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
                status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            } catch {
                logger.error("notify command could not start", metadata: ["job": "\(id)", "error": "\(error)"])
            }
            running.withLock { _ = $0.remove(id) }
            guard status != 0 else {
                logger.info("notify command ran", metadata: ["job": "\(id)", "program": "\(program)"])
                return
            }
            logger.warning("notify command failed; it runs again after the retry delay",
                           metadata: ["job": "\(id)", "program": "\(program)", "status": "\(status)", "in": "\(Int(delay)) s"])
            DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [self] in
                guard let current = try? engine.job(id), current.state == state, !current.notifyCommand.isEmpty else { return }
                run(for: current)
            }
        }
    }
}
