import FerryCore
import FerryEngine
import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// A job is made in one step: the first anyone sees of it (an observer, a listing, the
/// store) already has its settings and files; a refused file or setting leaves nothing.
@Suite(.serialized)
final class JobCreationTests {
    let h: EngineHarness

    init() throws { h = try EngineHarness() }
    deinit { h.tearDown() }

    /// Every job as observers first saw it.
    final class FirstSight: Sendable {
        private let seen = Mutex<[JobID: Job]>([:])
        func record(_ event: EngineEvent) {
            guard case .jobChanged(let job) = event else { return }
            seen.withLock { if $0[job.id] == nil { $0[job.id] = job } }
        }
        var jobs: [JobID: Job] { seen.withLock { $0 } }
    }

    @Test func theFirstSightOfANewJobHasItsSettingsAndFiles() throws {
        let sight = FirstSight()
        h.engine.addObserver { sight.record($0) }
        let job = try h.engine.createJob(NewJob(displayName: "whole", owner: getuid(), priority: .low,
                                                settings: [.setMinimumRetryDelay(42), .setCustomHeaders(["X-Set: 1"]), .setProperties(["channel": "beta"])],
                                                files: [NewFile(remoteURL: h.url("/a"), localPath: h.destination("a")),
                                                        NewFile(remoteURL: h.url("/b"), localPath: h.destination("b"))]))
        #expect(job.files.count == 2)
        let first = try #require(sight.jobs[job.id], "observers heard of the job")
        #expect(first.files.map(\.localPath) == [h.destination("a"), h.destination("b")])
        #expect(first.minimumRetryDelay == 42)
        #expect(first.customHeaders == ["X-Set: 1"])
        #expect(first.properties == ["channel": "beta"])
        #expect(first.priority == .low)
        // The store holds it whole too: a restart finds the same job.
        try h.restartEngine()
        let stored = try h.engine.job(job.id)
        #expect(stored.files.count == 2)
        #expect(stored.minimumRetryDelay == 42)
    }

    @Test func aRefusedFileOrSettingLeavesNoJobBehind() throws {
        let sight = FirstSight()
        h.engine.addObserver { sight.record($0) }
        let badFile = NewJob(displayName: "half", owner: getuid(), files: [
            NewFile(remoteURL: h.url("/a"), localPath: h.destination("a")),
            NewFile(remoteURL: h.url("/b"), localPath: "/nonexistent-ferry-dir/b"),
        ])
        if let error = #expect(throws: (any Error).self, performing: { try h.engine.createJob(badFile) }) {
            #expect((error as? FerryError)?.message.hasPrefix("file 1: ") ?? false, "\(error)")
        }
        let badSetting = NewJob(displayName: "half", owner: getuid(), settings: [.setCustomHeaders(["no colon"])],
                                files: [NewFile(remoteURL: h.url("/a"), localPath: h.destination("a"))])
        #expect(throws: (any Error).self) { try h.engine.createJob(badSetting) }
        let notASetting = NewJob(displayName: "half", owner: getuid(), settings: [.resume])
        #expect(throws: (any Error).self) { try h.engine.createJob(notASetting) }
        #expect(h.engine.allJobs().count == 0)
        #expect(sight.jobs.isEmpty, "nobody saw a job: \(sight.jobs.values.map(\.displayName))")
        try h.restartEngine()
        #expect(h.engine.allJobs().count == 0, "nothing was stored")
    }

    @Test func anUpdateIsAllOrNothing() throws {
        let job = try h.engine.createJob(displayName: "update", owner: getuid())
        #expect(throws: (any Error).self) { try h.engine.update(job.id, [.setDescription("changed"), .setCustomHeaders(["bad header"])]) }
        #expect(try h.engine.job(job.id).description == "", "the first setting was not applied either")
        let updated = try h.engine.update(job.id, [.setDescription("changed"), .setPriority(.high)])
        #expect(updated.description == "changed")
        #expect(updated.priority == .high)
    }
}
