import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real HTTPS server on 127.0.0.1 with a fresh self-signed certificate, for the TLS tests:
/// `/file` serves `payload`, `/redirect` answers 302 to `redirectTarget`.
///
/// The certificate is made with the `openssl` command and served by Python's `ssl` module
/// (both installed by `.ci/setup`), so the client side under test meets real TLS.
public final class HTTPSServer: @unchecked Sendable {
    public let port: Int
    /// The self-signed certificate, usable as a CA file.
    public let certificatePath: String
    /// `sha256//<base64>` of the certificate's public key, as libcurl pins it.
    public let publicKeyPin: String
    private let process = Process()
    private let directory: TemporaryDirectory

    public var baseURL: String { "https://127.0.0.1:\(port)" }

    public init(payload: [UInt8], redirectTarget: String) throws {
        directory = try TemporaryDirectory("ferry-tls")
        certificatePath = directory.file("cert.pem")
        let key = directory.file("key.pem")
        try HTTPSServer.shell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                              + "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                              + "-keyout '\(key)' -out '\(certificatePath)' 2>/dev/null")
        publicKeyPin = "sha256//" + (try HTTPSServer.shell(
            "openssl x509 -in '\(certificatePath)' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"))
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let payloadPath = directory.file("payload")
        FileManager.default.createFile(atPath: payloadPath, contents: Data(payload))
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", PluginBuilder.packageRoot + "/Tests/Fixtures/tls/https_server.py",
                             certificatePath, key, payloadPath, redirectTarget]
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try runWithSignalsUnblocked(process)
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        guard let port = Int(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw NSError(domain: "HTTPSServer", code: 1, userInfo: [NSLocalizedDescriptionKey: "the HTTPS server did not start: '\(line)'"])
        }
        self.port = port
    }

    public func stop() {
        if process.isRunning {
            // SIGKILL: the server holds nothing that needs a clean end. The wait is bounded:
            // Foundation may not report the end once the test process is exiting.
            kill(process.processIdentifier, SIGKILL)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(10_000) }
        }
        directory.remove()
    }

    deinit { stop() }

    @discardableResult
    private static func shell(_ command: String) throws -> String {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardOutput = output
        try runWithSignalsUnblocked(process)
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "HTTPSServer", code: Int(process.terminationStatus),
                          userInfo: [NSLocalizedDescriptionKey: "failed: \(command)"])
        }
        return String(decoding: data, as: UTF8.self)
    }
}
