import FerryCore
import FerryPluginHost
import Foundation

/// What the engine does with plugins' answers: a validator's verdict on a finished file, and
/// the error policies' decision about a job's error.
extension Engine {
    // MARK: - Validation

    /// Runs the job's validators on a finished file, off the engine's thread, then
    /// reports the verdict: valid → the file is transferred; invalid → the job fails
    /// with VALIDATION_FAILED and the file starts again from zero.
    func validate(_ transfer: FileTransfer, attempt: Int, digests: [DigestName: [UInt8]]) {
        let id = transfer.jobID
        let index = transfer.fileIndex
        guard let job = jobs[id] else { return }
        guard coordinator.hasValidators(for: job) else {
            release(transfer)
            recordSuccess(of: transfer)
            _ = try? apply(.fileTransferred(file: index), to: id, files: [index], durable: false)
            return
        }
        let length = transfer.file.snapshot.length
        let view = PluginJobView(job: job, digests: [index: digests], completeFiles: [index], finishedLengths: [index: length],
                                 temporaryPaths: [index: transfer.file.descriptorPath])
        coordinator.validate(file: index, of: id, view: view) { [unowned self] outcome in
            self.finishValidation(transfer, outcome: outcome, attempt: attempt, digests: digests)
        }
    }

    private func finishValidation(_ transfer: FileTransfer, outcome: ValidationOutcome, attempt: Int, digests: [DigestName: [UInt8]]) {
        let id = transfer.jobID
        let index = transfer.fileIndex
        switch outcome {
        case .valid(let verdicts):
            release(transfer)
            recordSuccess(of: transfer)
            if !verdicts.isEmpty {
                logger.info("file validated", metadata: ["job": "\(id)", "file": "\(index)",
                                                         "verdicts": "\(verdicts.map { "\($0.plugin): \($0.reason)" }.joined(separator: "; "))"])
            }
            _ = try? apply(.fileTransferred(file: index), to: id, files: [index], durable: false)
        case .invalid(let verdict):
            release(transfer)
            sourceBook.record(transfer.request.url, success: nil)
            logger.warning("file failed validation", metadata: ["job": "\(id)", "file": "\(index)", "plugin": "\(verdict.plugin)", "reason": "\(verdict.reason)"])
            let error = FerryError(code: .validationFailed, context: .validation, fileIndex: index,
                                   message: "\(verdict.plugin): \(verdict.reason)")
            _ = try? apply(.validationFailed(error), to: id, files: [index], durable: false)
        case .retryLater(let plugin):
            // BITS calls a callback that did not answer OK again later; back off up to a minute.
            let delay = min(60, 0.5 * pow(2, Double(min(attempt, 7))))
            logger.info("validator asked to be called again", metadata: ["job": "\(id)", "file": "\(index)", "plugin": "\(plugin)", "in": "\(delay)s"])
            coordinator.later(delay, for: id) { [weak self] in
                guard let self, self.transfers.isCurrent(transfer) else { return }
                self.validate(transfer, attempt: attempt + 1, digests: digests)
            }
        case .pluginCrashed(let verdict):
            // Not the source's fault: its health is left alone.
            release(transfer)
            logger.error("file failed: its validator cannot be called", metadata: ["job": "\(id)", "file": "\(index)", "plugin": "\(verdict.plugin)", "reason": "\(verdict.reason)"])
            let error = FerryError(code: .pluginCrashed, context: .validation, fileIndex: index, message: verdict.reason)
            _ = try? apply(.validationFailed(error), to: id, files: [index], durable: false)
        }
    }

    /// A file's bytes all came from its source: its throughput counts for the source's health.
    private func recordSuccess(of transfer: FileTransfer) {
        let bytes = transfer.file.snapshot.length - min(transfer.file.snapshot.length, transfer.request.offset)
        sourceBook.record(transfer.request.url, success: (bytes, Date().timeIntervalSince(transfer.startedAt)))
    }

    // MARK: - Error policies

    /// Calls the error policies that apply, off the engine's thread, then carries out what the
    /// first one that acted asked for, within the per-job bound on automatic resumes. The job
    /// stays ``Job/deciding`` until they answered (``JobEvent/errorPoliciesAnswered``).
    func consultErrorPolicies(about job: Job) {
        guard job.deciding else { return }
        let policies = job.lastError.map { _ in plugins.errorPolicies(for: job, transient: job.state == .transientError) } ?? []
        guard let error = job.lastError, !policies.isEmpty else {
            _ = try? apply(.errorPoliciesAnswered, to: job.id, durable: false)
            return
        }
        let view = PluginJobView(job: job, sourceHealth: sourceBook.known(for: job, file: error.fileIndex))
        let state = job.state
        coordinator.askPolicies(policies, about: error, of: job.id, view: view) { [unowned self] round in
            self.carryOut(round, for: job.id, expectedState: state)
        }
    }

    private func carryOut(_ round: PolicyRound, for id: JobID, expectedState: JobState) {
        // A job that left the error meanwhile (resumed, suspended, cancelled) is no longer deciding.
        guard let job = jobs[id], job.state == expectedState, job.deciding else { return }
        for failed in round.failures {
            logger.error("error policy failed", metadata: ["job": "\(id)", "plugin": "\(failed.plugin)", "status": "\(failed.status)", "error": "\(failed.message)"])
        }
        let stamp = ISO8601DateFormatter().string(from: Date())
        switch round.resolve(resumesSoFar: job.policyResumes, maxResumes: configuration.maxPolicyResumes, stamp: stamp) {
        case .askAgain(let plugin):
            // The job stays deciding until the policies answer.
            logger.info("error policy asked to be called again", metadata: ["job": "\(id)", "plugin": "\(plugin)"])
            coordinator.later(PolicyRound.askAgainAfter, for: id) { [weak self] in
                if let self, let current = self.jobs[id], current.state == expectedState { self.consultErrorPolicies(about: current) }
            }
            return
        case .errorStands(let note, let boundReachedBy):
            if let boundReachedBy {
                logger.warning("error policy bound reached; the error stands", metadata: ["job": "\(id)", "plugin": "\(boundReachedBy)"])
            }
            _ = try? apply(.recordPolicyDecision(note, resumes: false), to: id, durable: false)
        case .act(let plugin, let actions, let note, let resumes):
            logger.notice("error policy acted", metadata: ["job": "\(id)", "plugin": "\(plugin)", "error": "\(round.error.code)",
                                                           "actions": "\(actions.map(\.description).joined(separator: ", "))"])
            _ = try? apply(.recordPolicyDecision(note, resumes: resumes), to: id, durable: false)
            for action in actions {
                do { _ = try apply(try action.jobEvent(), to: id, durable: false) } catch {
                    logger.error("an error policy's action was refused", metadata: ["job": "\(id)", "action": "\(action)", "error": "\(error)"])
                }
            }
        }
        _ = try? apply(.errorPoliciesAnswered, to: id, durable: false)
    }
}
