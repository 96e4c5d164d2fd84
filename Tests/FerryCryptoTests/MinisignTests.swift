import FerryCrypto
import FerryTestSupport
import Testing

/// Signatures made by the real minisign tool, from the test suite of the minisign-verify
/// crate by minisign's author (github.com/jedisct1/rust-minisign-verify). The signed
/// message is the four bytes "test".
enum MinisignReferenceVectors {
    static let publicKey = """
        untrusted comment: minisign public key E7620F1842B4E81F
        RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3
        """

    /// A legacy (`Ed`) signature of the message itself.
    static let legacySignature = """
        untrusted comment: signature from minisign secret key
        RWQf6LRCGA9i59SLOFxz6NxvASXDJeRtuZykwQepbDEGt87ig1BNpWaVWuNrm73YiIiJbq71Wi+dP9eKL8OC351vwIasSSbXxwA=
        trusted comment: timestamp:1555779966\tfile:test
        QtKMXWyYcwdpZAlPF7tE2ENJkRd1ujvKjlj1m9RtHTBnZPa5WKU5uWRs5GoP5M/VqE81QFuMKI5k/SfNQUaOAA==
        """

    /// A prehashed (`ED`) signature: of BLAKE2b-512 of the message.
    static let prehashedSignature = """
        untrusted comment: signature from minisign secret key
        RUQf6LRCGA9i559r3g7V1qNyJDApGip8MfqcadIgT9CuhV3EMhHoN1mGTkUidF/z7SrlQgXdy8ofjb7bNJJylDOocrCo8KLzZwo=
        trusted comment: timestamp:1633700835\tfile:test\tprehashed
        wLMDjy9FLAuxZ3q4NlEvkgtyhrr0gtTu6KC4KBJdITbbOeAi1zBIYo0v4iTgt8jJpIidRJnp94ABQkJAgAooBQ==
        """

    static let message = Array("test".utf8)
}

@Suite struct MinisignTests {
    static let keyID: [UInt8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]

    @Test func referenceSignaturesFromTheMinisignToolVerify() throws {
        let key = try MinisignPublicKey(text: MinisignReferenceVectors.publicKey, name: "minisign.pub")
        #expect(key.keyID.description == "E7620F1842B4E81F")
        #expect(key.untrustedComment == "minisign public key E7620F1842B4E81F")
        #expect(key.key.kind == .ed25519)

        let legacy = try MinisignSignature(text: MinisignReferenceVectors.legacySignature)
        #expect(legacy.algorithm == .legacy)
        #expect(legacy.trustedComment == "timestamp:1555779966\tfile:test")
        #expect(try key.verify(message: MinisignReferenceVectors.message, signature: legacy) == .valid(trustedComment: "timestamp:1555779966\tfile:test"))
        #expect(try key.verify(message: Array("Test".utf8), signature: legacy) == .signatureMismatch)

        let prehashed = try MinisignSignature(text: MinisignReferenceVectors.prehashedSignature)
        #expect(prehashed.algorithm == .prehashed)
        #expect(prehashed.untrustedComment == "signature from minisign secret key")
        #expect(try key.verify(message: MinisignReferenceVectors.message, signature: prehashed).isValid)
        #expect(try key.verify(message: Array("Test".utf8), signature: prehashed) == .signatureMismatch)

        // The same through a file, and with only the base64 line of the key.
        let bench = try OpenSSLWorkbench()
        try bench.write(MinisignReferenceVectors.message, to: "test")
        let bare = try MinisignPublicKey(text: "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3")
        #expect(bare.untrustedComment == nil)
        #expect(bare.name == "minisign key E7620F1842B4E81F")
        #expect(try bare.verify(fileAtPath: bench.path("test"), signature: legacy).isValid)
        #expect(try bare.verify(fileAtPath: bench.path("test"), signature: prehashed).isValid)
    }

    @Test(arguments: [true, false])
    func signaturesBuiltWithOpenSSLVerify(prehashed: Bool) throws {
        let bench = try OpenSSLWorkbench()
        let publicText = try bench.makeMinisignKey(name: "signer", keyID: Self.keyID)
        try bench.write(Array(publicText.utf8), to: "minisign.pub")
        let payload = testBytes(2 * 1_048_576 + 7, seed: 3)
        try bench.write(payload, to: "payload")
        let signatureText = try bench.minisign("payload", key: "signer", keyID: Self.keyID, prehashed: prehashed)

        let key = try MinisignPublicKey(contentsOfFile: bench.path("minisign.pub"))
        #expect(key.name == "minisign.pub")
        #expect(key.keyID.description == "EFCDAB8967452301")
        let signature = try MinisignSignature(text: signatureText)
        #expect(signature.algorithm == (prehashed ? .prehashed : .legacy))
        #expect(signature.keyID == key.keyID)

        let expected = MinisignVerdict.valid(trustedComment: "timestamp:1700000000\tfile:payload\thashed")
        #expect(try key.verify(fileAtPath: bench.path("payload"), signature: signature) == expected)
        #expect(try key.verify(message: payload, signature: signature) == expected)

        // A corrupted file fails the file signature.
        try bench.write(payload.flipping(at: 1_048_576), to: "corrupted")
        #expect(try key.verify(fileAtPath: bench.path("corrupted"), signature: signature) == .signatureMismatch)
    }

    @Test func aTamperedTrustedCommentFailsTheGlobalSignature() throws {
        let bench = try OpenSSLWorkbench()
        let key = try MinisignPublicKey(text: bench.makeMinisignKey(name: "signer", keyID: Self.keyID))
        try bench.write(Array("release 1.2.3".utf8), to: "payload")
        let genuine = try bench.minisign("payload", key: "signer", keyID: Self.keyID, trustedComment: "timestamp:1700000000\tfile:app-1.2.3.tar.gz")
        #expect(try key.verify(fileAtPath: bench.path("payload"), signature: MinisignSignature(text: genuine)).isValid)

        let tampered = genuine.replacingOccurrences(of: "app-1.2.3", with: "app-9.9.9")
        let verdict = try key.verify(fileAtPath: bench.path("payload"), signature: MinisignSignature(text: tampered))
        #expect(verdict == .trustedCommentMismatch)
        #expect(verdict.description.hasPrefix("bad global signature"))

        // The reference vector with its comment edited fails the same way.
        let reference = try MinisignPublicKey(text: MinisignReferenceVectors.publicKey)
        let edited = MinisignReferenceVectors.prehashedSignature.replacingOccurrences(of: "timestamp:1633700835", with: "timestamp:1633700836")
        #expect(try reference.verify(message: MinisignReferenceVectors.message, signature: MinisignSignature(text: edited)) == .trustedCommentMismatch)
    }

    @Test func anUnknownKeyIDIsRefused() throws {
        let bench = try OpenSSLWorkbench()
        let trusted = try MinisignPublicKey(text: bench.makeMinisignKey(name: "trusted", keyID: Self.keyID))
        try bench.makeMinisignKey(name: "stranger", keyID: [9, 9, 9, 9, 9, 9, 9, 9])
        try bench.write(Array("payload".utf8), to: "payload")
        let signature = try MinisignSignature(text: bench.minisign("payload", key: "stranger", keyID: [9, 9, 9, 9, 9, 9, 9, 9]))
        let verdict = try trusted.verify(fileAtPath: bench.path("payload"), signature: signature)
        #expect(verdict == .keyIDMismatch(signature: signature.keyID, key: trusted.keyID))
        #expect(verdict.description == "signed by minisign key 0909090909090909, not by key EFCDAB8967452301")

        // The right key id on a signature by another key: the signature does not match.
        let forged = try MinisignSignature(text: bench.minisign("payload", key: "stranger", keyID: Self.keyID))
        #expect(try trusted.verify(fileAtPath: bench.path("payload"), signature: forged) == .signatureMismatch)
    }

    @Test func windowsLineEndingsAreAccepted() throws {
        let key = try MinisignPublicKey(text: MinisignReferenceVectors.publicKey.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
        let signature = try MinisignSignature(text: MinisignReferenceVectors.prehashedSignature.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
        #expect(signature.trustedComment == "timestamp:1633700835\tfile:test\tprehashed")
        #expect(try key.verify(message: MinisignReferenceVectors.message, signature: signature).isValid)
    }

    @Test func malformedSignaturesNameTheProblem() throws {
        let lines = MinisignReferenceVectors.prehashedSignature.split(separator: "\n").map(String.init)
        func parse(_ lines: [String]) -> String? {
            do throws(CryptoError) {
                _ = try MinisignSignature(text: lines.joined(separator: "\n"))
                return nil
            } catch {
                return error.message
            }
        }
        #expect(parse(Array(lines.prefix(3)))?.contains("expected 4 lines") == true)
        #expect(parse(["comment"] + lines.dropFirst())?.contains("does not start with 'untrusted comment: '") == true)
        #expect(parse([lines[0], "not*base64", lines[2], lines[3]]) == "malformed minisign signature: the signature line is not valid base64")
        #expect(parse([lines[0], String(lines[1].dropLast(8)), lines[2], lines[3]])?.contains("not 74") == true)
        #expect(parse([lines[0], lines[1], "comment: x", lines[3]])?.contains("'trusted comment: '") == true)
        #expect(parse([lines[0], lines[1], lines[2], "%%%"]) == "malformed minisign signature: the global signature line is not valid base64")
        #expect(parse([lines[0], lines[1], lines[2], "AAAA"])?.contains("holds 3 bytes, not 64") == true)

        var wrongAlgorithm = try #require(bytes(fromBase64: lines[1]))
        wrongAlgorithm[1] = UInt8(ascii: "X")
        #expect(parse([lines[0], base64String(wrongAlgorithm), lines[2], lines[3]])
            == "unsupported minisign signature algorithm 'EX' (expected 'ED' or 'Ed')")
    }

    @Test func malformedPublicKeysNameTheProblem() throws {
        func parse(_ text: String) -> String? {
            do throws(CryptoError) {
                _ = try MinisignPublicKey(text: text, name: "k.pub")
                return nil
            } catch {
                return error.message
            }
        }
        #expect(parse("") == "k.pub: no minisign public key line found")
        #expect(parse("untrusted comment: only a comment\n") == "k.pub: no minisign public key line found")
        #expect(parse("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3!") == "k.pub: the minisign public key is not valid base64")
        #expect(parse("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7") == "k.pub: a minisign public key is 42 bytes, got 39")
        var raw = try #require(bytes(fromBase64: "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"))
        raw[1] = UInt8(ascii: "D")
        #expect(parse(base64String(raw)) == "k.pub: unsupported minisign key algorithm 'ED' (expected 'Ed')")
        #expect(parse("a\nb\nc")?.contains("found 3 lines") == true)
    }
}

@Suite struct DetachedSignatureTests {
    @Test func minisignSignaturesParseFromTextOrBase64() throws {
        let text = MinisignReferenceVectors.prehashedSignature
        let fromText = try MinisignSignature(textOrBase64: text)
        let fromBase64 = try MinisignSignature(textOrBase64: base64String(Array(text.utf8)))
        #expect(fromText == fromBase64)
        let error = #expect(throws: CryptoError.self) { try MinisignSignature(textOrBase64: "not a signature!") }
        #expect(error?.message == "malformed minisign signature: neither the text of a .minisig file nor base64 of it")
    }

    @Test func signatureFilesAreToldApartByContent() throws {
        let minisig = Array(MinisignReferenceVectors.legacySignature.utf8)
        #expect(try DetachedSignature(fileContent: minisig) == .minisign(MinisignSignature(bytes: minisig)))

        // An ECDSA signature as `openssl dgst -sign` writes it: binary DER.
        let der: [UInt8] = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]
        #expect(try DetachedSignature(fileContent: der) == .raw(der))

        // The same signature as base64 text, with a final newline.
        #expect(try DetachedSignature(fileContent: Array((base64String(der) + "\n").utf8)) == .raw(der))

        #expect(throws: CryptoError.self) { try DetachedSignature(fileContent: []) }
        #expect(throws: CryptoError.self) { try DetachedSignature(fileContent: Array("untrusted comment: only this\n".utf8)) }
    }
}
