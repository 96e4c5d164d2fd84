import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// What the agent shows is what a crash leaves: a job reported TRANSFERRED is TRANSFERRED
/// again after `kill -9`, so a pipeline that completes on seeing it is never refused.
@Suite(.serialized)
final class DurabilityTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        try h.start()
    }

    deinit { h.tearDown() }

    @Test func transferredIsInTheStoreBeforeAnyoneSeesIt() throws {
        for round in 0..<4 {
            // A large file first: the last flush of its bytes takes a while, which is when the
            // state and the store could disagree.
            let large = testBytes(48 << 20, seed: UInt64(round + 1000))
            h.server.setFile("/d\(round)/large", data: large)
            var files = [NewFileDocument(url: h.url("/d\(round)/large"), path: h.destination("d\(round)-large"))]
            for index in 0..<20 {
                let bytes = testBytes(64 << 10, seed: UInt64(round * 100 + index + 1))
                h.server.setFile("/d\(round)/\(index)", data: bytes)
                files.append(NewFileDocument(url: h.url("/d\(round)/\(index)"), path: h.destination("d\(round)-\(index)"),
                                             properties: ["size": "\(bytes.count)"]))
            }
            let job = try h.client.createJob(CreateJobRequest(displayName: "durable \(round)", files: files))
            _ = try h.client.perform("resume", on: job.id)
            // Kill the agent the moment it says TRANSFERRED.
            #expect(waitUntil(timeout: 30) { (try? self.h.client.jobSummary(job.id))?.state.rawValue == "TRANSFERRED" })
            h.stop(SIGKILL)
            try h.start()
            let back = try h.client.jobSummary(job.id)
            #expect(back.state.rawValue == "TRANSFERRED", "round \(round): what was shown survived the crash")
            #expect(back.progress.filesTransferred == 21)
            let completed = try h.client.perform("complete", on: job.id, includingFiles: false)
            #expect(completed.state.rawValue == "ACKNOWLEDGED", "round \(round)")
        }
    }
}
