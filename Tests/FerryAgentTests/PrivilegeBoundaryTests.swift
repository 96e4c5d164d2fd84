import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// The root agent acts for every local user: each test plays a second user (`runuser`,
/// `setpriv`) who tries to get, through the agent, something it could not get alone, and
/// asserts that it gets nothing and that the agent keeps serving. See docs/security.md.
@Suite(.serialized, .enabled(if: getuid() == 0, "the boundary tests need root, to run the agent as root and play a second user"))
final class PrivilegeBoundaryTests {
    let h: AgentHarness
    static let user = "ferrytest"
    static let group = "ferrygrp"
    /// A uid and gid no account has.
    static let strangerUID = "54321"
    static let strangerGID = "54322"
    var uid: uid_t = 0
    var gid: gid_t = 0
    /// A directory the user owns, as its home would be.
    var home = ""
    /// A file only root may read, and its bytes.
    var secret = ""
    let secretBytes = Array("root's secret, never to be copied\n".utf8)

    init() throws {
        try SecondUser.ensure(Self.user)
        if getgrnam(Self.group) == nil {
            let made = try PluginBuilder.run("/usr/sbin/groupadd", [Self.group])
            #expect(made.status == 0, "\(made.output)")
        }
        let added = try PluginBuilder.run("/usr/sbin/usermod", ["-a", "-G", Self.group, Self.user])
        #expect(added.status == 0, "\(added.output)")
        uid = getpwnam(Self.user)!.pointee.pw_uid
        gid = getpwnam(Self.user)!.pointee.pw_gid
        h = try AgentHarness()
        try h.start()
        home = try h.directory.subdirectory("home")
        chown(home, uid, gid)
        chmod(home, 0o755)
        secret = h.directory.file("secret")
        try Data(secretBytes).write(to: URL(fileURLWithPath: secret))
        chmod(secret, 0o600)
    }

    deinit { h.tearDown() }

    // MARK: - Helpers

    /// `curl` on the agent's socket, run through `prefix` (runuser, setpriv).
    private func request(_ method: String, _ path: String, body: String? = nil, via prefix: [String]) throws -> (status: Int, body: String) {
        try h.curl(method, path, body: body, via: prefix)
    }

    private var asUser: [String] { ["runuser", "-u", Self.user, "--"] }

    private func createJob(_ files: [(url: String, path: String)], via prefix: [String]? = nil) throws -> (status: Int, body: String, id: String?) {
        let list = files.map { #"{"url": "\#($0.url)", "path": "\#($0.path)"}"# }.joined(separator: ", ")
        let answer = try request("POST", "/v1/jobs", body: #"{"displayName": "attempt", "files": [\#(list)]}"#, via: prefix ?? asUser)
        let id = answer.status == 201 ? (try? ControlJSON.decoder.decode(JobDocument.self, from: Data(answer.body.utf8)))?.id : nil
        return (answer.status, answer.body, id)
    }

    private func makeUserDirectory(_ path: String) {
        #expect(mkdir(path, 0o755) == 0, "\(path)")
        chown(path, uid, gid)
    }

    /// Every regular file under `directory` (temporaries included).
    private func filesHolding(_ bytes: [UInt8], under directory: String) -> [String] {
        guard let names = FileManager.default.enumerator(atPath: directory) else { return [] }
        return names.compactMap { $0 as? String }.map { directory + "/" + $0 }.filter { contentsOf($0) == bytes }
    }

    /// Root's view of health, timed: it must answer within a second whatever a user does.
    private func assertHealthAnswersPromptly(sourceLocation: SourceLocation = #_sourceLocation) {
        let start = Date()
        #expect((try? h.client.health()) != nil, "the agent answers", sourceLocation: sourceLocation)
        #expect(Date().timeIntervalSince(start) < 1.0, "health answered within a second", sourceLocation: sourceLocation)
    }

    private func waitForEnd(_ id: String, timeout: Double = 30) -> JobDocument? {
        var last: JobDocument?
        _ = waitUntil(timeout: timeout) {
            last = try? self.h.client.job(id)
            return ["TRANSFERRED", "ERROR", "ACKNOWLEDGED", "CANCELLED"].contains(last?.state.rawValue ?? "")
        }
        return last
    }

    // MARK: - file: sources

    @Test func dotSegmentsBehindALinkReadWhatTheKernelResolvesForTheUser() throws {
        // home/L -> home/a/b. The kernel resolves home/L/../../secret to home/secret (a decoy the
        // user wrote); removing the dot segments as text gives the root-only secret beside home.
        makeUserDirectory(home + "/a")
        makeUserDirectory(home + "/a/b")
        #expect(symlink(home + "/a/b", home + "/L") == 0)
        let decoy = Array("the user's own decoy\n".utf8)
        try Data(decoy).write(to: URL(fileURLWithPath: home + "/secret"))
        chown(home + "/secret", uid, gid)
        let url = "file://\(home)/L/../../secret"
        let created = try createJob([(url, h.downloads + "/copy")])
        #expect(created.status == 201, "\(created.body)")
        let id = try #require(created.id)
        #expect(try request("POST", "/v1/jobs/\(id)/resume", via: asUser).status == 200)
        let end = waitForEnd(id)
        #expect(end?.state.rawValue == "TRANSFERRED", "\(String(describing: end?.error))")
        #expect(filesHolding(secretBytes, under: h.downloads) == [], "no copy of the secret anywhere")
        #expect(filesHolding(decoy, under: h.downloads).count == 1, "the user got what the kernel resolves for it: its own decoy")
    }

    @Test func aSourceSwappedForALinkWhileJobsRunNeverYieldsTheSecret() throws {
        // The user flips home/x between a file of its own and a link to the secret, as fast as it
        // can, while jobs read it. Bounded: 12 jobs, each waited for.
        let own = Array("an ordinary file of the user's\n".utf8)
        try Data(own).write(to: URL(fileURLWithPath: home + "/plain"))
        chown(home + "/plain", uid, gid)
        #expect(symlink(secret, home + "/link") == 0)
        #expect(link(home + "/plain", home + "/x") == 0)
        let stop = AtomicFlag()
        let (home, secret) = (self.home, self.secret)
        let swapper = Thread {
            var flip = false
            while !stop.isSet {
                let staged = home + "/x.next"
                unlink(staged)
                if flip { _ = symlink(secret, staged) } else { _ = link(home + "/plain", staged) }
                _ = rename(staged, home + "/x")
                flip.toggle()
            }
        }
        swapper.start()
        defer { stop.set() }
        var outcomes: [String: Int] = [:]
        for round in 0..<12 {
            let created = try createJob([("file://\(home)/x", h.downloads + "/race-\(round)")])
            guard created.status == 201, let id = created.id else {
                outcomes["refused at add", default: 0] += 1
                #expect(created.body.contains("ACCESS_DENIED"), "\(created.body)")
                continue
            }
            _ = try request("POST", "/v1/jobs/\(id)/resume", via: asUser)
            let end = waitForEnd(id)
            outcomes[end?.state.rawValue ?? "gone", default: 0] += 1
            if let code = end?.error?.code { #expect(code == "ACCESS_DENIED", "a failed open is the owner's own refusal") }
        }
        stop.set()
        #expect(filesHolding(secretBytes, under: h.downloads) == [], "no copy of the secret in any temporary: \(outcomes)")
        #expect(outcomes.values.reduce(0, +) == 12)
        assertHealthAnswersPromptly()
    }

    @Test func sourcesThatAreNotRegularFilesAreRefusedAndNeverBlock() throws {
        let fifo = home + "/fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        chown(fifo, uid, gid)
        for (name, source) in [("FIFO", fifo), ("character device", "/dev/zero"), ("directory", home)] {
            let start = Date()
            let created = try createJob([("file://\(source)", h.downloads + "/from-\(name.split(separator: " ").first!)")])
            #expect(created.status == 400, "\(name): \(created.body)")
            #expect(created.body.contains("NOT_A_REGULAR_FILE") && created.body.contains(source), "\(name): \(created.body)")
            #expect(Date().timeIntervalSince(start) < 5, "\(name): refused at once")
        }
        // A regular file when added, a FIFO when the job runs: the transfer's own open refuses it.
        let swapped = home + "/later"
        try Data("ok".utf8).write(to: URL(fileURLWithPath: swapped))
        chown(swapped, uid, gid)
        let created = try createJob([("file://\(swapped)", h.downloads + "/later")])
        let id = try #require(created.id, "\(created.body)")
        unlink(swapped)
        #expect(mkfifo(swapped, 0o644) == 0)
        chown(swapped, uid, gid)
        #expect(try request("POST", "/v1/jobs/\(id)/resume", via: asUser).status == 200)
        let end = waitForEnd(id)
        #expect(end?.state.rawValue == "ERROR")
        #expect(end?.error?.code == "NOT_A_REGULAR_FILE", "\(String(describing: end?.error))")
        assertHealthAnswersPromptly()
        // A FIFO as the job's CA file is refused when set, at once.
        let start = Date()
        let patched = try request("PATCH", "/v1/jobs/\(id)", body: #"{"tlsCAFile": "\#(fifo)"}"#, via: asUser)
        #expect(patched.status == 400, "\(patched.body)")
        #expect(patched.body.contains("NOT_A_REGULAR_FILE"), "\(patched.body)")
        #expect(Date().timeIntervalSince(start) < 5)
        // SIGTERM still stops the agent promptly.
        #expect(h.stop(SIGTERM, timeout: 20) == 0)
    }

    @Test func noCapabilityOfRootActsForTheUser() throws {
        // A PCI device's configuration space: a user reads its first 64 bytes, root (with
        // CAP_SYS_ADMIN) all of them. The driver decides by the opener's capabilities.
        let devices = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/bus/pci/devices")) ?? []
        let config = devices.sorted().map { "/sys/bus/pci/devices/\($0)/config" }.first { FileManager.default.isReadableFile(atPath: $0) }
        let path = try #require(config, "no PCI device here to read")
        let userRead = try PluginBuilder.run("/usr/bin/env", ["runuser", "-u", Self.user, "--", "sh", "-c", "cat \(path) | wc -c"])
        let asRoot = try PluginBuilder.run("/bin/sh", ["-c", "cat \(path) | wc -c"])
        let userBytes = Int(userRead.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        let rootBytes = Int(asRoot.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        if userBytes == rootBytes { try Test.cancel("this device shows the user and root the same bytes (\(userBytes))") }
        let created = try createJob([("file://\(path)", h.downloads + "/pci-config")])
        let id = try #require(created.id, "\(created.body)")
        #expect(try request("POST", "/v1/jobs/\(id)/resume", via: asUser).status == 200)
        // Whatever the job ends as, nothing of the agent's holds more than the user could read.
        _ = waitUntil(timeout: 60) { ["TRANSFERRED", "ERROR", "TRANSIENT_ERROR"].contains((try? self.h.client.job(id))?.state.rawValue ?? "") }
        let held = (try? FileManager.default.contentsOfDirectory(atPath: h.downloads))?.filter { $0.contains("pci-config") }
            .compactMap { contentsOf(h.downloads + "/" + $0)?.count } ?? []
        #expect(held.allSatisfy { $0 <= userBytes }, "the user reads \(userBytes) bytes alone, root \(rootBytes); the agent wrote \(held)")
    }

    // MARK: - The caller's real identity

    @Test func groupsAreTheOnesTheCallerHoldsNotTheAccountDatabases() throws {
        // A directory and a file of a group the user belongs to in the account database.
        let shared = try h.directory.subdirectory("group-dir")
        chown(shared, 0, getgrnam(Self.group)!.pointee.gr_gid)
        chmod(shared, 0o770)
        let groupFile = h.directory.file("group-file")
        let groupBytes = Array("for the group only\n".utf8)
        try Data(groupBytes).write(to: URL(fileURLWithPath: groupFile))
        chown(groupFile, 0, getgrnam(Self.group)!.pointee.gr_gid)
        chmod(groupFile, 0o640)

        // With its groups (runuser takes them from the account database): allowed.
        let withGroups = try createJob([("file://\(groupFile)", shared + "/copy")])
        #expect(withGroups.status == 201, "\(withGroups.body)")

        // Having dropped them, the same user may do neither.
        let dropped = ["setpriv", "--reuid", Self.user, "--regid", Self.user, "--clear-groups", "--"]
        let write = try createJob([(h.url("/f"), shared + "/copy2")], via: dropped)
        #expect(write.status == 403, "\(write.body)")
        #expect(write.body.contains("ACCESS_DENIED"), "\(write.body)")
        let read = try createJob([("file://\(groupFile)", h.downloads + "/copy3")], via: dropped)
        #expect(read.status == 403, "\(read.body)")
        #expect(read.body.contains("ACCESS_DENIED"), "\(read.body)")

        // A job created with the groups, later resumed: it keeps the identity it was created with.
        let id = try #require(withGroups.id)
        #expect(try request("POST", "/v1/jobs/\(id)/resume", via: asUser).status == 200)
        #expect(waitForEnd(id)?.state.rawValue == "TRANSFERRED")
    }

    @Test func aJobActsWithTheGroupsOfTheProcessThatNamesItsPaths() throws {
        // A job created by a process in the group; files added later by a process of the same
        // user that dropped the group: they are read without it.
        let groupFile = h.directory.file("group-only")
        let groupBytes = Array("the group's own\n".utf8)
        try Data(groupBytes).write(to: URL(fileURLWithPath: groupFile))
        chown(groupFile, 0, getgrnam(Self.group)!.pointee.gr_gid)
        chmod(groupFile, 0o640)
        let empty = try request("POST", "/v1/jobs", body: #"{"displayName": "with the group"}"#, via: asUser)
        #expect(empty.status == 201, "\(empty.body)")
        let id = try #require(try? ControlJSON.decoder.decode(JobDocument.self, from: Data(empty.body.utf8)).id)
        let dropped = ["setpriv", "--reuid", Self.user, "--regid", Self.user, "--clear-groups", "--"]
        let added = try request("POST", "/v1/jobs/\(id)/files", body: #"{"files": [{"url": "file://\#(groupFile)", "path": "\#(h.downloads)/group-copy"}]}"#, via: dropped)
        #expect(added.status == 403, "checked with the identity the adding process holds: \(added.body)")
        #expect(filesHolding(groupBytes, under: h.downloads) == [])
    }

    @Test func aUidWithoutAnAccountGetsNoGroupsBeyondItsOwn() throws {
        // A file of group 54321, readable by that group. The caller is uid 54321 with gid 54322
        // and no supplementary groups: the old fallback made its uid a group and let it read.
        let file = h.directory.file("numbered")
        try Data("group 54321 only\n".utf8).write(to: URL(fileURLWithPath: file))
        chown(file, 0, gid_t(Self.strangerUID)!)
        chmod(file, 0o640)
        let stranger = ["setpriv", "--reuid", Self.strangerUID, "--regid", Self.strangerGID, "--clear-groups", "--"]
        let cat = try PluginBuilder.run("/usr/bin/env", stranger + ["cat", file])
        #expect(cat.status != 0, "alone, the stranger cannot read it")
        let answer = try createJob([("file://\(file)", h.downloads + "/numbered")], via: stranger)
        #expect(answer.status == 403, "\(answer.body)")
        #expect(answer.body.contains("ACCESS_DENIED"), "\(answer.body)")
        #expect(filesHolding(Array("group 54321 only\n".utf8), under: h.downloads) == [])
    }

    // MARK: - Destinations

    @Test func aCommitLandsWhereTheTemporaryWasEvenIfTheDirectoryIsSwappedForALink() throws {
        makeUserDirectory(home + "/dl")
        makeUserDirectory(home + "/elsewhere")
        h.server.setFile("/pkg", data: Array("package bytes\n".utf8))
        let created = try createJob([(h.url("/pkg"), home + "/dl/pkg")])
        let id = try #require(created.id, "\(created.body)")
        #expect(try request("POST", "/v1/jobs/\(id)/resume", via: asUser).status == 200)
        #expect(waitForEnd(id)?.state.rawValue == "TRANSFERRED")
        // The user moves the directory away and puts a link to another one in its place.
        #expect(rename(home + "/dl", home + "/dl-moved") == 0)
        #expect(symlink(home + "/elsewhere", home + "/dl") == 0)
        let completed = try request("POST", "/v1/jobs/\(id)/complete", via: asUser)
        #expect(completed.status == 200, "\(completed.body)")
        #expect(fileHolds(home + "/dl-moved/pkg", Array("package bytes\n".utf8)), "renamed in the directory the temporary was created in")
        #expect(!FileManager.default.fileExists(atPath: home + "/elsewhere/pkg"), "the link was not followed")
    }

    @Test func pathErrorsDoNotTellWhetherAHiddenPathExists() throws {
        let hidden = try h.directory.subdirectory("private")
        chmod(hidden, 0o700)
        try h.directory.subdirectory("private/exists")
        chmod(hidden + "/exists", 0o777)
        let there = try createJob([(h.url("/f"), hidden + "/exists/f")])
        let notThere = try createJob([(h.url("/f"), hidden + "/missing/f")])
        #expect(there.status == notThere.status, "\(there.body) / \(notThere.body)")
        #expect(there.status == 403)
        let normalize = { (text: String) in text.replacingOccurrences(of: "exists", with: "X").replacingOccurrences(of: "missing", with: "X") }
        #expect(normalize(there.body) == normalize(notThere.body), "the same answer either way")
        // The same for file: sources under the hidden directory.
        try Data("x".utf8).write(to: URL(fileURLWithPath: hidden + "/exists/file"))
        chmod(hidden + "/exists/file", 0o644)
        let readThere = try createJob([("file://\(hidden)/exists/file", h.downloads + "/a")])
        let readNotThere = try createJob([("file://\(hidden)/missing/file", h.downloads + "/b")])
        #expect(readThere.status == 403, "\(readThere.body)")
        #expect(normalize(readThere.body) == normalize(readNotThere.body))
    }

    @Test func healthCountsOnlyTheCallersOwnJobs() throws {
        for index in 0..<3 { _ = try h.client.createJob(CreateJobRequest(displayName: "root's \(index)")) }
        let mine = try request("GET", "/v1/health", via: asUser)
        #expect(mine.status == 200)
        let health = try ControlJSON.decoder.decode(HealthDocument.self, from: Data(mine.body.utf8))
        #expect(health.jobs == 0, "root's three jobs are not counted for another user")
        _ = try createJob([(h.url("/f"), h.downloads + "/f")])
        let after = try ControlJSON.decoder.decode(HealthDocument.self, from: Data(try request("GET", "/v1/health", via: asUser).body.utf8))
        #expect(after.jobs == 1)
        #expect(try h.client.health().jobs == 4, "root sees every job")
    }

    // MARK: - Plugins

    @Test func agentRefusesAPluginWhoseLinkLeadsWhereOthersMayWrite() throws {
        // A local user may write in a world-writable, non-sticky directory; an administrator
        // names the plugin through a link in a trusted place.
        let open = try h.directory.subdirectory("drop")
        chmod(open, 0o777)
        let real = open + "/libferry-sha256.so"
        let built = productsDirectory() + "/libferry-sha256.so"
        #expect(try PluginBuilder.run("/bin/cp", [built, real]).status == 0)
        chmod(real, 0o755)
        let trusted = try h.directory.subdirectory("plugins")
        #expect(symlink(real, trusted + "/libferry-sha256.so") == 0)
        let config = h.directory.file("linked.yaml")
        try "plugins:\n  - path: \(trusted)/libferry-sha256.so\n    role: validator\n".write(toFile: config, atomically: true, encoding: .utf8)
        let arguments = ["--config", config, "--state-dir", h.directory.file("state2"), "--socket", h.directory.file("s2.sock")]
        let started = try ChildProcess.run("ferryd", arguments, timeout: 30)
        #expect(started.status == 69, "cannot run: \(started.stderr)")
        #expect(started.stderr.contains("its directory \(open) is writable by everyone"), "\(started.stderr)")
        let checked = try ChildProcess.run("ferryd", ["--check-config"] + arguments)
        #expect(checked.status == 78, "a configuration that names an untrusted plugin: \(checked.stderr)")
        #expect(checked.stderr.contains("its directory \(open) is writable by everyone"), "\(checked.stderr)")
        // The same file copied into the trusted directory loads.
        unlink(trusted + "/libferry-sha256.so")
        #expect(try PluginBuilder.run("/bin/cp", [built, trusted + "/libferry-sha256.so"]).status == 0)
        let fine = try ChildProcess.run("ferryd", ["--check-config"] + arguments)
        #expect(fine.status == 0, "\(fine.stderr)")
    }

    // MARK: - Notify programs

    @Test func aNotifyProgramRunsAsTheOwnerFromTheFileThatWasChecked() throws {
        let script = home + "/notify.sh"
        let mark = home + "/ran-as"
        try "#!/bin/sh\nid -u > \(mark)\n".write(toFile: script, atomically: true, encoding: .utf8)
        chown(script, uid, gid)
        chmod(script, 0o755)
        h.server.setFile("/n", data: Array("n".utf8))
        let created = try createJob([(h.url("/n"), h.downloads + "/n")])
        let id = try #require(created.id, "\(created.body)")
        let patched = try request("PATCH", "/v1/jobs/\(id)", body: #"{"notifyCommand": ["\#(script)"]}"#, via: asUser)
        #expect(patched.status == 200, "\(patched.body)")
        #expect(try request("POST", "/v1/jobs/\(id)/resume", via: asUser).status == 200)
        #expect(waitUntil(timeout: 30) { FileManager.default.fileExists(atPath: mark) }, "\(h.log)")
        #expect(waitUntil(timeout: 30) { (try? String(contentsOfFile: mark, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == "\(self.uid)" }, "ran as the owner: \((try? String(contentsOfFile: mark, encoding: .utf8)) ?? "")")
    }
}

/// A flag set once, read from another thread.
final class AtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
