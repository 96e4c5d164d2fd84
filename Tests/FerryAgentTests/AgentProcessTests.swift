import FerryControl
import FerryCore
import FerryTestSupport
import Foundation
import Testing

/// The real ferryd process, driven over its socket with the client library and with curl.
@Suite(.serialized)
final class AgentProcessTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness(config: "jobs:\n  min_retry_delay_sec: 5\n")
        try h.start()
    }

    deinit { h.tearDown() }

    /// Starts the agent again on the configuration of the tests with `extra` added.
    private func restartAgent(adding extra: String) throws {
        h.stop()
        try h.writeConfig("jobs:\n  min_retry_delay_sec: 5\n" + extra)
        try h.start()
    }

    /// The bytes the store holds as durable for the agent's only file, read with the
    /// command-line shell; nil while it cannot be read.
    private func durableBytes() -> Int? {
        let answer = try? PluginBuilder.run("/usr/bin/sqlite3", [h.stateDirectory + "/jobs.db", "SELECT bytes_durable FROM files"])
        return answer.flatMap { Int($0.output.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Changes the job's description until the subscriber reports the change: from then on,
    /// its stream is open and carries every event of the job.
    private func confirmSubscribed(_ id: String, _ received: EventLog, sourceLocation: SourceLocation = #_sourceLocation) {
        var probe = 0
        let subscribed = waitUntil(timeout: 60) {
            probe += 1
            _ = try? h.client.update(id, JobSettings(description: "probe \(probe)"))
            return waitUntil(timeout: 1) { received.kinds.contains("jobModification") }
        }
        #expect(subscribed, "the subscriber's stream opened", sourceLocation: sourceLocation)
    }

    @Test func aJobsWholeLifeThroughTheAPI() throws {
        let a = testBytes(300_000, seed: 90), b = testBytes(1_000, seed: 91)
        h.server.setFile("/a.bin", data: a)
        h.server.setFile("/b.bin", data: b)
        let job = try h.client.createJob(CreateJobRequest(displayName: "life", files: [
            NewFileDocument(url: h.url("/a.bin"), path: h.destination("a.bin")),
            NewFileDocument(url: h.url("/b.bin"), path: h.destination("b.bin"), properties: ["size": "1000"]),
        ]))
        #expect(job.state == .suspended)
        #expect(job.owner == getuid())
        _ = try h.client.perform("resume", on: job.id)
        let done = try #require(h.wait(job.id, for: "TRANSFERRED"))
        #expect(done.progress.filesTransferred == 2)
        #expect(done.progress.bytesTotal == 301_000)
        #expect(!exists(h.destination("a.bin")))
        let completed = try h.client.perform("complete", on: job.id)
        #expect(completed.state == .acknowledged)
        #expect(fileHolds(h.destination("a.bin"), a))
        #expect(fileHolds(h.destination("b.bin"), b))
        #expect(try h.client.listJobs().map(\.id) == [], "a final job is no longer listed")
    }

    @Test func theSameLifeByHandWithCurl() throws {
        h.server.setFile("/c.txt", data: Array("by hand\n".utf8))
        let created = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "curl", "priority": "high"}"#)
        #expect(created.status == 201, "\(created.body)")
        let job = try ControlJSON.decoder.decode(JobDocument.self, from: Data(created.body.utf8))
        #expect(job.priority == .high)
        let added = try h.curl("POST", "/v1/jobs/\(job.id)/files", body: #"{"files": [{"url": "\#(h.url("/c.txt"))", "path": "\#(h.destination("c.txt"))"}]}"#)
        #expect(added.status == 200, "\(added.body)")
        #expect(try h.curl("POST", "/v1/jobs/\(job.id)/resume").status == 200)
        h.wait(job.id, for: "TRANSFERRED")
        let completed = try h.curl("POST", "/v1/jobs/\(job.id)/complete")
        #expect(completed.status == 200, "\(completed.body)")
        #expect(fileHolds(h.destination("c.txt"), Array("by hand\n".utf8)))
    }

    @Test func eventsArriveInOrderAndAFinishedJobIsStillPendingForALateSubscriber() throws {
        // Every change of a job is an event (no minimum interval between two jobModification
        // events), so one change shows that a subscriber is connected and none is dropped.
        try restartAgent(adding: "  modification_min_interval_ms: 0\n")
        h.server.setFile("/1.bin", data: testBytes(50_000, seed: 92))
        h.server.setFile("/2.bin", data: testBytes(60_000, seed: 93))
        h.server.setRate("/2.bin", bytesPerSecond: 100_000)
        let job = try h.client.createJob(CreateJobRequest(displayName: "events", files: [
            NewFileDocument(url: h.url("/1.bin"), path: h.destination("1.bin")),
            NewFileDocument(url: h.url("/2.bin"), path: h.destination("2.bin")),
        ], settings: JobSettings(notifyFlags: 0x1 | 0x2 | 0x8 | 0x10)))
        let received = EventLog()
        let client = h.client
        let subscriber = Thread {
            try? client.events(job: job.id, pending: false) { event in
                received.append(event)
                return event.kind != "jobTransferred"
            }
        }
        subscriber.start()
        confirmSubscribed(job.id, received)
        _ = try h.client.perform("resume", on: job.id)
        #expect(waitUntil(timeout: 60) { received.kinds.contains("jobTransferred") }, "\(received.kinds)")
        // The events of the transfer: those after the probes, which came while it was suspended.
        let events = received.events.drop { $0.job.state == .suspended }
        let kinds = events.map(\.kind)
        #expect(kinds.filter { $0 == "fileTransferred" }.count == 2, "\(kinds)")
        #expect(kinds.contains("jobModification"), "\(kinds)")
        #expect(kinds.last == "jobTransferred", "fileTransferred comes before jobTransferred: \(kinds)")
        #expect(Set(events.compactMap(\.file)) == [0, 1])

        // A subscriber that connects after the fact still gets the kept jobTransferred.
        let late = EventLog()
        try h.client.events(job: job.id, pending: true) { event in
            late.append(event)
            return false
        }
        let kept = try #require(late.events.first)
        #expect(kept.kind == "jobTransferred")
        #expect(kept.sequence > 0)
        try h.client.acknowledgeEvents(upTo: kept.sequence)

        // Another job's kept event, made after the acknowledgement, comes after everything still
        // pending: a reader that gets to it has been given every pending event.
        h.server.setFile("/3.bin", data: testBytes(1_000, seed: 97))
        let marker = try h.client.createJob(CreateJobRequest(displayName: "marker", files: [NewFileDocument(url: h.url("/3.bin"), path: h.destination("3.bin"))]))
        _ = try h.client.perform("resume", on: marker.id)
        h.wait(marker.id, for: "TRANSFERRED")
        let afterAck = EventLog()
        let reader = Thread { try? client.events(pending: true) { afterAck.append($0); return $0.job.id != marker.id } }
        reader.start()
        #expect(waitUntil(timeout: 60) { reader.isFinished }, "the marker's event came: \(afterAck.kinds)")
        #expect(afterAck.events.map(\.job.id) == [marker.id], "an acknowledged event is not delivered again")
        _ = try? h.client.perform("cancel", on: job.id)
    }

    @Test func aJobErrorIsKeptForSubscribers() throws {
        let job = try h.client.createJob(CreateJobRequest(displayName: "fails", files: [NewFileDocument(url: h.url("/nope"), path: h.destination("nope"))]))
        _ = try h.client.perform("resume", on: job.id)
        h.wait(job.id, for: "ERROR")
        let kept = EventLog()
        try h.client.events(job: job.id, pending: true) { kept.append($0); return false }
        #expect(kept.kinds == ["jobError"])
        #expect(kept.events.first?.job.error?.code == "HTTP_ERROR_404")
        _ = try h.client.perform("cancel", on: job.id)
    }

    @Test func aFailingNotifyCommandRunsAgainAfterTheRetryDelay() throws {
        let record = h.directory.file("notify.log")
        let script = h.directory.file("notify.sh")
        try "#!/bin/sh\necho \"$1 $2 $FERRY_JOB_STATE $(date +%s.%N)\" >> \(record)\nexit 1\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        h.server.setFile("/n.bin", data: testBytes(1_000, seed: 94))
        let job = try h.client.createJob(CreateJobRequest(displayName: "notify", files: [NewFileDocument(url: h.url("/n.bin"), path: h.destination("n.bin"))],
                                                          settings: JobSettings(minRetryDelaySec: 5, notifyCommand: [script])))
        _ = try h.client.perform("resume", on: job.id)
        h.wait(job.id, for: "TRANSFERRED")
        #expect(waitUntil(timeout: 60) { ((try? String(contentsOfFile: record, encoding: .utf8)) ?? "").split(separator: "\n").count >= 2 }, "the command ran again after failing")
        let lines = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n")
        #expect(lines.first?.hasPrefix("\(job.id) TRANSFERRED TRANSFERRED ") ?? false, "\(lines)")
        // The second run waited the job's minimum retry delay (5 s) after the first.
        let times = lines.prefix(2).compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        #expect(times.count == 2, "\(lines)")
        if times.count == 2 { #expect(times[1] - times[0] >= 4.9, "ran again after the retry delay, not before: \(lines)") }
        _ = try h.client.perform("cancel", on: job.id)
    }

    @Test func aKilledAgentComesBackWithItsJobsAndResumes() throws {
        let data = testBytes(4 << 20, seed: 95)
        let heldAt = 2_500_000
        h.server.setFile("/k.bin", data: data)
        // The body stops part way until the test lets it go on: the kill lands mid-file.
        h.server.hold("/k.bin", afterBytes: heldAt)
        let job = try h.client.createJob(CreateJobRequest(displayName: "kill", files: [NewFileDocument(url: h.url("/k.bin"), path: h.destination("k.bin"))]))
        _ = try h.client.perform("resume", on: job.id)
        #expect(h.server.waitUntilHeld("/k.bin"))
        #expect(waitUntil(timeout: 60) { ((try? self.h.client.job(job.id))?.progress.bytesTransferred ?? 0) == heldAt })
        // Checkpoints come every 2 s: wait for the one of every byte that arrived.
        #expect(waitUntil(timeout: 60) { self.durableBytes() == heldAt }, "checkpointed: \(durableBytes() ?? -1)")
        h.stop(SIGKILL)
        // The restarted agent's request is held before its first byte: its figure stays put.
        h.server.hold("/k.bin")
        h.server.resetRequests()
        try h.start()
        #expect(h.server.waitUntilHeld("/k.bin", count: 2), "the restarted agent asked for the rest")
        let back = try h.client.job(job.id)
        #expect(back.files[0].bytesTransferred == UInt64(heldAt), "progress survived kill -9")
        h.server.release("/k.bin")
        h.wait(job.id, for: "TRANSFERRED", timeout: 60)
        #expect(h.server.requests(for: "/k.bin").first?.rangeStart == Int64(heldAt), "the transfer resumed with a range")
        _ = try h.client.perform("complete", on: job.id)
        #expect(fileHolds(h.destination("k.bin"), data))
    }

    @Test func sigtermExitsZeroWithEveryCheckpointWritten() throws {
        // No checkpoint comes by time or by size: every byte recorded at the stop was recorded
        // by the stop.
        try restartAgent(adding: "checkpoints:\n  interval_sec: 3600\n  bytes: 1099511627776\n")
        let heldAt = 1_000_000
        h.server.setFile("/t.bin", data: testBytes(4 << 20, seed: 96))
        h.server.hold("/t.bin", afterBytes: heldAt)
        let job = try h.client.createJob(CreateJobRequest(displayName: "term", files: [NewFileDocument(url: h.url("/t.bin"), path: h.destination("t.bin"))]))
        _ = try h.client.perform("resume", on: job.id)
        #expect(waitUntil(timeout: 60) { ((try? self.h.client.job(job.id))?.progress.bytesTransferred ?? 0) == heldAt })
        #expect(durableBytes() == 0, "nothing is recorded before the stop")
        #expect(h.stop(SIGTERM, timeout: 25) == 0)
        let temporary = try #require(directoryEntries(h.downloads).first { $0.hasSuffix(".part") })
        let onDisk = try #require(contentsOf(h.downloads + "/" + temporary)).count
        #expect(onDisk == heldAt)
        #expect(durableBytes() == onDisk, "a clean stop records every byte written")
        h.server.release("/t.bin")
        h.server.resetRequests()
        try h.start()
        #expect(waitUntil(timeout: 60) { !self.h.server.requests(for: "/t.bin").isEmpty })
        #expect(h.server.requests(for: "/t.bin").first?.rangeStart == Int64(onDisk), "the restarted agent goes on from there")
        _ = try h.client.perform("cancel", on: job.id)
    }

    @Test func sighupWithABrokenConfigurationKeepsServing() throws {
        try h.writeConfig("transfers:\n  max_connections: lots\n")
        h.process?.signal(SIGHUP)
        #expect(waitUntil(timeout: 60) { self.h.log.contains("configuration not reloaded") }, "\(h.log)")
        #expect(h.log.contains("transfers.max_connections"), "\(h.log)")
        #expect((try? h.client.health()) != nil, "still serving on the old configuration")
        try h.writeConfig("quotas:\n  jobs_per_user: 1\n")
        h.process?.signal(SIGHUP)
        #expect(waitUntil(timeout: 60) { self.h.log.contains("configuration reloaded") }, "\(h.log)")
        #expect(h.log.contains("applied=quotas.jobs_per_user"), "\(h.log)")
        // Quotas apply to users other than root: act as nobody.
        #expect(try h.curl("POST", "/v1/jobs", body: #"{"displayName": "one"}"#, asUser: "nobody").status == 201)
        let second = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "two"}"#, asUser: "nobody")
        #expect(second.status == 403, "\(second.body)")
        #expect(second.body.contains("QUOTA_EXCEEDED"), "\(second.body)")
    }

    /// A client that sends its next request (an event stream) before the previous answer has
    /// reached the socket keeps its stream: the header deadline, counted from an answer's end,
    /// applies only while the connection waits for a request, never during one.
    @Test func aPipelinedEventStreamIsNotCutByTheHeaderDeadline() throws {
        try restartAgent(adding: "api:\n  request_header_timeout_sec: 1\n")
        let script = """
        import socket, sys, time
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        request = b"GET /v1/health HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n"
        stream = b"GET /v1/events HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n"
        for _ in range(20):
            s.sendall(request)
        s.sendall(stream)
        s.settimeout(0.2)
        end = time.time() + 4
        while time.time() < end:
            try:
                if s.recv(65536) == b"":
                    print("closed after %.1f s" % (4 - (end - time.time())))
                    sys.exit(0)
            except socket.timeout:
                pass
        print("open")
        """
        let result = try PluginBuilder.run("/usr/bin/python3", ["-c", script, h.socket])
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines) == "open", "the stream outlived 4 header deadlines of 1 s: \(result.output)")
    }

    @Test func malformedRequestsGetClearErrorsAndTheAgentGoesOn() throws {
        let job = try h.client.createJob(CreateJobRequest(displayName: "target"))
        let cases: [(String, String, String?, Int, String)] = [
            ("POST", "/v1/jobs", "{", 400, "not valid JSON"),
            ("POST", "/v1/jobs", "not json", 400, "not valid JSON"),
            ("POST", "/v1/jobs", "[1,2]", 400, "expected"),
            ("POST", "/v1/jobs", "{}", 400, "missing field displayName"),
            ("POST", "/v1/jobs", #"{"displayName": 5}"#, 400, "displayName: expected a string"),
            ("POST", "/v1/jobs", #"{"displayName": "x", "colour": "red"}"#, 400, "unknown field colour"),
            ("POST", "/v1/jobs", #"{"displayName": ""}"#, 400, "displayName must have"),
            ("POST", "/v1/jobs", #"{"displayName": "x", "priority": "urgent"}"#, 400, "priority"),
            ("POST", "/v1/jobs", #"{"displayName": "x", "files": [{"url": "gopher://h/x", "path": "/tmp/x"}]}"#, 400, "unsupported URL scheme 'gopher'"),
            ("POST", "/v1/jobs", #"{"displayName": "x", "files": [{"url": "http://h/x", "path": "relative/x"}]}"#, 400, "must be absolute"),
            ("POST", "/v1/jobs", #"{"displayName": "x", "files": [{"url": "http://h/x", "path": "/nonexistent-ferry-dir/x"}]}"#, 400, "does not exist"),
            ("POST", "/v1/jobs", #"{"displayName": "x", "files": [{"url": "http://h/x"}]}"#, 400, "missing field files[0].path"),
            ("POST", "/v1/jobs", nil, 400, "needs a JSON body"),
            ("POST", "/v1/jobs/\(job.id)/files", #"{"files": []}"#, 400, "files is empty"),
            ("POST", "/v1/jobs/\(job.id)/resume", nil, 409, "no files"),
            ("GET", "/v1/jobs/not-a-uuid", nil, 404, "no job not-a-uuid"),
            ("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000", nil, 404, "no job"),
            ("GET", "/v1/jobs/\(job.id)/error", nil, 409, "not in error"),
            ("PATCH", "/v1/jobs/\(job.id)", #"{"minRetryDelaySec": -1}"#, 400, "minimum retry delay"),
            ("PATCH", "/v1/jobs/\(job.id)", #"{"notifyCommand": ["relative/prog"]}"#, 400, "absolute path"),
            ("PATCH", "/v1/jobs/\(job.id)", #"{"customHeaders": ["no colon here"]}"#, 400, "not a header line"),
            ("PATCH", "/v1/jobs/\(job.id)", #"{"notifyFlags": 1024}"#, 400, "unknown notify flags"),
            ("PUT", "/v1/jobs/\(job.id)/files/x/url", #"{"url": "http://h/y"}"#, 400, "whole number"),
            ("POST", "/v1/events/ack", nil, 400, "upTo"),
            ("GET", "/v1/nowhere", nil, 404, "no endpoint GET /v1/nowhere"),
            ("DELETE", "/v1/jobs", nil, 405, "DELETE is not allowed on /v1/jobs; use GET, POST"),
        ]
        for (method, path, body, status, fragment) in cases {
            let answer = try h.curl(method, path, body: body)
            #expect(answer.status == status, "\(method) \(path) \(body ?? ""): \(answer.body)")
            let envelope = try? ControlJSON.decoder.decode(ErrorEnvelope.self, from: Data(answer.body.utf8))
            #expect(envelope != nil, "a JSON error for \(method) \(path): \(answer.body)")
            if !fragment.isEmpty {
                #expect(envelope?.error.message.contains(fragment) ?? false, "\(method) \(path) should say '\(fragment)': \(answer.body)")
            }
        }
        let huge = h.directory.file("huge.json")
        try #"{"displayName": "\#(String(repeating: "x", count: 5 << 20))"}"#.write(toFile: huge, atomically: true, encoding: .utf8)
        let tooLarge = try h.curl("POST", "/v1/jobs", body: "@" + huge)
        #expect(tooLarge.status == 413, "\(tooLarge.body)")
        #expect(tooLarge.body.contains("larger than"), "\(tooLarge.body)")
        #expect((try? h.client.health()) != nil, "the agent is still serving")
    }
}

/// Events collected by a subscriber thread.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [EventDocument] = []
    func append(_ event: EventDocument) { lock.withLock { list.append(event) } }
    var events: [EventDocument] { lock.withLock { list } }
    var kinds: [String] { events.map(\.kind) }
}
