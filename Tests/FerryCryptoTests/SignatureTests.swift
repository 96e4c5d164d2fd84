import FerryCrypto
import FerryTestSupport
import Foundation
import Testing

/// One way of signing, as the `openssl` tool does it.
struct SigningCase: Sendable, CustomTestStringConvertible {
    let keyType: OpenSSLWorkbench.KeyType
    let scheme: SignatureScheme
    let kind: PublicKeyKind
    var pssSaltLength: String?

    var testDescription: String { "\(scheme)\(pssSaltLength.map { " saltlen \($0)" } ?? "") with \(keyType)" }

    static let all: [SigningCase] = [
        SigningCase(keyType: .ed25519, scheme: .ed25519, kind: .ed25519),
        SigningCase(keyType: .p256, scheme: .ecdsaSHA256, kind: .ecdsaP256),
        SigningCase(keyType: .p384, scheme: .ecdsaSHA384, kind: .ecdsaP384),
        SigningCase(keyType: .rsa2048, scheme: .rsaPKCS1SHA256, kind: .rsa(bits: 2048)),
        // The openssl tool's own PSS salt length (the maximum with OpenSSL 3.0).
        SigningCase(keyType: .rsa2048, scheme: .rsaPSSSHA256, kind: .rsa(bits: 2048)),
        // The digest length, what most other signers use.
        SigningCase(keyType: .rsa2048, scheme: .rsaPSSSHA256, kind: .rsa(bits: 2048), pssSaltLength: "32"),
        SigningCase(keyType: .rsa2048, scheme: .rsaPSSSHA256, kind: .rsa(bits: 2048), pssSaltLength: "max"),
    ]
}

@Suite struct SignatureTests {
    @Test(arguments: SigningCase.all)
    func opensslSignaturesVerifyAndTamperingIsCaught(_ signing: SigningCase) throws {
        let bench = try OpenSSLWorkbench()
        let pem = try bench.makeKey(signing.keyType, name: "signer")
        try bench.makeKey(signing.keyType, name: "other")
        let message = testBytes(300_000, seed: 7)
        try bench.write(message, to: "payload")
        let signature = try bench.sign("payload", key: "signer", scheme: signing.scheme, pssSaltLength: signing.pssSaltLength)

        let key = try PublicKey(pem: pem, name: "signer.pub")
        #expect(key.kind == signing.kind)
        #expect(key.name == "signer.pub")
        #expect(key.fits(signing.scheme))

        // A good signature verifies, from a file and from memory.
        #expect(try verify(fileAtPath: bench.path("payload"), signature: signature, key: key, scheme: signing.scheme))
        #expect(try verify(message: message, signature: signature, key: key, scheme: signing.scheme))

        // A corrupted file fails.
        let corrupted = message.flipping(at: 150_000)
        try bench.write(corrupted, to: "corrupted")
        #expect(try !verify(fileAtPath: bench.path("corrupted"), signature: signature, key: key, scheme: signing.scheme))
        #expect(try !verify(message: corrupted, signature: signature, key: key, scheme: signing.scheme))

        // A corrupted signature fails (the last byte keeps an ECDSA signature's DER shape).
        let badSignature = signature.flipping(at: signature.count - 1)
        #expect(try !verify(fileAtPath: bench.path("payload"), signature: badSignature, key: key, scheme: signing.scheme))

        // Another key of the same type fails.
        let other = try PublicKey(contentsOfFile: bench.path("other.pub"))
        #expect(other.name == "other.pub")
        #expect(other.fingerprint != key.fingerprint)
        #expect(try !verify(fileAtPath: bench.path("payload"), signature: signature, key: other, scheme: signing.scheme))
    }

    @Test(arguments: SigningCase.all.filter { $0.scheme.digestAlgorithm != nil })
    func aPrecomputedDigestVerifiesLikeTheFile(_ signing: SigningCase) throws {
        let bench = try OpenSSLWorkbench()
        let key = try PublicKey(pem: bench.makeKey(signing.keyType, name: "signer"))
        let message = testBytes(70_000, seed: 11)
        try bench.write(message, to: "payload")
        let signature = try bench.sign("payload", key: "signer", scheme: signing.scheme, pssSaltLength: signing.pssSaltLength)
        let algorithm = try #require(signing.scheme.digestAlgorithm)
        let digest = try bench.openssl(["dgst", "-\(algorithm)", "-binary", "payload"])
        #expect(try verify(digest: digest, signature: signature, key: key, scheme: signing.scheme))
        #expect(try !verify(digest: digest.flipping(at: 0), signature: signature, key: key, scheme: signing.scheme))
        let short = #expect(throws: CryptoError.self) {
            try verify(digest: Array(digest.dropLast()), signature: signature, key: key, scheme: signing.scheme)
        }
        #expect(short?.message.contains("digest of \(digest.count) bytes, got \(digest.count - 1) bytes") == true)
    }

    @Test func ed25519CannotBeCheckedAgainstADigest() throws {
        let bench = try OpenSSLWorkbench()
        let key = try PublicKey(pem: bench.makeKey(.ed25519, name: "ed"))
        let error = #expect(throws: CryptoError.self) {
            try verify(digest: [UInt8](repeating: 0, count: 32), signature: [UInt8](repeating: 0, count: 64), key: key, scheme: .ed25519)
        }
        #expect(error?.message == "ed25519 signs the message itself, not a digest of it")
    }

    @Test func defaultSchemesFollowTheKey() {
        #expect(PublicKeyKind.ed25519.defaultScheme == .ed25519)
        #expect(PublicKeyKind.ecdsaP256.defaultScheme == .ecdsaSHA256)
        #expect(PublicKeyKind.ecdsaP384.defaultScheme == .ecdsaSHA384)
        #expect(PublicKeyKind.rsa(bits: 4096).defaultScheme == .rsaPKCS1SHA256)
        #expect(SignatureScheme(rawValue: "rsa-pss-sha256") == .rsaPSSSHA256)
        #expect(SignatureScheme.allCases.map(\.rawValue) == ["ed25519", "ecdsa-sha256", "ecdsa-sha384", "rsa-pkcs1-sha256", "rsa-pss-sha256"])
        #expect(PublicKeyKind.rsa(bits: 3072).description == "RSA-3072")
    }

    @Test func aSchemeThatDoesNotFitTheKeyIsAnErrorSayingSo() throws {
        let bench = try OpenSSLWorkbench()
        let pem = try bench.makeKey(.p256, name: "release")
        try bench.write(Array("hello".utf8), to: "payload")
        let signature = try bench.sign("payload", key: "release", scheme: .ecdsaSHA256)
        let key = try PublicKey(pem: pem, name: "release.pub")

        let error = #expect(throws: CryptoError.self) {
            try verify(fileAtPath: bench.path("payload"), signature: signature, key: key, scheme: .rsaPSSSHA256)
        }
        #expect(error?.message.contains("key release.pub is ECDSA P-256 but the signature scheme is rsa-pss-sha256") == true)

        let edError = #expect(throws: CryptoError.self) {
            try verify(message: Array("hello".utf8), signature: signature, key: key, scheme: .ed25519)
        }
        #expect(edError?.message.contains("is ECDSA P-256 but the signature scheme is ed25519") == true)
    }

    @Test func ecdsaKeysAcceptEitherHash() throws {
        let bench = try OpenSSLWorkbench()
        let pem = try bench.makeKey(.p384, name: "p384")
        try bench.write(Array("either hash".utf8), to: "payload")
        let signature = try bench.sign("payload", key: "p384", scheme: .ecdsaSHA256)
        let key = try PublicKey(pem: pem)
        #expect(try verify(fileAtPath: bench.path("payload"), signature: signature, key: key, scheme: .ecdsaSHA256))
        #expect(try !verify(fileAtPath: bench.path("payload"), signature: signature, key: key, scheme: .ecdsaSHA384))
    }

    @Test func rsaPaddingsAreNotInterchangeable() throws {
        let bench = try OpenSSLWorkbench()
        let key = try PublicKey(pem: bench.makeKey(.rsa2048, name: "rsa"))
        try bench.write(Array("padding".utf8), to: "payload")
        let pkcs1 = try bench.sign("payload", key: "rsa", scheme: .rsaPKCS1SHA256)
        #expect(try verify(fileAtPath: bench.path("payload"), signature: pkcs1, key: key, scheme: .rsaPKCS1SHA256))
        #expect(try !verify(fileAtPath: bench.path("payload"), signature: pkcs1, key: key, scheme: .rsaPSSSHA256))
        let pss = try bench.sign("payload", key: "rsa", scheme: .rsaPSSSHA256)
        #expect(try !verify(fileAtPath: bench.path("payload"), signature: pss, key: key, scheme: .rsaPKCS1SHA256))
    }

    @Test func shortRSAKeysAreRefused() throws {
        let bench = try OpenSSLWorkbench()
        let pem = try bench.makeKey(.rsa1024, name: "weak")
        let error = #expect(throws: CryptoError.self) { try PublicKey(pem: pem, name: "weak.pub") }
        #expect(error?.message == "weak.pub: RSA key of 1024 bits is too weak: at least 2048 bits are required")
    }

    @Test(arguments: [OpenSSLWorkbench.KeyType.secp256k1, .ed448])
    func unsupportedKeyTypesAreRefused(_ type: OpenSSLWorkbench.KeyType) throws {
        let bench = try OpenSSLWorkbench()
        let pem = try bench.makeKey(type, name: "odd")
        let error = #expect(throws: CryptoError.self) { try PublicKey(pem: pem, name: "odd.pub") }
        #expect(error?.message.contains("not supported") == true)
        #expect(error?.message.hasPrefix("odd.pub: ") == true)
    }

    @Test func pemProblemsAreExplained() throws {
        let bench = try OpenSSLWorkbench()
        try bench.makeKey(.ed25519, name: "secret")
        let privateKey = try bench.text("secret.key")
        let privateError = #expect(throws: CryptoError.self) { try PublicKey(pem: privateKey, name: "secret.key") }
        #expect(privateError?.message.contains("holds a private key") == true)

        let garbage = #expect(throws: CryptoError.self) { try PublicKey(pem: "hello", name: "notes.txt") }
        #expect(garbage?.message == "notes.txt: no '-----BEGIN PUBLIC KEY-----' block found")

        let broken = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        let brokenError = #expect(throws: CryptoError.self) { try PublicKey(pem: broken, name: "broken.pub") }
        #expect(brokenError?.message.hasPrefix("broken.pub: cannot read the PEM public key") == true)

        let two = try bench.makeKey(.p256, name: "one") + bench.makeKey(.p256, name: "two")
        let twoError = #expect(throws: CryptoError.self) { try PublicKey(pem: two, name: "both.pub") }
        #expect(twoError?.message == "both.pub: holds 2 public keys; give one key per file")

        let missing = #expect(throws: CryptoError.self) { try PublicKey(contentsOfFile: bench.path("absent.pub")) }
        #expect(missing?.message.contains("cannot open") == true)
        #expect(missing?.message.contains("No such file") == true)
    }

    @Test func fingerprintIsTheSHA256OfTheDEREncodedKey() throws {
        let bench = try OpenSSLWorkbench()
        let pem = try bench.makeKey(.p256, name: "key")
        let der = try bench.openssl(["pkey", "-pubin", "-in", "key.pub", "-outform", "DER"])
        let digest = try StreamingDigest(.sha256)
        digest.update(der)
        let key = try PublicKey(pem: pem)
        #expect(key.fingerprint == hexString(digest.finish()))
        #expect(key.name == "ECDSA P-256 key \(key.fingerprint.prefix(16))")
        #expect(key.description.hasPrefix("ECDSA P-256 key "))
    }

    @Test func malformedSignaturesAreReportedAsSuch() throws {
        let bench = try OpenSSLWorkbench()
        let edKey = try PublicKey(pem: bench.makeKey(.ed25519, name: "ed"), name: "ed.pub")
        let ecKey = try PublicKey(pem: bench.makeKey(.p256, name: "ec"), name: "ec.pub")
        let rsaKey = try PublicKey(pem: bench.makeKey(.rsa2048, name: "rsa"), name: "rsa.pub")
        try bench.write(Array("payload".utf8), to: "payload")
        let ecSignature = try bench.sign("payload", key: "ec", scheme: .ecdsaSHA256)

        let short = #expect(throws: CryptoError.self) {
            try verify(message: [1, 2, 3], signature: [UInt8](repeating: 1, count: 63), key: edKey, scheme: .ed25519)
        }
        #expect(short?.message == "malformed signature: expected 64 bytes for ed25519 with key ed.pub (Ed25519), got 63")

        let rsaShort = #expect(throws: CryptoError.self) {
            try verify(message: [1], signature: [UInt8](repeating: 1, count: 255), key: rsaKey, scheme: .rsaPKCS1SHA256)
        }
        #expect(rsaShort?.message == "malformed signature: expected 256 bytes for rsa-pkcs1-sha256 with key rsa.pub (RSA-2048), got 255")

        let trailing = #expect(throws: CryptoError.self) {
            try verify(message: [1], signature: ecSignature + [0], key: ecKey, scheme: .ecdsaSHA256)
        }
        #expect(trailing?.message == "malformed signature: not a DER-encoded ECDSA signature for key ec.pub (ECDSA P-256): 1 bytes follow the DER SEQUENCE")

        let raw = #expect(throws: CryptoError.self) {
            try verify(message: [1], signature: [UInt8](repeating: 0x11, count: 64), key: ecKey, scheme: .ecdsaSHA256)
        }
        #expect(raw?.message.contains("raw r‖s signature must be converted to DER") == true)

        // The DER structure is checked strictly: a truncated signature is malformed, not a mismatch.
        #expect(throws: CryptoError.self) {
            try verify(message: [1], signature: Array(ecSignature.dropLast()), key: ecKey, scheme: .ecdsaSHA256)
        }
        // A DER-shaped signature of the right form that does not match is just a mismatch.
        #expect(try !verify(message: [1], signature: ecSignature, key: ecKey, scheme: .ecdsaSHA256))
    }

    @Test func largeFilesStreamAndEmptyFilesWork() throws {
        let bench = try OpenSSLWorkbench()
        try bench.makeKey(.p256, name: "ec")
        try bench.makeKey(.ed25519, name: "ed")
        let ecKey = try PublicKey(contentsOfFile: bench.path("ec.pub"))
        let edKey = try PublicKey(contentsOfFile: bench.path("ed.pub"))
        // More than several 1 MiB chunks, and not a multiple of the chunk size.
        try bench.write(testBytes(5 * 1_048_576 + 12_345, seed: 99), to: "large")
        try bench.write([], to: "empty")
        for name in ["large", "empty"] {
            let ecSignature = try bench.sign(name, key: "ec", scheme: .ecdsaSHA256)
            #expect(try verify(fileAtPath: bench.path(name), signature: ecSignature, key: ecKey, scheme: .ecdsaSHA256))
        }
        let edSignature = try bench.sign("large", key: "ed", scheme: .ed25519)
        #expect(try verify(fileAtPath: bench.path("large"), signature: edSignature, key: edKey, scheme: .ed25519))

        // The openssl tool cannot sign an empty input with Ed25519; RFC 8032's first test vector can.
        let rfcKey = try PublicKey(rawEd25519: #require(bytes(fromHex: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")))
        let rfcSignature = try #require(bytes(fromHex: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"))
        #expect(try verify(fileAtPath: bench.path("empty"), signature: rfcSignature, key: rfcKey, scheme: .ed25519))
        #expect(try verify(message: [UInt8](), signature: rfcSignature, key: rfcKey, scheme: .ed25519))
        #expect(try !verify(message: [0], signature: rfcSignature, key: rfcKey, scheme: .ed25519))
    }

    @Test func aMissingFileIsAnErrorNotAMismatch() throws {
        let bench = try OpenSSLWorkbench()
        try bench.makeKey(.rsa2048, name: "rsa")
        let key = try PublicKey(contentsOfFile: bench.path("rsa.pub"))
        let error = #expect(throws: CryptoError.self) {
            try verify(fileAtPath: bench.path("gone"), signature: [UInt8](repeating: 0, count: 256), key: key, scheme: .rsaPKCS1SHA256)
        }
        #expect(error?.message.contains("cannot open") == true)
    }

    @Test func rawEd25519KeysMatchTheirPEMForm() throws {
        let bench = try OpenSSLWorkbench()
        let pem = try bench.makeKey(.ed25519, name: "ed")
        let raw = try bench.rawEd25519PublicKey(name: "ed")
        #expect(try PublicKey(rawEd25519: raw).fingerprint == PublicKey(pem: pem).fingerprint)
        #expect(throws: CryptoError.self) { try PublicKey(rawEd25519: Array(raw.prefix(31))) }
    }
}

@Suite struct Base64Tests {
    @Test func decodesStandardBase64() {
        #expect(bytes(fromBase64: "") == [])
        #expect(bytes(fromBase64: "Zg==") == Array("f".utf8))
        #expect(bytes(fromBase64: "Zm8=") == Array("fo".utf8))
        #expect(bytes(fromBase64: "Zm9v") == Array("foo".utf8))
        #expect(bytes(fromBase64: "Zm9vYg") == Array("foob".utf8))  // padding left out
        #expect(bytes(fromBase64: "Zm9v\nYmFy\r\n") == Array("foobar".utf8))
        #expect(bytes(fromBase64: "+/+/") == [0xFB, 0xFF, 0xBF])
    }

    @Test func rejectsMalformedBase64() {
        #expect(bytes(fromBase64: "Zm9v!") == nil)
        #expect(bytes(fromBase64: "Z") == nil)
        #expect(bytes(fromBase64: "Zm9vY") == nil)
        #expect(bytes(fromBase64: "Zg=a") == nil)
        #expect(bytes(fromBase64: "Zm9v=") == nil)
        #expect(bytes(fromBase64: "Zg===") == nil)
        #expect(bytes(fromBase64: "Zm9v-_") == nil)  // the URL alphabet is not base64
    }

    @Test func roundTrips() {
        for count in 0..<70 {
            let data = testBytes(count, seed: UInt64(count + 1))
            let text = base64String(data)
            #expect(text == Data(data).base64EncodedString())
            #expect(bytes(fromBase64: text) == data)
        }
    }
}
