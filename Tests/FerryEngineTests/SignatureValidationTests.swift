import FerryCore
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import Testing

/// The built-in signature validator, loaded with dlopen by the real engine; keys and
/// signatures made by the openssl command line.
@Suite(.serialized)
final class SignatureValidationTests {
    let keys: TemporaryDirectory
    var h: EngineHarness?

    init() throws { keys = try TemporaryDirectory("ferry-keys") }

    deinit {
        h?.tearDown()
        keys.remove()
    }

    private func openssl(_ arguments: [String]) throws {
        let result = try PluginBuilder.run("/usr/bin/openssl", arguments)
        #expect(result.status == 0, "openssl \(arguments.joined(separator: " ")): \(result.output)")
    }

    /// An Ed25519 key pair; returns the public key's path.
    private func makeKey(_ name: String) throws -> (privateKey: String, publicKey: String) {
        let privateKey = keys.file("\(name).pem"), publicKey = keys.file("\(name).pub.pem")
        try openssl(["genpkey", "-algorithm", "ed25519", "-out", privateKey])
        try openssl(["pkey", "-in", privateKey, "-pubout", "-out", publicKey])
        return (privateKey, publicKey)
    }

    private func sign(_ data: [UInt8], with privateKey: String) throws -> String {
        let message = keys.file("message-\(UUID().uuidString)"), signature = message + ".sig"
        FileManager.default.createFile(atPath: message, contents: Data(data))
        try openssl(["pkeyutl", "-sign", "-rawin", "-inkey", privateKey, "-in", message, "-out", signature])
        return try #require(FileManager.default.contents(atPath: signature)).base64EncodedString()
    }

    @Test func signedFilesValidateAndAForgeryIsRefusedWithTheReason() throws {
        let trusted = try makeKey("release")
        let stranger = try makeKey("stranger")
        let h = try EngineHarness { $0.plugins = [PluginSpec(reference: "signature", settings: [("keys", trusted.publicKey)])] }
        self.h = h
        #expect(h.engine.plugins.plugins.map(\.name) == ["signature"])
        let data = testBytes(100_000, seed: 130)
        h.server.setFile("/signed.bin", data: data)

        let good = try h.engine.createJob(displayName: "signed", owner: getuid())
        _ = try h.engine.addFiles(good.id, [NewFile(remoteURL: h.url("/signed.bin"), localPath: h.destination("good.bin"),
                                                    properties: ["signature": try sign(data, with: trusted.privateKey)])])
        _ = try h.engine.resume(good.id)
        try h.wait(good.id, for: .transferred)

        let forged = try h.engine.createJob(displayName: "forged", owner: getuid())
        _ = try h.engine.addFiles(forged.id, [NewFile(remoteURL: h.url("/signed.bin"), localPath: h.destination("forged.bin"),
                                                      properties: ["signature": try sign(data, with: stranger.privateKey)])])
        _ = try h.engine.resume(forged.id)
        let failed = try h.wait(forged.id, for: .error)
        #expect(failed.lastError?.code == .validationFailed)
        #expect(failed.lastError?.message.hasPrefix("signature: signature does not match") ?? false, "\(failed.lastError?.message ?? "")")
        #expect(!exists(h.destination("forged.bin")))
    }

    @Test func anUnreadableKeyStopsTheEngineFromStarting() throws {
        let bogus = keys.file("bogus.pem")
        try "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n".write(toFile: bogus, atomically: true, encoding: .utf8)
        var configuration = EngineConfiguration(storePath: keys.file("jobs.db"))
        configuration.plugins = [PluginSpec(reference: "signature", settings: [("keys", bogus)])]
        if let error = #expect(throws: (any Error).self, performing: { try Engine(configuration: configuration, logger: EngineHarness.logger) }) {
            #expect("\(error)".contains("bogus.pem"), "\(error)")
        }
    }
}
