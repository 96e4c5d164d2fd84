import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The README's tour, example by example.
enum ReadmeExamples {
    static let tour = "README.md"

    static let specs: [ExampleSpec] = [
        // The agent started on its embedded defaults, a job given with `ferry`, watched, completed.
        ExampleSpec(keys: [ExampleKey(tour, "Start the agent, give it a job", 1), ExampleKey(tour, "Start the agent, give it a job", 2),
                           ExampleKey(tour, "Start the agent, give it a job", 3), ExampleKey(tour, "Start the agent, give it a job", 4)]) { world, examples in
            serveAgentTourFiles(world)
            try world.checkAgentStart(examples[0].commands[0], of: examples[0])
            try world.checkAll(examples[1])
            let job = try #require(world.transcript.bindings["d18e5832-6069-43c6-a26d-6024e994cb10"])
            try world.waitForJob(job, "TRANSFERRED")
            try world.checkAll(examples[2])
            try world.checkAll(examples[3])
            #expect(fileHolds(world.pkgs + "/a.deb", agentTourA) && fileHolds(world.pkgs + "/b.deb", agentTourB))
        },
        // The same with curl on the control API.
        ExampleSpec(keys: [ExampleKey(tour, "Start the agent, give it a job", 5)]) { world, examples in
            serveAgentTourFiles(world)
            try world.startAgent()
            try world.checkAll(examples[0], 0..<4)
            let job = try world.variable("JOB")
            try world.waitForJob(job, "TRANSFERRED")
            try world.checkAll(examples[0], 4..<6)
            #expect(fileHolds(world.pkgs + "/a.deb", agentTourA) && fileHolds(world.pkgs + "/b.deb", agentTourB))
        },
        ExampleSpec(keys: [ExampleKey(tour, "Fetch some files")], user: .ordinary, modes: TransferMode.allCases) { world, examples in
            try startAgentIfNeeded(world)
            serveTransferFiles(world)
            try world.checkAll(examples[0])
            #expect(fileHolds(world.pkgs + "/a.deb", transferA) && fileHolds(world.pkgs + "/b.deb", transferB))
            #expect(directoryEntries(world.pkgs) == ["a.deb", "b.deb"], "no temporary is left")
            // "The file is deleted when the transfer ends with status 0".
            #expect(storedTransfers(world).isEmpty)
        },
        ExampleSpec(keys: [ExampleKey(tour, "Fetch from a manifest, with checks", 1), ExampleKey(tour, "Fetch from a manifest, with checks", 2),
                           ExampleKey(tour, "Fetch from a manifest, with checks", 3), ExampleKey(tour, "Fetch from a manifest, with checks", 4)],
                    user: .ordinary, modes: TransferMode.allCases) { world, examples in
            try startAgentIfNeeded(world)
            serveTransferFiles(world)
            let manifest = try ConsoleExample.codeBlock(tour, heading: "Fetch from a manifest, with checks", language: "json")
            try writeAsUser(world, world.mapped(manifest), to: world.pkgs + "/nightly.json")
            // Every file valid: both appear.
            try world.checkAll(examples[0])
            #expect(fileHolds(world.pkgs + "/b.deb", transferB))
            // The mirror serves another b.deb: nothing new appears under the final names.
            for name in ["a.deb", "b.deb"] { unlink(world.pkgs + "/" + name) }
            let other = testBytes(120_000, seed: 77)
            world.serve("/pool/b.deb", other)
            world.transcript.volatile = [#"(?<=ERROR )\d+(?=/)"#, #"\d(?=/2 files)"#]
            world.substitute("a5d699c8e92a5ac481785ffeea40155cad5e7ff1d7d1c2dbcd291c4f929adb3b", with: DocWorld.sha256(other))
            try world.checkAll(examples[1])
            #expect(directoryEntries(world.pkgs) == ["nightly.json"], "nothing appears when a file is invalid")
            // Which file the error lands on first depends on timing; the figures of the last
            // progress line with it.
            world.transcript.volatile = [#"(?<=ERROR )\d+(?=/)"#, #"\d(?=/2 files)"#]
            // The mirror sends two bytes more than the manifest allows.
            world.serve("/pool/b.deb", transferB + [1, 2])
            try world.checkAll(examples[2])
            #expect(directoryEntries(world.pkgs) == ["nightly.json"], "nothing appears when a file is too large")
            // A manifest that cannot be used.
            try writeAsUser(world, world.mapped(manifest).replacingOccurrences(of: "\"size\": 3000000", with: "\"size\": -3"), to: world.pkgs + "/bad.json")
            try world.checkAll(examples[3])
        },
        ExampleSpec(keys: [ExampleKey(tour, "What you see", 1)], user: .ordinary, modes: TransferMode.allCases) { world, examples in
            try startAgentIfNeeded(world)
            try world.checkAll(examples[0])
            #expect(directoryEntries(world.pkgs).isEmpty, "a fatal error leaves nothing behind")
        },
        // Nobody listens on the port: retried with a growing delay until the no-progress timeout.
        ExampleSpec(keys: [ExampleKey(tour, "What you see", 2)], user: .ordinary, modes: TransferMode.allCases) { world, examples in
            world.substitute("127.0.0.1:8099", with: "127.0.0.1:\(world.refusedPort)", first: true)
            world.substitute("port 8099", with: "port \(world.refusedPort)", first: true)
            try startAgentIfNeeded(world)
            let result = try world.check(examples[0].commands[0], of: examples[0])
            #expect(result.status == 1)
            let retries = result.lines.filter { $0.contains("retrying in") }
            #expect(retries.count >= 2, "retried more than once: \(result.lines)")
            let gaveUpAt = result.lines.last { $0.contains(" ERROR ") }.flatMap { Double($0.prefix { $0 != "s" }) } ?? 0
            #expect(gaveUpAt >= 11.5, "gave up after the 12 s without progress, not before: \(result.lines)")
        },
        // Ctrl-C, then the same command again continues with a range request.
        ExampleSpec(keys: [ExampleKey(tour, "Interrupt it, run it again", 1)], user: .ordinary, modes: TransferMode.allCases) { world, examples in
            try startAgentIfNeeded(world)
            world.serve("/images/base.img", baseImage)
            world.server.hold("/images/base.img", afterBytes: 3_000_000)
            let command = examples[0].commands[0]
            let pid = try world.startInBackground(command.line)
            #expect(world.server.waitUntilHeld("/images/base.img"))
            try world.waitForTemporary(of: "base.img", atLeast: 3_000_000)
            kill(pid, SIGINT)
            #expect(try world.waitForBackground(pid) == 130, "Ctrl-C exits 130")
            if world.mode == .inProcess {
                // "Run without the agent, an unfinished transfer is kept in ~/.local/state/ferry/transfers/".
                #expect(storedTransfers(world).count == 1, "the interrupted transfer is kept in the default state directory")
            }
            if world.mode == .throughAgent {
                let running = try world.client.listJobs(allUsers: true).map(\.state.rawValue)
                #expect(running == ["TRANSFERRING"], "through ferryd, the job keeps running after Ctrl-C")
            }
            world.server.release("/images/base.img")
            // (Paced so that the bar moves, as in the doc.)
            world.server.setRate("/images/base.img", bytesPerSecond: 8_000_000)
            world.transcript.volatile = [#"\d+(?= bytes already here)"#]
            let result = try world.check(command, of: examples[0], terminal: true)
            #expect(result.status == 0)
            #expect(fileHolds(world.pkgs + "/base.img", baseImage))
            if world.mode == .inProcess {
                #expect(world.server.requests(for: "/images/base.img").contains { ($0.rangeStart ?? 0) > 0 }, "continued with a range request")
            }
        },
        // kill -9, then the same command again continues from the last checkpoint.
        ExampleSpec(keys: [ExampleKey(tour, "Interrupt it, run it again", 2)], user: .ordinary, modes: TransferMode.allCases) { world, examples in
            try startAgentIfNeeded(world)
            world.serve("/images/base.img", baseImage)
            let heldAt = 6_000_000
            world.server.hold("/images/base.img", afterBytes: heldAt)
            let pid = try world.startInBackground(examples[0].commands[0].line)
            #expect(world.server.waitUntilHeld("/images/base.img"))
            try world.waitForTemporary(of: "base.img", atLeast: heldAt)
            // Checkpoints come every 2 s: wait for the one of every byte that arrived.
            #expect(waitUntil(timeout: 60) { durableBytes(world) == heldAt }, "checkpointed: \(durableBytes(world) ?? -1)")
            kill(pid, SIGKILL)
            _ = try world.waitForBackground(pid)
            world.server.release("/images/base.img")
            world.server.setRate("/images/base.img", bytesPerSecond: 8_000_000)
            world.transcript.volatile = [#"\d+(?= bytes already here)"#, #"(?<=TRANSFERRING )\d+(?=/)"#]
            let result = try world.check(examples[0].commands[1], of: examples[0])
            #expect(result.status == 0)
            #expect(fileHolds(world.pkgs + "/base.img", baseImage))
            if world.mode == .inProcess {
                #expect(world.server.requests(for: "/images/base.img").contains { ($0.rangeStart ?? 0) > 0 }, "continued with a range request")
            }
        },
    ]

    // The files of the agent's tour (the doc's digest of a.deb is mapped to the real one).
    static let agentTourA = testBytes(3_000_000, seed: 1)
    static let agentTourB = testBytes(120_000, seed: 2)
    static func serveAgentTourFiles(_ world: DocWorld) {
        world.serve("/pool/a.deb", agentTourA, docSHA256: "c1b5526d0701ac8e1246ee56758f84d0265703a32330831315b36081672b1d60")
        world.serve("/pool/b.deb", agentTourB)
    }

    // The files of `ferry transfer`'s tour.
    static let transferA = testBytes(3_000_000, seed: 3)
    static let transferB = testBytes(120_000, seed: 4)
    static func serveTransferFiles(_ world: DocWorld) {
        world.serve("/pool/a.deb", transferA, docSHA256: "b05b30277879105f7eb21f5869447697220f6fc55d2bbd2806e8eb692a29e41e")
        world.serve("/pool/b.deb", transferB, docSHA256: "50846e37be1d4e41252eed4d7b846abb8c6815dcb3beb5d12f957ec68d4fcb35")
    }

    static let baseImage = testBytes(20_000_000, seed: 5)

    /// The stores of unfinished transfers in the user's default state directory.
    static func storedTransfers(_ world: DocWorld) -> [String] {
        directoryEntries(world.home + "/.local/state/ferry/transfers").filter { $0.hasSuffix(".db") }
    }

    /// The bytes of the one file the world's store has made durable: the default state
    /// directory's store in its own process, the agent's through it.
    static func durableBytes(_ world: DocWorld) -> Int? {
        let store = world.mode == .inProcess
            ? storedTransfers(world).first.map { world.home + "/.local/state/ferry/transfers/" + $0 }
            : world.directory.file("state") + "/jobs.db"
        guard let store, let answer = try? PluginBuilder.run("/usr/bin/sqlite3", [store, "SELECT bytes_durable FROM files"]) else { return nil }
        return Int(answer.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func startAgentIfNeeded(_ world: DocWorld) throws {
        if world.mode == .throughAgent { try world.startAgent() }
    }

    /// Writes a file the example's user owns (a manifest it was handed).
    static func writeAsUser(_ world: DocWorld, _ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        if world.user == .ordinary, getuid() == 0 {
            let account = try SecondUser.ensure()
            chown(path, account.uid, account.gid)
        }
    }
}
