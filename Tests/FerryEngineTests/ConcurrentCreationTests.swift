import FerryCore
import FerryEngine
import FerryStore
import Foundation
import Testing

/// Jobs created at the same time share a commit, yet each creator's answer still means its
/// job is stored, and an owner's quota holds however many create at once.
@Suite(.serialized)
final class ConcurrentCreationTests {
    let h: EngineHarness

    init() throws { h = try EngineHarness() }
    deinit { h.tearDown() }

    /// Each job, once `createJob` returns, is in the store as another connection reads it
    /// (with its file), and is listed.
    @Test func everyAnsweredJobIsAlreadyStored() throws {
        let storePath = h.configuration.storePath
        let created = 48
        let missing = Locked<[String]>([])
        let engine = h.engine, base = h.server.baseURL, downloads = h.downloads
        DispatchQueue.concurrentPerform(iterations: created) { index in
            do {
                let job = try engine.createJob(NewJob(displayName: "c\(index)", owner: getuid(), files: [
                    NewFile(remoteURL: base + "/f\(index)", localPath: downloads + "/f\(index)"),
                ]))
                let stored = try JobStore(path: storePath).loadJobs().first { $0.id == job.id }
                if stored?.files.count != 1 { missing.withLock { $0.append("c\(index)") } }
            } catch {
                missing.withLock { $0.append("c\(index): \(error)") }
            }
        }
        #expect(missing.withLock { $0 }.isEmpty, "answered but not stored: \(missing.withLock { $0 })")
        #expect(h.engine.allJobs().count == created)
        try h.restartEngine()
        #expect(h.engine.allJobs().count == created)
    }

    /// Twenty creations at once against a quota of five: exactly five are made, the others
    /// are refused with QUOTA_EXCEEDED naming the setting, and nothing of them is stored.
    @Test func aQuotaHoldsAgainstCreationsAtTheSameTime() throws {
        let outcomes = Locked<[Result<JobID, FerryError>]>([])
        let engine = h.engine
        DispatchQueue.concurrentPerform(iterations: 20) { index in
            let result = Result { () throws(FerryError) -> JobID in
                try engine.createJob(NewJob(displayName: "q\(index)", owner: 4242,
                                              ownerQuota: JobQuota(maximum: 5, setting: "quotas.jobs_per_user"))).id
            }
            outcomes.withLock { $0.append(result) }
        }
        let all = outcomes.withLock { $0 }
        let refusals = all.compactMap { if case .failure(let error) = $0 { error } else { nil } }
        #expect(all.count - refusals.count == 5)
        #expect(refusals.count == 15)
        #expect(refusals.allSatisfy { $0.code == .quotaExceeded && $0.message.contains("quotas.jobs_per_user = 5") }, "\(refusals)")
        #expect(try JobStore(path: h.configuration.storePath).loadJobs().filter { $0.owner == 4242 }.count == 5)
        // Another owner is not counted against it.
        _ = try h.engine.createJob(NewJob(displayName: "other", owner: 4343, ownerQuota: JobQuota(maximum: 5, setting: "quotas.jobs_per_user")))
    }
}

/// A value shared by the threads of one test.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
