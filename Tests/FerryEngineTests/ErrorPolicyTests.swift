import FerryCore
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import Testing

/// Error-policy plugins, loaded with dlopen, deciding what a failure does.
@Suite(.serialized)
final class ErrorPolicyTests {
    var h: EngineHarness

    init() throws {
        h = try EngineHarness { $0.plugins = [PluginSpec(reference: "range-fallback")] }
    }

    deinit { h.tearDown() }

    /// A background job suspended part way; the server then ignores ranges (with `faults`).
    private func resumeWithoutRanges(_ data: [UInt8], faults: [Fault], fromTheStart: [Fault] = []) throws -> JobID {
        h.server.setFile("/r.bin", data: data)
        h.server.hold("/r.bin", afterBytes: 300_000)
        for fault in fromTheStart { h.server.addFault("/r.bin", fault, times: nil) }
        let id = try h.startJob([("/r.bin", "r.bin")], priority: .normal)
        _ = try h.waitForProgress(id, atLeast: 300_000, timeout: 60)
        _ = try h.engine.suspend(id)
        h.server.release("/r.bin")
        for fault in faults { h.server.addFault("/r.bin", fault, times: nil) }
        _ = try h.engine.resume(id)
        return id
    }

    @Test func rangeFallbackSwitchesToForegroundAndCompletes() throws {
        let data = testBytes(5 << 20, seed: 140)
        let id = try resumeWithoutRanges(data, faults: [.ignoreRanges])
        let done = try h.wait(id, for: .transferred, timeout: 30)
        #expect(done.priority == .foreground)
        #expect(done.history.count == 1)
        #expect(done.history.first?.contains("INSUFFICIENT_RANGE_SUPPORT: range-fallback: set priority foreground, resume") ?? false, "\(done.history)")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("r.bin"), data))
    }

    @Test func unknownSizeLeavesTheErrorStanding() throws {
        // Dynamic content: no server answer ever tells the size.
        let id = try resumeWithoutRanges(testBytes(2 << 20, seed: 141), faults: [.ignoreRanges], fromTheStart: [.noContentLength])
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .insufficientRangeSupport)
        #expect(failed.lastError?.remoteSize == nil)
        #expect(try waitUntil(timeout: 30) { try h.engine.job(id).history.contains { $0.contains("no policy acted") } })
        #expect(try h.engine.job(id).state == .error)
        #expect(try h.engine.job(id).priority == .normal)
    }

    @Test func aFileOverTwoGibibytesLeavesTheErrorStanding() throws {
        let id = try resumeWithoutRanges(testBytes(2 << 20, seed: 142), faults: [.ignoreRanges, .reportSize(3 << 30)])
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.remoteSize == 3 << 30)
        #expect(try waitUntil(timeout: 30) { try h.engine.job(id).history.contains { $0.contains("no policy acted") } })
        #expect(try h.engine.job(id).priority == .normal)
        #expect(!exists(h.destination("r.bin")))
    }

    @Test func aPolicyThatAlwaysResumesIsStoppedByThePerJobBound() throws {
        h.tearDown()
        let fixtures = try TemporaryDirectory("ferry-policy")
        defer { fixtures.remove() }
        let path = try PluginBuilder.build("Tests/Fixtures/plugins/always_resume.c", name: "ferry-always-resume", in: fixtures.path)
        h = try EngineHarness {
            $0.plugins = [PluginSpec(reference: path)]
            $0.maxPolicyResumes = 3
        }
        let id = try h.startJob([("/missing.bin", "missing.bin")])
        #expect(try waitUntil(timeout: 60) { try h.engine.job(id).history.contains { $0.contains("the limit") } }, "\((try? h.engine.job(id).history) ?? [])")
        let job = try h.engine.job(id)
        #expect(job.state == .error, "after the bound the error stands")
        #expect(job.policyResumes == 3)
        #expect(h.server.requests(for: "/missing.bin").count == 4, "the first try and three automatic resumes")
    }

    @Test func aPolicyAskingToBeCalledLaterIsCalledAgain() throws {
        h.tearDown()
        let fixtures = try TemporaryDirectory("ferry-policy")
        defer { fixtures.remove() }
        let path = try PluginBuilder.build("Tests/Fixtures/plugins/always_resume.c", name: "ferry-later", in: fixtures.path, defines: ["RETRY_FIRST"])
        h = try EngineHarness {
            $0.plugins = [PluginSpec(reference: path)]
            $0.maxPolicyResumes = 1
        }
        let id = try h.startJob([("/missing.bin", "missing.bin")])
        #expect(try waitUntil(timeout: 60) { try h.engine.job(id).policyResumes == 1 }, "called again after RETRY_LATER, then it resumed")
        // The decision is recorded before the resumed job's request goes out: wait for it.
        #expect(waitUntil(timeout: 60) { h.server.requests(for: "/missing.bin").count >= 2 }, "the resumed job asked again")
    }

    /// The C example of docs/error-handling.md, built with plain cc: it reads the source's
    /// health through ABI 1.1 and postpones the retry once the source failed twice in a row.
    @Test func acPolicyReadsSourceHealthAndPostponesTheRetry() throws {
        h.tearDown()
        let fixtures = try TemporaryDirectory("ferry-policy")
        defer { fixtures.remove() }
        let path = try PluginBuilder.build("Plugins/example-c/slow_down.c", name: "ferry-slow-down", in: fixtures.path)
        h = try EngineHarness {
            $0.plugins = [PluginSpec(reference: path, settings: [(key: "after_failures", value: "2"), (key: "delay_sec", value: "30")])]
            $0.defaultMinimumRetryDelay = 1
        }
        h.server.setFile("/busy.bin", data: testBytes(1000, seed: 150))
        h.server.addFault("/busy.bin", .status(503), times: nil)
        let id = try h.startJob([("/busy.bin", "busy.bin")])
        #expect(try waitUntil(timeout: 15) { try h.engine.job(id).history.contains { $0.contains("slow-down: retry in 30 s") } }, "\((try? h.engine.job(id).history) ?? [])")
        let job = try h.engine.job(id)
        #expect(job.state == .transientError)
        #expect(job.history.first?.contains("HTTP_ERROR_503: no policy acted (slow-down)") ?? false, "one failure is under the threshold: \(job.history)")
        #expect(try #require(job.retryAt).timeIntervalSinceNow > 25, "the retry was postponed to 30 s")
        #expect(h.server.requests(for: "/busy.bin").count == 2, "the first retry came after 1 s, the next waits")
        #expect(!exists(h.destination("busy.bin")))
    }
}
