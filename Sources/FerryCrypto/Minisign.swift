import CCrypto

// minisign (https://jedisct1.github.io/minisign/) public keys and signatures.
//
// A public key is base64 of: "Ed" ‖ key id (8 bytes) ‖ Ed25519 public key (32 bytes),
// optionally preceded by an "untrusted comment:" line. A signature file is four lines:
//
//     untrusted comment: <free text, not signed>
//     base64("Ed" or "ED" ‖ key id (8 bytes) ‖ Ed25519 signature (64 bytes))
//     trusted comment: <text>
//     base64(Ed25519 signature of (the 64 signature bytes ‖ the trusted comment text))
//
// "ED" signs BLAKE2b-512 of the file (the default since minisign 0.8); the legacy "Ed"
// signs the file itself, which therefore has to be in memory whole (it is mapped).

/// A minisign key id: 8 bytes, printed as minisign prints it (16 uppercase hex digits,
/// the bytes read as a little-endian number).
public struct MinisignKeyID: Hashable, Sendable, CustomStringConvertible {
    /// The 8 bytes as stored in keys and signatures.
    public let bytes: [UInt8]

    /// - Parameter bytes: exactly 8 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 8 else { return nil }
        self.bytes = bytes
    }

    /// "E7620F1842B4E81F".
    public var description: String { hexString(bytes.reversed()).uppercased() }
}

/// A trusted minisign public key.
public struct MinisignPublicKey: Sendable, CustomStringConvertible {
    /// Which key signed: signatures carry the same id.
    public let keyID: MinisignKeyID
    /// The Ed25519 key.
    public let key: PublicKey
    /// The "untrusted comment:" line's text, when the input had one.
    public let untrustedComment: String?
    /// How messages name the key (its file name, by default "minisign key <id>").
    public let name: String

    /// Parses the content of a `minisign.pub` file, or just its base64 line.
    /// - Throws: ``CryptoError`` naming the problem: no key line, bad base64, wrong length,
    ///   or an algorithm other than `Ed`.
    public init(text: String, name: String? = nil) throws(CryptoError) {
        let label = name.map { "\($0): " } ?? ""
        let lines = MinisignText.lines(Array(text.utf8)).filter { !$0.isEmpty }
        var comment: String?
        var keyLines = lines[...]
        if let first = keyLines.first, first.starts(with: MinisignText.untrustedPrefix) {
            comment = String(decoding: first.dropFirst(MinisignText.untrustedPrefix.count), as: UTF8.self)
            keyLines = keyLines.dropFirst()
        }
        guard let line = keyLines.first else {
            throw CryptoError(message: "\(label)no minisign public key line found")
        }
        guard keyLines.count == 1 else {
            throw CryptoError(message: "\(label)a minisign public key is one base64 line (after an optional untrusted comment), found \(keyLines.count) lines")
        }
        guard let raw = bytes(fromBase64: String(decoding: line, as: UTF8.self)) else {
            throw CryptoError(message: "\(label)the minisign public key is not valid base64")
        }
        guard raw.count == 42 else {
            throw CryptoError(message: "\(label)a minisign public key is 42 bytes, got \(raw.count)")
        }
        guard raw[0] == UInt8(ascii: "E"), raw[1] == UInt8(ascii: "d") else {
            throw CryptoError(message: "\(label)unsupported minisign key algorithm '\(MinisignText.printable(raw[0..<2]))' (expected 'Ed')")
        }
        guard let keyID = MinisignKeyID(bytes: Array(raw[2..<10])) else {
            throw CryptoError(message: "\(label)the minisign key id is not 8 bytes")
        }
        let keyName = name ?? "minisign key \(keyID)"
        self.keyID = keyID
        self.key = try PublicKey(rawEd25519: Array(raw[10..<42]), name: keyName)
        self.untrustedComment = comment
        self.name = keyName
    }

    /// Reads a `minisign.pub` file; messages name the key by the file's name.
    public init(contentsOfFile path: String) throws(CryptoError) {
        let bytes = try contentsOfSmallFile(atPath: path, limit: 64 * 1024)
        try self.init(text: String(decoding: bytes, as: UTF8.self), name: lastPathComponent(path))
    }

    /// "minisign.pub (minisign key E7620F1842B4E81F)".
    public var description: String { "\(name) (minisign key \(keyID))" }

    /// Checks `signature` over bytes in memory: the key id, the signature of the message and
    /// the signature of the trusted comment, in that order.
    public func verify(message: [UInt8], signature: MinisignSignature) throws(CryptoError) -> MinisignVerdict {
        guard signature.keyID == keyID else { return .keyIDMismatch(signature: signature.keyID, key: keyID) }
        let signed: [UInt8]
        switch signature.algorithm {
        case .prehashed: signed = try blake2b512(message)
        case .legacy: signed = message
        }
        return try finish(signed: signed, signature: signature)
    }

    /// Checks `signature` over a file: `ED` signatures stream the file through BLAKE2b-512
    /// in 1 MiB chunks; legacy `Ed` signatures map the whole file into memory.
    /// - Throws: ``CryptoError`` when the file cannot be read.
    public func verify(fileAtPath path: String, signature: MinisignSignature) throws(CryptoError) -> MinisignVerdict {
        guard signature.keyID == keyID else { return .keyIDMismatch(signature: signature.keyID, key: keyID) }
        switch signature.algorithm {
        case .prehashed:
            return try finish(signed: blake2b512(fileAtPath: path), signature: signature)
        case .legacy:
            return try withMappedFile(atPath: path) { (message) throws(CryptoError) -> MinisignVerdict in
                guard try ed25519(message, signature.signature) else { return .signatureMismatch }
                return try globalCheck(signature)
            }
        }
    }

    private func finish(signed: [UInt8], signature: MinisignSignature) throws(CryptoError) -> MinisignVerdict {
        let matches = try withBytes(of: signed) { (raw) throws(CryptoError) -> Bool in try ed25519(raw, signature.signature) }
        guard matches else { return .signatureMismatch }
        return try globalCheck(signature)
    }

    private func globalCheck(_ signature: MinisignSignature) throws(CryptoError) -> MinisignVerdict {
        let global = signature.signature + signature.trustedCommentBytes
        let matches = try withBytes(of: global) { (raw) throws(CryptoError) -> Bool in try ed25519(raw, signature.globalSignature) }
        return matches ? .valid(trustedComment: signature.trustedComment) : .trustedCommentMismatch
    }

    private func ed25519(_ message: UnsafeRawBufferPointer, _ signature: [UInt8]) throws(CryptoError) -> Bool {
        try FerryCrypto.verify(message: message, signature: signature, key: key, scheme: .ed25519)
    }
}

/// The two minisign signature algorithms.
public enum MinisignAlgorithm: String, Sendable {
    /// `Ed`: Ed25519 over the file itself (minisign before 0.8, or `-l`).
    case legacy = "Ed"
    /// `ED`: Ed25519 over BLAKE2b-512 of the file (the default since minisign 0.8).
    case prehashed = "ED"
}

/// A parsed minisign signature (`.minisig` file).
public struct MinisignSignature: Sendable, Equatable {
    /// `Ed` (legacy) or `ED` (prehashed).
    public let algorithm: MinisignAlgorithm
    /// The id of the key that signed.
    public let keyID: MinisignKeyID
    /// The 64-byte Ed25519 signature of the file (or of its BLAKE2b-512).
    public let signature: [UInt8]
    /// The text after "untrusted comment: "; not signed.
    public let untrustedComment: String
    /// The text after "trusted comment: ", covered by ``globalSignature``.
    public var trustedComment: String { String(decoding: trustedCommentBytes, as: UTF8.self) }
    /// The trusted comment's exact bytes, as signed.
    public let trustedCommentBytes: [UInt8]
    /// The 64-byte Ed25519 signature of ``signature`` ‖ ``trustedCommentBytes``.
    public let globalSignature: [UInt8]

    /// Parses the text of a `.minisig` file. Lines may end in LF or CRLF.
    /// - Throws: ``CryptoError`` naming what is wrong: a missing line or prefix, bad base64,
    ///   a wrong length, an unknown algorithm.
    public init(text: String) throws(CryptoError) {
        try self.init(bytes: Array(text.utf8))
    }

    /// Parses the bytes of a `.minisig` file.
    public init(bytes content: [UInt8]) throws(CryptoError) {
        var lines = MinisignText.lines(content)
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        guard lines.count == 4 else {
            throw CryptoError(message: "malformed minisign signature: expected 4 lines (untrusted comment, signature, trusted comment, global signature), got \(lines.count)")
        }
        guard lines[0].starts(with: MinisignText.untrustedPrefix) else {
            throw CryptoError(message: "malformed minisign signature: the first line does not start with 'untrusted comment: '")
        }
        guard let signatureLine = bytes(fromBase64: String(decoding: lines[1], as: UTF8.self)) else {
            throw CryptoError(message: "malformed minisign signature: the signature line is not valid base64")
        }
        guard signatureLine.count == 74 else {
            throw CryptoError(message: "malformed minisign signature: the signature line holds \(signatureLine.count) bytes, not 74")
        }
        guard let algorithm = MinisignAlgorithm(rawValue: String(decoding: signatureLine[0..<2], as: UTF8.self)) else {
            throw CryptoError(message: "unsupported minisign signature algorithm '\(MinisignText.printable(signatureLine[0..<2]))' (expected 'ED' or 'Ed')")
        }
        guard lines[2].starts(with: MinisignText.trustedPrefix) else {
            throw CryptoError(message: "malformed minisign signature: the third line does not start with 'trusted comment: '")
        }
        guard let global = bytes(fromBase64: String(decoding: lines[3], as: UTF8.self)) else {
            throw CryptoError(message: "malformed minisign signature: the global signature line is not valid base64")
        }
        guard global.count == 64 else {
            throw CryptoError(message: "malformed minisign signature: the global signature holds \(global.count) bytes, not 64")
        }
        guard let keyID = MinisignKeyID(bytes: Array(signatureLine[2..<10])) else {
            throw CryptoError(message: "malformed minisign signature: no key id")
        }
        self.algorithm = algorithm
        self.keyID = keyID
        self.signature = Array(signatureLine[10..<74])
        self.untrustedComment = String(decoding: lines[0].dropFirst(MinisignText.untrustedPrefix.count), as: UTF8.self)
        self.trustedCommentBytes = Array(lines[2].dropFirst(MinisignText.trustedPrefix.count))
        self.globalSignature = global
    }
}

extension MinisignSignature {
    /// Parses a minisign signature given either as the text of a `.minisig` file or as
    /// base64 of that text (handy where only one line fits, such as a file property).
    /// - Throws: ``CryptoError``: "malformed minisign signature: …" when it is neither.
    public init(textOrBase64 text: String) throws(CryptoError) {
        if text.contains("untrusted comment:") {
            try self.init(text: text)
            return
        }
        guard let decoded = bytes(fromBase64: text), !decoded.isEmpty else {
            throw CryptoError(message: "malformed minisign signature: neither the text of a .minisig file nor base64 of it")
        }
        try self.init(bytes: decoded)
    }
}

/// What a detached signature file holds, told apart by content.
public enum DetachedSignature: Equatable, Sendable {
    /// A `.minisig` file.
    case minisign(MinisignSignature)
    /// A raw signature (Ed25519, DER ECDSA or RSA), stored as binary or as base64 text.
    case raw([UInt8])

    /// Reads a signature file's content: a `.minisig` (starts with "untrusted comment:"),
    /// base64 text (only base64 characters and whitespace), or else the raw binary signature.
    /// - Throws: ``CryptoError`` when the content is empty or a malformed `.minisig`.
    public init(fileContent content: [UInt8]) throws(CryptoError) {
        if content.starts(with: MinisignText.untrustedPrefix.dropLast()) {
            self = .minisign(try MinisignSignature(bytes: content))
            return
        }
        let base64Characters = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n".utf8)
        if !content.isEmpty, content.allSatisfy({ base64Characters.contains($0) }),
           let decoded = bytes(fromBase64: String(decoding: content, as: UTF8.self)), !decoded.isEmpty {
            self = .raw(decoded)
            return
        }
        guard !content.isEmpty else { throw CryptoError(message: "malformed signature: the signature file is empty") }
        self = .raw(content)
    }
}

/// The outcome of checking a minisign signature.
public enum MinisignVerdict: Equatable, Sendable, CustomStringConvertible {
    /// Both signatures are valid; the trusted comment is authentic.
    case valid(trustedComment: String)
    /// The signature was made by another key.
    case keyIDMismatch(signature: MinisignKeyID, key: MinisignKeyID)
    /// The signature does not match the file.
    case signatureMismatch
    /// The file's signature is valid but the trusted comment's is not: the comment was altered.
    case trustedCommentMismatch

    public var isValid: Bool { if case .valid = self { true } else { false } }

    public var description: String {
        switch self {
        case .valid(let comment): "valid (trusted comment: \(comment))"
        case .keyIDMismatch(let signature, let key): "signed by minisign key \(signature), not by key \(key)"
        case .signatureMismatch: "the signature does not match the file"
        case .trustedCommentMismatch: "bad global signature: the trusted comment was altered or signed by another key"
        }
    }
}

// MARK: - Helpers

enum MinisignText {
    static let untrustedPrefix = Array("untrusted comment: ".utf8)
    static let trustedPrefix = Array("trusted comment: ".utf8)

    /// Splits on LF and drops a CR before it (as bytes: "\r\n" is one Character in Swift).
    static func lines(_ bytes: [UInt8]) -> [[UInt8]] {
        bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            var line = Array(line)
            if line.last == 0x0D { line.removeLast() }
            return line
        }
    }

    /// Two algorithm bytes for a message: letters as they are, anything else in hex.
    static func printable(_ bytes: ArraySlice<UInt8>) -> String {
        if bytes.allSatisfy({ (0x20...0x7E).contains($0) }) { return String(decoding: bytes, as: UTF8.self) }
        return "0x" + hexString(Array(bytes))
    }
}

/// BLAKE2b-512 of bytes in memory.
func blake2b512(_ bytes: [UInt8]) throws(CryptoError) -> [UInt8] {
    let digest = try EVPDigest(EVP_blake2b512(), name: "BLAKE2b-512")
    try withBytes(of: bytes) { (raw) throws(CryptoError) in try digest.update(raw) }
    return try digest.finish()
}

/// BLAKE2b-512 of a file, streamed in 1 MiB chunks.
func blake2b512(fileAtPath path: String) throws(CryptoError) -> [UInt8] {
    let digest = try EVPDigest(EVP_blake2b512(), name: "BLAKE2b-512")
    try forEachChunk(ofFileAtPath: path) { (chunk) throws(CryptoError) in try digest.update(chunk) }
    return try digest.finish()
}

/// A streaming digest over any OpenSSL `EVP_MD`.
final class EVPDigest {
    private let context: OpaquePointer
    private let name: String

    init(_ md: OpaquePointer?, name: String) throws(CryptoError) {
        guard let md else { throw CryptoError(message: "OpenSSL does not offer \(name)") }
        guard let context = EVP_MD_CTX_new() else { throw CryptoError.openSSL("EVP_MD_CTX_new") }
        guard EVP_DigestInit_ex(context, md, nil) == 1 else {
            EVP_MD_CTX_free(context)
            throw CryptoError.openSSL("cannot start \(name)")
        }
        self.context = context
        self.name = name
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawBufferPointer) throws(CryptoError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        guard EVP_DigestUpdate(context, base, bytes.count) == 1 else { throw CryptoError.openSSL("\(name) update") }
    }

    func finish() throws(CryptoError) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &output, &length) == 1 else { throw CryptoError.openSSL("\(name) final") }
        return Array(output.prefix(Int(length)))
    }
}
