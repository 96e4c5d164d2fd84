import FerryTestSupport
import Foundation
import Testing

/// `ferry transfer` refuses a destination its caller may not write with the same exit status,
/// 65 (bad input, as a refused URL), whether the job would run in this process or in the
/// agent (docs/cli.md), and nothing appears there.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root to play a second user"))
final class TransferRefusalTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        try h.start()
        h.server.setFile("/f", data: Array(repeating: 7, count: 4096))
    }

    deinit { h.tearDown() }

    @Test(arguments: ["--agent", "--no-agent"])
    func aDestinationTheCallerMayNotWriteExits65(mode: String) throws {
        let user = try SecondUser.ensure()
        let program = try SecondUser.ferryCopy(in: h.directory.path)
        let protected = try h.directory.subdirectory("root-only")
        chmod(protected, 0o755)
        var arguments = [program, "transfer", mode, "--socket", h.socket]
        if mode == "--no-agent" {
            let state = try h.directory.subdirectory("user-state")
            chown(state, user.uid, user.gid)
            arguments += ["--state-dir", state]
        }
        let run = try ChildProcess.run("/usr/sbin/runuser", ["-u", SecondUser.name, "--"] + arguments + [h.url("/f"), protected + "/f"],
                                       workingDirectory: h.downloads, timeout: 30)
        #expect(run.status == 65, "\(mode): \(run.stderr)")
        #expect(run.stderr.contains(protected), "\(mode): the message names the directory: \(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: protected + "/f"))
    }
}
