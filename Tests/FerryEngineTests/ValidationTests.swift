import FerryCore
import FerryCrypto
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import Testing

/// Validation through the real engine and the built-in sha256 and size plugins, loaded with dlopen.
@Suite(.serialized)
final class ValidationTests {
    let h: EngineHarness

    init() throws { h = try EngineHarness() }
    deinit { h.tearDown() }

    private func sha256(_ data: [UInt8]) throws -> String {
        let digest = try StreamingDigest(.sha256)
        digest.update(data)
        return hexString(digest.finish())
    }

    private func startJob(_ path: String, properties: [String: String], autoComplete: Bool = false) throws -> JobID {
        let job = try h.engine.createJob(displayName: "validated", owner: getuid())
        _ = try h.engine.addFiles(job.id, [NewFile(remoteURL: h.url(path), localPath: h.destination("file.bin"), properties: properties)])
        if autoComplete { _ = try h.engine.setAutoComplete(job.id, true) }
        _ = try h.engine.resume(job.id)
        return job.id
    }

    @Test func builtInPluginsAreLoadedByDefault() {
        #expect(h.engine.plugins.plugins.map(\.name) == ["sha256", "size", "range-fallback", "mirror-failover", "retry-backoff"])
        #expect(h.engine.plugins.plugins.allSatisfy { $0.path.hasSuffix(".so") })
        #expect(h.engine.plugins.plugins.map(\.isValidator) == [true, true, false, false, false])
        #expect(h.engine.plugins.plugins.map(\.isErrorPolicy) == [false, false, true, true, true])
        #expect(h.engine.plugins.plugins.map(\.wantsTransientErrors) == [false, false, false, true, true])
    }

    @Test func matchingHashAndSizeValidateAndAutoComplete() throws {
        let data = testBytes(1 << 20, seed: 50)
        h.server.setFile("/ok.bin", data: data)
        let id = try startJob("/ok.bin", properties: ["sha256": try sha256(data), "size": String(data.count)], autoComplete: true)
        #expect(waitUntil(timeout: 60) { fileHolds(self.h.destination("file.bin"), data) }, "auto-complete put the validated file in place")
        #expect(throws: (any Error).self, "an acknowledged job is gone") { try h.engine.job(id) }
    }

    @Test func corruptDownloadFailsValidationIsNeverVisibleAndResumeRefetches() throws {
        let good = testBytes(500_000, seed: 51)
        var corrupt = good
        corrupt[1234] ^= 0xFF
        h.server.setFile("/c.bin", data: corrupt)
        let id = try startJob("/c.bin", properties: ["sha256": try sha256(good)])
        let failed = try h.wait(id, for: .error)
        let error = try #require(failed.lastError)
        #expect(error.code == .validationFailed)
        #expect(error.context == .validation)
        #expect(error.fileIndex == 0)
        #expect(error.message.contains("sha256: sha256 mismatch"), "\(error.message)")
        #expect(error.message.contains(try sha256(good)), "the reason names the expected digest: \(error.message)")
        #expect(failed.files[0].bytesTransferred == 0, "the file's progress is reset, as BITS does")
        #expect(!exists(h.destination("file.bin")))
        #expect(h.temporaries == [], "the rejected bytes are discarded")

        h.server.setFile("/c.bin", data: good)
        h.server.resetRequests()
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        #expect(h.server.requests(for: "/c.bin").first?.range == nil, "the file is fetched again from zero")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("file.bin"), good))
    }

    @Test func wrongSizeFailsWithTheSizeInTheReason() throws {
        h.server.setFile("/s.bin", data: testBytes(1000, seed: 52))
        let id = try startJob("/s.bin", properties: ["size": "2000"])
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .validationFailed)
        #expect(failed.lastError?.message == "size: size is 1000 bytes, expected 2000")
    }

    @Test func aServerSendingMoreThanTheExpectedSizeIsCutOffDuringTheTransfer() throws {
        h.server.setFile("/big.bin", data: testBytes(2 << 20, seed: 53))
        h.server.addFault("/big.bin", .noContentLength)
        let id = try startJob("/big.bin", properties: ["size": "1000"])
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .fileTooLarge)
        #expect(failed.files[0].bytesTransferred <= 1000, "never more than the limit reaches the disk")
    }

    @Test func resumedFileIsHashedWholeAcrossTheRestart() throws {
        let data = testBytes(2 << 20, seed: 54)
        h.server.setFile("/r.bin", data: data)
        h.server.hold("/r.bin", afterBytes: 300_000)
        let id = try startJob("/r.bin", properties: ["sha256": try sha256(data)])
        _ = try h.waitForProgress(id, atLeast: 300_000, timeout: 60)
        try h.restartEngine()
        h.server.release("/r.bin")
        try h.wait(id, for: .transferred, timeout: 60)
        #expect(h.server.requests(for: "/r.bin").last?.rangeStart != nil, "the second request was a resume")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("file.bin"), data))
    }

    @Test func filesWithoutExpectationsPassTheAbstainingBuiltIns() throws {
        h.server.setFile("/plain.bin", data: Array("no expectations".utf8))
        let id = try startJob("/plain.bin", properties: [:])
        try h.wait(id, for: .transferred)
    }

    // MARK: - Large files: a worker hashes what the transfer wrote

    private func sha512(_ data: [UInt8]) throws -> String {
        let digest = try StreamingDigest(.sha512)
        digest.update(data)
        return hexString(digest.finish())
    }

    /// Past the first few MiB a worker reads the written bytes back and hashes them: a byte
    /// changed before that point, past it, or last must still be caught by both digests.
    @Test(arguments: [nil, 1 << 20, 9 << 20, (12 << 20) - 1])
    func aLargeFileIsValidatedWholeWhateverByteChanged(corruptAt: Int?) throws {
        let good = testBytes(12 << 20, seed: 53)
        var served = good
        if let corruptAt { served[corruptAt] ^= 0x01 }
        h.server.setFile("/large.bin", data: served)
        let id = try startJob("/large.bin", properties: ["sha256": try sha256(good), "sha512": try sha512(good)])
        guard corruptAt != nil else {
            try h.wait(id, for: .transferred, timeout: 60)
            _ = try h.engine.complete(id)
            #expect(fileHolds(h.destination("file.bin"), good))
            return
        }
        let failed = try h.wait(id, for: .error, timeout: 60)
        #expect(failed.lastError?.code == .validationFailed)
        #expect(failed.lastError?.message.contains("sha256 mismatch") ?? false, "\(failed.lastError.map { "\($0)" } ?? "nil")")
        #expect(!exists(h.destination("file.bin")))
    }

    /// A large file interrupted past the point where the worker took over resumes with a
    /// range; the bytes already here are hashed first, the rest trails the transfer.
    @Test func aLargeFileResumedPartWayIsValidatedWhole() throws {
        let data = testBytes(10 << 20, seed: 54)
        h.server.setFile("/resumed.bin", data: data)
        h.server.addFault("/resumed.bin", .dropAfter(bytes: 6 << 20))
        let id = try startJob("/resumed.bin", properties: ["sha256": try sha256(data)])
        let failed = try h.wait(id, for: .transientError, timeout: 60)
        #expect(failed.files[0].bytesTransferred == 6 << 20)
        h.server.resetRequests()
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred, timeout: 60)
        #expect(h.server.requests(for: "/resumed.bin").first?.rangeStart == Int64(6 << 20))
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("file.bin"), data))
    }
}
