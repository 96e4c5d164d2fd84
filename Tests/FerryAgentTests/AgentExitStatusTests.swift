import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// The exit statuses of docs/cli.md and docs/configuration.md that need a running agent
/// or `ferryd` itself: `ferry` 77 (the agent refuses the caller) and 75 (the agent is busy),
/// and `ferryd` 64, 69, 78 and 0 after SIGINT.
@Suite(.serialized)
final class AgentExitStatusTests {
    let h: AgentHarness
    static let user = "ferrytest"

    init() throws {
        h = try AgentHarness(config: "api:\n  max_connections_per_user: 1\n  request_header_timeout_sec: 30\n")
        try h.start()
    }

    deinit { h.tearDown() }

    /// `ferry` run as the second user (a copy it can reach), against this agent.
    private func ferryAsUser(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try SecondUser.ensure(Self.user)
        let program = try SecondUser.ferryCopy(in: h.directory.path)
        return try ChildProcess.run("/usr/sbin/runuser", ["-u", Self.user, "--", program] + arguments + ["--socket", h.socket],
                                    workingDirectory: h.downloads, timeout: 30)
    }

    @Test(.enabled(if: getuid() == 0, "needs root to play a second user"))
    func aCallerTheAgentRefusesExits77() throws {
        let all = try ferryAsUser(["list", "--all-users"])
        #expect(all.status == 77, "\(all.stderr)")
        #expect(all.stderr.contains("ACCESS_DENIED"), "\(all.stderr)")
        let protected = try h.directory.subdirectory("root-only")
        chmod(protected, 0o755)
        let created = try ferryAsUser(["create", "refused"])
        #expect(created.status == 0, "\(created.stderr)")
        let job = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let added = try ferryAsUser(["addfile", job, h.url("/f"), protected + "/f"])
        #expect(added.status == 77, "\(added.stderr)")
        #expect(added.stderr.contains("may not create files in"), "\(added.stderr)")
    }

    @Test(.enabled(if: getuid() == 0, "needs root to play a second user"))
    func aBusyAgentExits75() throws {
        _ = try ferryAsUser(["list"])  // creates the account and the copy first
        let script = h.directory.file("hostile_client.py")
        try FileManager.default.copyItem(atPath: PluginBuilder.packageRoot + "/Tests/Fixtures/hostile_client.py", toPath: script)
        // The user's one allowed connection is held open by another of its processes. A holder
        // that connects while an earlier connection is still being closed is itself refused
        // and ends at once: then another one is started (a few tries at most).
        var holder: Process?
        defer { holder?.terminate() }
        var busy: (status: Int32, stdout: String, stderr: String)?
        for attempt in 0..<5 where busy?.status != 75 {
            holder?.terminate()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            process.arguments = ["-u", Self.user, "--", "python3", script, h.socket, "slow-headers", "1", "15"]
            let report = h.directory.file("holder-\(attempt).out")
            FileManager.default.createFile(atPath: report, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: report)
            process.standardError = FileHandle(forWritingAtPath: report)
            try runWithSignalsUnblocked(process)
            holder = process
            // Held once the holder is still running a moment after connecting.
            _ = waitUntil(timeout: 1) { !process.isRunning }
            guard process.isRunning else { continue }
            busy = try ferryAsUser(["list"])
        }
        let answer = try #require(busy, "no holder kept its connection")
        #expect(answer.status == 75, "\(answer.stderr)")
        #expect(answer.stderr.contains("api.max_connections_per_user = 1"), "\(answer.stderr)")
        #expect(try h.client.health().version.isEmpty == false, "root is still served")
    }

    @Test func ferrydExitStatuses() throws {
        let usage = try ChildProcess.run("ferryd", ["--no-such-option"], timeout: 30)
        #expect(usage.status == 64, "\(usage.stderr)")

        let bad = h.directory.file("bad.yaml")
        try "transfers:\n  max_connections: lots\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let wrong = try ChildProcess.run("ferryd", ["--config", bad, "--state-dir", h.directory.file("s2"), "--socket", h.directory.file("s2.sock")], timeout: 30)
        #expect(wrong.status == 78, "\(wrong.stderr)")
        #expect(wrong.stderr.contains("transfers.max_connections"), "\(wrong.stderr)")

        // A socket another ferryd serves: this one cannot run.
        let second = try ChildProcess.run("ferryd", ["--state-dir", h.directory.file("s3"), "--socket", h.socket], timeout: 30)
        #expect(second.status == 69, "\(second.stderr)")
        #expect((try? h.client.health()) != nil, "the first keeps serving")

        // SIGINT stops it cleanly: 0.
        #expect(h.stop(SIGINT) == 0, "\(h.previousLog)")
    }
}
