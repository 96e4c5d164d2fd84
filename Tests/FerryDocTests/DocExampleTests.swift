import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// How one or more console examples of the docs are run: as whom, in which modes, and what
/// the world must hold first. The examples' commands and outputs come from the docs
/// themselves, so a doc and the behaviour it shows cannot drift apart.
struct ExampleSpec: Sendable {
    /// The examples this spec runs, in order, in one world.
    let keys: [ExampleKey]
    var user: ExampleUser = .root
    /// `ferry transfer` examples run in both; the others need the agent.
    var modes: [TransferMode] = [.throughAgent]
    let run: @Sendable (DocWorld, [ConsoleExample]) throws -> Void
}

/// One spec in one mode: a case of ``DocExampleTests/example(_:)``.
struct ExampleRun: Sendable, CustomTestStringConvertible {
    let spec: ExampleSpec
    let mode: TransferMode
    var testDescription: String {
        spec.keys.map(\.description).joined(separator: " + ") + " (\(mode.rawValue))"
    }
}

@Suite("The docs' console examples, run through the real binaries", .serialized)
struct DocExampleTests {
    static let specs: [ExampleSpec] = ReadmeExamples.specs + APIExamples.specs + CLIExamples.specs
    static let runs: [ExampleRun] = specs.flatMap { spec in spec.modes.map { ExampleRun(spec: spec, mode: $0) } }

    @Test(arguments: runs)
    func example(_ run: ExampleRun) throws {
        // FERRY_DOC_EXAMPLE=text runs only the examples whose description contains it.
        if let only = ProcessInfo.processInfo.environment["FERRY_DOC_EXAMPLE"], !only.isEmpty, !run.testDescription.contains(only) {
            return
        }
        if run.spec.user == .root && getuid() != 0 {
            print("skipped \(run.testDescription): the docs show it run as root")
            return
        }
        let all = try ConsoleExample.all()
        let examples = try run.spec.keys.map { key in
            try #require(all.first { $0.key == key }, "no console example \(key) in the docs")
        }
        let world = try DocWorld(user: run.spec.user, mode: run.mode)
        defer { world.tearDown() }
        try run.spec.run(world, examples)
    }

    /// A new example in the docs must come with a spec that runs it, and a spec must name an
    /// example the docs still have.
    @Test func everyConsoleExampleOfTheDocsIsRun() throws {
        let documented = try ConsoleExample.all().map(\.key)
        let run = Self.specs.flatMap(\.keys)
        #expect(documented.count >= 40, "the docs' console examples were found: \(documented.count)")
        for key in documented where !run.contains(key) {
            Issue.record("the console example \(key) has no spec in Tests/FerryDocTests: add one that runs it")
        }
        for key in run where !documented.contains(key) {
            Issue.record("a spec names \(key), which is not a console example of the docs any more")
        }
        #expect(Set(run).count == run.count, "each example is run by one spec")
    }

    /// The matcher itself must reject what differs, or every example above would pass.
    @Test func theMatcherRejectsWhatDiffers() {
        var transcript = Transcript()
        #expect(transcript.matchLine("Job 8826f6b0-b3cf-4f29-84bf-a37ab6a7f1b5 resumed: QUEUED", "Job 11111111-2222-3333-4444-555555555555 resumed: QUEUED") == nil)
        #expect(transcript.matchLine("Job 8826f6b0-b3cf-4f29-84bf-a37ab6a7f1b5 resumed: QUEUED", "Job 11111111-2222-3333-4444-555555555555 resumed: ERROR") != nil)
        #expect(transcript.matchLine("Job 8826f6b0-b3cf-4f29-84bf-a37ab6a7f1b5 done", "Job 99999999-2222-3333-4444-555555555555 done") != nil,
                "a doc id stays bound to the first real id")
        #expect(transcript.matchLine(".a.deb.ferry-8826f6b0-0.part", ".a.deb.ferry-11111111-0.part") == nil)
        #expect(transcript.matchLine(".a.deb.ferry-8826f6b0-0.part", ".a.deb.ferry-22222222-0.part") != nil)
        #expect(transcript.matchLine("Transferred 2 files, 3.0 MiB in 1.61 s", "Transferred 2 files, 3.0 MiB in 0.02 s") == nil)
        #expect(transcript.matchLine("Transferred 2 files, 3.0 MiB in 1.61 s", "Transferred 2 files, 3.1 MiB in 0.02 s") != nil)
        #expect(transcript.match(expected: ["0.0s CONNECTING 0/? bytes 0/2 files", "0.1s TRANSFERRING 1/3 bytes 1/2 files", "1.6s TRANSFERRED 3/3 bytes 2/2 files", "done"],
                                 actual: ["0.0s CONNECTING 0/? bytes 0/2 files", "0.2s TRANSFERRED 3/3 bytes 2/2 files", "done"]) == nil,
                "progress lines before the last depend on timing")
        #expect(transcript.match(expected: ["0.0s CONNECTING 0/? bytes 0/2 files", "1.6s TRANSFERRED 3/3 bytes 2/2 files"],
                                 actual: ["0.0s CONNECTING 0/? bytes 0/2 files", "0.2s ERROR 3/3 bytes 2/2 files"]) != nil)
        #expect(transcript.match(expected: ["0.0s CONNECTING 0/? bytes 0/2 files", "done"], actual: ["done"]) != nil,
                "where the doc shows progress, there is progress")
        #expect(transcript.match(expected: ["a"], actual: ["a", "b"]) != nil, "more output than the doc shows")
        #expect(transcript.match(expected: ["a", "b"], actual: ["a"]) != nil, "less output than the doc shows")
    }
}
