import CCrypto
#if canImport(Glibc)
import Glibc
#endif

// Detached signatures: public keys from PEM, and verification through OpenSSL EVP.
//
// Ed25519 is "pure" EdDSA: OpenSSL signs and verifies the whole message in one
// call (`EVP_DigestVerify` with no digest), so a file checked against an Ed25519
// signature is mapped into memory whole. The other schemes hash the message
// first; their files are streamed through `EVP_DigestVerifyUpdate` in 1 MiB
// chunks and never held in memory.

/// What a public key is.
public enum PublicKeyKind: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// An Ed25519 key (RFC 8032).
    case ed25519
    /// An ECDSA key on NIST P-256 (prime256v1, secp256r1).
    case ecdsaP256
    /// An ECDSA key on NIST P-384 (secp384r1).
    case ecdsaP384
    /// An RSA key with a modulus of `bits` bits (at least ``PublicKey/minimumRSABits``).
    case rsa(bits: Int)

    /// For people: "Ed25519", "ECDSA P-256", "ECDSA P-384", "RSA-3072".
    public var description: String {
        switch self {
        case .ed25519: "Ed25519"
        case .ecdsaP256: "ECDSA P-256"
        case .ecdsaP384: "ECDSA P-384"
        case .rsa(let bits): "RSA-\(bits)"
        }
    }

    /// The scheme assumed when a signature does not name one: `ed25519`, `ecdsa-sha256` for
    /// P-256, `ecdsa-sha384` for P-384 and `rsa-pkcs1-sha256` for RSA.
    public var defaultScheme: SignatureScheme {
        switch self {
        case .ed25519: .ed25519
        case .ecdsaP256: .ecdsaSHA256
        case .ecdsaP384: .ecdsaSHA384
        case .rsa: .rsaPKCS1SHA256
        }
    }

    /// The signature schemes a key of this kind can check.
    ///
    /// ECDSA keys accept either hash: `openssl dgst -sha256 -sign` with a P-384 key is common.
    public var schemes: [SignatureScheme] {
        switch self {
        case .ed25519: [.ed25519]
        case .ecdsaP256: [.ecdsaSHA256, .ecdsaSHA384]
        case .ecdsaP384: [.ecdsaSHA384, .ecdsaSHA256]
        case .rsa: [.rsaPKCS1SHA256, .rsaPSSSHA256]
        }
    }
}

/// How a detached signature was made. The raw values are the names used in
/// configuration and file properties.
public enum SignatureScheme: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Pure Ed25519 over the whole message: a 64-byte signature.
    /// `openssl pkeyutl -sign -rawin -inkey key.pem -in file -out file.sig`
    case ed25519 = "ed25519"
    /// ECDSA over SHA-256, DER-encoded as OpenSSL writes it.
    /// `openssl dgst -sha256 -sign key.pem -out file.sig file`
    case ecdsaSHA256 = "ecdsa-sha256"
    /// ECDSA over SHA-384, DER-encoded as OpenSSL writes it.
    /// `openssl dgst -sha384 -sign key.pem -out file.sig file`
    case ecdsaSHA384 = "ecdsa-sha384"
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    /// `openssl dgst -sha256 -sign key.pem -out file.sig file`
    case rsaPKCS1SHA256 = "rsa-pkcs1-sha256"
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    ///
    /// Any salt length is accepted: it is recovered from the signature (OpenSSL's
    /// `RSA_PSS_SALTLEN_AUTO`). That covers both common choices: the digest length
    /// (32 bytes, what most libraries and OpenSSL 3.1 and later use by default) and the
    /// maximum (key bytes − 34, e.g. 222 for RSA-2048, what OpenSSL 3.0's
    /// `openssl dgst -sha256 -sign key.pem -sigopt rsa_padding_mode:pss` writes).
    case rsaPSSSHA256 = "rsa-pss-sha256"

    public var description: String { rawValue }

    /// The names, comma-separated, for messages.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// True when the message is hashed by OpenSSL and can be streamed.
    public var isStreaming: Bool { self != .ed25519 }

    /// The hash the scheme signs (`nil` for Ed25519, which signs the message itself).
    public var digestAlgorithm: String? {
        switch self {
        case .ed25519: nil
        case .ecdsaSHA256, .rsaPKCS1SHA256, .rsaPSSSHA256: "sha256"
        case .ecdsaSHA384: "sha384"
        }
    }

    var digest: OpaquePointer? {
        switch self {
        case .ed25519: nil
        case .ecdsaSHA256, .rsaPKCS1SHA256, .rsaPSSSHA256: EVP_sha256()
        case .ecdsaSHA384: EVP_sha384()
        }
    }
}

/// A trusted public key, loaded from PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
///
/// Accepted: Ed25519, ECDSA P-256 and P-384, and RSA of at least 2048 bits.
/// Immutable once loaded, so one key may verify on several threads at once
/// (OpenSSL allows concurrent read-only use of an `EVP_PKEY`).
public final class PublicKey: @unchecked Sendable, CustomStringConvertible {
    /// RSA keys shorter than this are refused.
    public static let minimumRSABits = 2048

    /// What the key is.
    public let kind: PublicKeyKind
    /// Lowercase hexadecimal SHA-256 of the key's DER SubjectPublicKeyInfo
    /// (the same as `openssl pkey -pubin -in key.pem -outform DER | sha256sum`).
    public let fingerprint: String
    /// The name used in messages: the key file's name, or the kind and a short fingerprint.
    public let name: String

    let pkey: OpaquePointer

    /// Loads a key from PEM text.
    /// - Parameter name: how messages name the key (e.g. its file name); by default the kind
    ///   and the first 16 digits of the fingerprint.
    /// - Throws: ``CryptoError`` when the text is no public key, the key type or curve is
    ///   not supported, or an RSA key is shorter than 2048 bits.
    public convenience init(pem: String, name: String? = nil) throws(CryptoError) {
        try self.init(pemBytes: Array(pem.utf8), name: name)
    }

    /// Loads a key from a PEM file; messages name it by the file's name.
    public convenience init(contentsOfFile path: String) throws(CryptoError) {
        let bytes = try contentsOfSmallFile(atPath: path, limit: 1 << 20)
        try self.init(pemBytes: bytes, name: lastPathComponent(path))
    }

    /// Makes an Ed25519 key from its raw 32 bytes (as minisign stores it).
    public convenience init(rawEd25519 bytes: [UInt8], name: String? = nil) throws(CryptoError) {
        guard bytes.count == 32 else {
            throw CryptoError(message: "an Ed25519 public key is 32 bytes, got \(bytes.count)")
        }
        guard let pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, bytes, bytes.count) else {
            throw CryptoError.openSSL("cannot make an Ed25519 key from 32 bytes")
        }
        try self.init(taking: pkey, name: name)
    }

    private convenience init(pemBytes bytes: [UInt8], name: String?) throws(CryptoError) {
        let label = name.map { "\($0): " } ?? ""
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.contains("-----BEGIN PUBLIC KEY-----") else {
            if text.contains("PRIVATE KEY-----") {
                throw CryptoError(message: "\(label)holds a private key; configure only the public key (openssl pkey -in key.pem -pubout)")
            }
            if text.contains("-----BEGIN CERTIFICATE-----") {
                throw CryptoError(message: "\(label)holds a certificate, not a public key (extract it with openssl x509 -in cert.pem -pubkey -noout)")
            }
            if text.contains("-----BEGIN RSA PUBLIC KEY-----") {
                throw CryptoError(message: "\(label)holds a PKCS#1 RSA key; convert it to a PUBLIC KEY block (openssl pkey -pubin -in key.pem -out spki.pem)")
            }
            throw CryptoError(message: "\(label)no '-----BEGIN PUBLIC KEY-----' block found")
        }
        let blocks = occurrences(of: Array("-----BEGIN PUBLIC KEY-----".utf8), in: bytes)
        guard blocks == 1 else {
            throw CryptoError(message: "\(label)holds \(blocks) public keys; give one key per file")
        }
        ERR_clear_error()
        let loaded: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(clamping: raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let pkey = loaded else {
            throw CryptoError.openSSL("\(label)cannot read the PEM public key")
        }
        try self.init(taking: pkey, name: name)
    }

    /// Takes ownership of `pkey` (freed here if the key is refused).
    private init(taking pkey: OpaquePointer, name: String?) throws(CryptoError) {
        let kind: PublicKeyKind
        let fingerprint: String
        do throws(CryptoError) {
            kind = try PublicKey.kind(of: pkey, name: name)
            fingerprint = try PublicKey.fingerprint(of: pkey)
        } catch {
            EVP_PKEY_free(pkey)
            throw error
        }
        self.pkey = pkey
        self.kind = kind
        self.fingerprint = fingerprint
        self.name = name ?? "\(kind) key \(fingerprint.prefix(16))"
    }

    deinit { EVP_PKEY_free(pkey) }

    /// "release.pem (ECDSA P-256, SHA-256 3f1a…)".
    public var description: String {
        "\(name) (\(kind), SHA-256 \(fingerprint.prefix(16)))"
    }

    /// The size in bytes of a signature this key makes for fixed-size schemes
    /// (64 for Ed25519, the modulus size for RSA); `nil` for ECDSA, whose DER length varies.
    public var fixedSignatureSize: Int? {
        switch kind {
        case .ed25519: 64
        case .rsa: Int(EVP_PKEY_get_size(pkey))
        case .ecdsaP256, .ecdsaP384: nil
        }
    }

    /// True when this key can check signatures made with `scheme`.
    public func fits(_ scheme: SignatureScheme) -> Bool { kind.schemes.contains(scheme) }

    /// Throws when this key cannot check signatures made with `scheme`, saying so:
    /// "key release.pem is ECDSA P-256 but the signature scheme is rsa-pss-sha256".
    public func checkFits(_ scheme: SignatureScheme) throws(CryptoError) {
        guard fits(scheme) else {
            let usable = kind.schemes.map(\.rawValue).joined(separator: " or ")
            throw CryptoError(message: "key \(name) is \(kind) but the signature scheme is \(scheme) (this key checks \(usable))")
        }
    }

    /// Throws when `signature` cannot be a signature of `scheme` by this key: the wrong
    /// length, or (ECDSA) not the DER `SEQUENCE { INTEGER r, INTEGER s }` OpenSSL writes.
    /// The message starts with "malformed signature".
    public func checkEncoding(of signature: [UInt8], scheme: SignatureScheme) throws(CryptoError) {
        try checkFits(scheme)
        switch kind {
        case .ed25519, .rsa:
            if let size = fixedSignatureSize, signature.count != size {
                throw CryptoError(message: "malformed signature: expected \(size) bytes for \(scheme) with key \(name) (\(kind)), got \(signature.count)")
            }
        case .ecdsaP256, .ecdsaP384:
            let orderBytes = kind == .ecdsaP256 ? 32 : 48
            if let problem = ECDSASignatureDER.problem(signature, orderBytes: orderBytes) {
                throw CryptoError(message: "malformed signature: not a DER-encoded ECDSA signature for key \(name) (\(kind)): \(problem)")
            }
        }
    }

    private static func kind(of pkey: OpaquePointer, name: String?) throws(CryptoError) -> PublicKeyKind {
        let label = name.map { "\($0): " } ?? ""
        switch EVP_PKEY_get_id(pkey) {
        case EVP_PKEY_ED25519:
            return .ed25519
        case EVP_PKEY_EC:
            var buffer = [CChar](repeating: 0, count: 80)
            var length = 0
            guard EVP_PKEY_get_group_name(pkey, &buffer, buffer.count, &length) == 1 else {
                ERR_clear_error()
                throw CryptoError(message: "\(label)EC key with explicit curve parameters is not supported (use a named curve: P-256 or P-384)")
            }
            let curve = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            switch curve {
            case "prime256v1", "P-256", "secp256r1": return .ecdsaP256
            case "secp384r1", "P-384": return .ecdsaP384
            default: throw CryptoError(message: "\(label)EC curve \(curve) is not supported (supported: P-256, P-384)")
            }
        case EVP_PKEY_RSA:
            let bits = Int(EVP_PKEY_get_bits(pkey))
            guard bits >= minimumRSABits else {
                throw CryptoError(message: "\(label)RSA key of \(bits) bits is too weak: at least \(minimumRSABits) bits are required")
            }
            return .rsa(bits: bits)
        case EVP_PKEY_RSA_PSS:
            throw CryptoError(message: "\(label)RSA-PSS-restricted keys are not supported; use a plain RSA public key (rsaEncryption), which checks rsa-pss-sha256 too")
        case EVP_PKEY_ED448:
            throw CryptoError(message: "\(label)Ed448 keys are not supported (supported: Ed25519, ECDSA P-256/P-384, RSA ≥ 2048 bits)")
        default:
            let type = EVP_PKEY_get0_type_name(pkey).map { String(cString: $0) } ?? "unknown"
            throw CryptoError(message: "\(label)key type \(type) is not supported (supported: Ed25519, ECDSA P-256/P-384, RSA ≥ 2048 bits)")
        }
    }

    private static func fingerprint(of pkey: OpaquePointer) throws(CryptoError) -> String {
        let length = i2d_PUBKEY(pkey, nil)
        guard length > 0 else { throw CryptoError.openSSL("cannot encode the public key") }
        var der = [UInt8](repeating: 0, count: Int(length))
        let written = der.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor = buffer.baseAddress
            return i2d_PUBKEY(pkey, &cursor)
        }
        guard written == length else { throw CryptoError.openSSL("cannot encode the public key") }
        let digest = try StreamingDigest(.sha256)
        digest.update(der)
        return hexString(digest.finish())
    }
}

// MARK: - Verification

/// Verifies a detached signature over bytes in memory.
///
/// - Returns: `true` when the signature is valid, `false` when it does not match.
/// - Throws: ``CryptoError`` when `scheme` does not fit the key ("key … is ECDSA P-256 but
///   the signature scheme is rsa-pss-sha256"), when the signature is malformed (its message
///   starts with "malformed signature"), or when OpenSSL cannot set up the check.
public func verify(message: UnsafeRawBufferPointer, signature: [UInt8], key: PublicKey,
                   scheme: SignatureScheme) throws(CryptoError) -> Bool {
    try key.checkEncoding(of: signature, scheme: scheme)
    let verifier = try Verifier(key: key, scheme: scheme)
    if scheme.isStreaming {
        try verifier.update(message)
        return verifier.finish(signature: signature)
    }
    return verifier.verifyOneShot(message: message, signature: signature)
}

/// Verifies a detached signature over bytes in memory; the same as the
/// `UnsafeRawBufferPointer` variant.
public func verify(message: [UInt8], signature: [UInt8], key: PublicKey,
                   scheme: SignatureScheme) throws(CryptoError) -> Bool {
    try withBytes(of: message) { (raw) throws(CryptoError) -> Bool in
        try verify(message: raw, signature: signature, key: key, scheme: scheme)
    }
}

/// Verifies a detached signature over a file's bytes.
///
/// ECDSA and RSA stream the file through OpenSSL in 1 MiB chunks, whatever its size.
/// Ed25519 is one-shot, so the file is mapped into memory whole: that costs address
/// space equal to the file's size and page cache as it is read, but no copy.
///
/// - Returns: `true` when the signature is valid, `false` when it does not match.
/// - Throws: ``CryptoError`` as the in-memory variants do, and when the file cannot be read.
public func verify(fileAtPath path: String, signature: [UInt8], key: PublicKey,
                   scheme: SignatureScheme) throws(CryptoError) -> Bool {
    try key.checkEncoding(of: signature, scheme: scheme)
    let verifier = try Verifier(key: key, scheme: scheme)
    if scheme.isStreaming {
        try forEachChunk(ofFileAtPath: path) { (chunk) throws(CryptoError) in try verifier.update(chunk) }
        return verifier.finish(signature: signature)
    }
    return try withMappedFile(atPath: path) { (message) throws(CryptoError) -> Bool in
        verifier.verifyOneShot(message: message, signature: signature)
    }
}

/// Verifies a detached signature against a digest computed earlier (for example while
/// the file's bytes streamed in), so the file need not be read again.
///
/// Only for the schemes that hash the message first; `digest` must be the output of
/// ``SignatureScheme/digestAlgorithm`` (SHA-256 for `ecdsa-sha256`, `rsa-pkcs1-sha256`
/// and `rsa-pss-sha256`; SHA-384 for `ecdsa-sha384`).
/// - Returns: `true` when the signature is valid, `false` when it does not match.
/// - Throws: ``CryptoError`` when the scheme does not fit the key, signs the message itself
///   (Ed25519), the digest has the wrong length, or the signature is malformed.
public func verify(digest: [UInt8], signature: [UInt8], key: PublicKey,
                   scheme: SignatureScheme) throws(CryptoError) -> Bool {
    try key.checkEncoding(of: signature, scheme: scheme)
    guard let md = scheme.digest, let algorithm = scheme.digestAlgorithm else {
        throw CryptoError(message: "\(scheme) signs the message itself, not a digest of it")
    }
    guard digest.count == Int(EVP_MD_get_size(md)) else {
        throw CryptoError(message: "a \(scheme) signature covers a \(algorithm) digest of \(EVP_MD_get_size(md)) bytes, got \(digest.count) bytes")
    }
    ERR_clear_error()
    guard let context = EVP_PKEY_CTX_new(key.pkey, nil) else { throw CryptoError.openSSL("EVP_PKEY_CTX_new") }
    defer { EVP_PKEY_CTX_free(context) }
    guard EVP_PKEY_verify_init(context) == 1, EVP_PKEY_CTX_set_signature_md(context, md) == 1 else {
        throw CryptoError.openSSL("cannot start checking a \(scheme) signature")
    }
    try Verifier.configurePadding(context, scheme)
    let result = EVP_PKEY_verify(context, signature, signature.count, digest, digest.count)
    ERR_clear_error()
    return result == 1
}

/// One `EVP_DigestVerify*` operation.
final class Verifier {
    private let context: OpaquePointer

    init(key: PublicKey, scheme: SignatureScheme) throws(CryptoError) {
        try key.checkFits(scheme)
        ERR_clear_error()
        guard let context = EVP_MD_CTX_new() else { throw CryptoError.openSSL("EVP_MD_CTX_new") }
        var keyContext: OpaquePointer?
        guard EVP_DigestVerifyInit(context, &keyContext, scheme.digest, nil, key.pkey) == 1 else {
            EVP_MD_CTX_free(context)
            throw CryptoError.openSSL("cannot start checking a \(scheme) signature")
        }
        do throws(CryptoError) {
            try Verifier.configurePadding(keyContext, scheme)
        } catch {
            EVP_MD_CTX_free(context)
            throw error
        }
        self.context = context
    }

    /// Selects the RSA padding of `scheme` (PSS: MGF1 with the signature's hash, any salt length).
    static func configurePadding(_ keyContext: OpaquePointer?, _ scheme: SignatureScheme) throws(CryptoError) {
        switch scheme {
        case .rsaPKCS1SHA256:
            guard EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PADDING) == 1 else {
                throw CryptoError.openSSL("cannot select PKCS#1 v1.5 padding")
            }
        case .rsaPSSSHA256:
            guard EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PSS_PADDING) == 1,
                  EVP_PKEY_CTX_set_rsa_pss_saltlen(keyContext, RSA_PSS_SALTLEN_AUTO) == 1 else {
                throw CryptoError.openSSL("cannot select PSS padding")
            }
        case .ed25519, .ecdsaSHA256, .ecdsaSHA384:
            break
        }
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawBufferPointer) throws(CryptoError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        guard EVP_DigestVerifyUpdate(context, base, bytes.count) == 1 else {
            throw CryptoError.openSSL("EVP_DigestVerifyUpdate")
        }
    }

    /// 1 is a match; 0 a mismatch; below 0 a signature OpenSSL could not decode. Only 1 is valid.
    func finish(signature: [UInt8]) -> Bool {
        let result = EVP_DigestVerifyFinal(context, signature, signature.count)
        ERR_clear_error()
        return result == 1
    }

    func verifyOneShot(message: UnsafeRawBufferPointer, signature: [UInt8]) -> Bool {
        let empty: [UInt8] = [0]
        let result = empty.withUnsafeBufferPointer { placeholder -> Int32 in
            let base = message.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder.baseAddress
            return EVP_DigestVerify(context, signature, signature.count, base, message.count)
        }
        ERR_clear_error()
        return result == 1
    }
}

// MARK: - ECDSA signature encoding

/// Checks the DER shape `SEQUENCE { INTEGER r, INTEGER s }` of an ECDSA signature,
/// strictly (minimal lengths, positive minimal integers, nothing after).
enum ECDSASignatureDER {
    /// What is wrong, or `nil` when the shape is right.
    static func problem(_ bytes: [UInt8], orderBytes: Int) -> String? {
        guard !bytes.isEmpty else { return "it is empty" }
        var reader = DERReader(bytes: bytes)
        guard let sequence = reader.element(tag: 0x30) else {
            if bytes.count == 2 * orderBytes {
                return "\(bytes.count) bytes that do not start with a DER SEQUENCE; a raw r‖s signature must be converted to DER"
            }
            return "it does not start with a DER SEQUENCE"
        }
        guard reader.isAtEnd else { return "\(bytes.count - reader.offset) bytes follow the DER SEQUENCE" }
        var inner = DERReader(bytes: sequence)
        for part in ["r", "s"] {
            guard let integer = inner.element(tag: 0x02) else { return "\(part) is not a DER INTEGER" }
            guard let first = integer.first else { return "\(part) is empty" }
            if first & 0x80 != 0 { return "\(part) is negative" }
            if integer.count > 1, first == 0, integer[1] & 0x80 == 0 { return "\(part) has a superfluous leading zero" }
            if integer.count > orderBytes + 1 { return "\(part) is \(integer.count) bytes, longer than the curve allows" }
        }
        guard inner.isAtEnd else { return "the SEQUENCE holds more than r and s" }
        return nil
    }

    private struct DERReader {
        let bytes: [UInt8]
        var offset = 0

        var isAtEnd: Bool { offset == bytes.count }

        /// The content of the next element if it has `tag` and a minimal, in-bounds length.
        mutating func element(tag: UInt8) -> [UInt8]? {
            guard offset + 2 <= bytes.count, bytes[offset] == tag else { return nil }
            var length = Int(bytes[offset + 1])
            var start = offset + 2
            if length & 0x80 != 0 {
                // Long form: only one length byte makes sense here, and only for 128...255.
                guard length == 0x81, start < bytes.count, bytes[start] >= 0x80 else { return nil }
                length = Int(bytes[start])
                start += 1
            }
            guard length <= bytes.count - start else { return nil }
            offset = start + length
            return Array(bytes[start..<(start + length)])
        }
    }
}
