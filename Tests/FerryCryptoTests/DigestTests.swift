import FerryCrypto
import Testing

@Suite struct DigestTests {
    @Test func sha256OfKnownInputs() throws {
        let empty = try StreamingDigest(.sha256)
        #expect(hexString(empty.finish()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let abc = try StreamingDigest(.sha256)
        abc.update(Array("abc".utf8))
        #expect(hexString(abc.finish()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func hexRoundTripAndRejection() {
        #expect(bytes(fromHex: "00ffA0") == [0x00, 0xFF, 0xA0])
        #expect(bytes(fromHex: "0g") == nil)
        #expect(bytes(fromHex: "abc") == nil)
    }
}
