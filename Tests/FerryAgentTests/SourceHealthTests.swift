import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// `GET /v1/sources` and `ferry sources`: what the real ferryd remembers of each origin, and who may see it.
@Suite(.serialized)
final class SourceHealthTests {
    let h: AgentHarness
    /// A second origin, which only fails.
    let failing: FaultServer
    static let user = "ferrytest"

    init() throws {
        h = try AgentHarness()
        failing = try FaultServer()
        try h.start()
    }

    deinit {
        failing.stop()
        h.tearDown()
    }

    /// One file arrives from the harness's server, one fails with 404 from the failing one.
    /// - Returns: the two origins, the healthy one first.
    private func fetchFromBothOrigins() throws -> (healthy: String, failed: String) {
        h.server.setFile("/ok.bin", data: testBytes(70_000, seed: 150))
        let good = try h.client.createJob(CreateJobRequest(displayName: "good", files: [NewFileDocument(url: h.url("/ok.bin"), path: h.destination("ok.bin"))]))
        let bad = try h.client.createJob(CreateJobRequest(displayName: "bad", files: [NewFileDocument(url: failing.baseURL + "/missing", path: h.destination("missing"))]))
        _ = try h.client.perform("resume", on: good.id)
        _ = try h.client.perform("resume", on: bad.id)
        h.wait(good.id, for: "TRANSFERRED")
        h.wait(bad.id, for: "ERROR")
        return (h.server.baseURL, failing.baseURL)
    }

    @Test func sourcesRecordSuccessesAndFailuresAndTheCLIShowsThem() throws {
        let (healthy, failed) = try fetchFromBothOrigins()
        let sources = try h.client.sources()
        #expect(sources.map(\.origin) == [healthy, failed].sorted(), "one entry per origin, by origin")
        let good = try #require(sources.first { $0.origin == healthy })
        #expect(good.successes == 1)
        #expect(good.failures == 0)
        #expect(good.lastSuccess != nil)
        #expect(good.lastFailure == nil)
        #expect(good.bytesPerSecond > 0, "70000 bytes are enough to measure")
        let bad = try #require(sources.first { $0.origin == failed })
        #expect(bad.failures == 1)
        #expect(bad.consecutiveFailures == 1)
        #expect(bad.successes == 0)
        #expect(bad.lastFailure != nil)
        #expect(bad.lastSuccess == nil)

        let raw = try h.curl("GET", "/v1/sources")
        #expect(raw.status == 200, "\(raw.body)")
        #expect(raw.body.hasPrefix(#"{"sources":[{"#), "\(raw.body)")
        #expect(raw.body.contains(#""lastSuccess":"20"#), "times are ISO 8601: \(raw.body)")

        let table = try h.ferry(["sources"])
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(table.stdout)")
        #expect(lines[0].hasPrefix("ORIGIN") && lines[0].contains("FAILURES") && lines[0].hasSuffix("THROUGHPUT"), "\(lines[0])")
        let failedRow = try #require(lines.first { $0.hasPrefix(failed + " ") }, "\(table.stdout)")
        #expect(failedRow.split(separator: " ").prefix(3).map(String.init) == [failed, "1/1", "0"], "\(failedRow)")
        #expect(failedRow.hasSuffix(" -"), "no throughput measured: \(failedRow)")
        let healthyRow = try #require(lines.first { $0.hasPrefix(healthy + " ") }, "\(table.stdout)")
        #expect(healthyRow.split(separator: " ").prefix(3).map(String.init) == [healthy, "0/0", "1"], "\(healthyRow)")
        #expect(healthyRow.hasSuffix("/s"), "\(healthyRow)")

        let json = try h.ferry(["sources", "--json"])
        #expect(try ControlJSON.decoder.decode(SourceList.self, from: Data(json.stdout.utf8)).sources == sources)
    }

    @Test(.enabled(if: getuid() == 0, "needs root to act as a second account"))
    func aUserSeesOnlyTheOriginsItsOwnJobsName() throws {
        try SecondUser.ensure(Self.user)
        let (healthy, failed) = try fetchFromBothOrigins()
        func seen(by user: String) throws -> [String] {
            let answer = try h.curl("GET", "/v1/sources", asUser: user)
            #expect(answer.status == 200, "\(answer.body)")
            return try ControlJSON.decoder.decode(SourceList.self, from: Data(answer.body.utf8)).sources.map(\.origin)
        }
        #expect(try seen(by: Self.user) == [], "a user without jobs sees no source")

        // The user's file comes from an origin never fetched, with a mirror on the failing origin.
        let body = #"{"displayName": "theirs", "files": [{"url": "http://127.0.0.1:9/x", "path": "\#(h.destination("theirs"))", "mirrors": ["\#(failing.baseURL)/x"]}]}"#
        let created = try h.curl("POST", "/v1/jobs", body: body, asUser: Self.user)
        #expect(created.status == 201, "\(created.body)")
        #expect(try seen(by: Self.user) == [failed], "only the origin a mirror of the user's own job names")
        #expect(try h.client.sources().map(\.origin) == [healthy, failed].sorted(), "root sees every origin")
    }
}
