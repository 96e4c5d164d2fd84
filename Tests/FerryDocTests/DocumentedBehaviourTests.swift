import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What docs/cli.md and docs/configuration.md say in prose rather than in a console example,
/// each run through the real `ferry` and `ferryd`, in every mode it applies to. Each test
/// names the passage it proves.
@Suite("Documented behaviours of ferry and ferryd, through the binaries", .serialized)
struct DocumentedBehaviourTests {
    static let file = testBytes(3_000_000, seed: 31)

    /// A world with a file at /pool/a.deb (3,000,000 bytes) and, through ferryd, the agent.
    static func world(_ mode: TransferMode) throws -> DocWorld {
        let world = try DocWorld(user: .ordinary, mode: mode)
        world.serve("/pool/a.deb", file)
        if mode == .throughAgent { try world.startAgent() }
        return world
    }

    static func url(_ world: DocWorld, _ path: String = "/pool/a.deb") -> String { world.server.baseURL + path }

    /// The ordinary user's jobs in the agent.
    static func agentJobs(_ world: DocWorld) throws -> [String] {
        try world.client.listJobs(allUsers: true).map(\.id)
    }

    // cli.md, ferry transfer's options: "-q, --quiet: Print errors only (not even where the job runs)."
    @Test(arguments: TransferMode.allCases)
    func quietPrintsErrorsOnly(_ mode: TransferMode) throws {
        let world = try Self.world(mode)
        defer { world.tearDown() }
        let fine = try world.shell.run("ferry transfer -q \(Self.url(world)) a.deb")
        #expect(fine.status == 0 && fine.lines.isEmpty, "nothing printed on success: \(fine.lines)")
        #expect(fileHolds(world.pkgs + "/a.deb", Self.file))
        let failed = try world.shell.run("ferry transfer -q \(Self.url(world, "/pool/missing.deb")) missing.deb")
        #expect(failed.status == 1)
        #expect(failed.lines.first?.hasPrefix("ferry: job ") == true && failed.lines.first?.contains("HTTP_ERROR_404") == true, "\(failed.lines)")
        #expect(!failed.lines.contains { Transcript.isProgress($0) || $0.hasPrefix("Transferring") }, "errors only: \(failed.lines)")
    }

    // cli.md: "-v: In this process, also print the engine's log … Through the agent, --verbose
    // adds nothing (the agent logs on its side)"; "--name … appears in -v logs".
    @Test(arguments: TransferMode.allCases)
    func verboseAddsTheEnginesLogInThisProcessOnly(_ mode: TransferMode) throws {
        let world = try Self.world(mode)
        defer { world.tearDown() }
        let plain = try world.shell.run("ferry transfer --name plain-run \(Self.url(world)) a.deb")
        let verbose = try world.shell.run("ferry transfer -v --name verbose-run \(Self.url(world)) b.deb")
        #expect(plain.status == 0 && verbose.status == 0)
        #expect(!plain.lines.contains { $0.contains("plain-run") }, "no log without -v: \(plain.lines)")
        if mode == .inProcess {
            #expect(verbose.lines.contains { $0.contains("verbose-run") }, "the engine's log names the job: \(verbose.lines)")
            #expect(verbose.lines.count > plain.lines.count)
        } else {
            #expect(!verbose.lines.contains { $0.contains("verbose-run") }, "through the agent, -v adds nothing: \(verbose.lines)")
        }
    }

    // cli.md, Reruns: "A job with the same pairs but other properties is cancelled first
    // (The files' properties changed since job …; starting over)."
    @Test(arguments: TransferMode.allCases)
    func aRerunWithOtherPropertiesStartsOver(_ mode: TransferMode) throws {
        let world = try Self.world(mode)
        defer { world.tearDown() }
        world.server.hold("/pool/a.deb", afterBytes: 1_000_000)
        let pid = try world.startInBackground("ferry transfer --property channel=stable \(Self.url(world)) a.deb")
        #expect(world.server.waitUntilHeld("/pool/a.deb"))
        try world.waitForTemporary(of: "a.deb", atLeast: 100_000)
        kill(pid, SIGINT)
        #expect(try world.waitForBackground(pid) == 130)
        world.server.release("/pool/a.deb")
        let rerun = try world.shell.run("ferry transfer --property channel=beta \(Self.url(world)) a.deb")
        #expect(rerun.status == 0, "\(rerun.lines)")
        #expect(rerun.lines.contains { $0.hasPrefix("The files' properties changed since job ") && $0.hasSuffix("; starting over") }, "\(rerun.lines)")
        #expect(!rerun.lines.contains { $0.hasPrefix("Continuing job") })
        #expect(fileHolds(world.pkgs + "/a.deb", Self.file))
        if mode == .throughAgent { #expect(try Self.agentJobs(world).isEmpty, "the old job was cancelled, the new one completed") }
    }

    // cli.md: --name, --priority and --property set the job's name, priority and every file's
    // properties; a property is what the validators check.
    @Test(arguments: TransferMode.allCases)
    func nameAndPriorityAndPropertiesReachTheJob(_ mode: TransferMode) throws {
        let world = try Self.world(mode)
        defer { world.tearDown() }
        if mode == .throughAgent {
            world.server.hold("/pool/a.deb")
            let pid = try world.startInBackground("ferry transfer --name nightly --priority low --property channel=beta \(Self.url(world)) a.deb")
            // (The agent makes the job, then adds its files: a listing in between shows it empty.)
            var job: String?
            #expect(waitUntil(timeout: 30) {
                job = try? world.client.listJobs(allUsers: true).first { $0.progress.filesTotal == 1 }?.id
                return job != nil
            })
            let document = try world.client.job(try #require(job))
            #expect(document.displayName == "nightly" && document.priority.rawValue == "low")
            #expect(document.files.first?.properties["channel"] == "beta", "\(document.files.map(\.properties))")
            world.server.release("/pool/a.deb")
            #expect(try world.waitForBackground(pid) == 0)
        }
        let wrong = String(repeating: "0", count: 64)
        let refused = try world.shell.run("ferry transfer --property sha256=\(wrong) \(Self.url(world)) c.deb")
        #expect(refused.status == 1)
        #expect(refused.lines.contains { $0.contains("VALIDATION_FAILED") }, "\(refused.lines)")
        #expect(!exists(world.pkgs + "/c.deb"))
    }

    // README: "Ferry waits at least --min-retry-delay seconds (default 5) … It gives up after
    // --no-progress-timeout seconds without progress" (the growth of the wait: FaultTableTests).
    @Test(arguments: TransferMode.allCases)
    func theMinimumRetryDelayAndTheNoProgressTimeoutApply(_ mode: TransferMode) throws {
        let world = try Self.world(mode)
        defer { world.tearDown() }
        let command = "ferry transfer --min-retry-delay 2 --no-progress-timeout 7 http://127.0.0.1:\(world.refusedPort)/pool/a.deb a.deb"
        let lines: [String]
        if mode == .inProcess {
            let result = try world.shell.run(command)
            #expect(result.status == 1, "\(result.lines)")
            lines = result.lines
            // Each line shows what is left of the wait under way, so the first can only show
            // the first wait, which is the minimum (the default would show 5). How many lines
            // follow depends on when the process looks, and is not checked.
            let delays = lines.compactMap { line -> Int? in
                guard let range = line.range(of: #"retrying in \d+ s after NETWORK_DISCONNECTED"#, options: .regularExpression) else { return nil }
                return Int(line[range].split(separator: " ")[2])
            }
            #expect(delays.first.map { $0 <= 2 } == true, "the first wait is the 2 s minimum: \(lines)")
        } else {
            // Through the agent, the lines show what is left of a wait when they are printed;
            // the job itself carries the two settings.
            let output = world.home + "/run.out"
            let pid = try world.startInBackground(command, output: output)
            // (The agent makes the job, then applies its settings: a listing in between shows the
            // defaults, so wait for the job as the request made it.)
            var settings: (Double, Double)?
            #expect(waitUntil(timeout: 30) {
                settings = (try? world.client.listJobs(allUsers: true).first).map { ($0.minRetryDelaySec, $0.noProgressTimeoutSec) }
                return settings?.0 == 2 && settings?.1 == 7
            }, "the job has the run's settings: \(String(describing: settings))")
            #expect(try world.waitForBackground(pid) == 1)
            lines = ShellSession.lines(of: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
        }
        #expect(lines.contains { $0.contains("(no progress for 7 s, giving up)") }, "\(lines)")
    }

    // cli.md, where the job runs: "--no-agent: in this process (Transferring in this process: --no-agent)".
    @Test func noAgentRunsInThisProcessBesideAnAgent() throws {
        let world = try Self.world(.throughAgent)
        defer { world.tearDown() }
        let result = try world.shell.run("ferry transfer --no-agent \(Self.url(world)) a.deb")
        #expect(result.status == 0)
        #expect(result.lines.first == "Transferring in this process: --no-agent", "\(result.lines)")
        #expect(fileHolds(world.pkgs + "/a.deb", Self.file))
        #expect(world.server.requests(for: "/pool/a.deb").count == 1)
        #expect(try Self.agentJobs(world).isEmpty, "the agent never saw the job")
    }

    // cli.md: "If another client completes or cancels the job while the run waits, the run
    // exits 1 (ferry: job … was completed or cancelled by someone else)".
    @Test func aJobCancelledBySomeoneElseEndsTheRunWithStatus1() throws {
        let world = try Self.world(.throughAgent)
        defer { world.tearDown() }
        world.server.hold("/pool/a.deb")
        let output = world.home + "/run.out"
        let pid = try world.startInBackground("ferry transfer \(Self.url(world)) a.deb", output: output)
        #expect(world.server.waitUntilHeld("/pool/a.deb"))
        let job = try #require(try Self.agentJobs(world).first)
        let cancel = try world.shell.run("ferry cancel \(job)")
        #expect(cancel.status == 0, "\(cancel.lines)")
        #expect(try world.waitForBackground(pid) == 1)
        world.server.release("/pool/a.deb")
        let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        #expect(printed.contains("ferry: job \(job) was ") && printed.contains("by someone else"), "\(printed)")
        #expect(!exists(world.pkgs + "/a.deb"))
    }

    // cli.md: "If the agent stops while the run waits, the run exits 69; the job stays in the agent."
    @Test func theAgentStoppingWhileARunWaitsExits69() throws {
        let world = try Self.world(.throughAgent)
        defer { world.tearDown() }
        world.server.hold("/pool/a.deb")
        let pid = try world.startInBackground("ferry transfer \(Self.url(world)) a.deb")
        #expect(world.server.waitUntilHeld("/pool/a.deb"))
        #expect(try Self.agentJobs(world).count == 1)
        world.stopAgent()
        #expect(try world.waitForBackground(pid) == 69)
        world.server.release("/pool/a.deb")
        try world.startAgent()
        #expect(try Self.agentJobs(world).count == 1, "the job stays in the agent")
    }

    // cli.md, exit 1: a job whose files cannot be renamed into place fails, in both modes
    // (a directory appeared at the destination while the file was on its way).
    @Test(arguments: TransferMode.allCases)
    func aCompleteThatFailsExits1(_ mode: TransferMode) throws {
        let world = try Self.world(mode)
        defer { world.tearDown() }
        world.server.hold("/pool/a.deb", afterBytes: 1_000_000)
        let output = world.home + "/run.out"
        let pid = try world.startInBackground("ferry transfer \(Self.url(world)) a.deb", output: output)
        #expect(world.server.waitUntilHeld("/pool/a.deb"))
        try world.waitForTemporary(of: "a.deb", atLeast: 100_000)
        _ = try world.shell.run("mkdir a.deb")
        world.server.release("/pool/a.deb")
        #expect(try world.waitForBackground(pid) == 1)
        let result = (lines: ShellSession.lines(of: (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""), status: 1)
        // cli.md, A failed complete: "ferry: job … could not be completed: LOCAL_FILE_ERROR
        // (localFile): cannot rename … The other files' temporaries are left in place …"
        #expect(result.lines.contains { $0.hasPrefix("ferry: job ") && $0.contains(" could not be completed: LOCAL_FILE_ERROR (localFile): cannot rename ") },
                "\(result.lines)")
        let entries = directoryEntries(world.pkgs)
        #expect(entries.count == 2 && entries.contains("a.deb") && entries.contains { $0.hasPrefix(".a.deb.ferry-") }, "the temporary stays: \(entries)")
        // "… and the job is kept: once the obstacle is gone, the same command completes it
        // without fetching anything again."
        let fetched = world.server.requests(for: "/pool/a.deb").count
        _ = try world.shell.run("rmdir a.deb")
        let rerun = try world.shell.run("ferry transfer \(Self.url(world)) a.deb")
        #expect(rerun.status == 0, "\(rerun.lines)")
        #expect(rerun.lines.contains { $0.hasPrefix("Continuing job ") }, "\(rerun.lines)")
        #expect(fileHolds(world.pkgs + "/a.deb", Self.file))
        #expect(world.server.requests(for: "/pool/a.deb").count == fetched, "nothing fetched again")
        #expect(directoryEntries(world.pkgs) == ["a.deb"])
    }

    // cli.md, ferry events: "Prints your jobs' notifications … one line each, until Ctrl-C, which exits 0".
    // cli.md, setnotifycmdline: the program runs when the job is transferred, with its arguments.
    @Test func eventsAndANotifyCommandFollowAJob() throws {
        let world = try Self.world(.throughAgent)
        defer { world.tearDown() }
        let job = try world.shell.run("ferry create nightly").lines.last ?? ""
        _ = try world.shell.run("ferry addfile \(job) \(Self.url(world)) a.deb")
        let program = world.home + "/on-done"
        try "#!/bin/sh\necho \"$@\" > \(world.home)/notified\n".write(toFile: program, atomically: true, encoding: .utf8)
        chmod(program, 0o755)
        let set = try world.shell.run("ferry setnotifycmdline \(job) \(program) --job \(job) -x")
        #expect(set.status == 0, "\(set.lines)")
        let before = try world.client.health().eventStreams
        let output = world.home + "/events.out"
        let events = try world.startInBackground("ferry events \(job)", output: output)
        #expect(waitUntil(timeout: 30) { ((try? world.client.health().eventStreams) ?? 0) > before }, "ferry events follows the job")
        _ = try world.shell.run("ferry resume \(job)")
        #expect(waitUntil(timeout: 60) { ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("jobTransferred") })
        kill(events, SIGINT)
        #expect(try world.waitForBackground(events) == 0, "Ctrl-C ends ferry events with status 0")
        let line = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").first { $0.contains("jobTransferred") } ?? ""
        #expect(line.contains(" jobTransferred \(job) TRANSFERRED nightly"), "\(line)")
        let ran = waitUntil(timeout: 30) { exists(world.home + "/notified") }
        #expect(ran, "the notify command ran: \(world.agent?.standardError.split(separator: "\n").suffix(8).joined(separator: " | ") ?? "")")
        #expect((try? String(contentsOfFile: world.home + "/notified", encoding: .utf8)) == "--job \(job) -x \(job) TRANSFERRED\n",
                "the notify command ran with its arguments, then the job's id and state")
    }

    // cli.md, ferry monitor: "refreshed every second until Ctrl-C, which exits 0 … elsewhere each
    // refresh prints a new block after a blank line".
    @Test func monitorRefreshesUntilCtrlC() throws {
        let world = try Self.world(.throughAgent)
        defer { world.tearDown() }
        _ = try world.shell.run("ferry create watched")
        let output = world.home + "/monitor.out"
        let monitor = try world.startInBackground("ferry monitor", output: output)
        #expect(waitUntil(timeout: 30) { ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").components(separatedBy: "watched").count > 2 },
                "a second view, without being asked")
        kill(monitor, SIGINT)
        #expect(try world.waitForBackground(monitor) == 0)
    }
}

/// What docs/configuration.md and the README say of ferryd itself.
@Suite("Documented behaviours of ferryd", .serialized)
struct DocumentedAgentTests {
    // README: "Run as root, it keeps its jobs in /var/lib/ferry and listens on
    // /run/ferry/ferryd.sock … ferry looks for the socket in the same places". Run in a mount
    // namespace of its own, with empty file systems on those two directories.
    @Test func asRootTheDefaultPathsAreVarLibAndRun() throws {
        guard getuid() == 0 else { print("skipped: needs root to run ferryd on its default paths"); return }
        let world = try DocWorld(user: .root, mode: .throughAgent)
        defer { world.tearDown() }
        let script = """
        set -e
        mount -t tmpfs none /run; mount -t tmpfs none /var/lib
        ferryd --config /dev/null > \(world.home)/ferryd.log 2>&1 &
        for i in $(seq 300); do [ -S /run/ferry/ferryd.sock ] && break; sleep 0.1; done
        env -u FERRY_SOCKET ferry create defaults
        env -u FERRY_SOCKET ferry list
        ls /var/lib/ferry
        kill -TERM %1; wait %1; echo "ferryd exited $?"
        """
        let result = try world.shell.run("unshare --mount --propagation private bash -c \(ShellSession.quoted(script))", timeout: 120)
        #expect(result.status == 0, "\(result.lines)")
        #expect(result.lines.contains { $0.contains("SUSPENDED") && $0.hasSuffix("defaults") }, "ferry found the agent on /run/ferry/ferryd.sock: \(result.lines)")
        #expect(result.lines.contains("jobs.db"), "the store is in /var/lib/ferry: \(result.lines)")
        #expect(result.lines.last == "ferryd exited 0")
    }

    // README: "Ferry refuses a plugin that its group or others may write to, or that sits in
    // such a directory … ferry or ferryd exits 69 with refused: its directory … is writable by its group".
    @Test func ferrydRefusesPluginsInAGroupWritableDirectory() throws {
        let world = try DocWorld(user: .root, mode: .throughAgent)
        defer { world.tearDown() }
        chmod(world.bin, 0o775)
        let result = try world.shell.run("ferryd --config /dev/null --state-dir \(world.directory.file("state")) --socket \(world.socket)")
        #expect(result.status == 69, "\(result.lines)")
        #expect(result.lines.contains { $0.contains("refused: its directory") && $0.contains("is writable by its group") }, "\(result.lines)")
        let check = try world.shell.run("ferryd --check-config --config /dev/null")
        #expect(check.status == 78, "--check-config loads the plugins too, and names the configuration at fault: \(check.lines)")
    }

    // configuration.md: "ferryd --check-config prints every key with its effective value and
    // where it came from … and loads the plugins without starting".
    @Test func checkConfigPrintsTheEffectiveConfigurationAndStartsNothing() throws {
        let world = try DocWorld(user: .root, mode: .throughAgent)
        defer { world.tearDown() }
        try "quotas:\n  jobs_per_user: 7\n".write(toFile: world.home + "/ferryd.yaml", atomically: true, encoding: .utf8)
        let result = try world.shell.run("ferryd --check-config --config \(world.home)/ferryd.yaml --socket \(world.socket)")
        #expect(result.status == 0, "\(result.lines)")
        #expect(result.lines.contains { $0.contains("quotas.jobs_per_user") && $0.contains("7") }, "\(result.lines)")
        #expect(result.lines.contains { $0.contains("sha256") }, "the plugins it loaded: \(result.lines)")
        #expect(!exists(world.socket), "nothing was started")
    }
}
