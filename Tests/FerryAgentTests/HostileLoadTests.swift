import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// One user cannot take the agent away from the others: each test starts a real `ferryd`
/// as root, plays a hostile local user (`runuser`) with bounded counts and time, and
/// asserts that root's `GET /v1/health` answers within a second throughout and that the
/// agent's memory stays under a stated bound. See docs/security.md.
@Suite(.serialized, .enabled(if: getuid() == 0, "the hostile-load tests need root, to run the agent as root and play a second user"))
final class HostileLoadTests {
    let h: AgentHarness
    static let user = "ferrytest"
    var uid: uid_t = 0
    var gid: gid_t = 0
    var home = ""

    /// Small limits, so that the tests reach them with bounded work.
    static let config = """
        api:
          max_connections_per_user: 8
          request_header_timeout_sec: 2
          max_event_streams_per_user: 2
          event_buffer_bytes: 65536
        notifications:
          command_timeout_sec: 3
          max_commands_per_user: 2
        """

    init() throws {
        try SecondUser.ensure(Self.user)
        uid = getpwnam(Self.user)!.pointee.pw_uid
        gid = getpwnam(Self.user)!.pointee.pw_gid
        h = try AgentHarness(config: Self.config)
        try h.start()
        home = try h.directory.subdirectory("home")
        chown(home, uid, gid)
        chmod(home, 0o755)
    }

    deinit { h.tearDown() }

    // MARK: - Helpers

    private var asUser: [String] { ["runuser", "-u", Self.user, "--"] }

    private func request(_ method: String, _ path: String, body: String? = nil) throws -> (status: Int, body: String) {
        try h.curl(method, path, body: body, via: asUser)
    }

    /// Runs the hostile client as the user, in the background, and waits until its
    /// connections are open; returns its JSON report when it ends. With `go`, the client
    /// waits for that file to exist (at most `hold` seconds) before it reads its streams.
    private func hostile(_ mode: String, count: Int, hold: Double, go: String? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> () throws -> [String: Any] {
        let script = h.directory.file("hostile_client.py")
        if !FileManager.default.fileExists(atPath: script) {
            try FileManager.default.copyItem(atPath: PluginBuilder.packageRoot + "/Tests/Fixtures/hostile_client.py", toPath: script)
            chmod(script, 0o755)
        }
        let output = h.directory.file("hostile-\(mode).json")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = asUser + ["python3", script, h.socket, mode, "\(count)", "\(hold)"] + (go.map { [$0] } ?? [])
        FileManager.default.createFile(atPath: output, contents: nil)
        FileManager.default.createFile(atPath: output + ".err", contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: output)
        process.standardError = FileHandle(forWritingAtPath: output + ".err") ?? FileHandle.nullDevice
        try runWithSignalsUnblocked(process)
        let ready = waitUntil(timeout: 60) {
            ((try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? "").split(separator: "\n").contains("ready") || !process.isRunning
        }
        #expect(ready && process.isRunning, "the hostile client's connections are open", sourceLocation: sourceLocation)
        return {
            process.waitUntilExit()
            let data = FileManager.default.contents(atPath: output) ?? Data()
            guard let object = try? JSONSerialization.jsonObject(with: data) else {
                let errors = (try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? ""
                Issue.record("the hostile client printed no report: \(String(decoding: data, as: UTF8.self))\n\(errors)", sourceLocation: sourceLocation)
                return [:]
            }
            guard let report = object as? [String: Any] else {
                try Test.cancel("the hostile client printed no report: \(String(decoding: data, as: UTF8.self))")
            }
            return report
        }
    }

    /// Root asks for health while `seconds` pass; every answer must come within a second.
    private func assertHealthStaysPrompt(for seconds: Double, sourceLocation: SourceLocation = #_sourceLocation) {
        let end = Date().addingTimeInterval(seconds)
        var slowest = 0.0
        var asked = 0
        while Date() < end {
            let start = Date()
            #expect((try? h.client.health()) != nil, "the agent answers root", sourceLocation: sourceLocation)
            slowest = max(slowest, Date().timeIntervalSince(start))
            asked += 1
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(slowest < 1.0, "the slowest of \(asked) health answers", sourceLocation: sourceLocation)
    }

    /// The agent's resident memory, in MiB.
    private var agentMemory: Double {
        guard let pid = h.process?.pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }

    private var agentThreads: Int {
        guard let pid = h.process?.pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Threads:") }) else { return 0 }
        return Int(line.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0
    }

    private func createJob(_ body: String) throws -> String {
        let created = try request("POST", "/v1/jobs", body: body)
        #expect(created.status == 201, "\(created.body)")
        return try #require(try? ControlJSON.decoder.decode(JobDocument.self, from: Data(created.body.utf8)).id, "\(created.body)")
    }

    // MARK: - Connections

    @Test func unfinishedHeadersAreCutAndConnectionsAreBounded() throws {
        // 20 connections that never finish their headers, with 8 allowed per user.
        let report = try hostile("slow-headers", count: 20, hold: 15)
        assertHealthStaysPrompt(for: 3)
        let result = try report()
        #expect(result["refused"] as? Int == 12, "past the user's 8 connections, each is refused at once: \(result)")
        let refusal = result["refusal"] as? String ?? ""
        #expect(refusal.contains("BUSY") && refusal.contains("api.max_connections_per_user = 8"), "\(refusal)")
        let closed = result["closedAfter"] as? [Double] ?? []
        #expect(closed.count == 8, "the agent closed every connection it had accepted: \(result)")
        #expect(closed.allSatisfy { $0 >= 1.5 && $0 < 6 }, "each after the 2 s header deadline: \(closed)")
        // Once they are gone, the user is served again.
        #expect(try request("GET", "/v1/health").status == 200)
    }

    // MARK: - Event streams

    @Test func eventStreamsThatAreNeverReadAreBoundedAndCut() throws {
        // A job of many files makes many large events (each carries the job's file list).
        let count = 300
        var files: [String] = []
        for index in 0..<count {
            h.server.setFile("/s/\(index)", data: Array(repeating: UInt8(index % 251), count: 2048))
            files.append(#"{"url": "\#(h.url("/s/\(index)"))", "path": "\#(home)/f\#(index)"}"#)
        }
        // The streams stay unread until every event of the job has been sent.
        let go = h.directory.file("read-now")
        let report = try hostile("silent-streams", count: 3, hold: 120, go: go)
        let memoryBefore = agentMemory
        // Every kind of event: each file's, each modification's, the job's.
        let id = try createJob(#"{"displayName": "many", "files": [\#(files.joined(separator: ", "))], "settings": {"notifyFlags": 27}}"#)
        #expect(try request("POST", "/v1/jobs/\(id)/resume").status == 200)
        assertHealthStaysPrompt(for: 4)
        #expect(waitUntil(timeout: 60) { (try? self.h.client.job(id).state.rawValue) == "TRANSFERRED" })
        let memoryAfter = agentMemory
        FileManager.default.createFile(atPath: go, contents: nil)
        let result = try report()
        let streams = result["streams"] as? [[String: Any]] ?? []
        #expect(streams.count == 3)
        #expect(streams.filter { $0["status"] as? String == "503" }.count == 1, "the third stream is refused: \(streams)")
        #expect(streams.contains { ($0["body"] as? String ?? "").contains("api.max_event_streams_per_user = 2") }, "\(streams)")
        let followed = streams.filter { $0["status"] as? String == "200" }
        #expect(followed.count == 2)
        #expect(followed.allSatisfy { $0["lastKind"] as? String == "streamClosed" }, "each reader that fell behind was told so: \(followed)")
        #expect(memoryAfter - memoryBefore < 64, "memory grew by \(memoryAfter - memoryBefore) MiB (\(memoryBefore) → \(memoryAfter))")
    }

    // MARK: - Notify commands

    @Test func notifyCommandsThatNeverExitAreSupervisedAndKilled() throws {
        let script = home + "/forever.sh"
        try "#!/bin/sh\nexec sleep 900\n".write(toFile: script, atomically: true, encoding: .utf8)
        chown(script, uid, gid)
        chmod(script, 0o755)
        h.server.setFile("/n", data: Array("n".utf8))
        ignoredSleepers = Set(sleepingCommandPIDs())  // anything the user ran before this test
        let jobs = 6
        for index in 0..<jobs {
            let id = try createJob(#"{"displayName": "n\#(index)", "files": [{"url": "\#(h.url("/n"))", "path": "\#(home)/n\#(index)"}], "settings": {"notifyCommand": ["\#(script)"]}}"#)
            #expect(try request("POST", "/v1/jobs/\(id)/resume").status == 200)
        }
        // Watch the user's sleeping commands until every one was killed and none is left:
        // never more than 2 at once, and each killed after ~3 s.
        var most = 0
        var threads = 0
        var slowest = 0.0
        let killed = { self.h.log.components(separatedBy: "notify command ran out of time").count - 1 }
        let allDone = waitUntil(timeout: 120) {
            most = max(most, sleepingCommands())
            threads = max(threads, agentThreads)
            let start = Date()
            #expect((try? h.client.health()) != nil)
            slowest = max(slowest, Date().timeIntervalSince(start))
            if killed() == jobs && sleepingCommands() == 0 { return true }
            Thread.sleep(forTimeInterval: 0.2)  // a look every 0.2 s or so, as a watcher would
            return false
        }
        #expect(allDone, "every command was killed at its time limit (\(killed()) of \(jobs)) and none is left running:\n\(h.log)")
        #expect(most == 2, "notifications.max_commands_per_user = 2")
        #expect(slowest < 1.0)
        #expect(threads < 40, "no thread waits for a child (\(threads) threads at most)")
    }

    @Test func manyNotifyCommandsThatCannotStartNeverBringTheAgentDown() throws {
        // Two commands hold the user's places; thirty more wait, each naming a program that
        // does not exist. When the places free up, the waiting ones fail one after another.
        let script = home + "/brief.sh"
        try "#!/bin/sh\nexec sleep 2\n".write(toFile: script, atomically: true, encoding: .utf8)
        chown(script, uid, gid)
        chmod(script, 0o755)
        h.server.setFile("/m", data: Array("m".utf8))
        for index in 0..<32 {
            let program = index < 2 ? script : "/nonexistent/notify-\(index)"
            let id = try createJob(#"{"displayName": "m\#(index)", "files": [{"url": "\#(h.url("/m"))", "path": "\#(home)/m\#(index)"}], "settings": {"notifyCommand": ["\#(program)"]}}"#)
            #expect(try request("POST", "/v1/jobs/\(id)/resume").status == 200)
        }
        #expect(waitUntil(timeout: 30) { self.h.log.components(separatedBy: "notify command could not start").count - 1 >= 30 }, "\(h.log)")
        #expect(h.process?.process.isRunning ?? false, "the agent is up")
        assertHealthStaysPrompt(for: 1)
    }

    private var ignoredSleepers: Set<String> = []

    /// The user's processes running `sleep`, but those that ran before the test.
    private func sleepingCommands() -> Int {
        sleepingCommandPIDs().filter { !ignoredSleepers.contains($0) }.count
    }

    private func sleepingCommandPIDs() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { Int($0) != nil }.filter { pid in
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8), comm.hasPrefix("sleep"),
                  let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return false }
            return line.split(separator: "\t").dropFirst().first.map(String.init) == "\(uid)"
        }
    }

    // MARK: - Local sources

    @Test func aLargeLocalSourceNeverStallsTheAgent() throws {
        let source = home + "/sparse.img"
        #expect(try PluginBuilder.run("/usr/bin/truncate", ["-s", "3G", source]).status == 0)
        chown(source, uid, gid)
        let id = try createJob(#"{"displayName": "sparse", "files": [{"url": "file://\#(source)", "path": "\#(home)/copy.img"}]}"#)
        #expect(try request("POST", "/v1/jobs/\(id)/resume").status == 200)
        #expect(waitUntil(timeout: 60) { ((try? self.h.client.jobSummary(id))?.progress.bytesTransferred ?? 0) > 0 })
        assertHealthStaysPrompt(for: 3)
        #expect(agentMemory < 200, "reading 3 GiB holds a few chunks at a time")
        #expect(try request("POST", "/v1/jobs/\(id)/cancel").status == 200)
    }

    @Test func hashingTheBytesOfAResumedFileNeverStallsTheAgent() throws {
        // A resumed file with sha256 and sha512 properties: the bytes already here are hashed
        // again, twice, before the rest arrives. That must not hold the engine's thread.
        let size: UInt64 = 1 << 30
        let source = home + "/zeros.img"
        #expect(try PluginBuilder.run("/usr/bin/truncate", ["-s", "\(size)", source]).status == 0)
        chown(source, uid, gid)
        let digest = try PluginBuilder.run("/usr/bin/sha256sum", [source]).output.prefix(64)
        let long = try PluginBuilder.run("/usr/bin/sha512sum", [source]).output.prefix(128)
        let id = try createJob(#"{"displayName": "rehash", "files": [{"url": "file://\#(source)", "path": "\#(home)/zeros.copy", "properties": {"sha256": "\#(digest)", "sha512": "\#(long)"}}]}"#)
        #expect(try request("POST", "/v1/jobs/\(id)/resume").status == 200)
        #expect(waitUntil(timeout: 60) { ((try? self.h.client.jobSummary(id))?.progress.bytesTransferred ?? 0) > size * 7 / 8 })
        #expect(try request("POST", "/v1/jobs/\(id)/suspend").status == 200)
        let held = try h.client.jobSummary(id).progress.bytesTransferred
        #expect(held > size / 2)
        #expect(try request("POST", "/v1/jobs/\(id)/resume").status == 200)
        assertHealthStaysPrompt(for: 2)
        #expect(waitUntil(timeout: 60) { (try? self.h.client.jobSummary(id))?.state.rawValue == "TRANSFERRED" }, "\(String(describing: try? h.client.jobSummary(id)))")
        let completed = try request("POST", "/v1/jobs/\(id)/complete")
        #expect(completed.status == 200, "\(completed.body)")
        let done = try ControlJSON.decoder.decode(JobDocument.self, from: Data(completed.body.utf8))
        #expect(done.files.first?.committed == true, "validated by both digests, and committed")
        #expect(try FileManager.default.attributesOfItem(atPath: home + "/zeros.copy")[.size] as? UInt64 == size)
    }

    // MARK: - Answer sizes

    @Test func listingsStaySmallWhateverTheJobsHold() throws {
        let files = (0..<20_000).map { #"{"url": "\#(h.url("/x"))", "path": "\#(home)/x\#($0)"}"# }.joined(separator: ",")
        for index in 0..<3 { _ = try createJob(#"{"displayName": "big \#(index)", "files": [\#(files)]}"#) }
        let list = try request("GET", "/v1/jobs")
        #expect(list.status == 200)
        #expect(list.body.utf8.count < 16_384, "a listing leaves the file lists out")
        let page = try ControlJSON.decoder.decode(JobList.self, from: Data(list.body.utf8))
        #expect(page.jobs.count == 3)
        #expect(page.jobs.allSatisfy { $0.files.isEmpty && $0.progress.filesTotal == 20_000 })
        // Pages of jobs follow the cursor; pages of files follow the offset.
        let first = try ControlJSON.decoder.decode(JobList.self, from: Data(try request("GET", "/v1/jobs?limit=2").body.utf8))
        #expect(first.jobs.count == 2)
        let next = try #require(first.next)
        let second = try ControlJSON.decoder.decode(JobList.self, from: Data(try request("GET", "/v1/jobs?limit=2&after=\(next)").body.utf8))
        #expect(second.jobs.map(\.id) == [page.jobs[2].id])
        #expect(second.next == nil)
        let one = try request("GET", "/v1/jobs/\(page.jobs[0].id)")
        let document = try ControlJSON.decoder.decode(JobDocument.self, from: Data(one.body.utf8))
        #expect(document.files.count == 1_000, "a job's files come a page at a time")
        let later = try ControlJSON.decoder.decode(JobDocument.self, from: Data(try request("GET", "/v1/jobs/\(page.jobs[0].id)?fileOffset=19990&fileLimit=50").body.utf8))
        #expect(later.files.map(\.index) == Array(19_990..<20_000))
        #expect(try request("GET", "/v1/jobs?limit=0").status == 400)
        // Four of the largest answers at once: memory stays bounded.
        let before = agentMemory
        let (socket, user) = (h.socket, Self.user)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            _ = try? PluginBuilder.run("/usr/bin/env", ["runuser", "-u", user, "--", "curl", "-sS", "-o", "/dev/null", "--unix-socket", socket,
                                                        "http://localhost/v1/jobs?files=true&fileLimit=10000"])
        }
        #expect(agentMemory - before < 200, "\(before) → \(agentMemory) MiB")
        assertHealthStaysPrompt(for: 1)
    }

    // MARK: - A full disk

    @Test func aFullDiskIsTransientAndTheJobResumesByItself() throws {
        let small = try h.directory.subdirectory("small-disk")
        let mounted = try PluginBuilder.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", small])
        if mounted.status != 0 { try Test.cancel("cannot mount a small tmpfs here: \(mounted.output)") }
        defer { _ = try? PluginBuilder.run("/bin/umount", ["-l", small]) }
        let bytes = testBytes(3 << 20, seed: 7)
        h.server.setFile("/big", data: bytes, etag: "\"big-1\"")
        let id = try createJob(#"{"displayName": "full", "files": [{"url": "\#(h.url("/big"))", "path": "\#(small)/big"}], "settings": {"minRetryDelaySec": 1}}"#)
        #expect(try request("POST", "/v1/jobs/\(id)/resume").status == 200)
        #expect(waitUntil(timeout: 30) { (try? self.h.client.jobSummary(id))?.error?.code == "DISK_FULL" }, "\(String(describing: try? h.client.jobSummary(id)))")
        let waiting = try h.client.jobSummary(id)
        #expect(["TRANSIENT_ERROR", "QUEUED", "CONNECTING", "TRANSFERRING"].contains(waiting.state.rawValue), "transient, not ERROR: \(waiting.state)")
        #expect(waiting.state.rawValue != "ERROR")
        // Room again: the job goes on by itself, from where it stopped.
        #expect(try PluginBuilder.run("/bin/mount", ["-o", "remount,size=8m", small]).status == 0)
        #expect(waitUntil(timeout: 30) { (try? self.h.client.jobSummary(id))?.state.rawValue == "TRANSFERRED" })
        #expect(try request("POST", "/v1/jobs/\(id)/complete").status == 200)
        #expect(fileHolds(small + "/big", bytes), "byte-identical")
        #expect(h.server.requests(for: "/big").contains { $0.headers["range"] != nil }, "resumed with a range request")
    }
}
