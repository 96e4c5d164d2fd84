import FerryCore
import Foundation
import Testing

@Suite("What error policies act through: retry delays, mirrors, dynamic content, TLS options")
struct PolicySupportTests {
    private func failing(_ transient: Bool = true, retryAfter: Double? = nil) throws -> Job {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.setMinimumRetryDelay(10), at: origin)
        _ = try job.apply(.failed(FerryError(code: .httpError(503), context: .remoteFile, isTransient: transient,
                                             retryAfterSeconds: retryAfter, message: "busy")), at: origin)
        return job
    }

    @Test("a policy's retry delay postpones the retry, and never brings it forward")
    func retryDelayOnlyPostpones() throws {
        var job = try failing()
        #expect(job.state == .transientError)
        #expect(job.retryAt == origin.addingTimeInterval(10))
        #expect(try job.apply(.setRetryDelay(40), at: origin) == [])
        #expect(job.retryAt == origin.addingTimeInterval(40))
        _ = try job.apply(.setRetryDelay(5), at: origin)
        #expect(job.retryAt == origin.addingTimeInterval(40), "shorter than what is due: ignored")
        _ = try job.apply(.setRetryDelay(.nan), at: origin)
        _ = try job.apply(.setRetryDelay(-1), at: origin)
        #expect(job.retryAt == origin.addingTimeInterval(40))
    }

    @Test("a retry delay outside TRANSIENT_ERROR changes nothing")
    func retryDelayNeedsTransientError() throws {
        var job = try Job.sample(in: .error)
        let before = job
        #expect(try job.apply(.setRetryDelay(40), at: origin) == [])
        #expect(job == before)
    }

    @Test("switching to a mirror swaps it with the current URL: no candidate is lost")
    func switchingKeepsEveryCandidate() throws {
        var job = try Job.sample(in: .error)
        let first = job.files[0].remoteURL
        _ = try job.apply(.addMirrors(file: 0, urls: ["http://b.test/f", "http://c.test/f", "http://b.test/f", first]), at: origin)
        #expect(job.files[0].mirrors == ["http://b.test/f", "http://c.test/f"], "duplicates and the current URL are not added")
        #expect(job.files[0].properties[JobFile.mirrorsProperty] == "http://b.test/f http://c.test/f")
        _ = try job.apply(.setRemoteURL(file: 0, url: "http://c.test/f"), at: origin)
        #expect(job.files[0].remoteURL == "http://c.test/f")
        #expect(job.files[0].mirrors == ["http://b.test/f", first])
        #expect(Set(job.files[0].candidateURLs) == Set([first, "http://b.test/f", "http://c.test/f"]))
    }

    @Test("a mirror URL with a space, or for a file that does not exist, is refused")
    func badMirrorsAreRefused() throws {
        var job = try Job.sample(in: .suspended)
        #expect(throws: FerryError.self) { try job.apply(.addMirrors(file: 0, urls: ["http://a.test/x y"]), at: origin) }
        #expect(throws: FerryError.self) { try job.apply(.addMirrors(file: 3, urls: ["http://a.test/x"]), at: origin) }
        #expect(job.files[0].mirrors.isEmpty)
    }

    @Test("the engine's choice of source applies only to a candidate of an active file")
    func useSourceNeedsACandidate() throws {
        var job = try Job.sample(in: .connecting)
        _ = try job.apply(.addMirrors(file: 0, urls: ["http://b.test/f"]), at: origin)
        _ = try job.apply(.useSource(file: 0, url: "http://evil.test/f"), at: origin)
        #expect(job.files[0].remoteURL != "http://evil.test/f")
        #expect(try job.apply(.useSource(file: 0, url: "http://b.test/f"), at: origin) == [])
        #expect(job.files[0].remoteURL == "http://b.test/f")
    }

    @Test("dynamic content with a maximum size; a maximum of 0 bytes is refused")
    func dynamicContent() throws {
        var job = try Job.sample(in: .suspended)
        _ = try job.apply(.setDynamicContent(true, maxFileBytes: 4096), at: origin)
        #expect(job.dynamicContent)
        #expect(job.maxFileBytes == 4096)
        #expect(throws: FerryError.self) { try job.apply(.setDynamicContent(true, maxFileBytes: 0), at: origin) }
        #expect(job.maxFileBytes == 4096)
    }

    @Test("TLS options: an absolute CA path and a sha256// pin; anything else is refused")
    func tlsOptions() throws {
        var job = try Job.sample(in: .suspended)
        _ = try job.apply(.setTLSOptions(caFile: "/etc/ferry/ca.pem", pinnedPublicKey: "sha256//abcdefghijkl="), at: origin)
        #expect(job.tlsCAFile == "/etc/ferry/ca.pem")
        #expect(throws: FerryError.self) { try job.apply(.setTLSOptions(caFile: "ca.pem", pinnedPublicKey: nil), at: origin) }
        #expect(throws: FerryError.self) { try job.apply(.setTLSOptions(caFile: nil, pinnedPublicKey: "md5//x"), at: origin) }
        #expect(job.tlsPinnedPublicKey == "sha256//abcdefghijkl=")
        _ = try job.apply(.setTLSOptions(caFile: nil, pinnedPublicKey: nil), at: origin)
        #expect(job.tlsCAFile == nil && job.tlsPinnedPublicKey == nil)
    }

    @Test("the new job fields survive encoding, and records without them decode with defaults")
    func newFieldsRoundTrip() throws {
        var job = try Job.sample(in: .suspended)
        _ = try job.apply(.setDynamicContent(true, maxFileBytes: 7), at: origin)
        _ = try job.apply(.setTLSOptions(caFile: "/ca.pem", pinnedPublicKey: nil), at: origin)
        let decoded = try JSONDecoder().decode(Job.self, from: JSONEncoder().encode(job))
        #expect(decoded.dynamicContent && decoded.maxFileBytes == 7 && decoded.tlsCAFile == "/ca.pem")
    }

    @Test("origins: scheme, host and port, lowercased; file URLs have none")
    func origins() {
        #expect(SourceHealth.origin(of: "HTTP://Mirror.Example.org/pool/a.deb") == "http://mirror.example.org:80")
        #expect(SourceHealth.origin(of: "https://mirror.example.org/a") == "https://mirror.example.org:443")
        #expect(SourceHealth.origin(of: "https://127.0.0.1:8443/a") == "https://127.0.0.1:8443")
        #expect(SourceHealth.origin(of: "file:///srv/a") == nil)
    }

    @Test("sources are preferred by failures in a row, then clearly higher throughput, then the order given")
    func preference() {
        var failing = SourceHealth(origin: "http://a:80")
        failing.recordFailure(at: origin)
        var fast = SourceHealth(origin: "http://b:80")
        fast.recordSuccess(at: origin, bytes: 10 << 20, seconds: 1)
        var slow = SourceHealth(origin: "http://c:80")
        slow.recordSuccess(at: origin, bytes: 1 << 20, seconds: 1)
        #expect(SourceHealth.preferred((nil, 1), (failing, 0)), "unknown beats failing")
        #expect(SourceHealth.preferred((fast, 2), (slow, 1)), "ten times faster wins over the order")
        #expect(SourceHealth.preferred((slow, 0), (nil, 1)), "unknown throughput: the order decides")
        failing.recordSuccess(at: origin, bytes: 100, seconds: 1)
        #expect(failing.consecutiveFailures == 0 && failing.failures == 1 && failing.bytesPerSecond == 0,
                "a tiny file resets the run of failures but measures no throughput")
    }
}
