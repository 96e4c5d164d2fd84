import FerryTestSupport
import Foundation
import Testing

/// `ferry transfer` in its own process produces each exit status docs/cli.md's table
/// gives it (the ones not proved elsewhere): 75 for the same transfer already running, 69
/// for a state directory that cannot be used.
@Suite(.serialized)
final class ExitStatusTests {
    let directory: TemporaryDirectory
    let server: FaultServer
    let downloads: String

    init() throws {
        directory = try TemporaryDirectory("ferry-exit")
        downloads = try directory.subdirectory("downloads")
        server = try FaultServer()
    }

    deinit {
        server.stop()
        directory.remove()
    }

    @Test func theSameTransferAlreadyRunningExits75() throws {
        server.setFile("/slow.bin", data: testBytes(2 << 20, seed: 75))
        server.hold("/slow.bin", afterBytes: 256 << 10)
        let arguments = ["transfer", "--no-agent", "--state-dir", directory.file("state"), server.baseURL + "/slow.bin", "slow.bin"]
        let first = try ChildProcess("ferry", arguments, workingDirectory: downloads)
        defer { first.signal(SIGKILL) }
        #expect(server.waitUntilHeld("/slow.bin"), "the first run is under way")
        let second = try ChildProcess.run("ferry", arguments, workingDirectory: downloads, timeout: 30)
        #expect(second.status == 75, "\(second.stderr)")
        #expect(second.stderr.contains("already running"), "\(second.stderr)")
        #expect(first.process.isRunning, "the first run goes on")
    }

    @Test func aStateDirectoryThatCannotBeUsedExits69() throws {
        let notADirectory = directory.file("state-file")
        try "not a directory".write(toFile: notADirectory, atomically: true, encoding: .utf8)
        server.setFile("/a.bin", data: testBytes(100, seed: 69))
        let result = try ChildProcess.run("ferry", ["transfer", "--no-agent", "--state-dir", notADirectory, server.baseURL + "/a.bin", "a.bin"],
                                          workingDirectory: downloads, timeout: 30)
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains(notADirectory), "names the state directory: \(result.stderr)")
        #expect(!exists(downloads + "/a.bin"))
    }
}
