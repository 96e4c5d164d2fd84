import Foundation

/// Something that happens to a job: a call from its owner, or news from the engine.
public enum JobEvent: Equatable, Sendable {
    // ---- calls (refused with INVALID_STATE on a final job) ----------------
    case addFiles([JobFile])
    case resume
    case suspend
    case cancel
    case complete
    case setPriority(JobPriority)
    case setMinimumRetryDelay(Double)
    case setNoProgressTimeout(Double)
    case setCustomHeaders([String])
    case setProperties([String: String])
    case setDisplayName(String)
    case setDescription(String)
    case setNotifyFlags(NotifyFlags)
    case setNotifyCommand([String])
    /// Swaps a case-sensitive URL prefix on every file not yet transferred (BITS' ReplaceRemotePrefix).
    case replaceRemotePrefix(old: String, new: String)
    case setAutoComplete(Bool)
    /// Points one file at another URL (BITS' `SetRemoteName`). A URL that is one of the
    /// file's mirrors swaps places with the current one.
    case setRemoteURL(file: Int, url: String)
    /// Adds alternative URLs for one file (its `mirrors` property); duplicates are ignored.
    case addMirrors(file: Int, urls: [String])
    /// BITS' `DYNAMIC_CONTENT`, and the most bytes a file of the job may have (`nil`: no job limit).
    case setDynamicContent(Bool, maxFileBytes: UInt64?)
    /// The identity the job acts with from now on: the owner's, as the process that is naming
    /// a path or a program for the job holds it now. Refused for another uid.
    case setOwnerCredentials(Credentials)
    /// A CA file trusted in addition to the system's, and a public key pin, for `https` (`nil`: none).
    /// `caData` is the file's PEM text, read by the engine as the owner.
    case setTLSOptions(caFile: String?, pinnedPublicKey: String?, caData: String? = nil)

    // ---- news from the queue manager and the transport ---------------------
    /// The scheduler gave the job its turn: `QUEUED` → `CONNECTING`.
    case scheduled
    /// The job's time slice ended or a higher priority took its place: back to `QUEUED`.
    case preempted
    /// A server answered for a file and its bytes start flowing: `CONNECTING` → `TRANSFERRING`.
    case responseReceived(file: Int, bytesTotal: UInt64?, etag: String?, lastModified: String?, restartFromZero: Bool)
    /// The temporary file of `file` now holds `bytes` bytes.
    case bytesWritten(file: Int, bytes: UInt64)
    /// Every byte of `file` is on disk and flushed.
    case fileTransferred(file: Int)
    /// A transfer of the job failed.
    case failed(FerryError)
    /// A validator set a finished file invalid: the job fails and the file starts again from zero.
    case validationFailed(FerryError)
    /// The retry timer of a job in `TRANSIENT_ERROR` fired.
    case retryTimerFired
    /// The renames asked for by ``JobAction/commitFiles(_:)`` all succeeded.
    case committed
    /// A rename asked for by ``JobAction/commitFiles(_:)`` failed; the job is not acknowledged.
    /// `committed` lists the files that were renamed before the failure.
    case commitFailed(FerryError, committed: [Int])
    /// The job spent this many more seconds CONNECTING or TRANSFERRING.
    case addActiveTime(Double)
    /// An error policy's decision, kept in the job's history; `resumes` when it resumes the job.
    case recordPolicyDecision(String, resumes: Bool)
    /// An error policy asked for the next retry of a job in `TRANSIENT_ERROR` to wait this
    /// many seconds from now. It can only postpone: never sooner than the retry already due.
    case setRetryDelay(Double)
    /// The engine starts a file from another of its candidate URLs (a healthier mirror);
    /// nothing was fetched yet, so nothing stops.
    case useSource(file: Int, url: String)
    /// The agent started again after a stop: a job that was moving bytes goes back to the queue.
    case restarted
    /// The error policies answered about the job's current error: none acted, or what the
    /// acting one asked for was carried out. Ends ``Job/deciding``; an error that still
    /// stands is now announced (``JobAction/notifyJobError``).
    case errorPoliciesAnswered
}

/// What the engine must do after an event. The job itself has already changed.
public enum JobAction: Equatable, Sendable {
    /// Stop every transfer of the job, flushing what was written and recording it.
    case stopTransfers
    /// Delete these files' temporaries; their progress is already reset to zero.
    case discardTemporaries([Int])
    /// Flush and rename these files' temporaries to their final names, then report
    /// ``JobEvent/committed`` or ``JobEvent/commitFailed(_:)``.
    case commitFiles([Int])
    /// Send the job to the back of the queue manager's list; it may start now.
    case enqueue
    /// Fire ``JobEvent/retryTimerFired`` at this time.
    case scheduleRetry(at: Date)
    case notifyFileTransferred(Int)
    case notifyJobTransferred
    /// The job is in `ERROR` and its error policies have answered: the error stands.
    case notifyJobError
    /// Call the error policies that apply about the job's current error, then report
    /// ``JobEvent/errorPoliciesAnswered`` (at once when none applies).
    case consultErrorPolicies
}

extension Job {
    /// Applies one event and returns what the engine must do about it.
    ///
    /// Calls on a job in a state that does not allow them throw
    /// ``ErrorCode/invalidState``; news that arrives late (a transfer that ends
    /// after its job was suspended) is ignored and returns no action.
    /// - Parameters:
    ///   - event: what happened.
    ///   - now: the current time, for timestamps and timers.
    /// - Returns: the actions to carry out, in order.
    /// - Throws: ``FerryError`` with ``ErrorCode/invalidState``, ``ErrorCode/empty`` or
    ///   ``ErrorCode/invalidArgument`` when a call is refused; the job is then unchanged.
    public mutating func apply(_ event: JobEvent, at now: Date) throws(FerryError) -> [JobAction] {
        let actions = try transition(event, at: now)
        // The policies decide about an error only while the job is in it: a job that left
        // ERROR or TRANSIENT_ERROR (resumed, suspended, cancelled, retried) is not deciding.
        if deciding, state != .error, state != .transientError { deciding = false }
        return actions
    }

    private mutating func transition(_ event: JobEvent, at now: Date) throws(FerryError) -> [JobAction] {
        switch event {
        case .addFiles(let newFiles):
            try requireNotFinal("add files to")
            var destinations = Set(files.map(\.localPath))
            for file in newFiles where !destinations.insert(file.localPath).inserted {
                throw FerryError(code: .invalidArgument, context: .localFile,
                                 message: "\(file.localPath) is already the destination of another file of this job")
            }
            files.append(contentsOf: newFiles)
            touch(now)
            return state.isActive ? [.enqueue] : []

        case .resume:
            try requireNotFinal("resume")
            guard !files.isEmpty else {
                throw FerryError(code: .empty, context: .queueManager, message: "the job has no files; add files before resuming it")
            }
            switch state {
            case .queued, .connecting, .transferring:
                return []
            case .transferred where !hasPendingFiles:
                return []
            default:
                // Every file already arrived (the last one finished after a suspend).
                if !hasPendingFiles { return finishTransfer(at: now) }
                state = .queued
                lastError = nil
                retryAt = nil
                noProgressSince = nil
                touch(now)
                return [.enqueue]
            }

        case .suspend:
            try requireNotFinal("suspend")
            guard state != .suspended else { return [] }
            let wasActive = state.isActive
            state = .suspended
            retryAt = nil
            touch(now)
            return wasActive ? [.stopTransfers] : []

        case .cancel:
            try requireNotFinal("cancel")
            state = .cancelled
            touch(now)
            let uncommitted = files.indices.filter { !files[$0].isCommitted }
            for index in uncommitted { files[index].resetProgress() }
            return [.stopTransfers, .discardTemporaries(uncommitted)]

        case .complete:
            try requireNotFinal("complete")
            return [.stopTransfers, .commitFiles(files.indices.filter { files[$0].isTransferred && !files[$0].isCommitted })]

        case .committed:
            guard !state.isFinal else { return [] }
            for index in files.indices where files[index].isTransferred { files[index].isCommitted = true }
            state = .acknowledged
            touch(now)
            // BITS' partial complete: what never finished is deleted, not renamed.
            let unfinished = files.indices.filter { !files[$0].isCommitted }
            for index in unfinished { files[index].resetProgress() }
            return unfinished.isEmpty ? [] : [.discardTemporaries(unfinished)]

        case .commitFailed(_, let renamed):
            guard !state.isFinal else { return [] }
            // The job keeps its state (BITS: a failed rename leaves it TRANSFERRED); an active job goes on.
            for index in renamed where files.indices.contains(index) { files[index].isCommitted = true }
            if !renamed.isEmpty { touch(now) }
            return state.isActive ? [.enqueue] : []

        case .recordPolicyDecision(let text, let resumes):
            guard !state.isFinal else { return [] }
            history.append(text)
            if history.count > 50 { history.removeFirst(history.count - 50) }
            if resumes { policyResumes += 1 }
            touch(now)
            return []

        case .addActiveTime(let seconds):
            guard !state.isFinal, seconds.isFinite, seconds > 0 else { return [] }
            activeSeconds += seconds
            return []

        case .errorPoliciesAnswered:
            guard deciding, state == .error || state == .transientError else { return [] }
            deciding = false
            touch(now)
            // TRANSIENT_ERROR: the retry is already due at retryAt (perhaps postponed); nothing to announce.
            return state == .error ? [.notifyJobError] : []

        case .restarted:
            // A TRANSFERRED job whose file was found damaged on restart must fetch it again.
            if state == .transferred, hasPendingFiles {
                state = .queued
                return [.enqueue]
            }
            guard state == .connecting || state == .transferring else { return state == .queued ? [.enqueue] : [] }
            state = .queued
            return [.enqueue]

        case .setPriority(let priority):
            try requireNotFinal("change the priority of")
            guard priority != self.priority else { return [] }
            self.priority = priority
            touch(now)
            return state.isActive ? [.enqueue] : []

        case .setMinimumRetryDelay(let seconds):
            try requireNotFinal("change the retry delay of")
            guard seconds.isFinite, seconds >= 0 else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "the minimum retry delay must be a number of seconds ≥ 0, got \(seconds)")
            }
            minimumRetryDelay = max(seconds, Job.minimumRetryDelayFloor)
            touch(now)
            return []

        case .setNoProgressTimeout(let seconds):
            try requireNotFinal("change the no-progress timeout of")
            guard seconds.isFinite, seconds >= 0 else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "the no-progress timeout must be a number of seconds ≥ 0, got \(seconds)")
            }
            noProgressTimeout = seconds
            touch(now)
            return []

        case .setCustomHeaders(let headers):
            try requireNotFinal("change the headers of")
            customHeaders = headers
            touch(now)
            return []

        case .setProperties(let properties):
            try requireNotFinal("change the properties of")
            self.properties = properties
            touch(now)
            return []

        case .setDisplayName(let name):
            try requireNotFinal("rename")
            displayName = name
            touch(now)
            return []

        case .setDescription(let text):
            try requireNotFinal("describe")
            description = text
            touch(now)
            return []

        case .setNotifyFlags(let flags):
            try requireNotFinal("change the notify flags of")
            guard NotifyFlags.known.isSuperset(of: flags) else {
                throw FerryError(code: .invalidArgument, context: .queueManager,
                                 message: "unknown notify flags 0x\(String(flags.subtracting(.known).rawValue, radix: 16))")
            }
            notifyFlags = flags
            touch(now)
            return []

        case .setNotifyCommand(let command):
            try requireNotFinal("change the notify command of")
            guard command.isEmpty || command[0].hasPrefix("/") else {
                throw FerryError(code: .invalidArgument, context: .notification,
                                 message: "the notify program must be an absolute path, got '\(command[0])'")
            }
            notifyCommand = command
            touch(now)
            return []

        case .replaceRemotePrefix(let old, let new):
            try requireNotFinal("change the remote names of")
            guard !old.isEmpty else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "the prefix to replace is empty")
            }
            var changed = false
            for index in files.indices where !files[index].isTransferred && files[index].remoteURL.hasPrefix(old) {
                files[index].remoteURL = new + files[index].remoteURL.dropFirst(old.count)
                changed = true
            }
            guard changed else { return [] }
            touch(now)
            return state.isActive ? [.stopTransfers, .enqueue] : []

        case .setAutoComplete(let enabled):
            try requireNotFinal("change auto-complete of")
            autoComplete = enabled
            touch(now)
            return []

        case .setRemoteURL(let index, let url):
            try requireNotFinal("change a remote name of")
            guard files.indices.contains(index) else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "the job has no file \(index)")
            }
            guard !files[index].isTransferred else {
                throw FerryError(code: .invalidState, context: .queueManager, message: "file \(index) is already transferred")
            }
            files[index].switchSource(to: url)
            touch(now)
            return state.isActive ? [.stopTransfers, .enqueue] : []

        case .addMirrors(let index, let urls):
            try requireNotFinal("add mirrors to")
            guard files.indices.contains(index) else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "the job has no file \(index)")
            }
            guard let bad = urls.first(where: { $0.isEmpty || $0.contains(where: \.isWhitespace) }) else {
                var list = files[index].mirrors
                for url in urls where url != files[index].remoteURL && !list.contains(url) { list.append(url) }
                files[index].mirrors = list
                touch(now)
                return []
            }
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "a mirror URL may not be empty or contain spaces: '\(bad)'")

        case .setOwnerCredentials(let credentials):
            try requireNotFinal("change the identity of")
            guard credentials.uid == owner else {
                throw FerryError(code: .accessDenied, context: .queueManager, message: "a job acts only as its owner, uid \(owner)")
            }
            ownerCredentials = credentials
            return []

        case .setDynamicContent(let enabled, let limit):
            try requireNotFinal("change dynamic content of")
            if limit == 0 {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "the maximum file size must be at least 1 byte (leave it out for no job limit)")
            }
            dynamicContent = enabled
            maxFileBytes = limit
            touch(now)
            return []

        case .setTLSOptions(let caFile, let pin, let caData):
            try requireNotFinal("change the TLS options of")
            if let caFile, !caFile.hasPrefix("/") {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "the CA file must be an absolute path, got '\(caFile)'")
            }
            if let pin, !pin.hasPrefix("sha256//") || pin.count < 12 {
                throw FerryError(code: .invalidArgument, context: .queueManager,
                                 message: "a public key pin is 'sha256//' and the base64 SHA-256 of the key, got '\(pin)'")
            }
            tlsCAFile = caFile
            tlsCAData = caFile == nil ? nil : caData
            tlsPinnedPublicKey = pin
            touch(now)
            return []

        case .useSource(let index, let url):
            guard state.isActive, files.indices.contains(index), !files[index].isTransferred,
                  files[index].candidateURLs.contains(url) else { return [] }
            files[index].switchSource(to: url)
            return []

        case .setRetryDelay(let seconds):
            guard state == .transientError, seconds.isFinite, seconds >= 0 else { return [] }
            let at = now.addingTimeInterval(seconds)
            guard at > (retryAt ?? .distantPast) else { return [] }
            retryAt = at
            // The engine's timers read retryAt; no new scheduleRetry, which would ask the policies again.
            return []

        case .scheduled:
            guard state == .queued else { return [] }
            if !hasPendingFiles { return finishTransfer(at: now) }
            state = .connecting
            return []

        case .preempted:
            guard state == .connecting || state == .transferring else { return [] }
            state = .queued
            return [.stopTransfers, .enqueue]

        case .responseReceived(let index, let total, let etag, let lastModified, let restart):
            guard state.isActive, files.indices.contains(index) else { return [] }
            if restart { files[index].resetProgress() }
            files[index].bytesTotal = total
            files[index].remoteETag = etag
            files[index].remoteLastModified = lastModified
            if state != .transferring { state = .transferring }
            return []

        case .bytesWritten(let index, let bytes):
            guard state.isActive, files.indices.contains(index) else { return [] }
            if bytes > files[index].bytesTransferred { noProgressSince = nil }
            files[index].bytesTransferred = bytes
            if state == .connecting { state = .transferring }
            return []

        case .fileTransferred(let index):
            // A file whose last flush ends after its job was stopped is still transferred.
            guard !state.isFinal, files.indices.contains(index), !files[index].isTransferred else { return [] }
            files[index].isTransferred = true
            if files[index].bytesTotal == nil { files[index].bytesTotal = files[index].bytesTransferred }
            noProgressSince = nil
            guard state.isActive, !hasPendingFiles else { return [.notifyFileTransferred(index)] }
            return [.notifyFileTransferred(index)] + finishTransfer(at: now)

        case .failed(let error):
            guard state.isActive else { return [] }
            if noProgressSince == nil { noProgressSince = now }
            lastError = error
            touch(now)
            let stalledFor = now.timeIntervalSince(noProgressSince ?? now)
            deciding = true
            if !error.isTransient || noProgressTimeout == 0 || stalledFor >= noProgressTimeout {
                state = .error
                retryAt = nil
                return [.stopTransfers, .consultErrorPolicies]
            }
            state = .transientError
            let delay = max(minimumRetryDelay, error.retryAfterSeconds ?? 0)
            let at = now.addingTimeInterval(delay)
            retryAt = at
            return [.stopTransfers, .scheduleRetry(at: nextTimer(retryAt: at)), .consultErrorPolicies]

        case .validationFailed(let error):
            // BITS: the job goes to ERROR, that file's progress is reset, and resume fetches it again.
            guard !state.isFinal, let index = error.fileIndex, files.indices.contains(index) else { return [] }
            files[index].resetProgress()
            touch(now)
            guard state.isActive || state == .transferred else { return [.discardTemporaries([index])] }
            state = .error
            lastError = error
            retryAt = nil
            deciding = true
            return [.stopTransfers, .discardTemporaries([index]), .consultErrorPolicies]

        case .retryTimerFired:
            // A retry waits for the policies' verdict: one may point the file elsewhere or postpone it.
            guard state == .transientError, !deciding else { return [] }
            if let deadline = noProgressDeadline, now >= deadline {
                state = .error
                retryAt = nil
                if var error = lastError {
                    error.isTransient = false
                    error.message += " (no progress for \(Int(noProgressTimeout)) s, giving up)"
                    lastError = error
                }
                deciding = true
                touch(now)
                return [.consultErrorPolicies]
            }
            guard let at = retryAt, now >= at else { return retryAt.map { [.scheduleRetry(at: nextTimer(retryAt: $0))] } ?? [] }
            state = .queued
            retryAt = nil
            touch(now)
            return [.enqueue]
        }
    }

    /// Every file is here: the job is TRANSFERRED.
    private mutating func finishTransfer(at now: Date) -> [JobAction] {
        state = .transferred
        transferCompletionTime = now
        lastError = nil
        retryAt = nil
        touch(now)
        return [.notifyJobTransferred]
    }

    /// When a job that makes no progress turns from `TRANSIENT_ERROR` into `ERROR`.
    public var noProgressDeadline: Date? { noProgressSince?.addingTimeInterval(noProgressTimeout) }

    /// A retry delay longer than the no-progress timeout means no retry at all (BITS):
    /// the timer fires at whichever comes first.
    private func nextTimer(retryAt: Date) -> Date {
        guard let deadline = noProgressDeadline else { return retryAt }
        return min(retryAt, deadline)
    }

    private func requireNotFinal(_ operation: String) throws(FerryError) {
        if state.isFinal { throw FerryError.invalidState(state, operation) }
    }

    private mutating func touch(_ now: Date) { modificationTime = now }
}
