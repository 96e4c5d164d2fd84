import FerryTestSupport
import Foundation
import Testing

/// `ferry transfer --ca-file` trusts a server whose certificate the system does not know,
/// through the agent and in its own process alike (docs/cli.md); without it the same
/// transfer fails on the certificate and nothing appears.
@Suite(.serialized)
final class TransferCAFileTests {
    let h: AgentHarness
    let tls: HTTPSServer
    let payload = testBytes(200_000, seed: 77)

    init() throws {
        h = try AgentHarness()
        try h.start()
        tls = try HTTPSServer(payload: payload, redirectTarget: "/file")
    }

    deinit {
        tls.stop()
        h.tearDown()
    }

    private func transfer(_ mode: String, _ extra: [String], to name: String) throws -> (status: Int32, stdout: String, stderr: String) {
        let where_ = mode == "--agent" ? ["--agent", "--socket", h.socket] : ["--no-agent", "--state-dir", h.directory.file("one-shot")]
        return try ChildProcess.run("ferry", ["transfer", "-q", "--no-progress-timeout", "0"] + where_ + extra + [tls.baseURL + "/file", name],
                                    workingDirectory: h.downloads, timeout: 60)
    }

    @Test(arguments: ["--agent", "--no-agent"])
    func theGivenCAIsTrustedAndOnlyWithIt(mode: String) throws {
        let refused = try transfer(mode, [], to: "refused.bin")
        #expect(refused.status == 1, "\(mode): \(refused.stderr)")
        #expect(refused.stderr.contains("TLS_ERROR"), "\(mode): \(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: h.downloads + "/refused.bin"))

        // A relative path, as a user types it, is read against the current directory.
        try FileManager.default.copyItem(atPath: tls.certificatePath, toPath: h.downloads + "/ca.pem")
        let trusted = try transfer(mode, ["--ca-file", "ca.pem"], to: "trusted.bin")
        #expect(trusted.status == 0, "\(mode): \(trusted.stderr)")
        #expect(fileHolds(h.downloads + "/trusted.bin", payload))
        try FileManager.default.removeItem(atPath: h.downloads + "/ca.pem")
    }
}
