import FerryCrypto
import FerryTestSupport
import Foundation

/// The `openssl` command-line tool in a scratch directory: makes keys and signatures
/// with the real tool, so the tests check interoperability rather than round trips.
final class OpenSSLWorkbench {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory("ferry-signature")
    }

    deinit { directory.remove() }

    /// `directory/name`.
    func path(_ name: String) -> String { directory.file(name) }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The `openssl` executable, found on `PATH`.
    static var tool: String {
        get throws {
            let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            for directory in directories {
                let candidate = "\(directory)/openssl"
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
            throw Failure(description: "the openssl tool is not on PATH")
        }
    }

    /// Runs `openssl arguments…` in the scratch directory and returns its standard output.
    @discardableResult
    func openssl(_ arguments: [String]) throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.tool)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory.path)
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Read both pipes to the end before waiting, so a full pipe cannot block the tool.
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "openssl \(arguments.joined(separator: " ")) exited with \(process.terminationStatus): \(String(decoding: errorData, as: UTF8.self))")
        }
        return [UInt8](outputData)
    }

    func write(_ bytes: [UInt8], to name: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path(name)))
    }

    func read(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path(name))))
    }

    func text(_ name: String) throws -> String {
        String(decoding: try read(name), as: UTF8.self)
    }

    // MARK: - Keys

    /// The key types the tests make.
    enum KeyType: String, CaseIterable, Sendable {
        case ed25519, p256, p384, rsa2048, rsa1024, secp256k1, ed448
    }

    /// Makes a private key `name.key` and its public key `name.pub` (PEM); returns the public PEM.
    @discardableResult
    func makeKey(_ type: KeyType, name: String) throws -> String {
        let privatePath = "\(name).key"
        switch type {
        case .ed25519: try openssl(["genpkey", "-algorithm", "ed25519", "-out", privatePath])
        case .ed448: try openssl(["genpkey", "-algorithm", "ed448", "-out", privatePath])
        case .p256: try openssl(["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", privatePath])
        case .p384: try openssl(["ecparam", "-genkey", "-name", "secp384r1", "-noout", "-out", privatePath])
        case .secp256k1: try openssl(["ecparam", "-genkey", "-name", "secp256k1", "-noout", "-out", privatePath])
        case .rsa2048: try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", privatePath])
        case .rsa1024: try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", privatePath])
        }
        try openssl(["pkey", "-in", privatePath, "-pubout", "-out", "\(name).pub"])
        return try text("\(name).pub")
    }

    /// The raw 32 bytes of an Ed25519 public key (the end of its DER SubjectPublicKeyInfo).
    func rawEd25519PublicKey(name: String) throws -> [UInt8] {
        let der = try openssl(["pkey", "-pubin", "-in", "\(name).pub", "-outform", "DER"])
        return Array(der.suffix(32))
    }

    // MARK: - Signatures

    /// Pure Ed25519 over the file `input`, with the private key `key.key`.
    func signEd25519(_ input: String, key: String) throws -> [UInt8] {
        try openssl(["pkeyutl", "-sign", "-rawin", "-inkey", "\(key).key", "-in", input, "-out", "\(input).\(key).sig"])
        return try read("\(input).\(key).sig")
    }

    /// `openssl dgst -<digest> -sign key.key [-sigopt …] file`.
    func signDigest(_ input: String, key: String, digest: String, options: [String] = []) throws -> [UInt8] {
        var arguments = ["dgst", "-\(digest)", "-sign", "\(key).key"]
        for option in options { arguments += ["-sigopt", option] }
        arguments += ["-out", "\(input).\(key).sig", input]
        try openssl(arguments)
        return try read("\(input).\(key).sig")
    }

    /// The signature a scheme's usual `openssl` command makes.
    func sign(_ input: String, key: String, scheme: SignatureScheme, pssSaltLength: String? = nil) throws -> [UInt8] {
        switch scheme {
        case .ed25519: return try signEd25519(input, key: key)
        case .ecdsaSHA256, .rsaPKCS1SHA256: return try signDigest(input, key: key, digest: "sha256")
        case .ecdsaSHA384: return try signDigest(input, key: key, digest: "sha384")
        case .rsaPSSSHA256:
            var options = ["rsa_padding_mode:pss"]
            if let pssSaltLength { options.append("rsa_pss_saltlen:\(pssSaltLength)") }
            return try signDigest(input, key: key, digest: "sha256", options: options)
        }
    }

    // MARK: - minisign, built from openssl parts

    /// A minisign key pair: `name.key` signs, and the returned text is its `minisign.pub`.
    @discardableResult
    func makeMinisignKey(name: String, keyID: [UInt8]) throws -> String {
        try makeKey(.ed25519, name: name)
        let raw = try rawEd25519PublicKey(name: name)
        let encoded = base64String(Array("Ed".utf8) + keyID + raw)
        let id = keyID.reversed().map { String(format: "%02X", $0) }.joined()
        return "untrusted comment: minisign public key \(id)\n\(encoded)\n"
    }

    /// The text of a `.minisig` for the file `input`, made as minisign makes it:
    /// `ED` signs BLAKE2b-512 of the file, `Ed` the file itself; the global signature
    /// covers the signature bytes followed by the trusted comment.
    func minisign(_ input: String, key: String, keyID: [UInt8], prehashed: Bool = true,
                  trustedComment: String = "timestamp:1700000000\tfile:payload\thashed") throws -> String {
        let signedName: String
        if prehashed {
            let digest = try openssl(["dgst", "-blake2b512", "-binary", input])
            signedName = "\(input).blake2b"
            try write(digest, to: signedName)
        } else {
            signedName = input
        }
        let signature = try signEd25519(signedName, key: key)
        try write(signature + Array(trustedComment.utf8), to: "\(input).global")
        let global = try signEd25519("\(input).global", key: key)
        let algorithm = prehashed ? "ED" : "Ed"
        return """
            untrusted comment: signature from minisign secret key
            \(base64String(Array(algorithm.utf8) + keyID + signature))
            trusted comment: \(trustedComment)
            \(base64String(global))

            """
    }
}

extension Array where Element == UInt8 {
    /// A copy with the bits of the byte at `index` inverted.
    func flipping(at index: Int) -> [UInt8] {
        var copy = self
        copy[index] ^= 0xFF
        return copy
    }
}
