import FerryCore
import FerryPluginHost
import FerryStore
import Foundation
import Logging

/// What the engine starts from after a stop of any kind: every job of the store, each file's
/// record and its temporary made to agree, the plugin calls a crash cut short settled, and
/// what was known of the sources.
struct Recovery {
    let store: JobStore
    let plugins: PluginHost
    let destinations: DestinationDirectories
    let logger: Logger

    /// What recovery found.
    struct Outcome {
        /// Every job that is not final, by id.
        var jobs: [JobID: Job] = [:]
        /// The jobs that were moving bytes, to queue again, oldest first.
        var active: [JobID] = []
        var sources: [SourceHealth] = []
    }

    /// Loads every job, cuts each temporary back to its last recorded length and settles
    /// unfinished plugin calls; writes back only what it changed, in one transaction.
    /// - Throws: ``ErrorCode/localFileError`` when the store cannot be read.
    func run() throws(FerryError) -> Outcome {
        let stored: [Job]
        do { stored = try store.loadJobs() } catch {
            throw FerryError.store("cannot read the job store", error)
        }
        var outcome = Outcome()
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
                    Self.reconcile(&files[index], in: directories[path]!, temporary: job.temporaryName(ofFile: index), final: name)
                }
            }
            job = Job(persistedHeader: job, files: files)
            // Recorded before the CA file's bytes were kept: read it now, once, as the owner.
            if let caFile = job.tlsCAFile, job.tlsCAData == nil {
                if let text = try? FileAdmission.readCAFile(caFile, for: job) {
                    _ = try? job.apply(.setTLSOptions(caFile: caFile, pinnedPublicKey: job.tlsPinnedPublicKey, caData: text), at: job.modificationTime)
                } else {
                    logger.warning("the job's CA file cannot be read; its https sources are checked against the system's CAs only",
                                   metadata: ["job": "\(job.id)", "file": "\(caFile)"])
                }
            }
            _ = try? job.apply(.restarted, at: Date())
            outcome.jobs[job.id] = job
            if job.state.isActive { outcome.active.append(job.id) }
            // Only what recovery changed is written back: an agent with many jobs must not pay
            // one commit per job before it serves.
            if job != recorded { changed.append(job) }
        }
        changed += settleUnfinishedPluginCalls(in: &outcome.jobs)
        if !changed.isEmpty { try? store.save(changed) }
        do { outcome.sources = try store.loadSourceHealth() } catch {
            logger.warning("cannot read the sources' health; starting without it", metadata: ["error": "\(error)"])
        }
        if !outcome.jobs.isEmpty { logger.info("jobs recovered", metadata: ["count": "\(outcome.jobs.count)", "rewritten": "\(changed.count)"]) }
        return outcome
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

    /// What a stopped agent left of its plugin calls. A call the process died in of a
    /// plugin's fatal signal fails its file with PLUGIN_CRASHED (a validator), or is kept in
    /// the job's history as a policy that did not act (an error policy, whose job is asked
    /// again without it). A call cut short by something else is simply made again.
    /// - Returns: the jobs this changed, to be written back.
    private func settleUnfinishedPluginCalls(in jobs: inout [JobID: Job]) -> [Job] {
        guard let records = plugins.crashRecords else { return [] }
        var changed: [JobID: Job] = [:]
        let stamp = ISO8601DateFormatter().string(from: Date())
        for call in records.collectUnfinishedCalls() {
            let target = "job \(call.job)" + (call.file.map { " file \($0)" } ?? "")
            guard let signal = call.signal else {
                logger.notice("the agent stopped during a plugin call; it is made again", metadata: ["plugin": "\(call.plugin)", "callback": "\(call.callback)", "on": "\(target)"])
                continue
            }
            let cause = "plugin \(call.plugin) crashed (\(Self.signalName(signal))) in \(call.callback)"
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
}
