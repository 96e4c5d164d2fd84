import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// docs/api.md, example by example. Most examples name jobs made elsewhere in the doc; each
/// spec makes those jobs first, in the state the doc's text gives them, and binds the doc's
/// ids to them.
enum APIExamples {
    static let doc = "docs/api.md"
    static func key(_ heading: String, _ ordinal: Int = 1) -> ExampleKey { ExampleKey(doc, heading, ordinal) }

    static let a = testBytes(3_000_000, seed: 11)
    static let b = testBytes(120_000, seed: 12)
    static let docSHA256 = "c1b5526d0701ac8e1246ee56758f84d0265703a32330831315b36081672b1d60"
    /// The doc's two files, each with its check.
    static let twoFiles = #"[{"url": "http://127.0.0.1:8099/pool/a.deb", "path": "/srv/pkgs/a.deb", "properties": {"sha256": "\#(docSHA256)"}}, {"url": "http://127.0.0.1:8099/pool/b.deb", "path": "/srv/pkgs/b.deb", "properties": {"size": "120000"}}]"#

    static func serve(_ world: DocWorld) {
        world.serve("/pool/a.deb", a, docSHA256: docSHA256)
        world.serve("/pool/b.deb", b)
    }

    /// A job made as the doc's text describes it, bound to the doc's id.
    static func job(_ world: DocWorld, _ docID: String, _ body: String, as user: String? = nil) throws -> String {
        let id = try world.createJob(body, as: user)
        world.transcript.bind(docID, to: id)
        return id
    }

    /// The doc's `$JOB`: a new job named nightly.
    static func exportJob(_ world: DocWorld, _ body: String = #"{"displayName": "nightly"}"#) throws -> String {
        let id = try world.createJob(body)
        try world.export("JOB", id)
        return id
    }

    /// The job named "missing" of `POST /v1/jobs`, after its file was answered 404.
    static func missingJob(_ world: DocWorld) throws -> String {
        let id = try job(world, "c7fe7301-9e65-47e7-b912-aca5b6f42c86",
                         #"{"displayName": "missing", "files": [{"url": "http://127.0.0.1:8099/pool/missing.deb", "path": "/srv/pkgs/missing.deb"}], "settings": {"minRetryDelaySec": 30, "properties": {"channel": "stable"}}}"#)
        try world.request("POST", "/v1/jobs/\(id)/resume")
        try world.waitForJob(id, "ERROR")
        return id
    }

    /// The event streams of the doc show one `jobModification` (the job queued): as the doc
    /// says, a longer transfer sends more as its progress moves, one every
    /// `jobs.modification_min_interval_ms` at most. The streams' examples run with 3 s, so
    /// that the whole job fits in one interval whatever the machine's load.
    static let quietModificationSeconds = 3.0
    static let quietModifications = "jobs:\n  modification_min_interval_ms: 3000\n"

    static let specs: [ExampleSpec] = [
        ExampleSpec(keys: [key("Ownership and visibility")]) { world, examples in
            try world.startAgent()
            _ = try job(world, "4d2555cb-8086-4f20-95af-803475835588", #"{"displayName": "renamed"}"#)
            _ = try job(world, "aa5b6d2d-28e7-469f-976c-5677408f6952", #"{"displayName": "theirs"}"#, as: "nobody")
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [key("File")]) { world, examples in
            serve(world)
            try world.startAgent()
            let id = try job(world, "9a5322b5-706d-465b-a311-769737802bd6",
                             #"{"displayName": "nightly", "description": "packages for the nightly build", "priority": "high", "files": \#(twoFiles), "settings": {"notifyFlags": 27}}"#)
            try world.request("POST", "/v1/jobs/\(id)/resume")
            try world.waitForJob(id, "TRANSFERRED")
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [key("GET /v1/health")]) { world, examples in
            try world.startAgent()
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [key("GET /v1/jobs")]) { world, examples in
            try world.startAgent()
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [key("POST /v1/jobs", 1), key("POST /v1/jobs", 2)]) { world, examples in
            try world.startAgent()
            try world.checkAll(examples[0])
            try world.checkAll(examples[1])
        },
        // A job that was completed is gone.
        ExampleSpec(keys: [key("GET /v1/jobs/{id}")]) { world, examples in
            try world.startAgent()
            let id = try job(world, "9a5322b5-706d-465b-a311-769737802bd6", #"{"displayName": "nightly"}"#)
            try world.request("POST", "/v1/jobs/\(id)/cancel")
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [key("PATCH /v1/jobs/{id}", 1), key("PATCH /v1/jobs/{id}", 2)]) { world, examples in
            try world.startAgent()
            _ = try exportJob(world)
            let ca = world.directory.file("etc/ferry/internal-ca.pem")
            let made = try world.shell.run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -subj /CN=internal-ca -days 1 -out \(ca) 2>/dev/null")
            #expect(made.status == 0, "a CA certificate for the example: \(made.lines)")
            try world.checkAll(examples[0])
            try world.checkAll(examples[1])
        },
        ExampleSpec(keys: [key("POST /v1/jobs/{id}/files")]) { world, examples in
            try world.startAgent()
            _ = try exportJob(world)
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [key("POST /v1/jobs/{id}/resume, suspend, cancel, complete")]) { world, examples in
            serve(world)
            world.serve("/pool/d.deb", testBytes(1000, seed: 13))
            try world.startAgent()
            let job0 = try exportJob(world, #"{"displayName": "nightly", "files": \#(twoFiles)}"#)
            _ = try job(world, "4d2555cb-8086-4f20-95af-803475835588", #"{"displayName": "renamed"}"#)
            // One file valid and here, the other held back by its server.
            world.serve("/pool/c.deb", testBytes(1000, seed: 14))
            world.server.addFault("/pool/c.deb", .stall(seconds: 120), times: nil)
            let half = try job(world, "8d56a336-468a-416e-b4a1-7a9dd1ff3542",
                               #"{"displayName": "half", "files": [{"url": "http://127.0.0.1:8099/pool/a.deb", "path": "/srv/pkgs/a2.deb", "properties": {"sha256": "\#(docSHA256)"}}, {"url": "http://127.0.0.1:8099/pool/c.deb", "path": "/srv/pkgs/c.deb"}]}"#)
            try world.request("POST", "/v1/jobs/\(half)/resume")
            #expect(waitUntil(timeout: 30) { (try? world.client.job(half).files.first?.transferred) == true })
            // A job whose destination became a directory.
            let blocked = try job(world, "e56e915c-91f0-4df6-b029-d274b411025b",
                                  #"{"displayName": "blocked", "files": [{"url": "http://127.0.0.1:8099/pool/d.deb", "path": "/srv/pkgs/d.deb"}]}"#)
            try world.request("POST", "/v1/jobs/\(blocked)/resume")
            try world.waitForJob(blocked, "TRANSFERRED")
            try FileManager.default.createDirectory(atPath: world.pkgs + "/d.deb", withIntermediateDirectories: false)
            try world.checkAll(examples[0], 0..<1)
            try world.waitForJob(job0, "TRANSFERRED")
            try world.checkAll(examples[0], 1..<5)
        },
        ExampleSpec(keys: [key("PUT /v1/jobs/{id}/files/{index}/url")]) { world, examples in
            serve(world)
            try world.startAgent()
            _ = try missingJob(world)
            try world.checkAll(examples[0])
        },
        // The job's file is b.deb, which the server does not have.
        ExampleSpec(keys: [key("POST /v1/jobs/{id}/replace-remote-prefix")]) { world, examples in
            try world.startAgent()
            let id = try job(world, "c7fe7301-9e65-47e7-b912-aca5b6f42c86",
                             #"{"displayName": "missing", "files": [{"url": "http://127.0.0.1:8099/pool/b.deb", "path": "/srv/pkgs/b.deb"}]}"#)
            try world.request("POST", "/v1/jobs/\(id)/resume")
            try world.waitForJob(id, "ERROR")
            try world.checkAll(examples[0])
        },
        // Mirrors given, the first source down: the job moves to the mirror; then the sources.
        ExampleSpec(keys: [key("POST /v1/jobs/{id}/files/{index}/mirrors", 1), key("POST /v1/jobs/{id}/files/{index}/mirrors", 2),
                           key("GET /v1/sources")]) { world, examples in
            serve(world)
            try world.startAgent()
            let id = try exportJob(world)
            try world.checkAll(examples[0])
            try world.request("POST", "/v1/jobs/\(id)/resume")
            try world.waitForJob(id, "TRANSFERRED")
            try world.checkAll(examples[1])
            try world.checkAll(examples[2])
        },
        ExampleSpec(keys: [key("GET /v1/jobs/{id}/error")]) { world, examples in
            serve(world)
            try world.startAgent()
            _ = try missingJob(world)
            let down = try job(world, "4171c0e0-3db2-4709-8abc-a0a62b60aa50",
                               #"{"displayName": "down", "files": [{"url": "http://127.0.0.1:8098/pool/a.deb", "path": "/srv/pkgs/a.deb"}]}"#)
            try world.request("POST", "/v1/jobs/\(down)/resume")
            try world.waitForJob(down, "TRANSIENT_ERROR")
            _ = try job(world, "4d2555cb-8086-4f20-95af-803475835588", #"{"displayName": "renamed"}"#)
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: [key("Errors")]) { world, examples in
            try world.startAgent()
            try world.checkAll(examples[0])
        },
        // The stream is open before the job starts; the small file is held back a second so
        // that the big one arrives first, as the doc shows.
        ExampleSpec(keys: [key("An event")]) { world, examples in
            serve(world)
            world.server.addFault("/pool/b.deb", .stall(seconds: 1))
            try world.startAgent(config: quietModifications)
            let id = try exportJob(world, #"{"displayName": "nightly", "files": \#(twoFiles), "settings": {"notifyFlags": 27}}"#)
            try world.checkStream(examples[0].commands[0], of: examples[0]) {
                world.outlastModificationInterval(quietModificationSeconds)
                try world.request("POST", "/v1/jobs/\(id)/resume")
            }
        },
        ExampleSpec(keys: [key("Pending events and acknowledgement (at-least-once)", 1), key("Pending events and acknowledgement (at-least-once)", 2)]) { world, examples in
            serve(world)
            try world.startAgent()
            let id = try job(world, "a5764f02-d885-40c1-ba61-dc7dd38330a8", #"{"displayName": "nightly", "priority": "high", "files": \#(twoFiles)}"#)
            try world.request("POST", "/v1/jobs/\(id)/resume")
            try world.waitForJob(id, "TRANSFERRED")
            try world.checkAll(examples[0])
            try world.checkAll(examples[1])
        },
        // With quotas.jobs_per_user: 1, as the comment says, and a job of nobody's already there.
        ExampleSpec(keys: [key("Limits")]) { world, examples in
            try world.startAgent(config: "quotas:\n  jobs_per_user: 1\n")
            _ = try world.createJob(#"{"displayName": "one"}"#, as: "nobody")
            let huge = #"{"displayName": "huge", "description": ""# + String(repeating: "x", count: 4_200_000) + #""}"#
            try huge.write(toFile: world.pkgs + "/huge.json", atomically: true, encoding: .utf8)
            try world.checkAll(examples[0])
        },
        ExampleSpec(keys: (1...6).map { key("A walk-through", $0) }) { world, examples in
            serve(world)
            world.server.addFault("/pool/a.deb", .stall(seconds: 1))
            try world.checkAgentStart(examples[0].commands[0], of: examples[0], config: quietModifications)
            try world.checkAll(examples[1])
            try world.checkAll(examples[2])
            let job = try world.variable("JOB")
            try world.check(examples[3].commands[0], of: examples[3])
            // The third terminal: the stream, followed while the job runs.
            let stream = try world.startStream(examples[3].commands[1].line)
            world.outlastModificationInterval(quietModificationSeconds)
            try world.checkAll(examples[4], 0..<1)
            try world.waitForJob(job, "TRANSFERRED")
            try world.checkAll(examples[4], 1..<3)
            let printed = try ConsoleExample.codeBlock(doc, heading: "A walk-through", language: "")
                .split(separator: "\n").map { world.mapped(String($0)) }
            let lines = try world.finish(stream, lines: printed.count)
            if let problem = world.transcript.match(expected: printed, actual: lines) {
                Issue.record("docs/api.md, A walk-through, what the event stream printed:\n\(problem)")
            }
            try world.checkAll(examples[5])
        },
    ]
}
