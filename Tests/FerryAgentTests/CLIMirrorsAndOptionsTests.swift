import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// `ferry addfile --mirror`, `addmirror`, `setdynamic`, `settls` and what `info` shows of them,
/// through the real `ferry` against the real ferryd.
@Suite(.serialized)
final class CLIMirrorsAndOptionsTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        try h.start()
    }

    deinit { h.tearDown() }

    private func createJob(_ name: String) throws -> String {
        let created = try h.ferry(["create", name])
        #expect(created.status == 0, "\(created.stderr)")
        return created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func addMirrorThenInfoShowsTheMirrors() throws {
        let id = try createJob("mirrored")
        let added = try h.ferry(["addfile", id, "https://a.example/pool/a.deb", "a.deb", "--mirror", "https://b.example/pool/a.deb",
                               "--property", "size=10"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.stdout.contains("Mirrors: https://b.example/pool/a.deb"), "\(added.stdout)")

        let more = try h.ferry(["addmirror", id, "0", "http://c.example:8080/pool/a.deb", "https://b.example/pool/a.deb"])
        #expect(more.status == 0, "\(more.stderr)")
        #expect(more.stdout == "Job \(id): file 0 mirrors https://b.example/pool/a.deb http://c.example:8080/pool/a.deb\n")

        let info = try h.ferry(["info", id])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(info.stdout.contains("\n     mirrors: https://b.example/pool/a.deb http://c.example:8080/pool/a.deb\n"), "\(info.stdout)")
        #expect(info.stdout.contains("\n     properties: size=10\n"), "the mirrors property is not repeated among the properties: \(info.stdout)")
        let json = try h.ferry(["info", id, "--json"])
        let document = try ControlJSON.decoder.decode(JobDocument.self, from: Data(json.stdout.utf8))
        #expect(document.files[0].mirrors == ["https://b.example/pool/a.deb", "http://c.example:8080/pool/a.deb"])
    }

    @Test func aBadMirrorIsRefusedNamingIt() throws {
        let id = try createJob("bad")
        #expect(try h.ferry(["addfile", id, "https://a.example/x", "x"]).status == 0)
        let spaced = try h.ferry(["addmirror", id, "0", "https://b.example/a b"])
        #expect(spaced.status == 65, "\(spaced.stderr)")
        #expect(spaced.stderr == "ferry: job \(id): INVALID_ARGUMENT (queueManager): a mirror URL may not be empty or contain spaces: 'https://b.example/a b'\n")
        let ftp = try h.ferry(["addmirror", id, "0", "ftp://b.example/x"])
        #expect(ftp.status == 65, "\(ftp.stderr)")
        #expect(ftp.stderr.contains("UNSUPPORTED_URL") && ftp.stderr.contains("'ftp' in mirror ftp://b.example/x"), "\(ftp.stderr)")
        let atCreation = try h.ferry(["addfile", id, "https://a.example/y", "y", "--mirror", "gopher://b.example/y"])
        #expect(atCreation.status == 65, "\(atCreation.stderr)")
        #expect(atCreation.stderr.contains("gopher://b.example/y"), "\(atCreation.stderr)")
        #expect(try h.client.job(id).files.map(\.mirrors) == [[]], "nothing refused was kept")
        #expect(try h.ferry(["addmirror", id, "-1", "https://b.example/x"]).status == 64, "a negative index is a usage error")
    }

    @Test func aFailingFileMovesToItsMirrorAndInfoShowsThePolicyHistory() throws {
        let data = testBytes(70_000, seed: 140)
        h.server.setFile("/mirror/p.bin", data: data)
        let id = try createJob("failover")
        #expect(try h.ferry(["addfile", id, h.url("/gone/p.bin"), "p.bin", "--mirror", h.url("/mirror/p.bin")]).status == 0)
        #expect(try h.ferry(["resume", id]).status == 0)
        let done = try #require(h.wait(id, for: "TRANSFERRED"))
        #expect(done.files[0].url == h.url("/mirror/p.bin"), "the mirror-failover policy switched the file")
        #expect(done.files[0].mirrors == [h.url("/gone/p.bin")], "the failed URL became a mirror")
        let info = try h.ferry(["info", id])
        #expect(info.status == 0, "\(info.stderr)")
        let history = try #require(done.history.first, "the policy's decision is in the job's history")
        #expect(info.stdout.contains("\nPolicy history:\n  \(history)\n"), "\(info.stdout)")
        #expect(history.contains("HTTP_ERROR_404") && history.contains("mirror-failover"), "\(history)")
        #expect(try h.ferry(["complete", id]).status == 0)
        #expect(fileHolds(h.destination("p.bin"), data))
    }

    @Test func setDynamicTurnsItOnAndOffAndKeepsOrClearsTheLimit() throws {
        let id = try createJob("dynamic")
        let on = try h.ferry(["setdynamic", id, "on", "--max-size", "1048576"])
        #expect(on.status == 0, "\(on.stderr)")
        #expect(on.stdout == "Job \(id): dynamic content on, max file size 1048576 bytes (1.0 MiB)\n")
        var info = try h.ferry(["info", id]).stdout
        #expect(info.contains("  Dynamic content:     yes"), "\(info)")
        #expect(info.contains("  Max file size:       1048576 bytes (1.0 MiB)"), "\(info)")

        let off = try h.ferry(["setdynamic", id, "off"])
        #expect(off.stdout == "Job \(id): dynamic content off, max file size 1048576 bytes (1.0 MiB)\n", "\(off.stderr)")
        info = try h.ferry(["info", id]).stdout
        #expect(!info.contains("Dynamic content"), "shown only when on: \(info)")
        #expect(info.contains("Max file size"), "\(info)")

        let unlimited = try h.ferry(["setdynamic", id, "on", "--max-size", "0"])
        #expect(unlimited.stdout == "Job \(id): dynamic content on, no job limit on file size\n", "\(unlimited.stderr)")
        #expect(try !h.ferry(["info", id]).stdout.contains("Max file size"))
        #expect(try h.client.job(id).maxFileBytes == nil)

        let bad = try h.ferry(["setdynamic", id, "maybe"])
        #expect(bad.status == 64, "\(bad.stderr)")
        #expect(bad.stderr.contains("'maybe'"), "\(bad.stderr)")
    }

    @Test func setTLSMakesTheCAFileAbsoluteAndClearRemovesBoth() throws {
        let id = try createJob("tls")
        try "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".write(toFile: h.destination("ca.pem"), atomically: true, encoding: .utf8)
        let pin = "sha256//AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        let set = try h.ferry(["settls", id, "--ca-file", "ca.pem", "--pin", pin])
        #expect(set.status == 0, "\(set.stderr)")
        #expect(set.stdout == "Job \(id): CA file \(h.destination("ca.pem")), pinned key \(pin)\n")
        let info = try h.ferry(["info", id]).stdout
        #expect(info.contains("  TLS CA file:         \(h.destination("ca.pem"))\n"), "\(info)")
        #expect(info.contains("  TLS pinned key:      \(pin)\n"), "\(info)")

        let cleared = try h.ferry(["settls", id, "--clear"])
        #expect(cleared.stdout == "Job \(id): no TLS options (the system's CAs, no pin)\n", "\(cleared.stderr)")
        #expect(try !h.ferry(["info", id]).stdout.contains("TLS"))

        let unreadable = try h.ferry(["settls", id, "--ca-file", "missing.pem"])
        #expect(unreadable.status == 65, "\(unreadable.stderr)")
        #expect(unreadable.stderr.contains("cannot read the CA file \(h.destination("missing.pem"))"), "\(unreadable.stderr)")
        for (arguments, message) in [([String](), "give --ca-file, --pin or --clear"),
                                     (["--clear", "--pin", pin], "--clear removes both options; give it alone"),
                                     (["--pin", "md5//abc"], "--pin takes sha256//")] {
            let refused = try h.ferry(["settls", id] + arguments)
            #expect(refused.status == 64, "\(arguments): \(refused.stderr)")
            #expect(refused.stderr.contains(message), "\(arguments) should say '\(message)': \(refused.stderr)")
        }
    }
}
