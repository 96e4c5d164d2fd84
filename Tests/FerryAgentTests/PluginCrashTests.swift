import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// A plugin that crashes costs one file, not the agent: an always-crashing C validator (built
/// with cc against ferry_plugin.h) runs in a real ferryd that is started again each time it
/// ends, as systemd's `Restart=` would.
@Suite(.serialized)
final class PluginCrashTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        let crasher = try PluginBuilder.build("Tests/Fixtures/plugins/crash_validator.c", name: "crasher", in: h.directory.path)
        try h.writeConfig("""
            plugins:
              - { name: sha256, role: validator }
              - { path: \(crasher), role: validator, applies_to: { property: probe, value: crash } }
            """)
        try h.start()
    }

    deinit { h.tearDown() }

    /// A job of one file; `probe=crash` makes the crashing validator apply to it.
    private func job(_ name: String, crash: Bool) throws -> (id: String, data: [UInt8]) {
        let data = testBytes(30_000, seed: UInt64(truncatingIfNeeded: name.hashValue))
        h.server.setFile("/\(name).bin", data: data)
        let settings = JobSettings(properties: crash ? ["probe": "crash"] : nil)
        let created = try h.client.createJob(CreateJobRequest(displayName: name, files: [NewFileDocument(url: h.url("/\(name).bin"), path: h.destination("\(name).bin"))],
                                                              settings: settings))
        if crash {
            // The validator's crash can end the agent before the answer to resume is written.
            _ = try? h.client.perform("resume", on: created.id)
        } else {
            _ = try h.client.perform("resume", on: created.id)
        }
        return (created.id, data)
    }

    private func crashAndComeBack(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let crashing = try job(name, crash: true)
        let ended = try #require(try h.restartAfterExit(sourceLocation: sourceLocation), "the crashing validator brought ferryd down", sourceLocation: sourceLocation)
        #expect(ended.reason == .uncaughtSignal, "ferryd died of the plugin's signal", sourceLocation: sourceLocation)
        let failed = try #require(h.wait(crashing.id, for: "ERROR", sourceLocation: sourceLocation), sourceLocation: sourceLocation)
        #expect(failed.error?.code == "PLUGIN_CRASHED", sourceLocation: sourceLocation)
        #expect(failed.error?.file == 0, sourceLocation: sourceLocation)
        #expect(failed.error?.message.contains("crasher") ?? false, "the error names the plugin: \(failed.error.map { "\($0)" } ?? "")", sourceLocation: sourceLocation)
        #expect(!exists(h.destination("\(name).bin")), sourceLocation: sourceLocation)
        return crashing.id
    }

    @Test func aCrashingValidatorCostsOneFileAndIsDisabledAfterThreeCrashes() throws {
        // First crash: the agent comes back, the file fails with PLUGIN_CRASHED, and other jobs run.
        let first = try crashAndComeBack("first")
        let failed = try h.client.job(first)
        #expect(failed.error?.message.contains("SIGSEGV") ?? false, "\(failed.error.map { "\($0)" } ?? "")")
        #expect(!failed.deciding)
        let other = try job("other", crash: false)
        h.wait(other.id, for: "TRANSFERRED")
        _ = try h.client.perform("complete", on: other.id)
        #expect(fileHolds(h.destination("other.bin"), other.data), "another job completes beside the failed one")
        #expect(try h.client.health().disabledPlugins == nil, "one crash does not disable the plugin")

        // Resuming the failed job never calls the plugin about that file again: no new crash.
        let pid = h.process?.pid
        _ = try h.client.perform("resume", on: first)
        let again = try #require(h.wait(first, for: "ERROR"))
        #expect(again.error?.code == "PLUGIN_CRASHED")
        #expect(again.error?.message.contains("not called about it again") ?? false, "\(again.error.map { "\($0)" } ?? "")")
        #expect(h.process?.pid == pid, "the agent did not crash again")

        // Crashes two and three: the plugin is disabled, once, with one clear line.
        _ = try crashAndComeBack("second")
        _ = try crashAndComeBack("third")
        #expect(h.log.contains("plugin disabled after 3 crashes"), "\(h.log)")
        #expect(try h.client.health().disabledPlugins == [DisabledPluginDocument(plugin: "crasher", crashes: 3)])
        let check = try ChildProcess.run("ferryd", ["--check-config", "--config", h.configPath, "--state-dir", h.stateDirectory, "--socket", h.socket])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("(disabled after 3 crashes, until the plugin configuration changes)"), "\(check.stdout)")

        // Disabled: a file it applies to fails at once, closed, and the agent stays up.
        let pidNow = h.process?.pid
        let fourth = try job("fourth", crash: true)
        let refused = try #require(h.wait(fourth.id, for: "ERROR"))
        #expect(refused.error?.code == "PLUGIN_CRASHED")
        #expect(refused.error?.message.contains("disabled after 3 crashes") ?? false, "\(refused.error.map { "\($0)" } ?? "")")
        #expect(h.process?.pid == pidNow)
        let last = try job("last", crash: false)
        h.wait(last.id, for: "TRANSFERRED")

        // A change of the plugin configuration enables it again.
        h.stop()
        let crasher = h.directory.path + "/libcrasher.so"
        try h.writeConfig("""
            plugins:
              - { name: sha256, role: validator }
              - { path: \(crasher), role: validator, applies_to: { property: probe, value: crash2 } }
            """)
        try h.start()
        #expect(try h.client.health().disabledPlugins == nil)
    }
}

/// An error policy that crashes is recorded as "no policy acted": the job is not lost.
@Suite(.serialized)
final class PolicyCrashTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        let policy = try PluginBuilder.build("Tests/Fixtures/plugins/crash_validator.c", name: "crash-policy", in: h.directory.path,
                                             defines: ["CRASH_POLICY"])
        try h.writeConfig("""
            plugins:
              - { path: \(policy), role: error-policy }
            """)
        try h.start()
    }

    deinit { h.tearDown() }

    @Test func aCrashingPolicyIsRecordedAsNoPolicyActed() throws {
        let created = try h.client.createJob(CreateJobRequest(displayName: "gone", files: [NewFileDocument(url: h.url("/missing.bin"), path: h.destination("missing.bin"))]))
        // The 404 and the policy's crash can come before the answer to resume is written: the
        // agent may die with the answer unsent. That it died of the crash is checked below.
        _ = try? h.client.perform("resume", on: created.id)
        let ended = try #require(try h.restartAfterExit(), "the crashing policy brought ferryd down")
        #expect(ended.reason == .uncaughtSignal)
        let job = try #require(h.wait(created.id, for: "ERROR"))
        let settled = waitUntil(timeout: 30) { (try? self.h.client.job(created.id).deciding) == false }
        #expect(settled, "the job's policies answered after the restart")
        let final = try h.client.job(created.id)
        #expect(final.error?.code ?? job.error?.code == "HTTP_ERROR_404", "the job keeps its own error")
        #expect(final.history.contains { $0.contains("crash-policy crashed") && $0.contains("no policy acted") }, "\(final.history)")
    }
}

/// `isolation: process`: the plugins run in helper processes, with the same ABI; a crash costs
/// only the call, and the agent never stops.
@Suite(.serialized)
final class IsolatedPluginTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        let crasher = try PluginBuilder.build("Tests/Fixtures/plugins/crash_validator.c", name: "crasher", in: h.directory.path)
        let guardPlugin = try PluginBuilder.build("Plugins/example-c/html_guard.c", name: "html-guard", in: h.directory.path)
        try h.writeConfig("""
            plugins:
              - { path: \(guardPlugin), role: validator, isolation: process }
              - { path: \(crasher), role: validator, isolation: process, applies_to: { property: probe, value: crash } }
            """)
        try h.start()
    }

    deinit { h.tearDown() }

    private func job(_ name: String, _ data: [UInt8], crash: Bool = false) throws -> String {
        h.server.setFile("/\(name)", data: data)
        let created = try h.client.createJob(CreateJobRequest(displayName: name, files: [NewFileDocument(url: h.url("/\(name)"), path: h.destination(name))],
                                                              settings: JobSettings(properties: crash ? ["probe": "crash"] : nil)))
        _ = try h.client.perform("resume", on: created.id)
        return created.id
    }

    @Test func aCrashInAnIsolatedValidatorCostsOnlyThatCall() throws {
        let pid = h.process?.pid
        #expect(h.log.contains("isolation=process"), "\(h.log)")

        let crashing = try job("crash.bin", testBytes(20_000, seed: 950), crash: true)
        let failed = try #require(h.wait(crashing, for: "ERROR"))
        #expect(failed.error?.code == "PLUGIN_CRASHED")
        #expect(failed.error?.message.contains("crashed (SIGSEGV, signal 11) in its helper process") ?? false, "\(failed.error.map { "\($0)" } ?? "")")
        #expect(h.process?.pid == pid, "the agent did not stop")
        #expect(h.process?.process.isRunning ?? false)

        // The same ABI through the helper: html-guard's verdict arrives with its reason.
        let page = try job("page.bin", Array("<!doctype html><p>mirror error</p>".utf8))
        let refused = try #require(h.wait(page, for: "ERROR"))
        #expect(refused.error?.code == "VALIDATION_FAILED")
        #expect(refused.error?.message.hasPrefix("html-guard:") ?? false, "\(refused.error.map { "\($0)" } ?? "")")

        // And a good file goes through both helpers (the crasher's was started again).
        let data = testBytes(40_000, seed: 951)
        let good = try job("good.bin", data)
        h.wait(good, for: "TRANSFERRED")
        _ = try h.client.perform("complete", on: good)
        #expect(fileHolds(h.destination("good.bin"), data))
        #expect(h.process?.pid == pid)
    }
}
