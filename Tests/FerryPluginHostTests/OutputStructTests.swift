import FerryPluginABI
@testable import FerryPluginHost
import Testing

/// The header's evolution rule for output structs: a plugin built against an older header
/// (a smaller struct) gets the fields it knows; one built against a newer header (a larger
/// struct) gets the fields this host knows; anything smaller than the struct's first size is
/// refused. Exercised with a struct that has grown once, as ferry_progress will.
@Suite struct OutputStructTests {
    /// A struct of two versions: `a` since the first, `b` added later.
    struct Grown { var structSize: UInt32; var a: UInt32; var b: UInt64 }
    let firstSize = 8  // structSize + a

    @Test func anOlderPluginGetsTheFieldsItKnowsAndNothingPastItsStruct() {
        // The older plugin's struct is 8 bytes; the 8 after it are not the plugin's to write.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
        defer { buffer.deallocate() }
        buffer.storeBytes(of: 8, as: UInt32.self)
        buffer.storeBytes(of: 0xAAAA_AAAA_AAAA_AAAA, toByteOffset: 8, as: UInt64.self)
        let status = HostTable.copyOut(Grown(structSize: 16, a: 7, b: 9), to: buffer.assumingMemoryBound(to: Grown.self), firstSize: firstSize)
        #expect(status == FERRY_OK)
        #expect(buffer.load(as: UInt32.self) == 8, "struct_size says what was written")
        #expect(buffer.load(fromByteOffset: 4, as: UInt32.self) == 7)
        #expect(buffer.load(fromByteOffset: 8, as: UInt64.self) == 0xAAAA_AAAA_AAAA_AAAA, "nothing written past the plugin's struct")
    }

    @Test func aNewerPluginGetsEveryFieldThisHostKnows() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 24, alignment: 8)
        defer { buffer.deallocate() }
        buffer.storeBytes(of: 24, as: UInt32.self)
        buffer.storeBytes(of: 0x5555_5555_5555_5555, toByteOffset: 16, as: UInt64.self)
        #expect(HostTable.copyOut(Grown(structSize: 16, a: 7, b: 9), to: buffer.assumingMemoryBound(to: Grown.self), firstSize: firstSize) == FERRY_OK)
        #expect(buffer.load(as: UInt32.self) == 16)
        #expect(buffer.load(fromByteOffset: 8, as: UInt64.self) == 9)
        #expect(buffer.load(fromByteOffset: 16, as: UInt64.self) == 0x5555_5555_5555_5555, "the field this host does not know is left alone")
    }

    @Test func aStructSmallerThanItsFirstVersionIsRefused() {
        var out = Grown(structSize: 4, a: 0, b: 0)
        #expect(HostTable.copyOut(Grown(structSize: 16, a: 7, b: 9), to: &out, firstSize: firstSize) == FERRY_INVALID_ARGUMENT)
        #expect(out.a == 0)
    }

    @Test func theFirstSizesAreTheHeaders() {
        #expect(HostTable.progressFirstSize == 32)
        #expect(HostTable.errorInfoFirstSize == 56)
        #expect(HostTable.sourceHealthFirstSize == 48)
    }
}
