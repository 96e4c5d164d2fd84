import FerryCore
import FerryEngine
import FerryTestSupport
import Foundation
import Synchronization
import XCTest

/// A job is made in one step: the first anyone sees of it (an observer, a listing, the
/// store) already has its settings and files; a refused file or setting leaves nothing.
final class JobCreationTests: XCTestCase {
    var h: EngineHarness!

    override func setUpWithError() throws { h = try EngineHarness() }
    override func tearDown() { h.tearDown() }

    /// Every job as observers first saw it.
    final class FirstSight: Sendable {
        private let seen = Mutex<[JobID: Job]>([:])
        func record(_ event: EngineEvent) {
            guard case .jobChanged(let job) = event else { return }
            seen.withLock { if $0[job.id] == nil { $0[job.id] = job } }
        }
        var jobs: [JobID: Job] { seen.withLock { $0 } }
    }

    func testTheFirstSightOfANewJobHasItsSettingsAndFiles() throws {
        let sight = FirstSight()
        h.engine.addObserver { sight.record($0) }
        let job = try h.engine.createJob(NewJob(displayName: "whole", owner: getuid(), priority: .low,
                                                settings: [.setMinimumRetryDelay(42), .setCustomHeaders(["X-Set: 1"]), .setProperties(["channel": "beta"])],
                                                files: [NewFile(remoteURL: h.url("/a"), localPath: h.destination("a")),
                                                        NewFile(remoteURL: h.url("/b"), localPath: h.destination("b"))]))
        XCTAssertEqual(job.files.count, 2)
        let first = try XCTUnwrap(sight.jobs[job.id], "observers heard of the job")
        XCTAssertEqual(first.files.map(\.localPath), [h.destination("a"), h.destination("b")])
        XCTAssertEqual(first.minimumRetryDelay, 42)
        XCTAssertEqual(first.customHeaders, ["X-Set: 1"])
        XCTAssertEqual(first.properties, ["channel": "beta"])
        XCTAssertEqual(first.priority, .low)
        // The store holds it whole too: a restart finds the same job.
        try h.restartEngine()
        let stored = try h.engine.job(job.id)
        XCTAssertEqual(stored.files.count, 2)
        XCTAssertEqual(stored.minimumRetryDelay, 42)
    }

    func testARefusedFileOrSettingLeavesNoJobBehind() throws {
        let sight = FirstSight()
        h.engine.addObserver { sight.record($0) }
        let badFile = NewJob(displayName: "half", owner: getuid(), files: [
            NewFile(remoteURL: h.url("/a"), localPath: h.destination("a")),
            NewFile(remoteURL: h.url("/b"), localPath: "/nonexistent-ferry-dir/b"),
        ])
        XCTAssertThrowsError(try h.engine.createJob(badFile)) { error in
            XCTAssertTrue((error as? FerryError)?.message.hasPrefix("file 1: ") ?? false, "\(error)")
        }
        let badSetting = NewJob(displayName: "half", owner: getuid(), settings: [.setCustomHeaders(["no colon"])],
                                files: [NewFile(remoteURL: h.url("/a"), localPath: h.destination("a"))])
        XCTAssertThrowsError(try h.engine.createJob(badSetting))
        let notASetting = NewJob(displayName: "half", owner: getuid(), settings: [.resume])
        XCTAssertThrowsError(try h.engine.createJob(notASetting))
        XCTAssertEqual(h.engine.allJobs().count, 0)
        XCTAssertTrue(sight.jobs.isEmpty, "nobody saw a job: \(sight.jobs.values.map(\.displayName))")
        try h.restartEngine()
        XCTAssertEqual(h.engine.allJobs().count, 0, "nothing was stored")
    }

    func testAnUpdateIsAllOrNothing() throws {
        let job = try h.engine.createJob(displayName: "update", owner: getuid())
        XCTAssertThrowsError(try h.engine.update(job.id, [.setDescription("changed"), .setCustomHeaders(["bad header"])]))
        XCTAssertEqual(try h.engine.job(job.id).description, "", "the first setting was not applied either")
        let updated = try h.engine.update(job.id, [.setDescription("changed"), .setPriority(.high)])
        XCTAssertEqual(updated.description, "changed")
        XCTAssertEqual(updated.priority, .high)
    }
}
