import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// A job's whole life through the real `ferry` CLI, against the real ferryd.
@Suite(.serialized)
final class CLIAgentTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        try h.start()
    }

    deinit { h.tearDown() }

    @Test func aJobsWholeLifeThroughTheCLI() throws {
        let data = testBytes(200_000, seed: 120)
        h.server.setFile("/pkg.deb", data: data)
        let created = try h.ferry(["create", "nightly", "--priority", "high"])
        #expect(created.status == 0, "\(created.stderr)")
        let id = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(UUID(uuidString: id) != nil, "create prints only the id: '\(created.stdout)'")

        let added = try h.ferry(["addfile", id, h.url("/pkg.deb"), "pkg.deb", "--property", "size=\(data.count)"])
        #expect(added.status == 0, "\(added.stderr)")
        let info = try h.ferry(["info", id, "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        let document = try ControlJSON.decoder.decode(JobDocument.self, from: Data(info.stdout.utf8))
        #expect(document.state == .suspended)
        #expect(document.priority == .high)
        #expect(document.files.first?.path == h.destination("pkg.deb"), "a relative path is made absolute")
        #expect(document.files.first?.properties["size"] == String(data.count))

        #expect(try h.ferry(["resume", id]).status == 0)
        h.wait(id, for: "TRANSFERRED")
        let listed = try h.ferry(["list", "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let list = try ControlJSON.decoder.decode(JobList.self, from: Data(listed.stdout.utf8))
        #expect(list.jobs.map(\.id) == [id])
        #expect(list.jobs.first?.progress.bytesTransferred == UInt64(data.count))

        let monitor = try h.ferry(["monitor", id, "--once"])
        #expect(monitor.status == 0, "\(monitor.stderr)")
        #expect(monitor.stdout.contains("TRANSFERRED"), "\(monitor.stdout)")
        let monitorJSON = try h.ferry(["monitor", id, "--once", "--json"])
        #expect(try ControlJSON.decoder.decode(JobDocument.self, from: Data(monitorJSON.stdout.utf8)).state == .transferred)

        #expect(try h.ferry(["geterror", id]).status == 1, "no error to show for a transferred job")
        let completed = try h.ferry(["complete", id])
        #expect(completed.status == 0, "\(completed.stderr)")
        #expect(fileHolds(h.destination("pkg.deb"), data))
        #expect(try h.ferry(["info", id]).status == 2, "a completed job is gone: not found")
    }

    @Test func errorsNameTheJobTheCodeAndTheContext() throws {
        let id = try h.ferry(["create", "broken"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try h.ferry(["addfile", id, h.url("/missing"), "missing.bin"]).status == 0)
        #expect(try h.ferry(["resume", id]).status == 0)
        h.wait(id, for: "ERROR")
        let error = try h.ferry(["geterror", id])
        #expect(error.status == 0, "\(error.stderr)")
        #expect(error.stdout.contains("HTTP_ERROR_404"), "\(error.stdout)")
        #expect(error.stdout.contains("remoteFile"), "\(error.stdout)")
        let refused = try h.ferry(["addfile", id, "ftp://example.invalid/x", "x"])
        #expect(refused.status == 65, "\(refused.stderr)")
        #expect(refused.stderr.contains("UNSUPPORTED_URL"), "\(refused.stderr)")
    }

    @Test func transferGoesThroughTheAgentWhenOneAnswers() throws {
        let data = testBytes(100_000, seed: 121)
        h.server.setFile("/t.bin", data: data)
        let result = try ChildProcess.run("ferry", ["transfer", "--socket", h.socket, h.url("/t.bin"), "t.bin"], workingDirectory: h.downloads)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("via ferryd"), "\(result.stderr)")
        #expect(fileHolds(h.destination("t.bin"), data))
        #expect(h.log.contains("job created"), "the agent ran the job")
    }
}
