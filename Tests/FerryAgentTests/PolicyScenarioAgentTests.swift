import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// The scenarios of PolicyScenarioTests (FerryIntegrationTests), run through a real `ferryd`:
/// `ferry transfer --agent` creates the job in the agent and follows it to the end.
@Suite(.serialized)
final class PolicyScenarioAgentTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        try h.start()
    }

    deinit { h.tearDown() }

    private func transfer(_ scenario: PolicyScenario) throws -> (status: Int32, stdout: String, stderr: String) {
        try ChildProcess.run("ferry", ["transfer", "--agent", "--socket", h.socket] + scenario.arguments,
                             workingDirectory: h.downloads, timeout: 120)
    }

    private func hiddenTemporaries() -> [String] {
        directoryEntries(h.downloads).filter { $0.hasPrefix(".") && $0.hasSuffix(".part") }
    }

    @Test func rangeFallbackAfterADroppedFirstResponse() throws {
        let scenario = PolicyScenario.rangeFallback(h.server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr + h.log)")
        #expect(fileHolds(h.destination(scenario.destination), scenario.expected!), "byte-identical after the fallback")
        #expect(h.server.requests(for: "/fallback.bin").contains { $0.rangeStart != nil })
        #expect(h.log.contains("range-fallback"), "the agent's range-fallback policy acted: \(h.log)")
        #expect(hiddenTemporaries() == [])
    }

    @Test func mirrorFailoverAfterACorruptCopy() throws {
        let scenario = try PolicyScenario.mirrorAfterCorruptCopy(h.server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr + h.log)")
        #expect(fileHolds(h.destination(scenario.destination), scenario.expected!), "byte-identical from mirror B")
        #expect(!h.server.requests(for: "/a/corrupt.bin").isEmpty, "A was tried first")
        #expect(!h.server.requests(for: "/b/corrupt.bin").isEmpty, "B was asked after A's copy failed")
    }

    @Test func mirrorFailoverAfterA404() throws {
        let scenario = PolicyScenario.mirrorAfter404(h.server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr + h.log)")
        #expect(fileHolds(h.destination(scenario.destination), scenario.expected!))
        #expect(!h.server.requests(for: "/b/missing.bin").isEmpty, "B was asked after A's 404")
    }

    @Test func backoffHonoursRetryAfter() throws {
        let scenario = PolicyScenario.retryAfter(h.server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr + h.log)")
        #expect(fileHolds(h.destination(scenario.destination), scenario.expected!))
        let requests = h.server.requests(for: "/busy.bin")
        #expect(requests.count == 2, "one 503, then the file")
        if requests.count == 2 {
            #expect(requests[1].receivedAt.timeIntervalSince(requests[0].receivedAt) >= 1.9, "no request before Retry-After (2 s), though the minimum delay is 1 s")
        }
    }

    @Test func aValidationFailureLeavesNothingVisible() throws {
        let scenario = try PolicyScenario.validationFailure(h.server)
        let old = Array("the file that was there before\n".utf8)
        FileManager.default.createFile(atPath: h.destination(scenario.destination), contents: Data(old))
        let result = try transfer(scenario)
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("VALIDATION_FAILED (validation)"), "\(result.stderr)")
        #expect(result.stderr.contains("sha256 mismatch"), "\(result.stderr)")
        #expect(fileHolds(h.destination(scenario.destination), old), "the file in place is untouched")
        #expect(hiddenTemporaries() == [], "the rejected bytes are gone")
        #expect(try h.client.listJobs().filter { !$0.state.isFinal }.count == 0, "the failed job was cancelled in the agent")
    }
}

/// A policy that takes its time (it answers RETRY_LATER first, then acts) must still get its
/// turn: `ferry transfer` waits for the verdict instead of taking ERROR for the end.
@Suite(.serialized)
final class SlowPolicyAgentTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        let plugin = try PluginBuilder.build("Tests/Fixtures/plugins/always_resume.c", name: "retry-first", in: h.directory.path,
                                             defines: ["RETRY_FIRST"])
        try h.writeConfig("""
            plugins:
              - { path: \(plugin), role: error-policy }
            """)
        try h.start()
    }

    deinit { h.tearDown() }

    @Test func transferWaitsForAPolicyThatAsksToBeCalledAgain() throws {
        let data = testBytes(50_000, seed: 906)
        h.server.setFile("/late.bin", data: data)
        h.server.addFault("/late.bin", .status(404), times: 1)
        let result = try ChildProcess.run("ferry", ["transfer", "--agent", "--socket", h.socket, h.url("/late.bin"), "late.bin"],
                                          workingDirectory: h.downloads, timeout: 60)
        #expect(result.status == 0, "\(result.stderr + h.log)")
        #expect(fileHolds(h.destination("late.bin"), data), "the policy resumed the job after its second call")
        #expect(h.server.requests(for: "/late.bin").count == 2)
    }

    @Test func aDecidingJobSaysSoInTheAPIAndInInfoAndSendsNoJobError() throws {
        let data = testBytes(20_000, seed: 907)
        h.server.setFile("/wait.bin", data: data)
        h.server.addFault("/wait.bin", .status(404), times: 1)
        let job = try h.client.createJob(CreateJobRequest(displayName: "deciding", files: [NewFileDocument(url: h.url("/wait.bin"), path: h.destination("wait.bin"))]))
        _ = try h.client.perform("resume", on: job.id)
        // The policy asked to be called again in 5 s: the job is in ERROR, deciding.
        var seen: JobDocument?
        #expect(waitUntil(timeout: 60) {
            seen = try? self.h.client.job(job.id)
            return seen?.state == .error && seen?.deciding == true
        }, "job is \(seen.map { "\($0.state) deciding=\($0.deciding)" } ?? "gone")")
        let info = try h.ferry(["info", job.id])
        #expect(info.stdout.contains("ERROR (error policies deciding)"), "\(info.stdout)")
        h.wait(job.id, for: "TRANSFERRED", timeout: 30)
        // No jobError was ever kept for it: the error was handled before anyone was told.
        final class Kinds: @unchecked Sendable {
            let lock = NSLock()
            var all: [String] = []
            func add(_ kind: String) { lock.withLock { all.append(kind) } }
            var seen: [String] { lock.withLock { all } }
        }
        let received = Kinds()
        let client = h.client
        let id = job.id
        let stream = Thread {
            try? client.events(job: id, pending: true) { event in
                received.add(event.kind)
                return event.kind != "jobTransferred"
            }
        }
        stream.start()
        #expect(waitUntil(timeout: 60) { stream.isFinished })
        let kinds = received.seen
        #expect(kinds.filter { $0 == "jobError" } == [], "\(kinds)")
        #expect(kinds.contains("jobTransferred"), "\(kinds)")
    }
}
