import FerryCore
import FerryCrypto
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import XCTest

/// Validation through the real engine and the built-in sha256 and size plugins, loaded with dlopen.
final class ValidationTests: XCTestCase {
    var h: EngineHarness!

    override func setUpWithError() throws { h = try EngineHarness() }
    override func tearDown() { h.tearDown() }

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

    func testBuiltInPluginsAreLoadedByDefault() {
        XCTAssertEqual(h.engine.plugins.plugins.map(\.name), ["sha256", "size", "range-fallback", "mirror-failover", "retry-backoff"])
        XCTAssertTrue(h.engine.plugins.plugins.allSatisfy { $0.path.hasSuffix(".so") })
        XCTAssertEqual(h.engine.plugins.plugins.map(\.isValidator), [true, true, false, false, false])
        XCTAssertEqual(h.engine.plugins.plugins.map(\.isErrorPolicy), [false, false, true, true, true])
        XCTAssertEqual(h.engine.plugins.plugins.map(\.wantsTransientErrors), [false, false, false, true, true])
    }

    func testMatchingHashAndSizeValidateAndAutoComplete() throws {
        let data = testBytes(1 << 20, seed: 50)
        h.server.setFile("/ok.bin", data: data)
        let id = try startJob("/ok.bin", properties: ["sha256": try sha256(data), "size": String(data.count)], autoComplete: true)
        XCTAssertTrue(waitUntil(timeout: 60) { fileHolds(self.h.destination("file.bin"), data) }, "auto-complete put the validated file in place")
        XCTAssertThrowsError(try h.engine.job(id), "an acknowledged job is gone")
    }

    func testCorruptDownloadFailsValidationIsNeverVisibleAndResumeRefetches() throws {
        let good = testBytes(500_000, seed: 51)
        var corrupt = good
        corrupt[1234] ^= 0xFF
        h.server.setFile("/c.bin", data: corrupt)
        let id = try startJob("/c.bin", properties: ["sha256": try sha256(good)])
        let failed = try h.wait(id, for: .error)
        let error = try XCTUnwrap(failed.lastError)
        XCTAssertEqual(error.code, .validationFailed)
        XCTAssertEqual(error.context, .validation)
        XCTAssertEqual(error.fileIndex, 0)
        XCTAssertTrue(error.message.contains("sha256: sha256 mismatch"), error.message)
        XCTAssertTrue(error.message.contains(try sha256(good)), "the reason names the expected digest: \(error.message)")
        XCTAssertEqual(failed.files[0].bytesTransferred, 0, "the file's progress is reset, as BITS does")
        XCTAssertFalse(exists(h.destination("file.bin")))
        XCTAssertEqual(h.temporaries, [], "the rejected bytes are discarded")

        h.server.setFile("/c.bin", data: good)
        h.server.resetRequests()
        _ = try h.engine.resume(id)
        try h.wait(id, for: .transferred)
        XCTAssertNil(h.server.requests(for: "/c.bin").first?.range, "the file is fetched again from zero")
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("file.bin"), good))
    }

    func testWrongSizeFailsWithTheSizeInTheReason() throws {
        h.server.setFile("/s.bin", data: testBytes(1000, seed: 52))
        let id = try startJob("/s.bin", properties: ["size": "2000"])
        let failed = try h.wait(id, for: .error)
        XCTAssertEqual(failed.lastError?.code, .validationFailed)
        XCTAssertEqual(failed.lastError?.message, "size: size is 1000 bytes, expected 2000")
    }

    func testAServerSendingMoreThanTheExpectedSizeIsCutOffDuringTheTransfer() throws {
        h.server.setFile("/big.bin", data: testBytes(2 << 20, seed: 53))
        h.server.addFault("/big.bin", .noContentLength)
        let id = try startJob("/big.bin", properties: ["size": "1000"])
        let failed = try h.wait(id, for: .error)
        XCTAssertEqual(failed.lastError?.code, .fileTooLarge)
        XCTAssertLessThanOrEqual(failed.files[0].bytesTransferred, 1000, "never more than the limit reaches the disk")
    }

    func testResumedFileIsHashedWholeAcrossTheRestart() throws {
        let data = testBytes(2 << 20, seed: 54)
        h.server.setFile("/r.bin", data: data)
        h.server.hold("/r.bin", afterBytes: 300_000)
        let id = try startJob("/r.bin", properties: ["sha256": try sha256(data)])
        _ = try h.waitForProgress(id, atLeast: 300_000, timeout: 60)
        try h.restartEngine()
        h.server.release("/r.bin")
        try h.wait(id, for: .transferred, timeout: 60)
        XCTAssertNotNil(h.server.requests(for: "/r.bin").last?.rangeStart, "the second request was a resume")
        _ = try h.engine.complete(id)
        XCTAssertTrue(fileHolds(h.destination("file.bin"), data))
    }

    func testFilesWithoutExpectationsPassTheAbstainingBuiltIns() throws {
        h.server.setFile("/plain.bin", data: Array("no expectations".utf8))
        let id = try startJob("/plain.bin", properties: [:])
        try h.wait(id, for: .transferred)
    }
}
