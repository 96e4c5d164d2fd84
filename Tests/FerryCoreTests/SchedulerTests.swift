import FerryCore
import Foundation
import Testing

/// The queue manager's decisions, without a transfer, a socket or a file: which jobs run,
/// in what order, and when a job yields its place.
@Suite("Scheduler")
struct SchedulerTests {
    let start = Date(timeIntervalSince1970: 1_000_000)

    /// A world of jobs the test moves through the scheduler's actions, as the engine would.
    struct World {
        var scheduler: Scheduler
        var jobs: [JobID: SchedulerJob] = [:]
        var added: [JobID] = []

        init(slots: Int = 1, slice: Double = 10) {
            scheduler = Scheduler(maxActiveBackgroundJobs: slots, timeSliceSeconds: slice)
        }

        /// A new job, queued (as `resume` does).
        mutating func add(_ priority: JobPriority) -> JobID {
            let id = JobID()
            jobs[id] = SchedulerJob(id: id, priority: priority, state: .queued)
            scheduler.enqueue(id, state: .queued)
            added.append(id)
            return id
        }

        /// One tick, carried out: preempted jobs go back to the queue, scheduled ones connect.
        mutating func tick(at now: Date) -> [SchedulerAction] {
            let actions = scheduler.tick(jobs: Array(jobs.values), now: now)
            for action in actions {
                switch action {
                case .preempt(let id):
                    jobs[id]?.state = .queued
                    scheduler.enqueue(id, state: .queued)
                case .schedule(let id):
                    jobs[id]?.state = .connecting
                case .startFiles:
                    break
                }
            }
            return actions
        }

        var running: Set<JobID> { Set(jobs.values.filter { $0.state == .connecting || $0.state == .transferring }.map(\.id)) }
    }

    @Test("the first queued background job runs; the next waits its turn")
    func firstComeFirstServed() {
        var world = World()
        let first = world.add(.normal)
        let second = world.add(.normal)
        #expect(world.tick(at: start) == [.schedule(first), .startFiles(first)])
        #expect(world.running == [first])
        #expect(world.tick(at: start.addingTimeInterval(1)) == [.startFiles(first)], "a running job keeps its place")
        #expect(world.jobs[second]?.state == .queued)
    }

    @Test("a job whose slice ended yields to a waiting job of its level, which yields back later")
    func roundRobinWithinALevel() {
        var world = World(slice: 10)
        let first = world.add(.normal)
        let second = world.add(.normal)
        _ = world.tick(at: start)
        #expect(world.tick(at: start.addingTimeInterval(9.9)) == [.startFiles(first)])
        #expect(world.tick(at: start.addingTimeInterval(10)) == [.preempt(first), .schedule(second), .startFiles(second)])
        #expect(world.running == [second])
        #expect(world.tick(at: start.addingTimeInterval(20)) == [.preempt(second), .schedule(first), .startFiles(first)])
    }

    @Test("a job alone in its level keeps running past its slice")
    func aLoneJobIsNotPreempted() {
        var world = World(slice: 1)
        let only = world.add(.low)
        _ = world.tick(at: start)
        #expect(world.tick(at: start.addingTimeInterval(60)) == [.startFiles(only)])
    }

    @Test("a higher background level preempts a lower one; foreground runs beside both")
    func priorities() {
        var world = World()
        let low = world.add(.low)
        _ = world.tick(at: start)
        #expect(world.running == [low])
        let high = world.add(.high)
        let foreground = world.add(.foreground)
        let actions = world.tick(at: start.addingTimeInterval(1))
        #expect(actions == [.preempt(low), .schedule(foreground), .startFiles(foreground), .schedule(high), .startFiles(high)])
        #expect(world.running == [high, foreground])
        // The high job ends: the low one comes back.
        world.jobs[high] = nil
        world.scheduler.forget(high)
        #expect(world.tick(at: start.addingTimeInterval(2)) == [.startFiles(foreground), .schedule(low), .startFiles(low)])
    }

    @Test("several background slots", arguments: [1, 2, 3])
    func slots(_ slots: Int) {
        var world = World(slots: slots)
        for _ in 0..<4 { _ = world.add(.normal) }
        _ = world.tick(at: start)
        #expect(world.running == Set(world.added.prefix(slots)), "the first \(slots) in queue order")
    }

    @Test("jobs that are not active are not the scheduler's concern")
    func inactiveJobsAreIgnored() {
        var world = World()
        let suspended = world.add(.normal)
        world.jobs[suspended]?.state = .suspended
        let queued = world.add(.normal)
        #expect(world.tick(at: start) == [.schedule(queued), .startFiles(queued)])
    }

    @Test("enqueue of a running job keeps its place and slice; a queued job goes to the back")
    func enqueueRules() {
        var scheduler = Scheduler(maxActiveBackgroundJobs: 1, timeSliceSeconds: 10)
        let a = JobID(), b = JobID()
        scheduler.enqueue(a, state: .queued)
        scheduler.enqueue(b, state: .queued)
        let before = scheduler.position(of: a)
        scheduler.enqueue(a, state: .transferring)
        #expect(scheduler.position(of: a) == before)
        scheduler.enqueue(a, state: .queued)
        #expect(scheduler.position(of: a)! > scheduler.position(of: b)!)
        scheduler.forget(a)
        #expect(scheduler.position(of: a) == nil)
    }
}
