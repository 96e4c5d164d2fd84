import FerryCore
import FerryEngine
import FerryTestSupport
import Foundation
import Testing

/// Priorities, time slices and parallel files, observed on a real engine.
@Suite(.serialized)
final class SchedulingTests {
    let h: EngineHarness

    init() throws {
        h = try EngineHarness { configuration in
            configuration.maxActiveBackgroundJobs = 1
            configuration.timeSliceSeconds = 0.5
        }
    }

    deinit { h.tearDown() }

    private func slowFile(_ path: String, bytes: Int = 4 << 20, rate: Int = 256 << 10) {
        h.server.setFile(path, data: testBytes(bytes, seed: UInt64(path.count)))
        h.server.setRate(path, bytesPerSecond: rate)
    }

    @Test func higherBackgroundPriorityPreemptsALowerOneAndForegroundRunsAlongside() throws {
        slowFile("/normal.bin")
        slowFile("/high.bin")
        slowFile("/fg.bin")
        let normal = try h.startJob([("/normal.bin", "normal.bin")], priority: .normal)
        _ = try h.waitForProgress(normal, atLeast: 50_000)

        let high = try h.startJob([("/high.bin", "high.bin")], priority: .high)
        _ = try h.waitForProgress(high, atLeast: 50_000)
        #expect(try h.engine.job(normal).state == .queued, "a lower level gets no time while a higher one runs")

        let foreground = try h.startJob([("/fg.bin", "fg.bin")], priority: .foreground)
        _ = try h.waitForProgress(foreground, atLeast: 50_000)
        #expect(try h.engine.job(high).state == .transferring, "foreground jobs run alongside the background one")
        #expect(try h.engine.job(normal).state == .queued)

        // When the higher job is suspended, the lower one gets its turn back and resumes where it was.
        let kept = try h.engine.job(normal).files[0].bytesTransferred
        _ = try h.engine.suspend(high)
        let resumed = try h.waitForProgress(normal, atLeast: kept + 50_000)
        #expect(resumed.state.isActive)
        let ranged = h.server.requests(for: "/normal.bin").compactMap(\.rangeStart)
        #expect(ranged.contains(Int64(kept)), "the preempted job continued from its bytes: \(ranged) vs \(kept)")
    }

    @Test func jobsOfOneLevelShareTimeRoundRobin() throws {
        slowFile("/one.bin")
        slowFile("/two.bin")
        let one = try h.startJob([("/one.bin", "one.bin")])
        let two = try h.startJob([("/two.bin", "two.bin")])
        // With one background slot and a 0.5 s slice, both must make progress within a few slices.
        #expect(try waitUntil(timeout: 10) {
            try h.engine.job(one).progress.bytesTransferred > 100_000 && h.engine.job(two).progress.bytesTransferred > 100_000
        }, "both jobs of the same level got time")
    }

    @Test func filesOfOneJobTransferInParallel() throws {
        var files: [(String, String)] = []
        for index in 0..<4 {
            h.server.setFile("/p\(index).bin", data: testBytes(1 << 20, seed: UInt64(index + 1)))
            // Each body stops a quarter of the way in until the test lets it go on: a file
            // can only be seen in flight alongside the others if it started before they ended.
            h.server.hold("/p\(index).bin", afterBytes: 256 << 10)
            files.append(("/p\(index).bin", "p\(index).bin"))
        }
        let id = try h.startJob(files)
        // All four answers held at once, and the job shows each file under way (none
        // finished, each with bytes): they run side by side.
        #expect(h.server.waitUntilHeld(count: 4), "the job's files transfer in parallel: \(h.server.heldAnswers()) held at once")
        #expect(try waitUntil(timeout: 60) {
            try h.engine.job(id).files.allSatisfy { $0.bytesTransferred == 256 << 10 && !$0.isTransferred }
        }, "each file is under way: \((try? h.engine.job(id).files.map(\.bytesTransferred)) ?? [])")
        for index in 0..<4 { h.server.release("/p\(index).bin") }
        try h.wait(id, for: .transferred, timeout: 60)
    }
}

/// BITS' MaxDownloadTime: only time spent connecting or transferring counts.
@Suite(.serialized)
struct MaxDownloadTimeTests {
    @Test func aJobTransferringLongerThanTheMaximumFails() throws {
        let h = try EngineHarness { $0.maxDownloadTimeSeconds = 1 }
        defer { h.tearDown() }
        h.server.setFile("/slow.bin", data: testBytes(1 << 20, seed: 99))
        h.server.setRate("/slow.bin", bytesPerSecond: 64 << 10)
        let id = try h.startJob([("/slow.bin", "slow.bin")])
        let failed = try h.wait(id, for: .error, timeout: 10)
        #expect(failed.lastError?.code == .maxDownloadTimeout)
        #expect(!(failed.lastError?.isTransient ?? true))
        #expect(failed.activeSeconds >= 1)
    }
}
