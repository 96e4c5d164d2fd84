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

    /// Bounds on event streams (`api.max_event_streams_per_user`, `api.max_event_streams`,
    /// `api.event_buffer_bytes`). Root's streams are not counted.
    public struct StreamLimits: Sendable, Equatable {
        public var perUser: Int
        public var total: Int
        public var bufferBytes: Int
        public init(perUser: Int = 8, total: Int = 128, bufferBytes: Int = 4 << 20) {
            self.perUser = perUser
            self.total = total
            self.bufferBytes = bufferBytes
        }
    }

    /// One reader of the event stream: the lines waiting for it are counted, in bytes.
    private final class Subscriber: Sendable {
        let caller: Caller
        let job: JobID?
        let continuation: AsyncStream<Data>.Continuation
        let waitingBytes = Atomic<Int>(0)

        init(caller: Caller, job: JobID?, continuation: AsyncStream<Data>.Continuation) {
            self.caller = caller
            self.job = job
            self.continuation = continuation
        }
    }

    /// An open event stream: its NDJSON lines, and what the writer reports as written.
    public struct Subscription: Sendable {
        public let lines: AsyncStream<Data>
        /// Call with each line's size once it is written to the reader.
        public let written: @Sendable (Int) -> Void
    }

    private let streamLimits: StreamLimits

    public init(engine: Engine, logger: Logger, modificationInterval: Double, commandLimits: NotifyCommandRunner.Limits = .init(),
                streamLimits: StreamLimits = .init()) {
        self.engine = engine
        self.store = engine.store
        self.logger = logger
        self.streamLimits = streamLimits
        self.commands = NotifyCommandRunner(engine: engine, logger: logger, limits: commandLimits)
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
        let receivers = state.withLock { state in
            state.subscribers.filter { ($0.value.caller.uid == job.owner || $0.value.caller.isAdministrator) && ($0.value.job == nil || $0.value.job == job.id) }
        }
        // Nobody follows it and it is not kept: no document is made (a job's files can be a thousand).
        guard keep || !receivers.isEmpty else { return }
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
        guard !receivers.isEmpty, var line = try? ControlJSON.encoder.encode(event) else { return }
        line.append(0x0A)
        // One encoding, shared by every reader; each reader holds at most its buffer's worth.
        for (token, receiver) in receivers {
            let waiting = receiver.waitingBytes.add(line.count, ordering: .relaxed).newValue
            if waiting > streamLimits.bufferBytes {
                drop(token, receiver, lastSequence: sequence)
            } else {
                receiver.continuation.yield(line)
            }
        }
    }

    /// Closes a stream whose reader fell more than the buffer behind, with a last line that
    /// says so: the reader catches up from the kept notifications (`?pending=true`).
    private func drop(_ token: UUID, _ receiver: Subscriber, lastSequence: Int64) {
        guard state.withLock({ $0.subscribers.removeValue(forKey: token) }) != nil else { return }
        logger.warning("event stream closed: its reader fell behind", metadata: ["caller": "\(receiver.caller)", "buffer": "\(streamLimits.bufferBytes)"])
        let notice = StreamNotice(kind: StreamNotice.closedKind, time: Date(),
                                  reason: "the reader fell more than \(streamLimits.bufferBytes) bytes behind (api.event_buffer_bytes) and events were dropped; connect again with ?pending=true to catch up from the kept notifications")
        if var line = try? ControlJSON.encoder.encode(notice) {
            line.append(0x0A)
            receiver.continuation.yield(line)
        }
        receiver.continuation.finish()
    }

    /// A stream of the caller's events (every user's for root), optionally of one job,
    /// beginning with the pending ones when asked, as NDJSON lines.
    /// - Throws: ``ErrorCode/busy`` when the caller (not root) already follows
    ///   `api.max_event_streams_per_user` streams, or every user together `api.max_event_streams`.
    public func subscribe(_ caller: Caller, job: JobID?, pending: Bool) throws(FerryError) -> Subscription {
        let (stream, continuation) = AsyncStream<Data>.makeStream(bufferingPolicy: .unbounded)
        let token = UUID()
        let subscriber = Subscriber(caller: caller, job: job, continuation: continuation)
        let limits = streamLimits
        // Register first, then read what is pending: an event in between is seen twice at worst, never lost.
        let refusal = state.withLock { state -> String? in
            if !caller.isAdministrator {
                let counted = state.subscribers.values.filter { !$0.caller.isAdministrator }
                let mine = counted.filter { $0.caller.uid == caller.uid }.count
                if mine >= limits.perUser {
                    return "uid \(caller.uid) already follows \(mine) event streams, the most allowed (api.max_event_streams_per_user = \(limits.perUser))"
                }
                if counted.count >= limits.total {
                    return "\(counted.count) event streams are open, the most allowed (api.max_event_streams = \(limits.total)); try again later"
                }
            }
            state.subscribers[token] = subscriber
            return nil
        }
        if let refusal { throw FerryError(code: .busy, context: .notification, message: refusal) }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: token) }
        }
        if pending {
            // The kept notifications come first, whatever their size: a reader catches up here.
            do {
                for stored in try store.pendingEvents(owner: caller.isAdministrator ? nil : caller.uid, job: job) {
                    guard let document = try? ControlJSON.decoder.decode(JobDocument.self, from: Data(stored.payload.utf8)),
                          var line = try? ControlJSON.encoder.encode(EventDocument(sequence: stored.sequence, kind: stored.kind, time: stored.time,
                                                                                   job: document, file: stored.file)) else { continue }
                    line.append(0x0A)
                    // Counted like any line waiting for the reader (the writer subtracts it
                    // once written): a reader that never reads them is dropped at the next event.
                    subscriber.waitingBytes.add(line.count, ordering: .relaxed)
                    continuation.yield(line)
                }
            } catch {
                logger.error("cannot read pending notifications", metadata: ["error": "\(error)"])
            }
        }
        return Subscription(lines: stream, written: { bytes in subscriber.waitingBytes.subtract(bytes, ordering: .relaxed) })
    }

    /// How many event streams the caller follows (root: every stream open). A stream counts
    /// from the moment it is registered, before its answer's headers are sent: a client that
    /// sees the count grow knows that no later event will be missed.
    public func streamCount(for caller: Caller) -> Int {
        state.withLock { state in
            state.subscribers.values.filter { caller.isAdministrator || $0.caller.uid == caller.uid }.count
        }
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
