import Foundation

/// A job as the scheduler sees it: who it is, how urgent, and where it stands.
public struct SchedulerJob: Sendable, Equatable {
    public var id: JobID
    public var priority: JobPriority
    public var state: JobState

    public init(id: JobID, priority: JobPriority, state: JobState) {
        self.id = id
        self.priority = priority
        self.state = state
    }

    public init(_ job: Job) {
        self.init(id: job.id, priority: job.priority, state: job.state)
    }
}

/// What the scheduler asks the engine to do, in order.
public enum SchedulerAction: Sendable, Equatable {
    /// The job's time slice ended, or it lost its place to a job of higher priority: it goes
    /// back to `QUEUED` (``JobEvent/preempted``), which sends it to the back of the queue.
    case preempt(JobID)
    /// The job's turn: `QUEUED` → `CONNECTING` (``JobEvent/scheduled``); its time slice starts.
    case schedule(JobID)
    /// The job runs: start as many of its files as the connection caps allow.
    case startFiles(JobID)
}

/// BITS' queue manager, as a value: which jobs run, in what order, and for how long.
///
/// Every foreground job runs. Of the background jobs, only the highest priority level that
/// has active jobs runs, at most ``maxActiveBackgroundJobs`` of them, round-robin: a job
/// whose time slice ended yields to a waiting job of its level, and a job that is not chosen
/// any more (a higher level appeared) is preempted.
///
/// The scheduler holds the queue order and the time slices, nothing else; the engine tells
/// it when a job is queued (``enqueue(_:state:)``) or gone (``forget(_:)``), and carries out
/// what ``tick(jobs:now:)`` returns. No I/O, no clock of its own.
public struct Scheduler: Sendable {
    /// How many background jobs of the top level run at once (at least 1).
    public var maxActiveBackgroundJobs: Int
    /// How long a background job runs before yielding to a waiting job of its level.
    public var timeSliceSeconds: Double

    /// Round-robin order: a job gets a higher number each time it is (re)queued.
    private var queueOrder: [JobID: UInt64] = [:]
    private var nextQueueNumber: UInt64 = 0
    private var sliceStart: [JobID: Date] = [:]

    public init(maxActiveBackgroundJobs: Int, timeSliceSeconds: Double) {
        self.maxActiveBackgroundJobs = maxActiveBackgroundJobs
        self.timeSliceSeconds = timeSliceSeconds
    }

    /// The job was queued (``JobAction/enqueue``): a `QUEUED` job, or one the scheduler does
    /// not know yet, goes to the back; a job already running keeps its place and its slice.
    public mutating func enqueue(_ id: JobID, state: JobState) {
        guard state == .queued || queueOrder[id] == nil else { return }
        nextQueueNumber += 1
        queueOrder[id] = nextQueueNumber
        sliceStart[id] = nil
    }

    /// The job is final or gone.
    public mutating func forget(_ id: JobID) {
        queueOrder[id] = nil
        sliceStart[id] = nil
    }

    /// The job's place in the queue (lower runs first); `nil` for a job never queued.
    public func position(of id: JobID) -> UInt64? { queueOrder[id] }

    /// Decides which jobs run now.
    /// - Parameters:
    ///   - jobs: the jobs; only active ones (`QUEUED`, `CONNECTING`, `TRANSFERRING`) count.
    ///   - now: the current time, for time slices.
    /// - Returns: first every preemption, then for each job that runs, in queue order
    ///   (foreground first), ``SchedulerAction/schedule(_:)`` if it was waiting and
    ///   ``SchedulerAction/startFiles(_:)``.
    public mutating func tick(jobs: some Sequence<SchedulerJob>, now: Date) -> [SchedulerAction] {
        var active: [JobID: SchedulerJob] = [:]
        for job in jobs where job.state.isActive { active[job.id] = job }
        // A preempted job goes to the back of the queue when the engine carries it out
        // (``enqueue(_:state:)``); this tick already sees it there.
        var order = queueOrder
        var next = nextQueueNumber
        var actions: [SchedulerAction] = []
        func preempt(_ id: JobID) {
            actions.append(.preempt(id))
            active[id]?.state = .queued
            next += 1
            order[id] = next
        }
        func inQueueOrder(_ list: [SchedulerJob]) -> [SchedulerJob] {
            list.sorted { (order[$0.id] ?? 0, $0.id) < (order[$1.id] ?? 0, $1.id) }
        }

        var chosen = inQueueOrder(active.values.filter { $0.priority == .foreground }).map(\.id)
        let background = active.values.filter { $0.priority.isBackground }
        if let topRank = background.map(\.priority.rank).min() {
            var level = inQueueOrder(background.filter { $0.priority.rank == topRank })
            let slots = max(1, maxActiveBackgroundJobs)
            if level.count > slots {
                for job in level.prefix(slots) where job.state != .queued {
                    if let start = sliceStart[job.id], now.timeIntervalSince(start) >= timeSliceSeconds { preempt(job.id) }
                }
                level = inQueueOrder(level.compactMap { active[$0.id] })
            }
            chosen += level.prefix(slots).map(\.id)
        }

        let chosenSet = Set(chosen)
        for job in inQueueOrder(Array(active.values)) where (job.state == .connecting || job.state == .transferring) && !chosenSet.contains(job.id) {
            preempt(job.id)
        }
        for id in chosen {
            if active[id]?.state == .queued {
                actions.append(.schedule(id))
                sliceStart[id] = now
            }
            actions.append(.startFiles(id))
        }
        return actions
    }
}
