import FerryCore
import FerryCrypto
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import Testing

/// The server faults of the error-policy issue, one test per row, through the real engine,
/// the built-in policies loaded with dlopen (range-fallback, mirror-failover, retry-backoff)
/// and loopback servers. Each test checks the final state, the error code, the policy's
/// decision in the job's history and the bytes on disk.
@Suite(.serialized)
final class FaultTableTests {
    let h: EngineHarness

    init() throws {
        h = try EngineHarness { $0.defaultMinimumRetryDelay = 1 }
    }

    deinit { h.tearDown() }

    private func sha256(_ data: [UInt8]) throws -> String {
        let digest = try StreamingDigest(.sha256)
        digest.update(data)
        return hexString(digest.finish())
    }

    /// A job of one file, resumed.
    private func startJob(_ url: String, _ name: String, properties: [String: String] = [:],
                          configure: (JobID) throws -> Void = { _ in }) throws -> JobID {
        let job = try h.engine.createJob(displayName: "fault", owner: getuid())
        _ = try h.engine.addFiles(job.id, [NewFile(remoteURL: url, localPath: h.destination(name), properties: properties)])
        try configure(job.id)
        _ = try h.engine.resume(job.id)
        return job.id
    }

    /// The delays retry-backoff asked for, in the order of the job's history.
    private func backoffDelays(_ job: Job) -> [Double] {
        job.history.compactMap { line -> Double? in
            guard let range = line.range(of: "retry-backoff: retry in ") else { return nil }
            return Double(line[range.upperBound...].prefix { $0 != " " })
        }
    }

    // MARK: - Backoff and Retry-After

    @Test func serviceUnavailableWithRetryAfterTwoSecondsIsNotRetriedSoonerAndCompletes() throws {
        let data = testBytes(40_000, seed: 500)
        h.server.setFile("/busy.bin", data: data)
        h.server.addFault("/busy.bin", .status(503, retryAfter: "2"))
        let id = try startJob(h.url("/busy.bin"), "busy.bin")
        let done = try h.wait(id, for: .transferred, timeout: 60)
        let requests = h.server.requests(for: "/busy.bin")
        #expect(requests.count == 2)
        #expect(requests[1].receivedAt.timeIntervalSince(requests[0].receivedAt) >= 2.0, "the retry waited for the server's Retry-After, though the job's minimum retry delay is 1 s")
        #expect(backoffDelays(done) == [2.0], "\(done.history)")
        #expect(done.history.first?.contains("HTTP_ERROR_503") ?? false)
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("busy.bin"), data))
    }

    @Test func tooManyRequestsWithAnHTTPDateIsRetriedAfterThatDate() throws {
        let data = testBytes(30_000, seed: 501)
        h.server.setFile("/limited.bin", data: data)
        let retryAt = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3).rounded(.up))
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        h.server.addFault("/limited.bin", .status(429, retryAfter: formatter.string(from: retryAt)))
        let id = try startJob(h.url("/limited.bin"), "limited.bin")
        let done = try h.wait(id, for: .transferred, timeout: 60)
        let requests = h.server.requests(for: "/limited.bin")
        #expect(requests.count == 2)
        #expect(requests[1].receivedAt >= retryAt, "no retry before the date the server gave")
        #expect(done.history.contains { $0.contains("HTTP_ERROR_429: retry-backoff: retry in") }, "\(done.history)")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("limited.bin"), data))
    }

    @Test func aServerFailingThreeTimesIsRetriedWithGrowingDelaysThenCompletes() throws {
        let data = testBytes(20_000, seed: 502)
        h.server.setFile("/flaky.bin", data: data)
        h.server.addFault("/flaky.bin", .status(503), times: 3)
        let id = try startJob(h.url("/flaky.bin"), "flaky.bin")
        let done = try h.wait(id, for: .transferred, timeout: 30)
        let delays = backoffDelays(done)
        #expect(delays.count == 3, "\(done.history)")
        #expect(delays.first == 1.0, "the first retry waits the job's minimum retry delay")
        #expect(delays == delays.sorted(), "each failure in a row waits at least as long as the one before")
        #expect(delays.last ?? 0 >= 2.0, "the third waits at least half of 4 s (jitter)")
        let times = h.server.requests(for: "/flaky.bin").map(\.receivedAt)
        #expect(times.count == 4)
        for (gap, delay) in zip(zip(times, times.dropFirst()).map { $1.timeIntervalSince($0) }, delays) {
            #expect(gap >= delay - 0.1, "a retry came before the delay asked for")
        }
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("flaky.bin"), data))
    }

    @Test func progressBetweenTwoFailuresStartsTheBackoffAgain() throws {
        let data = testBytes(300_000, seed: 504)
        h.server.setFile("/progress.bin", data: data)
        // After two failures in a row, the third try delivers a third of the file, then drops;
        // the fourth gets the rest. The whole sequence is set up before the first try.
        h.server.addFault("/progress.bin", .status(503), times: 2)
        h.server.addFault("/progress.bin", .dropAfter(bytes: 100_000), afterRequests: 2)
        let id = try startJob(h.url("/progress.bin"), "progress.bin")
        let done = try h.wait(id, for: .transferred, timeout: 60)
        let delays = backoffDelays(done)
        #expect(delays.count == 3, "\(done.history)")
        #expect(delays.first == 1.0)
        #expect(delays.dropFirst().first ?? 0 >= 1.0, "the second failure in a row waits 1-2 s")
        #expect(delays.last == 1.0, "bytes arrived before the third failure: the backoff started again from the minimum")
        #expect(done.history.last?.contains("TRUNCATED_BODY") ?? false, "\(done.history)")
        #expect(h.server.requests(for: "/progress.bin").last?.rangeStart == 100_000, "the last try continued from what arrived")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("progress.bin"), data))
    }

    @Test func backoffGivesUpAtTheNoProgressTimeout() throws {
        h.server.setFile("/down.bin", data: testBytes(1000, seed: 503))
        h.server.addFault("/down.bin", .status(503), times: nil)
        let id = try startJob(h.url("/down.bin"), "down.bin") { id in
            _ = try self.h.engine.setNoProgressTimeout(id, seconds: 3)
        }
        let failed = try h.wait(id, for: .error, timeout: 60)
        #expect(failed.lastError?.code == .httpError(503))
        #expect(failed.lastError?.isTransient == false)
        #expect(failed.lastError?.message.contains("no progress") ?? false, "\(String(describing: failed.lastError))")
        #expect(!backoffDelays(failed).isEmpty, "retry-backoff spaced the tries before the timeout")
        #expect(!exists(h.destination("down.bin")))
    }

    // MARK: - Mirrors

    @Test func aCorruptMirrorFailsValidationTheJobCompletesFromTheNextAndTheNextJobStartsThere() throws {
        let mirror = try FaultServer()
        defer { mirror.stop() }
        let good = testBytes(300_000, seed: 510)
        var corrupt = good
        corrupt[150_000] ^= 0xFF
        h.server.setFile("/pkg.bin", data: corrupt)
        mirror.setFile("/pkg.bin", data: good)
        let primary = h.url("/pkg.bin")
        let alternative = mirror.baseURL + "/pkg.bin"
        let properties = ["sha256": try sha256(good), JobFile.mirrorsProperty: alternative]

        let first = try startJob(primary, "first.bin", properties: properties)
        let done = try h.wait(first, for: .transferred, timeout: 60)
        #expect(done.history.contains { $0.contains("VALIDATION_FAILED: mirror-failover: point file 0 at \(alternative), resume") }, "\(done.history)")
        #expect(done.files[0].remoteURL == alternative)
        #expect(done.files[0].mirrors == [primary], "the failed source stays a candidate")
        #expect(mirror.requests(for: "/pkg.bin").first?.range == nil, "a switch after a validation failure starts from zero")
        _ = try h.engine.complete(first)
        #expect(fileHolds(h.destination("first.bin"), good))

        let health = Dictionary(uniqueKeysWithValues: h.engine.sources().map { ($0.origin, $0) })
        let badOrigin = try #require(SourceHealth.origin(of: primary))
        let fineOrigin = try #require(SourceHealth.origin(of: alternative))
        let bad = try #require(health[badOrigin])
        let fine = try #require(health[fineOrigin])
        #expect(bad.consecutiveFailures == 1)
        #expect(bad.successes == 0)
        #expect(fine.successes == 1)
        #expect(fine.consecutiveFailures == 0)

        // The next job names the bad mirror first, yet starts from the healthy one.
        let before = h.server.requests(for: "/pkg.bin").count
        let second = try startJob(primary, "second.bin", properties: properties)
        let secondDone = try h.wait(second, for: .transferred, timeout: 60)
        #expect(h.server.requests(for: "/pkg.bin").count == before, "the unhealthy source was not asked")
        #expect(secondDone.files[0].remoteURL == alternative)
        #expect(secondDone.history.isEmpty, "no error, no decision: \(secondDone.history)")
        _ = try h.engine.complete(second)
        #expect(fileHolds(h.destination("second.bin"), good))

        // Health is kept in the store: a restarted engine still knows.
        try h.restartEngine()
        let remembered = h.engine.sources().first { $0.origin == bad.origin }
        #expect(remembered?.consecutiveFailures == 1)
        #expect(remembered?.failures == 1)
    }

    @Test func aMirrorDroppingTheConnectionHalfWayFailsOverAndContinuesFromTheCheckpoint() throws {
        let mirror = try FaultServer()
        defer { mirror.stop() }
        let data = testBytes(2 << 20, seed: 511)
        h.server.setFile("/half.bin", data: data)
        h.server.addFault("/half.bin", .dropAfter(bytes: 1 << 20), times: nil)
        mirror.setFile("/half.bin", data: data)
        let alternative = mirror.baseURL + "/half.bin"
        let id = try startJob(h.url("/half.bin"), "half.bin",
                              properties: ["sha256": try sha256(data), JobFile.mirrorsProperty: alternative])
        let done = try h.wait(id, for: .transferred, timeout: 60)
        #expect(done.history.contains { $0.contains("mirror-failover: point file 0 at \(alternative), resume") }, "\(done.history)")
        let resumed = try #require(mirror.requests(for: "/half.bin").first)
        let offset = try #require(resumed.rangeStart, "the same size and ETag: the mirror continues where the first left off")
        #expect(offset > 0)
        #expect(offset <= 1 << 20)
        #expect(resumed.ifRange != nil)
        #expect(resumed.ifRange == done.files[0].remoteETag)
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("half.bin"), data), "validated whole across the two sources")
    }

    @Test func aMirrorWithAnotherETagRestartsTheFileFromZero() throws {
        let mirror = try FaultServer()
        defer { mirror.stop() }
        let data = testBytes(2 << 20, seed: 512)
        h.server.setFile("/tag.bin", data: data)
        h.server.addFault("/tag.bin", .dropAfter(bytes: 1 << 20), times: nil)
        mirror.setFile("/tag.bin", data: data, etag: "\"another-version\"")
        let alternative = mirror.baseURL + "/tag.bin"
        let id = try startJob(h.url("/tag.bin"), "tag.bin",
                              properties: ["sha256": try sha256(data), JobFile.mirrorsProperty: alternative])
        let done = try h.wait(id, for: .transferred, timeout: 60)
        #expect(done.history.contains { $0.contains("mirror-failover: point file 0 at \(alternative)") }, "\(done.history)")
        let asked = try #require(mirror.requests(for: "/tag.bin").first)
        #expect(asked.ifRange != nil, "the rest was asked for under the first source's validator...")
        #expect(done.files[0].remoteETag == "\"another-version\"", "...and the mirror's whole file was taken instead")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("tag.bin"), data))
    }

    // MARK: - HTTP correctness guards

    @Test func contentChangedBetweenTwoAttemptsRestartsFromZeroAndTheNewContentValidates() throws {
        let old = testBytes(2 << 20, seed: 520)
        let new = testBytes(1 << 20, seed: 521)
        h.server.setFile("/changing.bin", data: old)
        h.server.hold("/changing.bin", afterBytes: 200_000)
        let id = try startJob(h.url("/changing.bin"), "changing.bin", properties: ["sha256": try sha256(new)])
        _ = try h.waitForProgress(id, atLeast: 200_000, timeout: 60)
        _ = try h.engine.suspend(id)
        h.server.release("/changing.bin")
        h.server.setFile("/changing.bin", data: new)
        h.server.resetRequests()
        _ = try h.engine.resume(id)
        let done = try h.wait(id, for: .transferred)
        let request = try #require(h.server.requests(for: "/changing.bin").first)
        #expect(request.ifRange != nil, "the rest was asked for under the old version's validator")
        #expect(done.files[0].bytesTotal == UInt64(new.count))
        #expect(done.history.isEmpty, "a changed file is no error: \(done.history)")
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("changing.bin"), new))
    }

    @Test func aTruncatedBodyIsTransientAndTheRetryContinuesFromWhatArrived() throws {
        let data = testBytes(300_000, seed: 522)
        h.server.setFile("/short.bin", data: data)
        h.server.addFault("/short.bin", .truncateBody(bytes: 100_000))
        let id = try startJob(h.url("/short.bin"), "short.bin", properties: ["sha256": try sha256(data)])
        let done = try h.wait(id, for: .transferred, timeout: 60)
        #expect(done.history.contains { $0.contains("TRUNCATED_BODY: retry-backoff: retry in 1.0 s") }, "\(done.history)")
        let requests = h.server.requests(for: "/short.bin")
        #expect(requests.count == 2)
        #expect(requests[1].rangeStart == 100_000)
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("short.bin"), data))
    }

    @Test func anHTMLErrorPageServedWith200NeverReplacesAGoodFile() throws {
        let expected = testBytes(50_000, seed: 523)
        let previous = testBytes(50_000, seed: 524)
        FileManager.default.createFile(atPath: h.destination("page.bin"), contents: Data(previous))
        h.server.setFile("/page.bin", data: expected)
        h.server.addFault("/page.bin", .status(200, body: "<html><body>Mirror under maintenance</body></html>"), times: nil)
        let id = try startJob(h.url("/page.bin"), "page.bin",
                              properties: ["sha256": try sha256(expected), "size": String(expected.count)])
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .validationFailed)
        #expect(failed.lastError?.context == .validation)
        #expect(try waitUntil(timeout: 30) { try h.engine.job(id).history.contains { $0.contains("VALIDATION_FAILED: no policy acted") } })
        #expect(fileHolds(h.destination("page.bin"), previous), "the good file in place is untouched")
        #expect(h.temporaries.isEmpty, "the page is discarded: \(h.temporaries)")
    }

    // MARK: - Dynamic content

    @Test func dynamicContentNeedsNoRangesAndRestartsAnInterruptedFileFromZero() throws {
        let data = testBytes(400_000, seed: 530)
        h.server.setFile("/feed.xml", data: data)
        h.server.addFault("/feed.xml", .dropAfter(bytes: 150_000))
        let id = try startJob(h.url("/feed.xml"), "feed.xml") { id in
            _ = try self.h.engine.setDynamicContent(id, true, maxFileBytes: 1 << 20)
        }
        let done = try h.wait(id, for: .transferred, timeout: 60)
        #expect(done.dynamicContent)
        let requests = h.server.requests(for: "/feed.xml")
        #expect(requests.count == 2)
        #expect(requests[1].range == nil, "dynamic content is fetched again from zero, never by range")
        #expect(requests[1].ifRange == nil)
        _ = try h.engine.complete(id)
        #expect(fileHolds(h.destination("feed.xml"), data))
    }

    @Test func dynamicContentIsBoundedByTheJobsMaximumSize() throws {
        h.server.setFile("/endless", data: testBytes(200_000, seed: 531))
        h.server.addFault("/endless", .noContentLength, times: nil)
        let id = try startJob(h.url("/endless"), "endless") { id in
            _ = try self.h.engine.setDynamicContent(id, true, maxFileBytes: 64_000)
        }
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .fileTooLarge)
        #expect(failed.lastError?.message.contains("64000") ?? false, "\(String(describing: failed.lastError))")
        #expect(failed.files[0].bytesTransferred <= 64_000, "the transfer stopped at the limit")
        #expect(!exists(h.destination("endless")))
    }

    // MARK: - TLS

    @Test func anHTTPSRedirectToPlainHTTPIsRefused() throws {
        h.server.setFile("/plain.bin", data: testBytes(1000, seed: 540))
        let tls = try HTTPSServer(payload: testBytes(1000, seed: 541), redirectTarget: h.url("/plain.bin"))
        defer { tls.stop() }
        let id = try startJob(tls.baseURL + "/redirect", "redirected.bin") { id in
            _ = try self.h.engine.setTLSOptions(id, caFile: tls.certificatePath, pinnedPublicKey: nil)
        }
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .insecureRedirect)
        #expect(failed.lastError?.message.contains(h.url("/plain.bin")) ?? false, "\(String(describing: failed.lastError))")
        #expect(h.server.requests(for: "/plain.bin").isEmpty, "the plain-http URL was never fetched")
        #expect(!exists(h.destination("redirected.bin")))
    }

    @Test func anUnknownCertificateIsRefusedUnlessTheJobAddsItsCAFile() throws {
        let payload = testBytes(100_000, seed: 542)
        let tls = try HTTPSServer(payload: payload, redirectTarget: "/file")
        defer { tls.stop() }
        let refused = try startJob(tls.baseURL + "/file", "refused.bin")
        let failed = try h.wait(refused, for: .error)
        #expect(failed.lastError?.code == .tlsError)
        #expect(failed.lastError?.isTransient == false)
        #expect(failed.files[0].bytesTransferred == 0)

        let trusted = try startJob(tls.baseURL + "/file", "trusted.bin") { id in
            _ = try self.h.engine.setTLSOptions(id, caFile: tls.certificatePath, pinnedPublicKey: tls.publicKeyPin)
        }
        try h.wait(trusted, for: .transferred)
        _ = try h.engine.complete(trusted)
        #expect(fileHolds(h.destination("trusted.bin"), payload))
    }

    @Test func aPinnedKeyThatDoesNotMatchIsRefused() throws {
        let tls = try HTTPSServer(payload: testBytes(1000, seed: 543), redirectTarget: "/file")
        defer { tls.stop() }
        let id = try startJob(tls.baseURL + "/file", "pinned.bin") { id in
            _ = try self.h.engine.setTLSOptions(id, caFile: tls.certificatePath,
                                                 pinnedPublicKey: "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        }
        let failed = try h.wait(id, for: .error)
        #expect(failed.lastError?.code == .tlsError)
        #expect(!exists(h.destination("pinned.bin")))
    }

    @Test func tlsOptionsThatCannotWorkAreRefusedWithTheReason() throws {
        let job = try h.engine.createJob(displayName: "tls", owner: getuid())
        if let error = #expect(throws: (any Error).self, performing: { try h.engine.setTLSOptions(job.id, caFile: "relative/ca.pem", pinnedPublicKey: nil) }) {
            #expect("\(error)".contains("absolute"), "\(error)")
        }
        if let error = #expect(throws: (any Error).self, performing: { try h.engine.setTLSOptions(job.id, caFile: h.directory.file("missing.pem"), pinnedPublicKey: nil) }) {
            #expect("\(error)".contains("missing.pem"), "\(error)")
        }
        if let error = #expect(throws: (any Error).self, performing: { try h.engine.setTLSOptions(job.id, caFile: nil, pinnedPublicKey: "md5//abc") }) {
            #expect("\(error)".contains("sha256//"), "\(error)")
        }
        #expect(try h.engine.job(job.id).tlsPinnedPublicKey == nil)
    }
}
