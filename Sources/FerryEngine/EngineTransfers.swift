import Dispatch
import FerryCore
import FerryTransport
import Foundation

/// The engine's thread at work: timers, the scheduler's decisions, files started and
/// stopped, and what their transfers report.
extension Engine {
    // MARK: - Timers

    func fireTimers(now: Date) {
        for id in jobs.waiting {
            guard let job = jobs[id], !job.deciding else { continue }
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

    // MARK: - Scheduling

    /// Carries out the scheduler's decisions: preemptions, jobs whose turn came, and files
    /// started within the connection caps.
    func schedule(now: Date) {
        let active = jobs.active.lazy.compactMap { self.jobs[$0] }.map(SchedulerJob.init)
        for action in scheduler.tick(jobs: active, now: now) {
            switch action {
            case .preempt(let id): _ = try? apply(.preempted, to: id, durable: false)
            case .schedule(let id): _ = try? apply(.scheduled, to: id, durable: false)
            case .startFiles(let id): if jobs[id]?.state.isActive ?? false { startFiles(of: id, now: now) }
            }
        }
    }

    private func startFiles(of id: JobID, now: Date) {
        guard let job = jobs[id] else { return }
        let here = transfers.of(id)
        var slots = min(configuration.maxParallelFilesPerJob - (here.count - here.finishing),
                        configuration.maxConnections - transfers.moving,
                        RunningTransfers.maxFinishing - transfers.finishing)
        // Every file before the hint is transferred or running: a job of n files is not
        // scanned from its start each time one of them finishes.
        var index = transfers.firstStartable(of: id)
        while slots > 0, index < job.files.count {
            // Its temporary is being created ahead: it starts when that is done, never beside it.
            if ahead.isOpening(id, file: index) { break }
            defer { index += 1 }
            guard !job.files[index].isTransferred, transfers[id, file: index] == nil else { continue }
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
        transfers.setFirstStartable(index, of: id)
        ahead.open(for: job, from: index, wanted: configuration.maxParallelFilesPerJob)
        if !job.hasPendingFiles, job.state.isActive, transfers.of(id).count == 0 {
            // Nothing left to fetch (files were added to a transferred job, then finished).
            needsScheduling = true
        }
    }

    private func startFile(_ index: Int, of original: Job, now: Date) throws(FerryError) {
        var job = original
        // A file with mirrors that has no bytes yet starts from the healthiest of its sources.
        if job.files[index].bytesTransferred == 0, !job.files[index].mirrors.isEmpty {
            let best = sourceBook.preferredSource(of: job.files[index])
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
        if let ready = ahead.take(job.id, file: index), file.bytesTransferred == 0, ready.snapshot.length == 0 {
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
            let backgroundTransfers = transfers.count(where: { jobs[$0]?.priority.isBackground ?? false })
            request.maxBytesPerSecond = max(1024, cap / Int64(backgroundTransfers + 1))
        }
        let limit = [configuration.maxFileBytes, job.maxFileBytes].compactMap { $0 }.min()
        let fileTransfer = try FileTransfer(observer: self, jobID: job.id, fileIndex: index, file: temporary, request: request,
                                            jobFile: file, mayRestartWithoutRanges: job.priority == .foreground || job.dynamicContent,
                                            restartsFromZero: restartsFromZero, maxFileBytes: limit, now: now)
        transfers.add(fileTransfer)
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
                guard let self, self.transfers.isCurrent(waiting.value) else { return }
                do throws(FerryError) {
                    try outcome.get()
                    try self.beginMoving(waiting.value, of: owner.value)
                } catch {
                    var failure = error
                    failure.fileIndex = index
                    if self.transfers.isCurrent(waiting.value) {
                        self.fileFailed(waiting.value, failure)
                    } else {
                        _ = try? self.apply(.failed(failure), to: owner.value.id, durable: false)
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
            fileTransfer.localSource = LocalSource.start(path: path, offset: request.offset, job: job, transfer: fileTransfer, thread: thread)
        } else {
            do { fileTransfer.transfer = try loop.start(request, delegate: fileTransfer) } catch {
                transfers.release(fileTransfer)
                throw error
            }
        }
        logger.debug("transfer started", metadata: ["job": "\(job.id)", "file": "\(fileTransfer.fileIndex)", "offset": "\(request.offset)"])
    }

    /// Stops every transfer of a job and flushes what each wrote.
    func stopTransfers(of id: JobID) {
        ahead.forget(id)
        for fileTransfer in transfers.removeAll(of: id) {
            if let transfer = fileTransfer.transfer { loop.cancel(transfer) }
            fileTransfer.transfer = nil
            fileTransfer.localSource?.cancel()
            fileTransfer.localSource = nil
            durability.checkpoint(fileTransfer, transferred: false, force: true, then: nil)
        }
        needsScheduling = true
    }

    /// The transfer is done with; its file may start again.
    func release(_ transfer: FileTransfer) {
        transfers.release(transfer)
        needsScheduling = true
    }

    static func localMinuteOfDay(_ date: Date) -> Int {
        let components = Calendar.current.dateComponents([.hour, .minute], from: date)
        return (components.hour ?? 0) * 60 + (components.minute ?? 0)
    }

    // MARK: - Checkpoints

    func checkpointIdleTransfers(now: Date) {
        // A local source that stops giving bytes (a hung file system) fails like a stalled
        // server; its reader thread is left to end by itself.
        let stall = Double(configuration.stallTimeoutSeconds)
        var stalled: [FileTransfer] = []
        transfers.forEach { transfer in
            if transfer.localSource != nil, now.timeIntervalSince(transfer.lastActivity) > stall { stalled.append(transfer) }
        }
        // (Failing one changes the running transfers: after the walk.)
        for transfer in stalled {
            transfer.localSourceFailed(FerryError(code: .timeout, context: .remoteFile, isTransient: true, fileIndex: transfer.fileIndex,
                                                  message: "the source \(transfer.request.url) gave no bytes for \(Int(stall)) s"))
        }
        let interval = configuration.checkpointIntervalSeconds
        transfers.forEach { transfer in
            guard !transfer.isFinishing, !transfer.checkpointInFlight, now.timeIntervalSince(transfer.lastCheckpointTime) >= interval,
                  transfer.file.snapshot.length != transfer.lastCheckpointLength else { return }
            durability.checkpoint(transfer, transferred: false, then: nil)
        }
    }
}

// MARK: - News from file transfers (engine's thread)

extension Engine: FileTransferObserver {
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
            durability.checkpoint(transfer, transferred: false, then: nil)
        }
    }

    func fileFailed(_ transfer: FileTransfer, _ failure: FerryError) {
        guard transfers.isCurrent(transfer) else { return }
        // The job's record of the file follows what the temporary really holds.
        fileProgressed(transfer)
        logger.warning("transfer failed", metadata: ["job": "\(transfer.jobID)", "file": "\(transfer.fileIndex)", "error": "\(failure)"])
        // The source is to blame for what came (or did not come) over the wire; not for a full disk.
        if failure.context == .remoteFile || failure.context == .transport, failure.code != .insufficientRangeSupport {
            sourceBook.record(transfer.request.url, success: nil)
        }
        _ = try? apply(.failed(failure), to: transfer.jobID, durable: false)
    }

    /// The server's file changed under a resume (a 206 of another version): the answer
    /// was ignored and the file starts again from zero at once.
    func fileRestartRequested(_ transfer: FileTransfer, reason: String) {
        guard transfers.isCurrent(transfer) else { return }
        logger.info("remote file changed during resume, restarting it from zero",
                    metadata: ["job": "\(transfer.jobID)", "file": "\(transfer.fileIndex)", "reason": "\(reason)"])
        release(transfer)
        _ = try? apply(.responseReceived(file: transfer.fileIndex, bytesTotal: nil, etag: nil, lastModified: nil, restartFromZero: true),
                       to: transfer.jobID, files: [transfer.fileIndex], durable: false)
    }

    func fileFinished(_ transfer: FileTransfer) {
        guard transfers.isCurrent(transfer) else { return }
        transfers.markFinishing(transfer)
        needsScheduling = true
        let id = transfer.jobID
        // The final flush records the full length but not "transferred": that waits for the
        // validators, so a crash in between validates the file again.
        durability.checkpoint(transfer, transferred: false) { [unowned self] error in
            if let error {
                self.release(transfer)
                _ = try? self.apply(.failed(error), to: id, durable: false)
                return
            }
            self.validateWhenHashed(transfer)
        }
    }

    /// Validates a finished file once its digests are finished: at once when they were fed as
    /// the bytes arrived; when a worker trails the transfer, once it has read the last byte.
    private func validateWhenHashed(_ transfer: FileTransfer) {
        guard transfer.hasTrailingDigests else {
            validate(transfer, attempt: 0, digests: transfer.finishDigests())
            return
        }
        let waiting = UncheckedSendable(transfer)
        transfer.whenTrailingDigestsFinished { [weak self] outcome in
            self?.post { [weak self] in
                guard let self, self.transfers.isCurrent(waiting.value) else { return }
                switch outcome {
                case .success(let digests):
                    self.validate(waiting.value, attempt: 0, digests: digests)
                case .failure(let failure):
                    self.release(waiting.value)
                    _ = try? self.apply(.failed(failure), to: waiting.value.jobID, durable: false)
                }
            }
        }
    }
}
