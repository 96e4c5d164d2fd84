import FerryCore
import Foundation
import Synchronization

/// The durable record of every job: SQLite in WAL mode, with versioned migrations.
///
/// Job headers (everything but the files) are stored as JSON beside indexed
/// columns; each file has its own row. A file row's `bytes_durable` only ever
/// holds a length that was flushed to disk before it was recorded, so after a
/// crash the engine truncates each temporary to it and resumes from there.
///
/// All methods are thread-safe.
public final class JobStore: Sendable {
    private let connection: Mutex<SQLiteConnection>
    public let path: String

    /// The schema version this build writes; older stores are migrated on open.
    public static let schemaVersion: Int64 = 3

    /// Opens or creates the store at `path`, migrating it to ``schemaVersion``.
    /// - Throws: ``StoreError`` when the file cannot be opened, is not a Ferry store,
    ///   or was written by a newer Ferry.
    public init(path: String) throws(StoreError) {
        self.path = path
        let db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        // FULL: a committed transaction survives power loss. Checkpoint rows are
        // small and written every few MiB, so the cost is a WAL fsync per commit.
        try db.execute("PRAGMA synchronous=FULL")
        try db.execute("PRAGMA foreign_keys=ON")
        try JobStore.migrate(db)
        connection = Mutex(db)
    }

    private static func migrate(_ db: SQLiteConnection) throws(StoreError) {
        let version = try db.query("PRAGMA user_version").first?.first?.int ?? 0
        if version > schemaVersion {
            throw StoreError(resultCode: -1, message: "the store was written by a newer Ferry (schema \(version), this build knows \(schemaVersion))", sql: nil)
        }
        let migrations: [Int64: String] = [
            1: """
            CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                owner INTEGER NOT NULL,
                state TEXT NOT NULL,
                priority TEXT NOT NULL,
                created REAL NOT NULL,
                header TEXT NOT NULL
            );
            CREATE INDEX jobs_owner ON jobs(owner);
            CREATE TABLE files (
                job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                idx INTEGER NOT NULL,
                remote_url TEXT NOT NULL,
                local_path TEXT NOT NULL,
                properties TEXT NOT NULL,
                bytes_total INTEGER,
                bytes_durable INTEGER NOT NULL DEFAULT 0,
                transferred INTEGER NOT NULL DEFAULT 0,
                committed INTEGER NOT NULL DEFAULT 0,
                etag TEXT,
                last_modified TEXT,
                PRIMARY KEY (job_id, idx)
            );
            """,
            2: """
            CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                owner INTEGER NOT NULL,
                job_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                file INTEGER,
                time REAL NOT NULL,
                payload TEXT NOT NULL
            );
            CREATE INDEX events_owner ON events(owner, seq);
            """,
            3: """
            CREATE TABLE sources (
                origin TEXT PRIMARY KEY,
                failures INTEGER NOT NULL DEFAULT 0,
                consecutive_failures INTEGER NOT NULL DEFAULT 0,
                successes INTEGER NOT NULL DEFAULT 0,
                last_failure REAL,
                last_success REAL,
                bytes_per_second REAL NOT NULL DEFAULT 0
            );
            """,
        ]
        guard version < schemaVersion else { return }
        try db.transaction { () throws(StoreError) in
            for step in (version + 1)...schemaVersion {
                guard let sql = migrations[step] else { continue }
                try db.execute(sql)
            }
            try db.execute("PRAGMA user_version = \(schemaVersion)")
        }
    }

    // MARK: - Reading

    /// Every job in the store, files included, oldest first.
    public func loadJobs() throws(StoreError) -> [Job] {
        try connection.withLock { db throws(StoreError) in
            let headers = try db.query("SELECT id, header FROM jobs ORDER BY created, id")
            var filesByJob: [String: [JobFile]] = [:]
            let fileRows = try db.query("""
                SELECT job_id, idx, remote_url, local_path, properties, bytes_total, bytes_durable,
                       transferred, committed, etag, last_modified
                FROM files ORDER BY job_id, idx
                """)
            for row in fileRows {
                guard let jobID = row[0].string else { continue }
                let index = Int(row[1].int ?? -1)
                guard index == filesByJob[jobID, default: []].count else {
                    throw StoreError(resultCode: -1, message: "job \(jobID) is missing the record of file \(filesByJob[jobID, default: []].count)", sql: nil)
                }
                var file = JobFile(
                    remoteURL: row[2].string ?? "", localPath: row[3].string ?? "",
                    properties: JobStore.decodeProperties(row[4].string))
                file.bytesTotal = row[5].int.map { UInt64($0) }
                file.bytesTransferred = UInt64(row[6].int ?? 0)
                file.isTransferred = row[7].int == 1
                file.isCommitted = row[8].int == 1
                file.remoteETag = row[9].string
                file.remoteLastModified = row[10].string
                filesByJob[jobID, default: []].append(file)
            }
            let records = headers.compactMap { row -> (id: String, json: String)? in
                guard let id = row[0].string, let json = row[1].string else { return nil }
                return (id, json)
            }
            // One decode of them all: decoding 10,000 headers one call each cost most of an
            // agent's start. Only when that fails are they read one by one, to name the bad one.
            var decoded: [Job]
            do {
                decoded = try JobStore.decodeHeaders(records.map(\.json))
                // A damaged header that reads as two objects would shift every id after it.
                guard decoded.count == records.count else { throw StoreError(resultCode: -1, message: "header count mismatch", sql: nil) }
            } catch {
                decoded = []
                for record in records {
                    do { decoded.append(try JobStore.decoder.decode(Job.self, from: Data(record.json.utf8))) } catch {
                        throw StoreError(resultCode: -1, message: "job \(record.id) has an unreadable record: \(error)", sql: nil)
                    }
                }
            }
            return zip(records, decoded).map { record, header in Job(persistedHeader: header, files: filesByJob[record.id] ?? []) }
        }
    }

    /// The number of jobs in the store.
    public func jobCount() throws(StoreError) -> Int {
        try connection.withLock { db throws(StoreError) in
            Int(try db.query("SELECT count(*) FROM jobs").first?.first?.int ?? 0)
        }
    }

    // MARK: - Writing

    /// Writes the job's header and every file row in one transaction.
    ///
    /// A file is saved as transferred only once the engine flushed and validated it.
    /// A file row's durable length is never raised here (only
    /// ``recordCheckpoint(job:file:bytes:bytesTotal:etag:lastModified:transferred:)``
    /// raises it, after the bytes were flushed); it is lowered when the job's
    /// progress went back, as after a restart from zero.
    public func save(_ job: Job) throws(StoreError) {
        try save([job])
    }

    /// Writes several jobs in one transaction.
    public func save(_ jobs: [Job]) throws(StoreError) {
        try connection.withLock { db throws(StoreError) in
            try db.transaction { () throws(StoreError) in
                for job in jobs { try JobStore.write(job, db) }
            }
        }
    }

    /// Writes the job's header and only the file rows listed in `files`, in one transaction.
    /// Use it when few files changed in a large job.
    public func save(_ job: Job, files: [Int]) throws(StoreError) {
        try connection.withLock { db throws(StoreError) in
            try db.transaction { () throws(StoreError) in try JobStore.write(job, db, files: files) }
        }
    }

    private static func write(_ job: Job, _ db: SQLiteConnection, files selected: [Int]? = nil) throws(StoreError) {
        let indices = selected ?? Array(job.files.indices)
        try write(job, db, rows: indices.compactMap { job.files.indices.contains($0) ? ($0, job.files[$0]) : nil })
    }

    private static func write(_ job: Job, _ db: SQLiteConnection, rows: [(Int, JobFile)]) throws(StoreError) {
        let id = job.id.description
        try db.query("""
            INSERT INTO jobs (id, owner, state, priority, created, header) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET state = excluded.state, priority = excluded.priority, header = excluded.header
            """, [.text(id), .integer(Int64(job.owner)), .text(job.state.rawValue), .text(job.priority.rawValue),
                  .real(job.creationTime.timeIntervalSince1970), .text(encodeHeader(job))])
        for (index, file) in rows {
            try db.query("""
                INSERT INTO files (job_id, idx, remote_url, local_path, properties, bytes_total, bytes_durable,
                                   transferred, committed, etag, last_modified)
                VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)
                ON CONFLICT(job_id, idx) DO UPDATE SET
                    remote_url = excluded.remote_url,
                    properties = excluded.properties,
                    bytes_total = excluded.bytes_total,
                    bytes_durable = MIN(bytes_durable, ?),
                    transferred = excluded.transferred,
                    committed = excluded.committed,
                    etag = excluded.etag,
                    last_modified = excluded.last_modified
                """, [.text(id), .integer(Int64(index)), .text(file.remoteURL), .text(file.localPath),
                      .text(encodeProperties(file.properties)), .optional(file.bytesTotal),
                      .integer(file.isTransferred ? 1 : 0), .integer(file.isCommitted ? 1 : 0),
                      .optional(file.remoteETag), .optional(file.remoteLastModified),
                      .integer(Int64(file.bytesTransferred))])
        }
    }

    /// Writes a batch in one transaction: the checkpoints (whose bytes the caller has already
    /// flushed), then job headers with the given file rows, then the deletions.
    /// - Parameter records: each job's header (its files are ignored) and the rows to write.
    public func write(records: [(header: Job, files: [(Int, JobFile)])], deleting deletions: [JobID],
                      checkpoints: [Checkpoint]) throws(StoreError) {
        guard !records.isEmpty || !deletions.isEmpty || !checkpoints.isEmpty else { return }
        try connection.withLock { db throws(StoreError) in
            try db.transaction { () throws(StoreError) in
                // Checkpoints first: they were taken before the records, which carry the newest
                // state and can only lower a durable length (never raise it).
                for c in checkpoints { try JobStore.write(c, db) }
                for record in records { try JobStore.write(record.header, db, rows: record.files) }
                for id in deletions { _ = try db.query("DELETE FROM jobs WHERE id = ?", [.text(id.description)]) }
            }
        }
    }

    /// Records that the first `bytes` bytes of a file's temporary are flushed to disk.
    ///
    /// Call only after `fdatasync` returned: after a crash the engine trusts this length.
    /// `transferred` marks the file complete (its bytes all flushed).
    public func recordCheckpoint(
        job: JobID, file: Int, bytes: UInt64, bytesTotal: UInt64?, etag: String?, lastModified: String?,
        transferred: Bool = false
    ) throws(StoreError) {
        try recordCheckpoints([Checkpoint(job: job, file: file, bytes: bytes, bytesTotal: bytesTotal, etag: etag,
                                          lastModified: lastModified, transferred: transferred)])
    }

    /// Records several checkpoints in one transaction.
    public func recordCheckpoints(_ checkpoints: [Checkpoint]) throws(StoreError) {
        guard !checkpoints.isEmpty else { return }
        try connection.withLock { db throws(StoreError) in
            try db.transaction { () throws(StoreError) in
                for c in checkpoints { try JobStore.write(c, db) }
            }
        }
    }

    private static func write(_ c: Checkpoint, _ db: SQLiteConnection) throws(StoreError) {
        try db.query("""
            UPDATE files SET bytes_durable = ?, bytes_total = ?, etag = ?, last_modified = ?,
                             transferred = ?
            WHERE job_id = ? AND idx = ?
            """, [.integer(Int64(c.bytes)), .optional(c.bytesTotal), .optional(c.etag),
                  .optional(c.lastModified), .integer(c.transferred ? 1 : 0),
                  .text(c.job.description), .integer(Int64(c.file))])
    }

    /// Removes a job and its files from the store.
    public func delete(_ id: JobID) throws(StoreError) {
        try connection.withLock { db throws(StoreError) in
            _ = try db.query("DELETE FROM jobs WHERE id = ?", [.text(id.description)])
        }
    }

    // MARK: - Source health

    /// What is remembered of every source (mirror origin).
    public func loadSourceHealth() throws(StoreError) -> [SourceHealth] {
        try connection.withLock { db throws(StoreError) in
            try db.query("""
                SELECT origin, failures, consecutive_failures, successes, last_failure, last_success, bytes_per_second
                FROM sources ORDER BY origin
                """).compactMap { row in
                guard let origin = row[0].string else { return nil }
                var health = SourceHealth(origin: origin)
                health.failures = UInt64(max(0, row[1].int ?? 0))
                health.consecutiveFailures = UInt32(clamping: max(0, row[2].int ?? 0))
                health.successes = UInt64(max(0, row[3].int ?? 0))
                health.lastFailure = row[4].double.map { Date(timeIntervalSinceReferenceDate: $0) }
                health.lastSuccess = row[5].double.map { Date(timeIntervalSinceReferenceDate: $0) }
                health.bytesPerSecond = row[6].double ?? 0
                return health
            }
        }
    }

    /// Writes the given sources' health in one transaction.
    public func saveSourceHealth(_ sources: [SourceHealth]) throws(StoreError) {
        guard !sources.isEmpty else { return }
        try connection.withLock { db throws(StoreError) in
            try db.transaction { () throws(StoreError) in
                for health in sources {
                    try db.query("""
                        INSERT INTO sources (origin, failures, consecutive_failures, successes, last_failure, last_success, bytes_per_second)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        ON CONFLICT(origin) DO UPDATE SET failures = excluded.failures,
                            consecutive_failures = excluded.consecutive_failures, successes = excluded.successes,
                            last_failure = excluded.last_failure, last_success = excluded.last_success,
                            bytes_per_second = excluded.bytes_per_second
                        """, [.text(health.origin), .integer(Int64(clamping: health.failures)),
                              .integer(Int64(health.consecutiveFailures)), .integer(Int64(clamping: health.successes)),
                              health.lastFailure.map { .real($0.timeIntervalSinceReferenceDate) } ?? .null,
                              health.lastSuccess.map { .real($0.timeIntervalSinceReferenceDate) } ?? .null,
                              .real(health.bytesPerSecond)])
                }
            }
        }
    }

    // MARK: - Pending notifications

    /// Keeps a notification until its receiver acknowledges it (at-least-once delivery).
    /// - Returns: its sequence number, increasing for the life of the store.
    public func appendEvent(_ event: StoredEvent) throws(StoreError) -> Int64 {
        try connection.withLock { db throws(StoreError) in
            let rows = try db.query("""
                INSERT INTO events (owner, job_id, kind, file, time, payload) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq
                """, [.integer(Int64(event.owner)), .text(event.job.description), .text(event.kind),
                      event.file.map { .integer(Int64($0)) } ?? .null, .real(event.time.timeIntervalSinceReferenceDate), .text(event.payload)])
            return rows.first?.first?.int ?? 0
        }
    }

    /// Notifications not yet acknowledged, oldest first; `owner` nil means every user's.
    public func pendingEvents(owner: UInt32?, job: JobID? = nil) throws(StoreError) -> [StoredEvent] {
        try connection.withLock { db throws(StoreError) in
            var sql = "SELECT seq, owner, job_id, kind, file, time, payload FROM events WHERE 1 = 1"
            var values: [SQLValue] = []
            if let owner {
                sql += " AND owner = ?"
                values.append(.integer(Int64(owner)))
            }
            if let job {
                sql += " AND job_id = ?"
                values.append(.text(job.description))
            }
            return try db.query(sql + " ORDER BY seq", values).compactMap { row in
                guard let id = row[2].string.flatMap(JobID.init) else { return nil }
                return StoredEvent(sequence: row[0].int ?? 0, owner: UInt32(row[1].int ?? 0), job: id, kind: row[3].string ?? "",
                                   file: row[4].int.map { Int($0) }, time: Date(timeIntervalSinceReferenceDate: row[5].double ?? 0),
                                   payload: row[6].string ?? "{}")
            }
        }
    }

    /// Forgets `owner`'s notifications up to and including `sequence`.
    /// - Returns: how many were acknowledged.
    public func acknowledgeEvents(owner: UInt32, upTo sequence: Int64) throws(StoreError) -> Int {
        try connection.withLock { db throws(StoreError) in
            let rows = try db.query("DELETE FROM events WHERE owner = ? AND seq <= ? RETURNING seq",
                                    [.integer(Int64(owner)), .integer(sequence)])
            return rows.count
        }
    }

    // MARK: - Encoding

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        // Reference-date seconds round-trip exactly; seconds since 1970 lose a bit.
        encoder.dateEncodingStrategy = .deferredToDate
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .deferredToDate
        return decoder
    }()

    private static func encodeHeader(_ job: Job) -> String {
        // Encoding a Job cannot fail: every field is a plain value.
        (try? String(decoding: encoder.encode(job), as: UTF8.self)) ?? "{}"
    }

    /// Decodes job headers as JSON arrays, one slice per processor at the same time.
    private static func decodeHeaders(_ headers: [String]) throws -> [Job] {
        let slices = max(1, min(ProcessInfo.processInfo.activeProcessorCount, headers.count / 500))
        let size = (headers.count + slices - 1) / max(1, slices)
        let results = Mutex<[Int: Result<[Job], any Error>]>([:])
        DispatchQueue.concurrentPerform(iterations: slices) { slice in
            let part = headers[min(headers.count, slice * size)..<min(headers.count, (slice + 1) * size)]
            var list = "["
            list.reserveCapacity(part.reduce(2) { $0 + $1.utf8.count + 1 })
            for (offset, json) in part.enumerated() {
                if offset > 0 { list += "," }
                list += json
            }
            list += "]"
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .deferredToDate
            let result = Result { try decoder.decode([Job].self, from: Data(list.utf8)) }
            results.withLock { $0[slice] = result }
        }
        return try (0..<slices).flatMap { slice in try results.withLock { $0[slice]! }.get() }
    }

    /// A file's properties as a JSON object, keys sorted. Written by hand: it runs for every
    /// file row written, and a JSONEncoder per row cost more than the row itself.
    static func encodeProperties(_ properties: [String: String]) -> String {
        guard !properties.isEmpty else { return "{}" }
        var json = "{"
        for (offset, key) in properties.keys.sorted().enumerated() {
            if offset > 0 { json += "," }
            appendJSONString(key, to: &json)
            json += ":"
            appendJSONString(properties[key]!, to: &json)
        }
        return json + "}"
    }

    private static func appendJSONString(_ text: String, to json: inout String) {
        json += "\""
        // Most values (hashes, sizes, URLs) need no escape at all.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            json += text
            json += "\""
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    json.unicodeScalars.append(scalar)
                }
            }
        }
        json += "\""
    }

    private static func decodeProperties(_ json: String?) -> [String: String] {
        guard let json else { return [:] }
        return (try? decoder.decode([String: String].self, from: Data(json.utf8))) ?? [:]
    }
}
