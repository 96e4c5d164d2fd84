import CFerrySystem
import FerryCore
import FerryEngine
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs a job's notify command on TRANSFERRED or ERROR, as BITS' SetNotifyCmdLine.
///
/// The program runs as the job's owner, without a shell, with the job's id and state
/// appended to its arguments and in `FERRY_JOB_ID`/`FERRY_JOB_STATE`. Commands are
/// supervised, never waited for: one ``ProcessSupervisor`` thread watches them all.
/// Each may run for ``Limits/timeout`` seconds before it is killed; at most
/// ``Limits/perUser`` run at once for one user and ``Limits/total`` in all, the others
/// wait their turn. A command that exits non-zero, is killed or cannot start runs again
/// after the job's minimum retry delay, for as long as the job is still in that state.
public final class NotifyCommandRunner: Sendable {
    /// Bounds on notify commands (`notifications.command_timeout_sec`,
    /// `notifications.max_commands_per_user`, `notifications.max_commands`).
    public struct Limits: Sendable, Equatable {
        public var timeout: Double
        public var perUser: Int
        public var total: Int
        public init(timeout: Double = 300, perUser: Int = 4, total: Int = 32) {
            self.timeout = timeout
            self.perUser = perUser
            self.total = total
        }
    }

    private let engine: Engine
    private let logger: Logger
    private let limits: Limits
    private let supervisor: ProcessSupervisor
    private let state = Mutex<State>(State())

    private struct State {
        /// Jobs whose command runs, by owner.
        var running: [JobID: UInt32] = [:]
        var runningByUser: [UInt32: Int] = [:]
        /// Jobs waiting for a free place, in order (one entry per job at most).
        var waiting: [Job] = []
    }

    init(engine: Engine, logger: Logger, limits: Limits) {
        self.engine = engine
        self.logger = logger
        self.limits = limits
        self.supervisor = ProcessSupervisor(logger: logger)
    }

    func run(for job: Job) {
        guard !job.notifyCommand.isEmpty else { return }
        let queued = state.withLock { state -> Bool in
            guard state.running[job.id] == nil, !state.waiting.contains(where: { $0.id == job.id }) else { return false }
            state.waiting.append(job)
            return true
        }
        if queued { pump() }
    }

    /// Starts waiting commands while there is room, in order. Iterative: a command that
    /// cannot start frees its place at once and the loop goes on, however many wait.
    private func pump() {
        while true {
            let next = state.withLock { state -> Job? in
                guard let index = state.waiting.firstIndex(where: { fits($0.owner, in: state) }) else { return nil }
                let job = state.waiting.remove(at: index)
                take(job, in: &state)
                return job
            }
            guard let job = next else { return }
            if !start(job) { release(job) ; scheduleRetry(job, program: job.notifyCommand[0], status: -1, timedOut: false) }
        }
    }

    private func fits(_ owner: UInt32, in state: State) -> Bool {
        state.running.count < limits.total && state.runningByUser[owner, default: 0] < limits.perUser
    }

    private func take(_ job: Job, in state: inout State) {
        state.running[job.id] = job.owner
        state.runningByUser[job.owner, default: 0] += 1
    }

    /// Starts a job's command; `false` when it could not start.
    private func start(_ job: Job) -> Bool {
        let program = job.notifyCommand[0]
        let arguments = Array(job.notifyCommand.dropFirst()) + [job.id.description, job.state.rawValue]
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "FERRY_JOB_ID": job.id.description,
                           "FERRY_JOB_STATE": job.state.rawValue, "FERRY_JOB_NAME": job.displayName]
        do {
            let pid = try OwnerIdentity.spawn(program, arguments: arguments, environment: environment, as: OwnerIdentity.credentials(of: job))
            try supervisor.watch(pid, timeout: limits.timeout) { [self] status, timedOut in
                release(job)
                scheduleRetry(job, program: program, status: status, timedOut: timedOut)
                pump()
            }
            return true
        } catch {
            logger.error("notify command could not start", metadata: ["job": "\(job.id)", "error": "\(error)"])
            return false
        }
    }

    private func release(_ job: Job) {
        state.withLock { state in
            state.running[job.id] = nil
            state.runningByUser[job.owner, default: 1] -= 1
            if state.runningByUser[job.owner] == 0 { state.runningByUser[job.owner] = nil }
        }
    }

    /// After a run: nothing more when it succeeded; otherwise the job's command runs again
    /// after its minimum retry delay (at least 1 s), if the job is still in that state.
    private func scheduleRetry(_ job: Job, program: String, status: Int32, timedOut: Bool) {
        guard status != 0 else {
            logger.info("notify command ran", metadata: ["job": "\(job.id)", "program": "\(program)"])
            return
        }
        let delay = max(1, job.minimumRetryDelay)
        let why = timedOut ? "ran longer than \(Int(limits.timeout)) s and was killed" : "failed"
        logger.warning("notify command \(why); it runs again after the retry delay",
                       metadata: ["job": "\(job.id)", "program": "\(program)", "status": "\(status)", "in": "\(Int(delay)) s"])
        let id = job.id
        let state = job.state
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [self] in
            guard let current = try? engine.job(id), current.state == state, !current.notifyCommand.isEmpty else { return }
            run(for: current)
        }
    }

    /// Commands running now (for tests and health).
    var runningCount: Int { state.withLock { $0.running.count } }
}

/// Watches child processes with one thread for all of them: each child's `pidfd` is
/// polled, the child is reaped when it exits and killed (SIGKILL) when its time is up.
/// No thread waits for any one child.
final class ProcessSupervisor: @unchecked Sendable {
    private struct Child {
        let pid: pid_t
        let pidfd: Int32
        let deadline: Date
        var killed = false
        let done: @Sendable (Int32, Bool) -> Void
    }

    private let children = Mutex<[pid_t: Child]>([:])
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
        var ends: [Int32] = [0, 0]
        _ = pipe(&ends)
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
        }
        wakeRead = ends[0]
        wakeWrite = ends[1]
        let thread = Thread { [self] in loop() }
        thread.name = "ferry-notify-supervisor"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Watches `pid`; `done(status, timedOut)` is called once it ended (status as a shell
    /// reports it: the exit code, or 128 + the signal).
    func watch(_ pid: pid_t, timeout: Double, done: @escaping @Sendable (Int32, Bool) -> Void) throws(FerryError) {
        let fd = ferry_pidfd_open(pid)
        guard fd >= 0 else {
            let code = errno
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            throw FerryError(code: .localFileError, context: .notification, message: "cannot watch the notify command (pid \(pid)): \(String(cString: strerror(code)))")
        }
        children.withLock { $0[pid] = Child(pid: pid, pidfd: fd, deadline: Date().addingTimeInterval(timeout), done: done) }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func loop() {
        while true {
            let snapshot = children.withLock { $0 }
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            var pids: [pid_t] = []
            var next = Date().addingTimeInterval(60)
            for child in snapshot.values {
                fds.append(pollfd(fd: child.pidfd, events: Int16(POLLIN), revents: 0))
                pids.append(child.pid)
                if !child.killed { next = min(next, child.deadline) }
            }
            let timeout = Int32(max(0, min(60_000, next.timeIntervalSinceNow * 1000)))
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno != EINTR { Thread.sleep(forTimeInterval: 0.1) }
            if fds[0].revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 64)
                while read(wakeRead, &buffer, buffer.count) > 0 {}
            }
            for (offset, pid) in pids.enumerated() where fds[offset + 1].revents != 0 {
                reap(pid)
            }
            let now = Date()
            let overdue = children.withLock { table -> [pid_t] in
                var list: [pid_t] = []
                for (pid, child) in table where !child.killed && child.deadline <= now {
                    table[pid]?.killed = true
                    list.append(pid)
                }
                return list
            }
            for pid in overdue {
                logger.warning("notify command ran out of time; killing it", metadata: ["pid": "\(pid)"])
                // Its process group: what it started goes too (the child leads its own group).
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
        }
    }

    private func reap(_ pid: pid_t) {
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        // ECHILD: something else reaped it; the pidfd stays readable, so forget the child now
        // (its status is unknown: counted as a failure) rather than poll it forever.
        if result < 0 && errno == ECHILD { raw = 0x7f00 }
        else if result != pid { return }
        guard let child = children.withLock({ $0.removeValue(forKey: pid) }) else { return }
        close(child.pidfd)
        let status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        child.done(status, child.killed)
    }
}
