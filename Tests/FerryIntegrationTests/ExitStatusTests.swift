import FerryTestSupport
import Foundation
import XCTest

/// `ferry transfer` in its own process produces each exit status docs/cli.md's table
/// gives it (the ones not proved elsewhere): 75 for the same transfer already running, 69
/// for a state directory that cannot be used.
final class ExitStatusTests: XCTestCase {
    var directory: TemporaryDirectory!
    var server: FaultServer!
    var downloads: String!

    override func setUpWithError() throws {
        directory = try TemporaryDirectory("ferry-exit")
        downloads = try directory.subdirectory("downloads")
        server = try FaultServer()
    }

    override func tearDown() {
        server.stop()
        directory.remove()
    }

    func testTheSameTransferAlreadyRunningExits75() throws {
        server.setFile("/slow.bin", data: testBytes(2 << 20, seed: 75))
        server.hold("/slow.bin", afterBytes: 256 << 10)
        let arguments = ["transfer", "--no-agent", "--state-dir", directory.file("state"), server.baseURL + "/slow.bin", "slow.bin"]
        let first = try ChildProcess("ferry", arguments, workingDirectory: downloads)
        defer { first.signal(SIGKILL) }
        XCTAssertTrue(server.waitUntilHeld("/slow.bin"), "the first run is under way")
        let second = try ChildProcess.run("ferry", arguments, workingDirectory: downloads, timeout: 30)
        XCTAssertEqual(second.status, 75, second.stderr)
        XCTAssertTrue(second.stderr.contains("already running"), second.stderr)
        XCTAssertTrue(first.process.isRunning, "the first run goes on")
    }

    func testAStateDirectoryThatCannotBeUsedExits69() throws {
        let notADirectory = directory.file("state-file")
        try "not a directory".write(toFile: notADirectory, atomically: true, encoding: .utf8)
        server.setFile("/a.bin", data: testBytes(100, seed: 69))
        let result = try ChildProcess.run("ferry", ["transfer", "--no-agent", "--state-dir", notADirectory, server.baseURL + "/a.bin", "a.bin"],
                                          workingDirectory: downloads, timeout: 30)
        XCTAssertEqual(result.status, 69, result.stderr)
        XCTAssertTrue(result.stderr.contains(notADirectory), "names the state directory: \(result.stderr)")
        XCTAssertFalse(exists(downloads + "/a.bin"))
    }
}
