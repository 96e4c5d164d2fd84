import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// Users are isolated from each other: run as root, with a second account made for the test.
@Suite(.serialized, .enabled(if: getuid() == 0, "isolation needs root to create a second account"))
final class IsolationTests {
    let h: AgentHarness
    static let user = "ferrytest"

    init() throws {
        try SecondUser.ensure(Self.user)
        h = try AgentHarness()
        try h.start()
    }

    deinit { h.tearDown() }

    @Test func anotherUserCannotSeeOrTouchAJobAndRootSeesAll() throws {
        let mine = try h.client.createJob(CreateJobRequest(displayName: "root's"))
        let theirs = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "theirs"}"#, asUser: Self.user)
        #expect(theirs.status == 201, "\(theirs.body)")
        let theirJob = try ControlJSON.decoder.decode(JobDocument.self, from: Data(theirs.body.utf8))
        #expect(theirJob.owner == getpwnam(Self.user)!.pointee.pw_uid, "the owner is the caller the kernel reported")

        let list = try h.curl("GET", "/v1/jobs", asUser: Self.user)
        #expect(!list.body.contains(mine.id), "another user's job is not listed")
        #expect(list.body.contains(theirJob.id))
        for (method, path) in [("GET", "/v1/jobs/\(mine.id)"), ("POST", "/v1/jobs/\(mine.id)/cancel"), ("PATCH", "/v1/jobs/\(mine.id)")] {
            let answer = try h.curl(method, path, body: method == "PATCH" ? #"{"priority": "low"}"# : nil, asUser: Self.user)
            #expect(answer.status == 404, "\(method) \(path): \(answer.body)")
            #expect(answer.body.contains("no job \(mine.id)"), "the same answer as for a job that does not exist: \(answer.body)")
        }
        #expect(try h.client.job(mine.id).state == .suspended, "root's job is untouched")
        #expect(try h.curl("GET", "/v1/jobs?allUsers=true", asUser: Self.user).status == 403, "only root lists everyone")
        let all = try h.client.listJobs(allUsers: true).map(\.id)
        #expect(all.contains(mine.id) && all.contains(theirJob.id), "root sees both")
        #expect(try h.client.perform("cancel", on: theirJob.id).state == .cancelled, "root manages every job")
    }

    @Test func aUserCannotDownloadWhereItMayNotWrite() throws {
        let protected = try h.directory.subdirectory("root-only")
        chmod(protected, 0o755)
        let answer = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "x", "files": [{"url": "\#(h.url("/f"))", "path": "\#(protected)/f"}]}"#, asUser: Self.user)
        #expect(answer.status == 403, "\(answer.body)")
        #expect(answer.body.contains("ACCESS_DENIED") && answer.body.contains("may not create files in") && answer.body.contains("root-only"), "\(answer.body)")
    }

    @Test func aUserCannotFetchAFileURLItMayNotRead() throws {
        let secret = h.directory.file("secret.txt")
        try "root only".write(toFile: secret, atomically: true, encoding: .utf8)
        chmod(secret, 0o600)
        let answer = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "x", "files": [{"url": "file://\#(secret)", "path": "\#(h.downloads)/copy.txt"}]}"#, asUser: Self.user)
        #expect(answer.status == 403, "\(answer.body)")
        #expect(answer.body.contains("may not read"), "\(answer.body)")
        #expect(!exists(h.downloads + "/copy.txt"))
    }

    @Test func aSymlinkPlantedByAnotherUserIsNeverFollowed() throws {
        // A shared, sticky directory; the victim is a file of the job's owner, which the owner
        // could write: only O_NOFOLLOW keeps the job from overwriting it through the link.
        let shared = try h.directory.subdirectory("shared")
        chmod(shared, 0o1777)
        let victim = h.directory.file("victim.txt")
        try "precious".write(toFile: victim, atomically: true, encoding: .utf8)
        chmod(victim, 0o644)
        let owner = getpwnam(Self.user)!.pointee
        chown(victim, owner.pw_uid, owner.pw_gid)
        h.server.setFile("/evil.bin", data: Array("overwritten!".utf8))
        let created = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "x", "files": [{"url": "\#(h.url("/evil.bin"))", "path": "\#(shared)/out.bin"}]}"#, asUser: Self.user)
        #expect(created.status == 201, "\(created.body)")
        let job = try ControlJSON.decoder.decode(JobDocument.self, from: Data(created.body.utf8))
        // Another user (root here) plants a link where the job's temporary will be created.
        let temporary = "\(shared)/.out.bin.ferry-\(job.id.prefix(8))-0.part"
        #expect(symlink(victim, temporary) == 0)
        #expect(try h.curl("POST", "/v1/jobs/\(job.id)/resume", asUser: Self.user).status == 200)
        let failed = h.wait(job.id, for: "ERROR")
        #expect(failed?.error?.code == "LOCAL_FILE_ERROR", "\(String(describing: failed?.error))")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious", "the link was not followed")
        _ = try h.client.perform("cancel", on: job.id)
    }
}
