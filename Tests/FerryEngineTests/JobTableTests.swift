@testable import FerryCore
@testable import FerryEngine
import Foundation
import Testing

/// The lists the engine's loop reads every turn follow the jobs as they change, with no I/O.
struct JobTableTests {
    private func job(owner: UInt32, _ state: JobState) -> Job {
        var job = Job(displayName: "t", owner: owner, priority: .normal, createdAt: Date())
        job.state = state
        return job
    }

    @Test func waitingActiveAndOwnerCountsFollowEveryChange() {
        var table = JobTable()
        let a = job(owner: 1, .queued), b = job(owner: 1, .transientError), c = job(owner: 2, .suspended)
        table[a.id] = a
        table[b.id] = b
        table[c.id] = c
        #expect(table.active == [a.id])
        #expect(table.waiting == [b.id])
        #expect(table.count(ownedBy: 1) == 2 && table.count(ownedBy: 2) == 1 && table.count(ownedBy: 3) == 0)

        // A job changing state moves between the lists; its owner's count stays.
        var moved = a
        moved.state = .transientError
        table[a.id] = moved
        #expect(table.active.isEmpty)
        #expect(table.waiting == [a.id, b.id])
        #expect(table.count(ownedBy: 1) == 2)

        // Removed either way, it leaves every list and its owner's count.
        table.removeValue(forKey: a.id)
        table[b.id] = nil
        #expect(table.waiting.isEmpty)
        #expect(table.count(ownedBy: 1) == 0)
        #expect(table.count == 1)

        // Built from a dictionary (recovery), the lists are the same as set one by one.
        let rebuilt = JobTable([a.id: a, b.id: b, c.id: c])
        #expect(rebuilt.active == [a.id] && rebuilt.waiting == [b.id] && rebuilt.count(ownedBy: 1) == 2)
    }
}
