import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The scenarios in which an error policy or a validator decides, run as a new user runs them:
/// the real `ferry transfer`, in its own process (`--no-agent`), against a loopback server.
/// The same scenarios run through a real `ferryd` in FerryAgentTests (PolicyScenarioAgentTests).
@Suite(.serialized)
final class PolicyScenarioTests {
    let directory: TemporaryDirectory
    let server: FaultServer
    let downloads: String

    init() throws {
        directory = try TemporaryDirectory("ferry-policies")
        downloads = try directory.subdirectory("downloads")
        server = try FaultServer()
    }

    deinit {
        server.stop()
        directory.remove()
    }

    private func transfer(_ scenario: PolicyScenario) throws -> (status: Int32, stdout: String, stderr: String) {
        try ChildProcess.run("ferry", ["transfer", "--no-agent", "--state-dir", directory.file("state")] + scenario.arguments,
                             workingDirectory: downloads, timeout: 120)
    }

    private func hiddenTemporaries() -> [String] {
        directoryEntries(downloads).filter { $0.hasPrefix(".") && $0.hasSuffix(".part") }
    }

    @Test func rangeFallbackAfterADroppedFirstResponse() throws {
        let scenario = PolicyScenario.rangeFallback(server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fileHolds(downloads + "/" + scenario.destination, scenario.expected!), "byte-identical after the fallback")
        let requests = server.requests(for: "/fallback.bin")
        #expect(requests.contains { $0.rangeStart != nil }, "the resume asked for a range, which the server ignored")
        #expect(requests.count >= 3, "dropped, refused range, then the whole file in the foreground")
        #expect(hiddenTemporaries() == [])
    }

    @Test func mirrorFailoverAfterACorruptCopy() throws {
        let scenario = try PolicyScenario.mirrorAfterCorruptCopy(server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fileHolds(downloads + "/" + scenario.destination, scenario.expected!), "byte-identical from mirror B")
        #expect(!server.requests(for: "/a/corrupt.bin").isEmpty, "A was tried first")
        #expect(!server.requests(for: "/b/corrupt.bin").isEmpty, "B was asked after A's copy failed")
        #expect(hiddenTemporaries() == [])
    }

    @Test func mirrorFailoverAfterA404() throws {
        let scenario = PolicyScenario.mirrorAfter404(server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fileHolds(downloads + "/" + scenario.destination, scenario.expected!))
        #expect(!server.requests(for: "/b/missing.bin").isEmpty, "B was asked after A's 404")
    }

    @Test func backoffHonoursRetryAfter() throws {
        let scenario = PolicyScenario.retryAfter(server)
        let result = try transfer(scenario)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fileHolds(downloads + "/" + scenario.destination, scenario.expected!))
        let requests = server.requests(for: "/busy.bin")
        #expect(requests.count == 2, "one 503, then the file")
        if requests.count == 2 {
            let gap = requests[1].receivedAt.timeIntervalSince(requests[0].receivedAt)
            #expect(gap >= 1.9, "no request before Retry-After (2 s), though the minimum delay is 1 s")
        }
        #expect(result.stderr.contains("HTTP_ERROR_503"), "the wait names its cause: \(result.stderr)")
    }

    @Test func aValidationFailureLeavesNothingVisible() throws {
        let scenario = try PolicyScenario.validationFailure(server)
        let old = Array("the file that was there before\n".utf8)
        FileManager.default.createFile(atPath: downloads + "/" + scenario.destination, contents: Data(old))
        let result = try transfer(scenario)
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("VALIDATION_FAILED (validation)"), "\(result.stderr)")
        #expect(result.stderr.contains("sha256 mismatch"), "\(result.stderr)")
        #expect(fileHolds(downloads + "/" + scenario.destination, old), "the file in place is untouched")
        #expect(hiddenTemporaries() == [], "the rejected bytes are gone")
        #expect(directoryEntries(directory.file("state/transfers")).filter { $0.hasSuffix(".db") } == [], "a failed transfer keeps no store")
    }
}
