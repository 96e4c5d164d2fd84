import FerryCore
import FerryStore
import Foundation
import Synchronization
import Logging

/// What `ferry transfer` is asked to do.
public struct TransferPlan: Sendable, Equatable {
    public var displayName: String?
    public var priority: JobPriority
    public var files: [NewFile]
    public var minimumRetryDelay: Double
    public var noProgressTimeout: Double

    public init(displayName: String?, priority: JobPriority, files: [NewFile], minimumRetryDelay: Double, noProgressTimeout: Double) {
        self.displayName = displayName
        self.priority = priority
        self.files = files
        self.minimumRetryDelay = minimumRetryDelay
        self.noProgressTimeout = noProgressTimeout
    }

    /// A name for the store of this exact set of files, so that a rerun finds its job
    /// and two different transfers never share (or lock) one store.
    var storeKey: String {
        // FNV-1a over every URL and destination, in order.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for file in files {
            for byte in file.remoteURL.utf8 + [0] + file.localPath.utf8 + [0] {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        return String(hash, radix: 16)
    }
}

/// Runs one job to the end in this process, the way `bitsadmin /transfer` does:
/// creates it (or finds the one an interrupted run left), resumes it, shows
/// progress, completes it on success and cancels it on a fatal error.
public final class OneShotTransfer: @unchecked Sendable {
    let plan: TransferPlan
    let stateDirectory: String
    let quiet: Bool
    private let output = ProgressOutput()

    public init(plan: TransferPlan, stateDirectory: String, quiet: Bool) {
        self.plan = plan
        self.stateDirectory = stateDirectory
        self.quiet = quiet
    }

    /// Runs the transfer and returns the process exit status.
    public func run() -> Int32 {
        let directory = stateDirectory + "/transfers"
        do { try StateDirectory.ensure(directory) } catch {
            output.error("ferry: cannot use the state directory \(directory): \(StateDirectory.explain(error))")
            return 69
        }
        let storePath = "\(directory)/\(plan.storeKey).db"
        let lockPath = storePath + ".lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            output.error("ferry: the same transfer is already running in another process (lock \(lockPath))")
            return 75
        }
        defer { close(lock) }

        var configuration = EngineConfiguration(storePath: storePath)
        configuration.defaultMinimumRetryDelay = plan.minimumRetryDelay
        configuration.defaultNoProgressTimeout = plan.noProgressTimeout
        configuration.maxActiveBackgroundJobs = 1
        let engine: Engine
        do {
            engine = try Engine(configuration: configuration)
            try engine.start()
        } catch {
            output.error("ferry: \(error.message)")
            removeStoreIfUnused(storePath, lockPath: lockPath)
            return 69
        }
        let interrupted = SignalLatch(signals: [SIGINT, SIGTERM])

        let job: Job
        do {
            job = try prepareJob(engine)
        } catch {
            output.error("ferry: \(error.message)")
            engine.shutdown()
            removeStoreIfUnused(storePath, lockPath: lockPath)
            let badInput: Set<ErrorCode> = [.invalidArgument, .unsupportedURL, .destinationMissing, .accessDenied]
            return badInput.contains(error.code) ? 65 : 1
        }
        let outcome = wait(for: job.id, engine: engine, interrupted: interrupted)
        engine.shutdown()
        // Kept for a rerun: an interrupted transfer, and a job that arrived but could not be completed.
        if case .finished = outcome {
            removeStore(storePath)
            unlink(lockPath)
        }
        return outcome.status
    }

    /// How a run ended: its exit status, and whether its store is kept for a rerun.
    private enum Outcome {
        case finished(Int32)
        case keptForRerun(Int32)

        var status: Int32 {
            switch self {
            case .finished(let status), .keptForRerun(let status): status
            }
        }
    }

    /// Removes a store that holds no job (a run refused before its job was created).
    private func removeStoreIfUnused(_ path: String, lockPath: String) {
        guard let store = try? JobStore(path: path), (try? store.jobCount()) == 0 else { return }
        removeStore(path)
        unlink(lockPath)
    }

    /// The job an interrupted run left for the same files, or a new one.
    private func prepareJob(_ engine: Engine) throws(FerryError) -> Job {
        let owner = getuid()
        let wanted = plan.files.map { [$0.remoteURL, $0.localPath] }
        for job in engine.allJobs() where job.owner == owner && job.files.map({ [$0.remoteURL, $0.localPath] }) == wanted
            && job.files.map(\.properties) != plan.files.map(\.properties) {
            // Same files, other expectations (a new hash, say): the old bytes prove nothing now.
            if !quiet { output.line("The files' properties changed since job \(job.id); starting over") }
            _ = try? engine.cancel(job.id)
        }
        if let existing = engine.allJobs().first(where: { job in
            job.owner == owner && job.files.map { NewFile(remoteURL: $0.remoteURL, localPath: $0.localPath, properties: $0.properties) } == plan.files
        }) {
            if !quiet { output.line("Continuing job \(existing.id) (\(existing.progress.bytesTransferred) bytes already here)") }
            var job = existing
            if job.priority != plan.priority { job = try engine.setPriority(job.id, plan.priority) }
            _ = try engine.setMinimumRetryDelay(job.id, seconds: plan.minimumRetryDelay)
            _ = try engine.setNoProgressTimeout(job.id, seconds: plan.noProgressTimeout)
            return try engine.resume(job.id)
        }
        let name = plan.displayName ?? "ferry transfer (\(plan.files.count) file\(plan.files.count == 1 ? "" : "s"))"
        let job = try engine.createJob(displayName: name, owner: owner, priority: plan.priority)
        do {
            _ = try engine.addFiles(job.id, plan.files)
            _ = try engine.setMinimumRetryDelay(job.id, seconds: plan.minimumRetryDelay)
            _ = try engine.setNoProgressTimeout(job.id, seconds: plan.noProgressTimeout)
            return try engine.resume(job.id)
        } catch {
            _ = try? engine.cancel(job.id)
            throw error
        }
    }

    private func wait(for id: JobID, engine: Engine, interrupted: SignalLatch) -> Outcome {
        let started = Date()
        var lastState: JobState?
        // Woken as soon as the job changes state; the 0.1 s timeout only paces the progress display.
        let changed = DispatchSemaphore(value: 0)
        let seenState = Mutex<JobState?>(nil)
        let observer = engine.addObserver { event in
            switch event {
            case .jobChanged(let job) where job.id == id, .jobTransferred(let job) where job.id == id, .jobError(let job) where job.id == id:
                // Only a new state wakes the waiter: a job of many files changes thousands of times.
                let isNew = seenState.withLock { seen in
                    defer { seen = job.state }
                    return seen != job.state
                }
                if isNew { changed.signal() }
            default:
                break
            }
        }
        defer { engine.removeObserver(observer) }
        while true {
            if interrupted.fired {
                output.finishLine()
                if !quiet { output.line("Interrupted: progress is saved; run the same command again to continue.") }
                return .keptForRerun(130)
            }
            let job: Job
            do { job = try engine.job(id) } catch {
                output.error("ferry: \(error.message)")
                return .finished(1)
            }
            if !quiet { output.progress(job, elapsed: Date().timeIntervalSince(started), stateChanged: job.state != lastState) }
            lastState = job.state
            switch job.state {
            case .transferred:
                do {
                    let done = try engine.complete(id)
                    output.finishLine()
                    if !quiet {
                        let seconds = Date().timeIntervalSince(started)
                        output.line("Transferred \(done.files.count) file\(done.files.count == 1 ? "" : "s"), \(ProgressOutput.bytes(done.progress.bytesTransferred)) in \(String(format: "%.2f", seconds)) s")
                    }
                    return .finished(0)
                } catch {
                    output.finishLine()
                    output.error("ferry: job \(id) could not be completed: \(error)\n  fix that and run the same command again: the files are kept")
                    return .keptForRerun(1)
                }
            case .error where !job.deciding:
                output.finishLine()
                let failure = job.lastError
                var text = "ferry: job \(id) failed: \(failure.map { "\($0.code) (\($0.context.rawValue))" } ?? "ERROR")"
                if let index = failure?.fileIndex, job.files.indices.contains(index) {
                    text += "\n  file \(index): \(job.files[index].remoteURL) -> \(job.files[index].localPath)"
                }
                if let failure { text += "\n  \(failure.message)" }
                output.error(text)
                _ = try? engine.cancel(id)
                return .finished(1)
            case .acknowledged, .cancelled:
                output.finishLine()
                output.error("ferry: job \(id) was \(job.state.rawValue.lowercased()) by someone else")
                return .finished(1)
            default:
                _ = changed.wait(timeout: .now() + 0.1)
            }
        }
    }

    private func removeStore(_ path: String) {
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
    }
}

/// Remembers that one of a set of signals arrived, instead of dying of it.
final class SignalLatch: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "ferry.signals")
    private let flag = NSLock()
    private var _fired = false

    init(signals: [Int32]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.flag.lock()
                self._fired = true
                self.flag.unlock()
            }
            source.resume()
            sources.append(source)
        }
    }

    var fired: Bool {
        flag.lock()
        defer { flag.unlock() }
        return _fired
    }
}

/// What a progress display shows of a job, whichever side (engine or agent) reports it.
public struct ProgressSnapshot: Sendable, Equatable {
    public var state: String
    public var bytesTransferred: UInt64
    /// `nil` while any size is unknown.
    public var bytesTotal: UInt64?
    public var filesTransferred: Int
    public var filesTotal: Int
    /// In TRANSIENT_ERROR: seconds until the retry, and the error's code.
    public var retry: (seconds: Int, code: String)?

    public init(state: String, bytesTransferred: UInt64, bytesTotal: UInt64?, filesTransferred: Int, filesTotal: Int,
                retry: (seconds: Int, code: String)? = nil) {
        self.state = state
        self.bytesTransferred = bytesTransferred
        self.bytesTotal = bytesTotal
        self.filesTransferred = filesTransferred
        self.filesTotal = filesTotal
        self.retry = retry
    }

    public static func == (lhs: ProgressSnapshot, rhs: ProgressSnapshot) -> Bool {
        lhs.state == rhs.state && lhs.bytesTransferred == rhs.bytesTransferred && lhs.bytesTotal == rhs.bytesTotal
            && lhs.filesTransferred == rhs.filesTransferred && lhs.filesTotal == rhs.filesTotal
            && lhs.retry?.seconds == rhs.retry?.seconds && lhs.retry?.code == rhs.retry?.code
    }
}

/// Progress on standard error: a bar that redraws itself on a terminal, plain lines elsewhere
/// (one per state change, and at least every 5 seconds). Shared by both ways of `ferry transfer`.
public final class ProgressOutput: @unchecked Sendable {
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private var barShown = false
    private var lastPlainLine = Date.distantPast
    private var lastBytes: UInt64 = 0
    private var lastSample = Date()
    private var rate: Double = 0

    public init() {}

    func progress(_ job: Job, elapsed: Double, stateChanged: Bool) {
        let p = job.progress
        let retry = job.state == .transientError ? job.lastError.map { error in
            (seconds: job.retryAt.map { max(0, Int($0.timeIntervalSinceNow.rounded(.up))) } ?? 0, code: error.code.rawValue)
        } : nil
        show(ProgressSnapshot(state: job.state.rawValue, bytesTransferred: p.bytesTransferred, bytesTotal: p.bytesTotal,
                              filesTransferred: p.filesTransferred, filesTotal: p.filesTotal, retry: retry),
             elapsed: elapsed, stateChanged: stateChanged)
    }

    /// Draws one update.
    public func show(_ p: ProgressSnapshot, elapsed: Double, stateChanged: Bool) {
        let now = Date()
        let dt = now.timeIntervalSince(lastSample)
        if dt >= 0.5 {
            let delta = Double(p.bytesTransferred &- min(lastBytes, p.bytesTransferred))
            rate = rate == 0 ? delta / dt : 0.6 * rate + 0.4 * delta / dt
            lastBytes = p.bytesTransferred
            lastSample = now
        }
        let detail = p.retry.map { "retrying in \($0.seconds) s after \($0.code)" } ?? p.state
        if isTerminal {
            let fraction = p.bytesTotal.map { $0 == 0 ? 1 : Double(p.bytesTransferred) / Double($0) }
            let width = 30
            let filled = fraction.map { Int(($0 * Double(width)).rounded(.down)) } ?? 0
            let bar = String(repeating: "#", count: min(width, filled)) + String(repeating: ".", count: max(0, width - filled))
            let percent = fraction.map { String(format: "%3d%%", Int($0 * 100)) } ?? " ?? "
            let total = p.bytesTotal.map { ProgressOutput.bytes($0) } ?? "?"
            let line = "[\(bar)] \(percent) \(ProgressOutput.bytes(p.bytesTransferred))/\(total) \(ProgressOutput.bytes(UInt64(max(0, rate))))/s \(p.filesTransferred)/\(p.filesTotal) files \(detail)"
            write("\r\u{1B}[K" + line)
            barShown = true
        } else if stateChanged || now.timeIntervalSince(lastPlainLine) >= 5 {
            lastPlainLine = now
            let total = p.bytesTotal.map { String($0) } ?? "?"
            write("\(String(format: "%.1f", elapsed))s \(detail) \(p.bytesTransferred)/\(total) bytes \(p.filesTransferred)/\(p.filesTotal) files\n")
        }
    }

    /// Ends the bar's line, so that what follows starts on a fresh one.
    public func finishLine() {
        if barShown { write("\n") }
        barShown = false
    }

    public func line(_ text: String) { write(text + "\n") }

    public func error(_ text: String) {
        finishLine()
        write(text + "\n")
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    public static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }
}
