import FerryControl
import FerryTestSupport
import Foundation
import XCTest

/// A job's whole life through the real `ferry` CLI, against the real ferryd.
final class CLIAgentTests: XCTestCase {
    var h: AgentHarness!

    override func setUpWithError() throws {
        h = try AgentHarness()
        try h.start()
    }

    override func tearDown() { h.tearDown() }

    func testAJobsWholeLifeThroughTheCLI() throws {
        let data = testBytes(200_000, seed: 120)
        h.server.setFile("/pkg.deb", data: data)
        let created = try h.ferry(["create", "nightly", "--priority", "high"])
        XCTAssertEqual(created.status, 0, created.stderr)
        let id = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(UUID(uuidString: id), "create prints only the id: '\(created.stdout)'")

        let added = try h.ferry(["addfile", id, h.url("/pkg.deb"), "pkg.deb", "--property", "size=\(data.count)"])
        XCTAssertEqual(added.status, 0, added.stderr)
        let info = try h.ferry(["info", id, "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        let document = try ControlJSON.decoder.decode(JobDocument.self, from: Data(info.stdout.utf8))
        XCTAssertEqual(document.state, .suspended)
        XCTAssertEqual(document.priority, .high)
        XCTAssertEqual(document.files.first?.path, h.destination("pkg.deb"), "a relative path is made absolute")
        XCTAssertEqual(document.files.first?.properties["size"], String(data.count))

        XCTAssertEqual(try h.ferry(["resume", id]).status, 0)
        h.wait(id, for: "TRANSFERRED")
        let listed = try h.ferry(["list", "--json"])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let list = try ControlJSON.decoder.decode(JobList.self, from: Data(listed.stdout.utf8))
        XCTAssertEqual(list.jobs.map(\.id), [id])
        XCTAssertEqual(list.jobs.first?.progress.bytesTransferred, UInt64(data.count))

        let monitor = try h.ferry(["monitor", id, "--once"])
        XCTAssertEqual(monitor.status, 0, monitor.stderr)
        XCTAssertTrue(monitor.stdout.contains("TRANSFERRED"), monitor.stdout)
        let monitorJSON = try h.ferry(["monitor", id, "--once", "--json"])
        XCTAssertEqual(try ControlJSON.decoder.decode(JobDocument.self, from: Data(monitorJSON.stdout.utf8)).state, .transferred)

        XCTAssertEqual(try h.ferry(["geterror", id]).status, 1, "no error to show for a transferred job")
        let completed = try h.ferry(["complete", id])
        XCTAssertEqual(completed.status, 0, completed.stderr)
        XCTAssertTrue(fileHolds(h.destination("pkg.deb"), data))
        XCTAssertEqual(try h.ferry(["info", id]).status, 2, "a completed job is gone: not found")
    }

    func testErrorsNameTheJobTheCodeAndTheContext() throws {
        let id = try h.ferry(["create", "broken"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try h.ferry(["addfile", id, h.url("/missing"), "missing.bin"]).status, 0)
        XCTAssertEqual(try h.ferry(["resume", id]).status, 0)
        h.wait(id, for: "ERROR")
        let error = try h.ferry(["geterror", id])
        XCTAssertEqual(error.status, 0, error.stderr)
        XCTAssertTrue(error.stdout.contains("HTTP_ERROR_404"), error.stdout)
        XCTAssertTrue(error.stdout.contains("remoteFile"), error.stdout)
        let refused = try h.ferry(["addfile", id, "ftp://example.invalid/x", "x"])
        XCTAssertEqual(refused.status, 65, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("UNSUPPORTED_URL"), refused.stderr)
    }

    func testTransferGoesThroughTheAgentWhenOneAnswers() throws {
        let data = testBytes(100_000, seed: 121)
        h.server.setFile("/t.bin", data: data)
        let result = try ChildProcess.run("ferry", ["transfer", "--socket", h.socket, h.url("/t.bin"), "t.bin"], workingDirectory: h.downloads)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("via ferryd"), result.stderr)
        XCTAssertTrue(fileHolds(h.destination("t.bin"), data))
        XCTAssertTrue(h.log.contains("job created"), "the agent ran the job")
    }
}
