import FerryCore
import FerryStore
import Foundation
import Synchronization
import Testing

/// ``JobStore`` against real SQLite files in a temporary directory.
@Suite("Job store")
struct JobStoreTests {
    let scratch: ScratchDirectory
    let storePath: String

    init() throws {
        scratch = try ScratchDirectory()
        storePath = scratch.path("jobs.sqlite")
    }

    /// A job after a few events, so that most fields differ from their defaults:
    /// TRANSIENT_ERROR with a last error, a retry time and a no-progress start;
    /// file 0 part-way with validators, file 1 transferred, file 2 untouched.
    func busyJob() throws -> Job {
        var job = Job(displayName: "nightly", description: "mirror the nightly images", owner: 1000,
                      priority: .low, createdAt: origin)
        try job.run(
            .addFiles([
                sampleFile(0, properties: ["sha256": "9f86d081884c7d65", "size": "100"]),
                sampleFile(1),
                sampleFile(2, properties: ["note": "naïve café ✓"]),
            ]),
            .setPriority(.high),
            .setCustomHeaders(["X-Token: abc", "Accept: */*"]),
            .setMinimumRetryDelay(30),
            .setNoProgressTimeout(86_400),
            .setProperties(["team": "infra", "ticket": "OPS-42"]),
            .setAutoComplete(true),
            .resume, .scheduled,
            .responseReceived(file: 0, bytesTotal: 100, etag: "\"v1\"", lastModified: "Tue, 14 Nov 2023 22:13:20 GMT",
                              restartFromZero: false),
            .bytesWritten(file: 0, bytes: 64),
            .responseReceived(file: 1, bytesTotal: 50, etag: nil, lastModified: nil, restartFromZero: false),
            .bytesWritten(file: 1, bytes: 50),
            .fileTransferred(file: 1),
            at: at(10))
        let unavailable = FerryError(code: .httpError(503), context: .remoteFile, isTransient: true, httpStatus: 503,
                                     fileIndex: 0, retryAfterSeconds: 120, message: "service unavailable")
        try job.run(.failed(unavailable), at: at(20.5))
        try #require(job.state == .transientError)
        try #require(job.retryAt == at(140.5))
        return job
    }

    /// Records, as the engine does after each flush, the progress the job holds in memory.
    func recordProgress(of job: Job, in store: JobStore) throws {
        for (index, file) in job.files.enumerated() where file.bytesTransferred > 0 {
            try store.recordCheckpoint(
                job: job.id, file: index, bytes: file.bytesTransferred, bytesTotal: file.bytesTotal,
                etag: file.remoteETag, lastModified: file.remoteLastModified, transferred: file.isTransferred)
        }
    }

    // MARK: - Opening

    @Test("a new store is at the current schema version and opens again")
    func newStoreSchemaVersion() throws {
        do {
            let store = try JobStore(path: storePath)
            #expect(try store.jobCount() == 0)
        }
        #expect(try sqlite3(storePath, "PRAGMA user_version") == String(JobStore.schemaVersion))

        let reopened = try JobStore(path: storePath)
        #expect(try reopened.jobCount() == 0)
        #expect(try sqlite3(storePath, "PRAGMA user_version") == String(JobStore.schemaVersion))
    }

    @Test("a schema-1 store is migrated and keeps its jobs")
    func migratesFromSchemaOne() throws {
        let job = try Job.sample(files: 2)
        do { try JobStore(path: storePath).save(job) }
        // Back to what schema 1 had: no events or sources table, version 1.
        try sqlite3(storePath, "DROP TABLE events; DROP TABLE sources; PRAGMA user_version = 1")
        let store = try JobStore(path: storePath)
        #expect(try store.loadJobs() == [job])
        #expect(try sqlite3(storePath, "PRAGMA user_version") == String(JobStore.schemaVersion))
        let event = StoredEvent(owner: 7, job: job.id, kind: "jobTransferred", file: nil, time: Date(timeIntervalSinceReferenceDate: 1), payload: "{}")
        let sequence = try store.appendEvent(event)
        #expect(sequence > 0)
        #expect(try store.pendingEvents(owner: 7).map(\.sequence) == [sequence])
        #expect(try store.pendingEvents(owner: 8).isEmpty)
        #expect(try store.acknowledgeEvents(owner: 7, upTo: sequence) == 1)
        #expect(try store.pendingEvents(owner: 7).isEmpty)
    }

    @Test("a schema-2 store gains the sources table; source health round-trips and is updated in place")
    func sourceHealthPersists() throws {
        let job = try Job.sample(files: 1)
        do { try JobStore(path: storePath).save(job) }
        try sqlite3(storePath, "DROP TABLE sources; PRAGMA user_version = 2")
        var mirror = SourceHealth(origin: "http://mirror-a.test:80")
        mirror.recordFailure(at: Date(timeIntervalSinceReferenceDate: 100))
        mirror.recordFailure(at: Date(timeIntervalSinceReferenceDate: 200))
        var other = SourceHealth(origin: "https://mirror-b.test:443")
        other.recordSuccess(at: Date(timeIntervalSinceReferenceDate: 300), bytes: 1 << 20, seconds: 0.5)
        do {
            let store = try JobStore(path: storePath)
            #expect(try store.loadJobs() == [job])
            try store.saveSourceHealth([mirror, other])
        }
        let reopened = try JobStore(path: storePath)
        #expect(try reopened.loadSourceHealth() == [mirror, other])
        mirror.recordSuccess(at: Date(timeIntervalSinceReferenceDate: 400), bytes: 10, seconds: 1)
        try reopened.saveSourceHealth([mirror])
        let loaded = try reopened.loadSourceHealth()
        #expect(loaded.count == 2)
        #expect(loaded.first == mirror)
        #expect(loaded.first?.consecutiveFailures == 0)
        #expect(loaded.first?.failures == 2)
        #expect(other.bytesPerSecond == Double(1 << 21))
    }

    @Test("file properties with quotes, backslashes, control characters and any Unicode round-trip")
    func awkwardPropertiesRoundTrip() throws {
        var job = Job(displayName: "props", owner: 1, createdAt: origin)
        let awkward = ["quote\"key": "a \"b\" \\ c", "lines": "one\ntwo\r\tthree", "control": "\u{01}\u{1F}x",
                       "unicode": "naïve ✓ 日本 🚀", "": "empty key", "mirrors": "http://a/x http://b/x"]
        _ = try job.apply(.addFiles([sampleFile(0, properties: awkward)]), at: origin)
        let store = try JobStore(path: storePath)
        try store.save(job)
        #expect(try store.loadJobs().first?.files[0].properties == awkward)
    }

    @Test("every job is loaded in one pass, and one unreadable record is named by its job")
    func unreadableRecordIsNamed() throws {
        let first = try Job.sample(files: 1)
        let second = try Job.sample(files: 2, createdAt: origin.addingTimeInterval(1))
        do {
            let store = try JobStore(path: storePath)
            try store.save([first, second])
            #expect(try store.loadJobs() == [first, second])
        }
        try sqlite3(storePath, "UPDATE jobs SET header = '{\"broken\": true}' WHERE id = '\(second.id)'")
        let error = #expect(throws: StoreError.self) { try JobStore(path: storePath).loadJobs() }
        #expect(error?.description.contains("job \(second.id) has an unreadable record") == true, "\(String(describing: error))")
    }

    @Test("a store written by a newer Ferry is refused")
    func newerSchemaIsRefused() throws {
        do { _ = try JobStore(path: storePath) }
        try sqlite3(storePath, "PRAGMA user_version = 99")

        let error = #expect(throws: StoreError.self) { try JobStore(path: storePath) }
        #expect(error?.description.contains("newer") == true)
    }

    @Test("a file that is not a database gives a StoreError")
    func garbageFileIsRefused() throws {
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
        try garbage.write(to: URL(fileURLWithPath: storePath))

        #expect(throws: StoreError.self) { try JobStore(path: storePath) }
    }

    @Test("a store in a directory that does not exist gives a StoreError")
    func missingDirectoryIsRefused() {
        #expect(throws: StoreError.self) { try JobStore(path: scratch.path("no/such/dir/jobs.sqlite")) }
    }

    // MARK: - Round trips

    @Test("a job with three files round-trips through save and loadJobs")
    func roundTrip() throws {
        let job = try busyJob()
        do {
            let store = try JobStore(path: storePath)
            try store.save(job)
            try recordProgress(of: job, in: store)
        }

        let loaded = try JobStore(path: storePath).loadJobs()

        #expect(loaded == [job])
    }

    @Test("a job created at a clock time with a sub-second fraction round-trips exactly")
    func roundTripWithClockTime() throws {
        // A time as Date() gives it: a Double counted from 2001-01-01. Roughly half of
        // such values are one ulp (about 0.12 µs) off after the trip through the store.
        let clockTime = Date(timeIntervalSinceReferenceDate: 817_273_639.1)
        let job = try Job.sample(files: 1, createdAt: clockTime)
        let store = try JobStore(path: storePath)
        try store.save(job)

        let loaded = try #require(store.loadJobs().first)

        #expect(loaded.creationTime == job.creationTime)
        #expect(loaded == job)
    }

    @Test("a job header written before jobs had properties and auto-complete still loads")
    func headerFromEarlierSchemaOneLoads() throws {
        let job = try Job.sample(files: 1)
        do { try JobStore(path: storePath).save(job) }
        // The header as the first schema-1 build wrote it: the same schema version, two keys fewer.
        try sqlite3(storePath, "UPDATE jobs SET header = json_remove(header, '$.properties', '$.autoComplete')")
        try #require(try sqlite3(storePath, "SELECT instr(header, 'autoComplete') FROM jobs") == "0")

        let store = try JobStore(path: storePath)

        let loaded = try store.loadJobs()
        #expect(loaded == [job])
    }

    @Test("loadJobs returns jobs oldest first")
    func loadOrder() throws {
        let newer = try Job.sample(files: 1, createdAt: at(50))
        let older = try Job.sample(files: 2, createdAt: at(5))
        let store = try JobStore(path: storePath)
        try store.save([newer, older])

        #expect(try store.loadJobs().map(\.id) == [older.id, newer.id])
        #expect(try store.jobCount() == 2)
    }

    // MARK: - Durable lengths

    @Test("recordCheckpoint raises the durable length and records the validators")
    func checkpointRaisesDurableLength() throws {
        let job = try Job.sample(files: 2)
        let store = try JobStore(path: storePath)
        try store.save(job)

        try store.recordCheckpoint(job: job.id, file: 1, bytes: 4096, bytesTotal: 10_000, etag: "\"e\"",
                                   lastModified: "Wed, 15 Nov 2023 08:00:00 GMT")

        let file = try #require(store.loadJobs().first).files[1]
        #expect(file.bytesTransferred == 4096)
        #expect(file.bytesTotal == 10_000)
        #expect(file.remoteETag == "\"e\"")
        #expect(file.remoteLastModified == "Wed, 15 Nov 2023 08:00:00 GMT")
        #expect(!file.isTransferred)
    }

    @Test("a checkpoint that says transferred marks the file transferred")
    func checkpointMarksTransferred() throws {
        let job = try Job.sample(files: 1)
        let store = try JobStore(path: storePath)
        try store.save(job)

        try store.recordCheckpoint(job: job.id, file: 0, bytes: 10, bytesTotal: 10, etag: nil, lastModified: nil,
                                   transferred: true)

        #expect(try #require(store.loadJobs().first).files[0].isTransferred)
    }

    @Test("save never raises the durable length above the last checkpoint")
    func saveDoesNotRaiseDurableLength() throws {
        var job = try Job.sample(files: 1)
        try job.run(.resume, .scheduled,
                    .responseReceived(file: 0, bytesTotal: 100_000, etag: nil, lastModified: nil, restartFromZero: false),
                    .bytesWritten(file: 0, bytes: 4096), at: at(1))
        let store = try JobStore(path: storePath)
        try store.save(job)
        try store.recordCheckpoint(job: job.id, file: 0, bytes: 4096, bytesTotal: 100_000, etag: nil, lastModified: nil)

        try job.run(.bytesWritten(file: 0, bytes: 8192), at: at(2))  // written, not yet flushed
        try store.save(job)

        #expect(try #require(store.loadJobs().first).files[0].bytesTransferred == 4096)
    }

    @Test("the first save of a job records no durable bytes, whatever it holds in memory")
    func firstSaveRecordsNoDurableBytes() throws {
        var job = try Job.sample(files: 1)
        try job.run(.resume, .scheduled, .bytesWritten(file: 0, bytes: 4096), at: at(1))
        let store = try JobStore(path: storePath)

        try store.save(job)

        #expect(try #require(store.loadJobs().first).files[0].bytesTransferred == 0)
    }

    @Test("save lowers the durable length when the file restarted from zero")
    func saveLowersDurableLength() throws {
        var job = try Job.sample(files: 1)
        try job.run(.resume, .scheduled, .bytesWritten(file: 0, bytes: 4096), at: at(1))
        let store = try JobStore(path: storePath)
        try store.save(job)
        try store.recordCheckpoint(job: job.id, file: 0, bytes: 4096, bytesTotal: nil, etag: "\"v1\"", lastModified: nil)

        try job.run(.responseReceived(file: 0, bytesTotal: 9000, etag: "\"v2\"", lastModified: nil, restartFromZero: true),
                    .bytesWritten(file: 0, bytes: 1000), at: at(2))
        try store.save(job)

        let file = try #require(store.loadJobs().first).files[0]
        #expect(file.bytesTransferred == 1000)
        #expect(file.remoteETag == "\"v2\"")
    }

    @Test("save lowers the durable length of a cancelled job's files to zero")
    func saveAfterCancel() throws {
        var job = try Job.sample(files: 1)
        try job.run(.resume, .scheduled, .bytesWritten(file: 0, bytes: 4096), at: at(1))
        let store = try JobStore(path: storePath)
        try store.save(job)
        try store.recordCheckpoint(job: job.id, file: 0, bytes: 4096, bytesTotal: nil, etag: nil, lastModified: nil)

        try job.run(.cancel, at: at(2))
        try store.save(job)

        let loaded = try #require(store.loadJobs().first)
        #expect(loaded.state == .cancelled)
        #expect(loaded.files[0].bytesTransferred == 0)
    }

    // MARK: - Partial saves and deletion

    @Test("save(_:files:) writes the header and only the listed file rows")
    func partialSave() throws {
        var job = try Job.sample(files: 3)
        let store = try JobStore(path: storePath)
        try store.save(job)

        try job.run(.resume, .scheduled,
                    .responseReceived(file: 1, bytesTotal: 11, etag: "\"one\"", lastModified: nil, restartFromZero: false),
                    .responseReceived(file: 2, bytesTotal: 22, etag: "\"two\"", lastModified: nil, restartFromZero: false),
                    .setPriority(.foreground), at: at(1))
        try store.save(job, files: [1])

        let loaded = try #require(store.loadJobs().first)
        #expect(loaded.files.count == 3)
        #expect(loaded.files[1].remoteETag == "\"one\"")
        #expect(loaded.files[1].bytesTotal == 11)
        #expect(loaded.files[2].remoteETag == nil, "file 2 was not listed")
        #expect(loaded.files[2].bytesTotal == nil)
        #expect(loaded.priority == .foreground)
        #expect(loaded.state == .transferring)
    }

    @Test("delete removes the job and its file rows")
    func deleteCascades() throws {
        let doomed = try Job.sample(files: 3)
        let kept = try Job.sample(files: 1)
        let store = try JobStore(path: storePath)
        try store.save([doomed, kept])

        try store.delete(doomed.id)

        #expect(try store.loadJobs().map(\.id) == [kept.id])
        #expect(try sqlite3(storePath, "SELECT count(*) FROM files WHERE job_id = '\(doomed.id)'") == "0")
        #expect(try sqlite3(storePath, "SELECT count(*) FROM files WHERE job_id = '\(kept.id)'") == "1")
    }

    // MARK: - Concurrency

    @Test("checkpoints recorded from 8 threads at once all land")
    func concurrentCheckpoints() throws {
        let threadCount = 8
        let checkpointsPerThread = 25
        let job = try Job.sample(files: threadCount)
        let store = try JobStore(path: storePath)
        try store.save(job)

        let failures = Mutex<[String]>([])
        let finished = DispatchGroup()
        let start = DispatchSemaphore(value: 0)
        for file in 0..<threadCount {
            finished.enter()
            let thread = Thread {
                defer { finished.leave() }
                start.wait()
                for step in 1...checkpointsPerThread {
                    do {
                        try store.recordCheckpoint(
                            job: job.id, file: file, bytes: UInt64(step * 1000 + file), bytesTotal: 1_000_000,
                            etag: "\"\(file)-\(step)\"", lastModified: nil)
                    } catch {
                        failures.withLock { $0.append("file \(file), step \(step): \(error)") }
                    }
                }
            }
            thread.start()
        }
        for _ in 0..<threadCount { start.signal() }
        #expect(finished.wait(timeout: .now() + 60) == .success, "the threads did not finish")

        #expect(failures.withLock { $0 } == [])
        let files = try #require(store.loadJobs().first).files
        for file in 0..<threadCount {
            #expect(files[file].bytesTransferred == UInt64(checkpointsPerThread * 1000 + file))
            #expect(files[file].remoteETag == "\"\(file)-\(checkpointsPerThread)\"")
        }
    }
}
