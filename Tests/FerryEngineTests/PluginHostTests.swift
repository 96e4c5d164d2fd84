import FerryCore
import FerryEngine
import FerryPluginABI
import FerryPluginHost
import FerryTestSupport
import Foundation
import Logging
import Testing

/// Third-party plugins in C, built with `cc` and the header alone, loaded by the real engine.
@Suite(.serialized)
final class PluginHostTests {
    let directory: TemporaryDirectory
    var h: EngineHarness?

    init() throws { directory = try TemporaryDirectory("ferry-plugins") }

    deinit {
        h?.tearDown()
        directory.remove()
    }

    private var report: String { directory.file("report.txt") }
    private var reportLines: [String] {
        ((try? String(contentsOfFile: report, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    private func probe(_ mode: String, extra: [(key: String, value: String)] = [], defines: [String] = []) throws -> PluginSpec {
        let path = try PluginBuilder.build("Tests/Fixtures/plugins/probe_plugin.c", name: "probe-\(mode)", in: directory.path, defines: defines)
        return PluginSpec(reference: path, settings: [("mode", mode), ("report", report)] + extra)
    }

    private func loadError(_ spec: PluginSpec) -> PluginLoadError? {
        do {
            _ = try PluginHost(specs: [spec], directories: [], logger: EngineHarness.logger)
            return nil
        } catch {
            return error
        }
    }

    private func harness(_ specs: [PluginSpec]) throws -> EngineHarness {
        let harness = try EngineHarness { $0.plugins = specs }
        h = harness
        return harness
    }

    // MARK: - Loading and refusing

    @Test func exampleCPluginBuiltWithPlainCcIsLoadedAndRejectsHTMLErrorPages() throws {
        let path = try PluginBuilder.build("Plugins/example-c/html_guard.c", name: "ferry-html-guard", in: directory.path)
        let h = try harness([PluginSpec(reference: path)])
        #expect(h.engine.plugins.plugins.map(\.name) == ["html-guard"])
        h.server.setFile("/pkg.deb", data: Array("<!DOCTYPE html><html><body>mirror error</body></html>".utf8))
        h.server.setFile("/real.deb", data: testBytes(10_000, seed: 60))
        let bad = try h.startJob([("/pkg.deb", "pkg.deb")])
        let failed = try h.wait(bad, for: .error)
        #expect(failed.lastError?.code == .validationFailed)
        #expect(failed.lastError?.message == "html-guard: the file is an HTML page, not the expected content")
        let good = try h.startJob([("/real.deb", "real.deb")])
        try h.wait(good, for: .transferred)
    }

    /// ABI 1.2: a plugin written with FERRY_PLUGIN_DEFINE loads, reads the job's properties
    /// through job_property, and sees the host's minor version in abi_minor.
    @Test func aPluginReadsTheJobsPropertiesAndTheHostsMinorVersion() throws {
        let path = try PluginBuilder.build("Tests/Fixtures/plugins/channel_guard.c", name: "channel-guard", in: directory.path)
        let h = try harness([PluginSpec(reference: path, settings: [("allowed", "stable")])])
        #expect(h.engine.plugins.plugins.map(\.name) == ["channel-guard"])
        #expect(h.engine.plugins.plugins.map(\.version) == ["1.0.0"])
        h.server.setFile("/a.deb", data: testBytes(5_000, seed: 61))
        let beta = try h.startJob([("/a.deb", "beta.deb")]) { id in _ = try h.engine.setProperties(id, ["channel": "beta"]) }
        let refused = try h.wait(beta, for: .error)
        #expect(refused.lastError?.message == "channel-guard: job channel beta, allowed stable (host ABI 1.\(FERRY_PLUGIN_ABI_MINOR))")
        let none = try h.startJob([("/a.deb", "none.deb")])
        #expect(try h.wait(none, for: .error).lastError?.message == "channel-guard: job channel (none), allowed stable (host ABI 1.\(FERRY_PLUGIN_ABI_MINOR))")
        let stable = try h.startJob([("/a.deb", "stable.deb")]) { id in _ = try h.engine.setProperties(id, ["channel": "stable"]) }
        try h.wait(stable, for: .transferred)
    }

    /// docs/plugins.md, A validator in C: the example it prints is docs/examples/minimal_validator.c
    /// as it is, and it builds with cc and judges as the doc says.
    @Test func theDocumentedMinimalValidatorBuildsAndJudgesAsDescribed() throws {
        let source = try String(contentsOfFile: PluginBuilder.packageRoot + "/docs/examples/minimal_validator.c", encoding: .utf8)
        let doc = try String(contentsOfFile: PluginBuilder.packageRoot + "/docs/plugins.md", encoding: .utf8)
        #expect(doc.contains("```c\n" + source + "```"), "docs/plugins.md prints the example file as it is")
        let path = try PluginBuilder.build("docs/examples/minimal_validator.c", name: "ferry-min-size", in: directory.path)
        let h = try harness([PluginSpec(reference: path, settings: [("min_bytes", "100")])])
        h.server.setFile("/small", data: testBytes(50, seed: 62))
        h.server.setFile("/big", data: testBytes(200, seed: 63))
        let small = try h.startJob([("/small", "small")])
        #expect(try h.wait(small, for: .error).lastError?.message == "min-size: 50 bytes, below the minimum of 100")
        let big = try h.startJob([("/big", "big")])
        try h.wait(big, for: .transferred)
        let allowed = try h.engine.createJob(NewJob(displayName: "allowed", owner: getuid(), files: [
            NewFile(remoteURL: h.url("/small"), localPath: h.destination("allowed"), properties: ["allow_small": "true"]),
        ]))
        _ = try h.engine.resume(allowed.id)
        try h.wait(allowed.id, for: .transferred)
    }

    /// A plugin built against the header of an older minor version keeps loading and working:
    /// `Tests/Fixtures/abi/1.0` and `1.1` hold the header exactly as each shipped (never edit them).
    @Test(arguments: ["1.0", "1.1"])
    func pluginsBuiltAgainstEarlierHeadersKeepWorking(_ version: String) throws {
        let header = PluginBuilder.packageRoot + "/Tests/Fixtures/abi/" + version
        let guardPath = try PluginBuilder.build("Plugins/example-c/html_guard.c", name: "guard-\(version)", in: directory.path, header: header)
        var specs = [PluginSpec(reference: guardPath)]
        if version == "1.1" {
            // An error policy that calls the 1.1 functions (source health, retry delay).
            specs.append(PluginSpec(reference: try PluginBuilder.build("Plugins/example-c/slow_down.c", name: "slow-\(version)", in: directory.path, header: header)))
        }
        let running = try harness(specs)
        #expect(running.engine.plugins.plugins.map(\.name) == (version == "1.0" ? ["html-guard"] : ["html-guard", "slow-down"]), "\(version)")
        running.server.setFile("/pkg.deb", data: Array("<!DOCTYPE html><html><body>mirror error</body></html>".utf8))
        running.server.setFile("/real.deb", data: testBytes(10_000, seed: 60))
        let bad = try running.startJob([("/pkg.deb", "pkg-\(version).deb")])
        let failed = try running.wait(bad, for: .error)
        #expect(failed.lastError?.code == .validationFailed, "\(version)")
        #expect(failed.lastError?.message == "html-guard: the file is an HTML page, not the expected content", "\(version)")
        let good = try running.startJob([("/real.deb", "real-\(version).deb")])
        try running.wait(good, for: .transferred)
    }

    @Test func bareNamesAreFoundInThePluginDirectories() throws {
        _ = try PluginBuilder.build("Plugins/example-c/html_guard.c", name: "ferry-html-guard", in: directory.path)
        let host = try PluginHost(specs: [PluginSpec(reference: "html-guard")], directories: ["/nonexistent", directory.path],
                                  logger: EngineHarness.logger)
        #expect(host.plugins.first?.path == directory.file("libferry-html-guard.so"))
        host.shutdown()
    }

    @Test func aMissingPluginIsRefusedNamingWhereItWasLookedFor() {
        let error = loadError(PluginSpec(reference: "nothere"))
        #expect(error?.reason == .notFound)
        #expect(error?.description.contains("libferry-nothere.so") ?? false, "\(String(describing: error))")
    }

    @Test func aWrongABIVersionIsRefused() throws {
        let error = loadError(try probe("valid", defines: ["PROBE_ABI_VERSION=2"]))
        #expect(error?.reason == .wrongABI)
        #expect(error?.message.contains("built for plugin ABI version 2; this Ferry speaks version 1") ?? false, "\(String(describing: error))")
    }

    @Test func aMissingEntrySymbolIsRefused() throws {
        let error = loadError(try probe("valid", defines: ["PROBE_NO_ENTRY"]))
        #expect(error?.reason == .missingSymbol)
        #expect(error?.message.contains("does not export ferry_plugin_v1") ?? false, "\(String(describing: error))")
    }

    @Test func aFileThatIsNotASharedObjectIsRefused() throws {
        let path = directory.file("libferry-text.so")
        try "not an ELF file".write(toFile: path, atomically: true, encoding: .utf8)
        let error = loadError(PluginSpec(reference: path))
        #expect(error?.reason == .notASharedObject)
        #expect(error?.message.contains("cannot load") ?? false)
    }

    @Test func aGroupWritablePluginIsRefused() throws {
        let spec = try probe("valid")
        chmod(spec.reference, 0o775)
        let error = loadError(spec)
        #expect(error?.reason == .untrusted)
        #expect(error?.message.contains("writable by its group") ?? false, "\(String(describing: error))")
    }

    @Test func aPluginInAWorldWritableDirectoryIsRefused() throws {
        let spec = try probe("valid")
        chmod(directory.path, 0o777)
        defer { chmod(directory.path, 0o700) }
        let error = loadError(spec)
        #expect(error?.reason == .untrusted)
        #expect(error?.message.contains("its directory") ?? false, "\(String(describing: error))")
    }

    @Test func aPluginBehindALinkIsJudgedByTheFileItLeadsTo() throws {
        // The real file sits in a directory everyone may write (not sticky): anyone could
        // replace it. A link to it from a trusted directory must not make it trusted.
        let spec = try probe("valid")
        let open = try directory.subdirectory("open")
        chmod(open, 0o777)
        let real = open + "/libferry-probe-linked.so"
        #expect(rename(spec.reference, real) == 0)
        let trusted = try directory.subdirectory("trusted")
        let link = trusted + "/libferry-probe-linked.so"
        #expect(symlink(real, link) == 0)
        var linked = spec
        linked.reference = link
        let error = loadError(linked)
        #expect(error?.reason == .untrusted, "\(String(describing: error))")
        #expect(error?.message.contains("its directory \(open)") ?? false, "names the real file's directory: \(String(describing: error))")
        #expect(error?.message.contains("writable by everyone") ?? false, "\(String(describing: error))")

        // The same link to a file in a trusted place loads, and the plugin is known by its real path.
        chmod(open, 0o755)
        let host = try PluginHost(specs: [linked], directories: [], logger: EngineHarness.logger)
        defer { host.shutdown() }
        #expect(host.plugins.first?.path == real)
    }

    @Test func everyDirectoryUpToTheRootIsJudged() throws {
        let nested = try directory.subdirectory("a")
        let deeper = nested + "/b"
        #expect(mkdir(deeper, 0o755) == 0)
        let spec = try probe("valid")
        let moved = deeper + "/libferry-probe-deep.so"
        #expect(rename(spec.reference, moved) == 0)
        chmod(nested, 0o775)  // two levels up from the file: group-writable, so it could swap b
        var deep = spec
        deep.reference = moved
        let error = loadError(deep)
        #expect(error?.reason == .untrusted, "\(String(describing: error))")
        #expect(error?.message.contains("its directory \(nested) is writable by its group") ?? false, "\(String(describing: error))")
        // A sticky, world-writable directory is trusted only when root owns it (as /tmp).
        chmod(nested, 0o1777)
        #expect(loadError(deep) == nil, "root-owned and sticky: accepted")
        if getuid() == 0 {
            chown(nested, 65534, 65534)
            let notRoot = loadError(deep)
            #expect(notRoot?.reason == .untrusted, "sticky but owned by another user: \(String(describing: notRoot))")
        }
    }

    @Test func aFailingCreateIsRefusedWithThePluginsOwnMessage() throws {
        let error = loadError(try probe("fail-create"))
        #expect(error?.reason == .createFailed)
        #expect(error?.message.contains("probe refused to start: mode fail-create") ?? false, "\(String(describing: error))")
    }

    @Test func theEngineRefusesToStartWithoutAPluginItWasTold() throws {
        var configuration = EngineConfiguration(storePath: directory.file("jobs.db"))
        configuration.plugins = [PluginSpec(reference: "nothere")]
        if let error = #expect(throws: (any Error).self, performing: { try Engine(configuration: configuration, logger: EngineHarness.logger) }) {
            #expect("\(error)".contains("libferry-nothere.so"), "\(error)")
        }
    }

    // MARK: - Callback semantics

    @Test func retryLaterMakesTheHostCallAgain() throws {
        let h = try harness([try probe("retry", extra: [("retries", "2")])])
        h.server.setFile("/a.bin", data: testBytes(1000, seed: 61))
        let id = try h.startJob([("/a.bin", "a.bin")])
        try h.wait(id, for: .transferred, timeout: 60)
        #expect(reportLines == ["call 1 file 0", "call 2 file 0", "call 3 file 0"])
    }

    @Test func setValidationStateBeforeTheFileIsCompleteIsPending() throws {
        let h = try harness([try probe("pending")])
        h.server.setFile("/fast.bin", data: testBytes(1000, seed: 62))
        h.server.setFile("/slow.bin", data: testBytes(1 << 20, seed: 63))
        // The slow file waits part way until the fast one was validated.
        h.server.hold("/slow.bin", afterBytes: 256 << 10)
        let id = try h.startJob([("/fast.bin", "fast.bin"), ("/slow.bin", "slow.bin")])
        #expect(waitUntil(timeout: 60) { reportLines.contains { $0.hasPrefix("other file 1") } }, "\(reportLines)")
        h.server.release("/slow.bin")
        try h.wait(id, for: .transferred, timeout: 60)
        #expect(reportLines.contains("other file 1 status 2"), "FERRY_PENDING (2) for an unfinished file: \(reportLines)")
    }

    @Test func theHostDigestComputedWhileStreamingReachesPlugins() throws {
        let h = try harness([try probe("digest")])
        let data = testBytes(300_000, seed: 64)
        h.server.setFile("/d.bin", data: data)
        let digest = try sha256sum(data)
        let job = try h.engine.createJob(displayName: "digest", owner: getuid())
        _ = try h.engine.addFiles(job.id, [NewFile(remoteURL: h.url("/d.bin"), localPath: h.destination("d.bin"), properties: ["sha256": digest])])
        _ = try h.engine.resume(job.id)
        try h.wait(job.id, for: .transferred)
        #expect(reportLines.contains("digest status 0 \(digest)"), "\(reportLines)")
    }

    @Test func outOfRangeStatusIsAFailureAndTheAgentGoesOn() throws {
        let h = try harness([try probe("bad-status")])
        h.server.setFile("/x.bin", data: testBytes(100, seed: 65))
        let id = try h.startJob([("/x.bin", "x.bin")])
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .validationFailed)
        #expect(failed.lastError?.message.contains("validator probe failed with ERROR: probe returns nonsense") ?? false, "\(failed.lastError?.message ?? "")")
    }

    @Test func nullArgumentsAndForgedHandlesGetErrorsNotCrashes() throws {
        let h = try harness([try probe("null-args")])
        h.server.setFile("/n.bin", data: testBytes(100, seed: 66))
        let id = try h.startJob([("/n.bin", "n.bin")])
        try h.wait(id, for: .transferred)
        #expect(reportLines.last == "null-args id=null url=null property=null set=6 digest=4 forged=null")
    }

    @Test func aHandleKeptPastItsCallbackIsRefused() throws {
        let h = try harness([try probe("stale-handle")])
        h.server.setFile("/1.bin", data: testBytes(100, seed: 67))
        h.server.setFile("/2.bin", data: testBytes(100, seed: 68))
        let first = try h.startJob([("/1.bin", "1.bin")])
        try h.wait(first, for: .transferred)
        let second = try h.startJob([("/2.bin", "2.bin")])
        try h.wait(second, for: .transferred)
        #expect(reportLines.contains("stale handle status 6 url null"), "FERRY_INVALID_HANDLE (6): \(reportLines)")
    }
}

/// SHA-256 of bytes in hexadecimal, computed by coreutils, independently of Ferry's own code.
func sha256sum(_ data: [UInt8]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(data))
        try input.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return String(text.prefix(64))
}
