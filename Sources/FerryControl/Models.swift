import FerryCore
import Foundation

// The control API's JSON documents (version 1). Field names are camelCase;
// times are ISO 8601; sizes are bytes (null = unknown); durations are seconds.

/// A job as the API shows it.
public struct JobDocument: Codable, Sendable, Equatable {
    public var id: String
    public var displayName: String
    public var description: String
    public var owner: UInt32
    public var priority: JobPriority
    public var state: JobState
    public var created: Date
    public var modified: Date
    public var transferCompleted: Date?
    public var progress: ProgressDocument
    public var minRetryDelaySec: Double
    public var noProgressTimeoutSec: Double
    public var retryAt: Date?
    public var error: ErrorDocument?
    public var properties: [String: String]
    public var autoComplete: Bool
    public var notifyFlags: UInt32
    public var notifyCommand: [String]
    public var customHeaders: [String]
    /// What error policies decided about the job, oldest first.
    public var history: [String]
    /// The job is in ERROR or TRANSIENT_ERROR and its error policies have not answered yet:
    /// the error may still be handled (a mirror, a retry, a fallback) and is not the end.
    public var deciding: Bool
    /// BITS' `DYNAMIC_CONTENT`: no size or ranges needed; an interrupted file starts again from zero.
    public var dynamicContent: Bool
    /// The most bytes any one file of the job may have; absent when only the agent's limit applies.
    public var maxFileBytes: UInt64?
    /// A PEM file of certificate authorities trusted for the job's `https` URLs besides the system's.
    public var tlsCAFile: String?
    /// The public key the job's `https` servers must present, `sha256//<base64>`.
    public var tlsPinnedPublicKey: String?
    public var files: [FileDocument]

    /// - Parameters:
    ///   - includingFiles: `false` leaves ``files`` empty (``progress`` still counts every
    ///     file): the answer then costs the same for one file or 100,000.
    ///   - fileRange: the page of files to include (clamped to the job's files); `nil` for all.
    public init(_ job: Job, includingFiles: Bool = true, fileRange: Range<Int>? = nil) {
        id = job.id.description
        displayName = job.displayName
        description = job.description
        owner = job.owner
        priority = job.priority
        state = job.state
        created = job.creationTime
        modified = job.modificationTime
        transferCompleted = job.transferCompletionTime
        progress = ProgressDocument(job.progress)
        minRetryDelaySec = job.minimumRetryDelay
        noProgressTimeoutSec = job.noProgressTimeout
        retryAt = job.retryAt
        error = job.lastError.map(ErrorDocument.init)
        properties = job.properties
        autoComplete = job.autoComplete
        notifyFlags = job.notifyFlags.rawValue
        notifyCommand = job.notifyCommand
        customHeaders = job.customHeaders
        history = job.history
        deciding = job.deciding
        dynamicContent = job.dynamicContent
        maxFileBytes = job.maxFileBytes
        tlsCAFile = job.tlsCAFile
        tlsPinnedPublicKey = job.tlsPinnedPublicKey
        if includingFiles {
            let range = (fileRange ?? 0..<job.files.count).clamped(to: 0..<job.files.count)
            files = range.map { FileDocument(index: $0, file: job.files[$0]) }
        } else {
            files = []
        }
    }
}

public struct ProgressDocument: Codable, Sendable, Equatable {
    public var bytesTotal: UInt64?
    public var bytesTransferred: UInt64
    public var filesTotal: Int
    public var filesTransferred: Int

    public init(_ progress: JobProgress) {
        bytesTotal = progress.bytesTotal
        bytesTransferred = progress.bytesTransferred
        filesTotal = progress.filesTotal
        filesTransferred = progress.filesTransferred
    }
}

public struct FileDocument: Codable, Sendable, Equatable {
    public var index: Int
    public var url: String
    public var path: String
    public var bytesTotal: UInt64?
    public var bytesTransferred: UInt64
    public var transferred: Bool
    public var committed: Bool
    public var properties: [String: String]
    /// Alternative URLs serving the same bytes, in the order given (the file's `mirrors` property).
    public var mirrors: [String]

    public init(index: Int, file: JobFile) {
        self.index = index
        url = file.remoteURL
        path = file.localPath
        bytesTotal = file.bytesTotal
        bytesTransferred = file.bytesTransferred
        transferred = file.isTransferred
        committed = file.isCommitted
        properties = file.properties
        mirrors = file.mirrors
    }
}

/// A job's error (BITS' GetError), or the error of a refused request.
public struct ErrorDocument: Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var context: String
    public var message: String
    public var transient: Bool?
    public var httpStatus: Int?
    public var file: Int?
    public var retryAfterSec: Double?
    public var remoteSize: UInt64?

    public init(_ error: FerryError) {
        code = error.code.rawValue
        context = error.context.rawValue
        message = error.message
        transient = error.isTransient
        httpStatus = error.httpStatus
        file = error.fileIndex
        retryAfterSec = error.retryAfterSeconds
        remoteSize = error.remoteSize
    }

    public init(code: String, context: String, message: String) {
        self.code = code
        self.context = context
        self.message = message
    }

    public var description: String { "\(code) (\(context)): \(message)" }
}

/// The body of every refused request: `{"error": {...}}`.
public struct ErrorEnvelope: Codable, Sendable, Equatable {
    public var error: ErrorDocument
    public init(error: ErrorDocument) { self.error = error }
}

public struct JobList: Codable, Sendable, Equatable {
    public var jobs: [JobDocument]
    /// Present when more jobs follow: pass it as `?after=` for the next page.
    public var next: String?
    public init(jobs: [JobDocument], next: String? = nil) {
        self.jobs = jobs
        self.next = next
    }
}

/// How answers are paged (`GET /v1/jobs`, a job's files).
public enum Paging {
    /// Jobs in one `GET /v1/jobs` page: the default and the most.
    public static let defaultJobs = 100
    public static let maxJobs = 1_000
    /// Files of one job in one answer: the default and the most.
    public static let defaultFiles = 1_000
    public static let maxFiles = 10_000

    /// The cursor that follows `job` in the listing order (creation time, then id).
    public static func cursor(after job: Job) -> String {
        "\(job.creationTime.timeIntervalSince1970)_\(job.id)"
    }

    /// Whether `cursor` has the form of one ``cursor(after:)`` gives.
    public static func isCursor(_ cursor: String) -> Bool { parse(cursor) != nil }

    /// Whether `job` comes after `cursor` in the listing order; `nil` when the cursor is not one.
    public static func job(_ job: Job, follows cursor: String) -> Bool? {
        guard let (time, id) = parse(cursor) else { return nil }
        let created = job.creationTime.timeIntervalSince1970
        return created > time || (created == time && job.id.description > id)
    }

    private static func parse(_ cursor: String) -> (time: Double, id: String)? {
        let parts = cursor.split(separator: "_", maxSplits: 1)
        guard parts.count == 2, let time = Double(parts[0]), time.isFinite, JobID(String(parts[1])) != nil else { return nil }
        return (time, String(parts[1]))
    }
}

/// A file to add: `{"url": "...", "path": "/abs", "properties": {...}, "mirrors": [...]}`.
public struct NewFileDocument: Codable, Sendable, Equatable {
    public var url: String
    public var path: String
    public var properties: [String: String]?
    /// Alternative URLs serving the same bytes; stored in the file's `mirrors` property.
    public var mirrors: [String]?

    public init(url: String, path: String, properties: [String: String]? = nil, mirrors: [String]? = nil) {
        self.url = url
        self.path = path
        self.properties = properties
        self.mirrors = mirrors
    }
}

/// `POST /v1/jobs`.
public struct CreateJobRequest: Codable, Sendable, Equatable {
    public var displayName: String
    public var description: String?
    public var priority: JobPriority?
    public var files: [NewFileDocument]?
    public var settings: JobSettings?

    public init(displayName: String, description: String? = nil, priority: JobPriority? = nil,
                files: [NewFileDocument]? = nil, settings: JobSettings? = nil) {
        self.displayName = displayName
        self.description = description
        self.priority = priority
        self.files = files
        self.settings = settings
    }
}

/// `POST /v1/jobs/{id}/files`.
public struct AddFilesRequest: Codable, Sendable, Equatable {
    public var files: [NewFileDocument]
    public init(files: [NewFileDocument]) { self.files = files }
}

/// `PATCH /v1/jobs/{id}`: every field optional; those present are applied in this order.
public struct JobSettings: Codable, Sendable, Equatable {
    /// The longest `minRetryDelaySec` and `noProgressTimeoutSec` accepted: 2^32-1 seconds
    /// (about 136 years), BITS' own bound for both (a ULONG of seconds).
    public static let maxSeconds: Double = 4_294_967_295

    public var displayName: String?
    public var description: String?
    public var priority: JobPriority?
    public var minRetryDelaySec: Double?
    public var noProgressTimeoutSec: Double?
    public var customHeaders: [String]?
    public var notifyFlags: UInt32?
    public var notifyCommand: [String]?
    public var properties: [String: String]?
    /// BITS' `DYNAMIC_CONTENT` on or off; absent keeps the job's, also when only `maxFileBytes` is given.
    public var dynamicContent: Bool?
    /// The most bytes a file of the job may have; 0 removes the job's limit.
    public var maxFileBytes: UInt64?
    /// An absolute path to a PEM file of extra certificate authorities; `""` removes it.
    public var tlsCAFile: String?
    /// A public key pin, `sha256//<base64>`; `""` removes it.
    public var tlsPinnedPublicKey: String?
    public var autoComplete: Bool?

    public init(displayName: String? = nil, description: String? = nil, priority: JobPriority? = nil,
                minRetryDelaySec: Double? = nil, noProgressTimeoutSec: Double? = nil, customHeaders: [String]? = nil,
                notifyFlags: UInt32? = nil, notifyCommand: [String]? = nil, properties: [String: String]? = nil,
                dynamicContent: Bool? = nil, maxFileBytes: UInt64? = nil, tlsCAFile: String? = nil,
                tlsPinnedPublicKey: String? = nil, autoComplete: Bool? = nil) {
        self.displayName = displayName
        self.description = description
        self.priority = priority
        self.minRetryDelaySec = minRetryDelaySec
        self.noProgressTimeoutSec = noProgressTimeoutSec
        self.customHeaders = customHeaders
        self.notifyFlags = notifyFlags
        self.notifyCommand = notifyCommand
        self.properties = properties
        self.dynamicContent = dynamicContent
        self.maxFileBytes = maxFileBytes
        self.tlsCAFile = tlsCAFile
        self.tlsPinnedPublicKey = tlsPinnedPublicKey
        self.autoComplete = autoComplete
    }
}

/// `PUT /v1/jobs/{id}/files/{index}/url`.
public struct RemoteURLRequest: Codable, Sendable, Equatable {
    public var url: String
    public init(url: String) { self.url = url }
}

/// `POST /v1/jobs/{id}/files/{index}/mirrors`: `{"urls": [...]}`.
public struct AddMirrorsRequest: Codable, Sendable, Equatable {
    public var urls: [String]
    public init(urls: [String]) { self.urls = urls }
}

/// `POST /v1/jobs/{id}/replace-remote-prefix`.
public struct ReplacePrefixRequest: Codable, Sendable, Equatable {
    public var old: String
    public var new: String
    public init(old: String, new: String) {
        self.old = old
        self.new = new
    }
}

/// One notification on `GET /v1/events` (one JSON object per line).
public struct EventDocument: Codable, Sendable, Equatable {
    /// Increasing across the agent's life (persisted): use it to acknowledge.
    public var sequence: Int64
    /// `fileTransferred`, `jobTransferred`, `jobError`, `jobModification`.
    public var kind: String
    public var time: Date
    public var job: JobDocument
    /// The file concerned (`fileTransferred`).
    public var file: Int?

    public init(sequence: Int64, kind: String, time: Date, job: JobDocument, file: Int?) {
        self.sequence = sequence
        self.kind = kind
        self.time = time
        self.job = job
        self.file = file
    }
}

/// The last line of an event stream the agent closed (its reader fell too far behind):
/// `{"kind": "streamClosed", "time": …, "reason": …}`.
public struct StreamNotice: Codable, Sendable, Equatable {
    public static let closedKind = "streamClosed"
    public var kind: String
    public var time: Date
    public var reason: String

    public init(kind: String, time: Date, reason: String) {
        self.kind = kind
        self.time = time
        self.reason = reason
    }
}

/// `GET /v1/health`.
public struct HealthDocument: Codable, Sendable, Equatable {
    public var version: String
    public var uptimeSec: Double
    public var jobs: Int
    /// The event streams the caller follows (root: every stream open).
    public var eventStreams: Int
    public var plugins: [String]
    /// Plugins disabled after crashing the agent `crashes` times; absent when none is.
    public var disabledPlugins: [DisabledPluginDocument]?

    public init(version: String, uptimeSec: Double, jobs: Int, eventStreams: Int = 0, plugins: [String], disabledPlugins: [DisabledPluginDocument]? = nil) {
        self.version = version
        self.uptimeSec = uptimeSec
        self.jobs = jobs
        self.eventStreams = eventStreams
        self.plugins = plugins
        self.disabledPlugins = disabledPlugins
    }
}

/// A plugin the agent no longer calls, after it crashed the agent too often
/// (until the plugin configuration changes).
public struct DisabledPluginDocument: Codable, Sendable, Equatable {
    public var plugin: String
    public var crashes: Int

    public init(plugin: String, crashes: Int) {
        self.plugin = plugin
        self.crashes = crashes
    }
}

/// What the agent remembers of one source (`GET /v1/sources`).
public struct SourceDocument: Codable, Sendable, Equatable {
    /// `scheme://host:port`, lowercased, the port always written.
    public var origin: String
    /// Files that failed from this origin, ever.
    public var failures: UInt64
    /// Failures since the last success.
    public var consecutiveFailures: UInt32
    /// Files that arrived whole (and valid) from this origin.
    public var successes: UInt64
    public var lastFailure: Date?
    public var lastSuccess: Date?
    /// A moving average of the throughput of its finished files; 0 while unknown.
    public var bytesPerSecond: Double

    public init(_ health: SourceHealth) {
        origin = health.origin
        failures = health.failures
        consecutiveFailures = health.consecutiveFailures
        successes = health.successes
        lastFailure = health.lastFailure
        lastSuccess = health.lastSuccess
        bytesPerSecond = health.bytesPerSecond
    }
}

/// `GET /v1/sources`.
public struct SourceList: Codable, Sendable, Equatable {
    public var sources: [SourceDocument]
    public init(sources: [SourceDocument]) { self.sources = sources }
}

/// JSON coding shared by the agent and its clients.
public enum ControlJSON {
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    public static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}
