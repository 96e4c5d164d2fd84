import Dispatch
import FerryCore
import FerryStore
import Foundation
import Logging

/// What the engine makes durable, in batches, off its thread: job records, deletions and
/// checkpoints (a temporary's length, recorded only once its bytes are flushed).
///
/// Everything asked for between two batches goes into the next one, so a thousand small
/// files cost tens of flushes, not thousands, and jobs created at the same time share one
/// commit (each creator still hears only once its job is written). Batches run one at a time, in order, on one
/// serial queue; a caller's request waits for its own (``writeBatch(wait:)`` with `wait`).
/// State is touched on the engine's thread only.
final class DurabilityBatcher {
    /// The shortest time between two batches started by the loop (a caller's request never waits for it).
    static let batchInterval = 0.02
    /// Past this many pending checkpoints, a batch starts without waiting its turn.
    static let maxPendingCheckpoints = 512

    /// Flushes and records, in order. Source health is written here too.
    let queue = DispatchQueue(label: "ferry.engine.durability")
    private let store: JobStore
    private let logger: Logger
    private let thread: EngineThread

    /// The engine's jobs, read when a batch is cut (engine's thread).
    var job: (JobID) -> Job? = { _ in nil }
    /// A periodic checkpoint's flush failed (disk full, I/O error): the engine fails the job.
    var checkpointFailed: (FileTransfer, FerryError) -> Void = { _, _ in }

    private var pendingRecords: [JobID: Set<Int>] = [:]
    private var pendingDeletes: [JobID] = []
    private var pendingCheckpoints: [PendingCheckpoint] = []
    private var pendingCreations: [PendingCreation] = []
    /// New jobs not yet written or refused (pending or in a batch under way), by owner.
    private var unfinishedCreations: [UInt32: Int] = [:]
    private var batchesInFlight = 0
    private var lastBatchStart = Date.distantPast
    /// A periodic checkpoint is pending: the next batch starts without waiting its turn.
    private var checkpointIsUrgent = false

    private struct PendingCreation {
        let job: Job
        let then: (FerryError?) -> Void
    }

    private struct PendingCheckpoint {
        let transfer: FileTransfer
        let generation: UInt64
        let record: Checkpoint
        let then: ((FerryError?) -> Void)?
    }

    init(store: JobStore, logger: Logger, thread: EngineThread) {
        self.store = store
        self.logger = logger
        self.thread = thread
    }

    var hasPendingWork: Bool {
        !pendingRecords.isEmpty || !pendingDeletes.isEmpty || !pendingCheckpoints.isEmpty || !pendingCreations.isEmpty
    }

    /// Whether the loop should start a batch now: none under way, something pending, and
    /// either a creator or a checkpoint waiting, many checkpoints, or the batch interval gone by.
    func isDue(now: Date) -> Bool {
        batchesInFlight == 0 && hasPendingWork
            && (checkpointIsUrgent || !pendingCreations.isEmpty || now.timeIntervalSince(lastBatchStart) >= Self.batchInterval
                || pendingCheckpoints.count >= Self.maxPendingCheckpoints)
    }

    /// When the loop must look again for a batch to start (`nil`: nothing waits).
    var nextBatchTime: Date? {
        guard hasPendingWork, batchesInFlight == 0 else { return nil }
        return pendingCreations.isEmpty ? lastBatchStart.addingTimeInterval(Self.batchInterval) : .distantPast
    }

    /// A new job goes whole (header and every file) into the next batch; `then` runs on the
    /// engine's thread once that batch is written (`nil`) or refused by the store. Creators
    /// do not wait for the batch interval: the next batch starts as soon as none is under
    /// way, and every job created meanwhile joins it.
    func create(_ job: Job, then: @escaping (FerryError?) -> Void) {
        thread.assertCurrent()
        pendingCreations.append(PendingCreation(job: job, then: then))
        unfinishedCreations[job.owner, default: 0] += 1
    }

    /// Jobs of `owner` not yet written (waiting for their batch or in one under way): they
    /// count against the owner's quota.
    func creationsUnfinished(of owner: UInt32) -> Int { unfinishedCreations[owner] ?? 0 }

    /// The job's header and these file rows go into the next batch.
    func record(_ id: JobID, files: some Sequence<Int>) {
        thread.assertCurrent()
        pendingRecords[id, default: []].formUnion(files)
    }

    /// The job is final: nothing more of it is recorded, and the next batch deletes it.
    func delete(_ id: JobID) {
        thread.assertCurrent()
        pendingRecords[id] = nil
        pendingDeletes.append(id)
    }

    /// Asks for a temporary to be flushed and its length recorded, with the next batch.
    /// `then` runs back on the engine's thread with the flush's error, if any.
    func checkpoint(_ transfer: FileTransfer, transferred: Bool, force: Bool = false, then: ((FerryError?) -> Void)?) {
        thread.assertCurrent()
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

    /// Waits for every batch under way (engine's shutdown).
    func drain() { queue.sync {} }

    /// Makes everything pending durable in one batch on the durability queue: the
    /// temporaries are flushed first (one `syncfs` per file system when the batch holds
    /// several files, else `fdatasync`), then one transaction records the jobs' changes,
    /// the deletions and the checkpoints. A file's length is never recorded before its
    /// bytes are on disk. `wait` returns only once the batch is written.
    func writeBatch(wait: Bool) {
        thread.assertCurrent()
        guard hasPendingWork else {
            if wait, batchesInFlight > 0 { queue.sync {} }
            return
        }
        var records: [(header: Job, files: [(Int, JobFile)])] = []
        records.reserveCapacity(pendingRecords.count + pendingCreations.count)
        // New jobs first: a record or a checkpoint of the same batch can only be of an older job.
        for creation in pendingCreations {
            records.append((Job(persistedHeader: creation.job, files: JobFileList()), creation.job.files.enumerated().map { ($0.offset, $0.element) }))
        }
        for (id, indices) in pendingRecords {
            guard let job = job(id) else { continue }
            records.append((Job(persistedHeader: job, files: JobFileList()),
                            indices.sorted().compactMap { job.files.indices.contains($0) ? ($0, job.files[$0]) : nil }))
        }
        let recorded = pendingRecords
        let deletes = pendingDeletes
        let checkpoints = pendingCheckpoints
        let creations = pendingCreations
        pendingRecords.removeAll(keepingCapacity: true)
        pendingDeletes.removeAll()
        pendingCheckpoints.removeAll()
        pendingCreations.removeAll()
        batchesInFlight += 1
        lastBatchStart = Date()
        checkpointIsUrgent = false
        let store = self.store
        let logger = self.logger
        let finish = UncheckedSendable { [unowned self] (failures: [Int: FerryError], storeFailure: FerryError?) in
            self.finish(recorded: recorded, deletes: deletes, checkpoints: checkpoints, creations: creations,
                        failures: failures, storeFailure: storeFailure)
        }
        let thread = self.thread
        let work = UncheckedSendable {
            let failures = Self.flush(checkpoints.map(\.transfer.file))
            let durable = checkpoints.enumerated().compactMap { offset, pending -> Checkpoint? in
                guard failures[offset] == nil, pending.transfer.file.snapshot.generation == pending.generation else { return nil }
                return pending.record
            }
            var storeFailure: FerryError?
            do { try store.write(records: records, deleting: deletes, checkpoints: durable) } catch {
                logger.error("cannot record jobs", metadata: ["jobs": "\(records.count)", "error": "\(error)"])
                storeFailure = FerryError.store("cannot record progress in the job store", error)
            }
            let outcome = storeFailure
            thread.post { finish.value(failures, outcome) }
        }
        if wait { queue.sync { work.value() } } else { queue.async { work.value() } }
    }

    /// A batch ended (engine's thread): its creators and checkpoints hear of it, and what the
    /// store refused goes into the next batch (a refused creation is not tried again: its
    /// creator has the error).
    private func finish(recorded: [JobID: Set<Int>], deletes: [JobID], checkpoints: [PendingCheckpoint],
                        creations: [PendingCreation], failures: [Int: FerryError], storeFailure: FerryError?) {
        thread.assertCurrent()
        batchesInFlight -= 1
        if storeFailure != nil {
            // Nothing of this batch was recorded: its jobs and deletions go into the next one.
            for (id, indices) in recorded where job(id) != nil { pendingRecords[id, default: []].formUnion(indices) }
            pendingDeletes.append(contentsOf: deletes)
        }
        for creation in creations {
            let owner = creation.job.owner
            unfinishedCreations[owner] = unfinishedCreations[owner] == 1 ? nil : unfinishedCreations[owner].map { $0 - 1 }
            creation.then(storeFailure)
        }
        for (offset, pending) in checkpoints.enumerated() {
            let transfer = pending.transfer
            transfer.checkpointInFlight = false
            let error = failures[offset] ?? storeFailure
            if let then = pending.then {
                then(error)
            } else if let error {
                logger.error("checkpoint failed", metadata: ["job": "\(transfer.jobID)", "file": "\(transfer.fileIndex)", "error": "\(error)"])
                checkpointFailed(transfer, error)
            }
        }
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
}
