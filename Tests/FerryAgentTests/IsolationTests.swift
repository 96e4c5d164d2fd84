import FerryControl
import FerryTestSupport
import Foundation
import XCTest

/// Users are isolated from each other: run as root, with a second account made for the test.
final class IsolationTests: XCTestCase {
    var h: AgentHarness!
    static let user = "ferrytest"

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0, "isolation needs root to create a second account")
        try SecondUser.ensure(Self.user)
        h = try AgentHarness()
        try h.start()
    }

    override func tearDown() { h?.tearDown() }

    func testAnotherUserCannotSeeOrTouchAJobAndRootSeesAll() throws {
        let mine = try h.client.createJob(CreateJobRequest(displayName: "root's"))
        let theirs = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "theirs"}"#, asUser: Self.user)
        XCTAssertEqual(theirs.status, 201, theirs.body)
        let theirJob = try ControlJSON.decoder.decode(JobDocument.self, from: Data(theirs.body.utf8))
        XCTAssertEqual(theirJob.owner, getpwnam(Self.user)!.pointee.pw_uid, "the owner is the caller the kernel reported")

        let list = try h.curl("GET", "/v1/jobs", asUser: Self.user)
        XCTAssertFalse(list.body.contains(mine.id), "another user's job is not listed")
        XCTAssertTrue(list.body.contains(theirJob.id))
        for (method, path) in [("GET", "/v1/jobs/\(mine.id)"), ("POST", "/v1/jobs/\(mine.id)/cancel"), ("PATCH", "/v1/jobs/\(mine.id)")] {
            let answer = try h.curl(method, path, body: method == "PATCH" ? #"{"priority": "low"}"# : nil, asUser: Self.user)
            XCTAssertEqual(answer.status, 404, "\(method) \(path): \(answer.body)")
            XCTAssertTrue(answer.body.contains("no job \(mine.id)"), "the same answer as for a job that does not exist: \(answer.body)")
        }
        XCTAssertEqual(try h.client.job(mine.id).state, .suspended, "root's job is untouched")
        XCTAssertEqual(try h.curl("GET", "/v1/jobs?allUsers=true", asUser: Self.user).status, 403, "only root lists everyone")
        let all = try h.client.listJobs(allUsers: true).map(\.id)
        XCTAssertTrue(all.contains(mine.id) && all.contains(theirJob.id), "root sees both")
        XCTAssertEqual(try h.client.perform("cancel", on: theirJob.id).state, .cancelled, "root manages every job")
    }

    func testAUserCannotDownloadWhereItMayNotWrite() throws {
        let protected = try h.directory.subdirectory("root-only")
        chmod(protected, 0o755)
        let answer = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "x", "files": [{"url": "\#(h.url("/f"))", "path": "\#(protected)/f"}]}"#, asUser: Self.user)
        XCTAssertEqual(answer.status, 403, answer.body)
        XCTAssertTrue(answer.body.contains("ACCESS_DENIED") && answer.body.contains("may not create files in") && answer.body.contains("root-only"), answer.body)
    }

    func testAUserCannotFetchAFileURLItMayNotRead() throws {
        let secret = h.directory.file("secret.txt")
        try "root only".write(toFile: secret, atomically: true, encoding: .utf8)
        chmod(secret, 0o600)
        let answer = try h.curl("POST", "/v1/jobs", body: #"{"displayName": "x", "files": [{"url": "file://\#(secret)", "path": "\#(h.downloads)/copy.txt"}]}"#, asUser: Self.user)
        XCTAssertEqual(answer.status, 403, answer.body)
        XCTAssertTrue(answer.body.contains("may not read"), answer.body)
        XCTAssertFalse(exists(h.downloads + "/copy.txt"))
    }

    func testASymlinkPlantedByAnotherUserIsNeverFollowed() throws {
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
        XCTAssertEqual(created.status, 201, created.body)
        let job = try ControlJSON.decoder.decode(JobDocument.self, from: Data(created.body.utf8))
        // Another user (root here) plants a link where the job's temporary will be created.
        let temporary = "\(shared)/.out.bin.ferry-\(job.id.prefix(8))-0.part"
        XCTAssertEqual(symlink(victim, temporary), 0)
        XCTAssertEqual(try h.curl("POST", "/v1/jobs/\(job.id)/resume", asUser: Self.user).status, 200)
        let failed = h.wait(job.id, for: "ERROR")
        XCTAssertEqual(failed?.error?.code, "LOCAL_FILE_ERROR", "\(String(describing: failed?.error))")
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious", "the link was not followed")
        _ = try h.client.perform("cancel", on: job.id)
    }
}
