import Foundation

/// A job's identity: a random UUID, printed in lowercase.
public struct JobID: Hashable, Codable, Sendable, CustomStringConvertible, Comparable {
    public let uuid: UUID
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
    /// Parses the printed form (with or without braces).
    public init?(_ text: String) {
        let trimmed = text.trimmingCharacters(in: CharacterSet(charactersIn: "{}"))
        guard let uuid = UUID(uuidString: trimmed) else { return nil }
        self.uuid = uuid
    }
    public var description: String { uuid.uuidString.lowercased() }
    public static func < (lhs: JobID, rhs: JobID) -> Bool { lhs.description < rhs.description }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = JobID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a job id: \(text)"))
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// One file of a download job: where it comes from, where it goes, how far it got.
public struct JobFile: Codable, Equatable, Sendable {
    /// The URL the bytes come from (`http`, `https` or `file`).
    public var remoteURL: String
    /// The absolute path the file gets when the job is completed.
    public var localPath: String
    /// Free key/value properties stored with the file (`sha256`, `size`, ...), read by validators.
    public var properties: [String: String]
    /// The size of the remote file; `nil` while unknown (BITS' `BG_SIZE_UNKNOWN`).
    public var bytesTotal: UInt64?
    /// Bytes written to the temporary file so far.
    public var bytesTransferred: UInt64
    /// All bytes are on disk and flushed: the file is ready to be committed.
    public var isTransferred: Bool
    /// `complete` renamed the temporary to ``localPath``.
    public var isCommitted: Bool
    /// The strong ETag of the remote file when its first byte arrived, used for `If-Range`.
    public var remoteETag: String?
    /// The `Last-Modified` of the remote file when its first byte arrived, used for `If-Range`.
    public var remoteLastModified: String?

    public init(remoteURL: String, localPath: String, properties: [String: String] = [:]) {
        self.remoteURL = remoteURL
        self.localPath = localPath
        self.properties = properties
        self.bytesTotal = nil
        self.bytesTransferred = 0
        self.isTransferred = false
        self.isCommitted = false
    }

    /// The property that lists a file's alternative URLs, separated by spaces.
    public static let mirrorsProperty = "mirrors"

    /// Alternative URLs serving the same bytes (the `mirrors` property), in the order given.
    public var mirrors: [String] {
        get { JobFile.mirrors(in: properties[JobFile.mirrorsProperty] ?? "") }
        set { properties[JobFile.mirrorsProperty] = newValue.isEmpty ? nil : newValue.joined(separator: " ") }
    }

    /// The URLs listed in a `mirrors` property value.
    public static func mirrors(in property: String) -> [String] {
        property.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
    }

    /// Every URL the file may come from: the current one first, then its mirrors.
    public var candidateURLs: [String] { [remoteURL] + mirrors.filter { $0 != remoteURL } }

    /// Makes `url` the file's source. When `url` is one of its mirrors, the current URL takes
    /// its place in the list, so no candidate is ever lost.
    public mutating func switchSource(to url: String) {
        guard url != remoteURL else { return }
        var list = mirrors
        if let position = list.firstIndex(of: url) { list[position] = remoteURL }
        mirrors = list
        remoteURL = url
    }

    /// Forget everything learnt about the remote file: the next transfer starts from zero.
    public mutating func resetProgress() {
        bytesTransferred = 0
        bytesTotal = nil
        isTransferred = false
        remoteETag = nil
        remoteLastModified = nil
    }
}

/// Progress of a whole job, as BITS' `BG_JOB_PROGRESS`.
public struct JobProgress: Codable, Equatable, Sendable {
    /// Sum of the files' sizes; `nil` while any size is unknown.
    public var bytesTotal: UInt64?
    public var bytesTransferred: UInt64
    public var filesTotal: Int
    public var filesTransferred: Int
}

/// A download job: its identity, its files, its state and its settings.
///
/// `Job` is a value type. Its state changes only through ``apply(_:at:)``,
/// which takes a ``JobEvent`` and returns the ``JobAction``s the engine must
/// carry out; it does no I/O and can be tested without a network or a disk.
public struct Job: Codable, Equatable, Sendable {
    public let id: JobID
    public var displayName: String
    public var description: String
    /// The uid of the user who created the job.
    public let owner: UInt32
    /// The owner's identity as the kernel reported it for the caller that created the job
    /// (uid, primary group and supplementary groups): every file of the job is read and
    /// written with it. `nil` for jobs recorded before it was kept, and for jobs run in the
    /// caller's own process; the agent then uses the account database.
    public internal(set) var ownerCredentials: Credentials?
    public var priority: JobPriority
    public internal(set) var state: JobState
    /// The job's files, in the order they were added. Stored apart from the job header.
    public internal(set) var files: JobFileList = []
    public let creationTime: Date
    public internal(set) var modificationTime: Date
    public internal(set) var transferCompletionTime: Date?
    /// Seconds to wait in `TRANSIENT_ERROR` before retrying (BITS' MinimumRetryDelay).
    public internal(set) var minimumRetryDelay: Double
    /// Seconds without progress after which a transient error becomes fatal; 0 makes every error fatal.
    public internal(set) var noProgressTimeout: Double
    /// The last error; set in `ERROR` and `TRANSIENT_ERROR`.
    public internal(set) var lastError: FerryError?
    /// When a job in `TRANSIENT_ERROR` is queued again.
    public internal(set) var retryAt: Date?
    /// When the job last stopped making progress because of an error; `nil` while it progresses.
    public internal(set) var noProgressSince: Date?
    /// Extra request headers sent with every request (`Name: value`).
    public internal(set) var customHeaders: [String]
    /// Free key/value properties of the job; plugins can be applied to jobs by property.
    public internal(set) var properties: [String: String] = [:]
    /// Complete the job by itself once every file is transferred (and validated).
    public internal(set) var autoComplete: Bool = false
    /// Which notifications subscribers receive for this job (BITS' SetNotifyFlags).
    public internal(set) var notifyFlags: NotifyFlags = .default
    /// A program and its arguments run (no shell) when the job reaches TRANSFERRED or ERROR
    /// (BITS' SetNotifyCmdLine); empty for none.
    public internal(set) var notifyCommand: [String] = []
    /// Seconds spent CONNECTING or TRANSFERRING so far (for the maximum download time).
    public internal(set) var activeSeconds: Double = 0
    /// What error policies decided about this job, oldest first (the last 50).
    public internal(set) var history: [String] = []
    /// How many times an error policy resumed this job (bounded by the engine).
    public internal(set) var policyResumes: Int = 0
    /// The job entered `ERROR` or `TRANSIENT_ERROR` and its error policies have not answered
    /// yet (one may be running, or asked to be called again). While it is set, the error is
    /// not the end: nobody is told of it, a retry waits, and a waiter keeps waiting.
    public internal(set) var deciding: Bool = false
    /// BITS' `DYNAMIC_CONTENT`: the files need no size and no ranges; an interrupted file
    /// starts again from zero. Pair it with ``maxFileBytes``.
    public internal(set) var dynamicContent: Bool = false
    /// The most bytes any one file of this job may have; `nil` for the agent's limit only.
    public internal(set) var maxFileBytes: UInt64?
    /// A PEM file of certificate authorities trusted for this job's `https` URLs, in addition
    /// to the system's. Verification itself can never be turned off.
    public internal(set) var tlsCAFile: String?
    /// The PEM text of ``tlsCAFile``, read once as the owner when it was set: libcurl gets
    /// these bytes, never the path, so nothing is read later with the agent's identity.
    public internal(set) var tlsCAData: String?
    /// A public key the job's `https` servers must present (`sha256//<base64>`, as libcurl's
    /// pinned public key); `nil` for no pin.
    public internal(set) var tlsPinnedPublicKey: String?

    /// The floor on the minimum retry delay, in seconds: low enough for a `Retry-After: 2` to
    /// be honoured as asked, high enough that no job hammers a server.
    public static let minimumRetryDelayFloor: Double = 1
    /// BITS' default minimum retry delay: 600 s.
    public static let defaultMinimumRetryDelay: Double = 600
    /// BITS' default no-progress timeout: 14 days.
    public static let defaultNoProgressTimeout: Double = 1_209_600

    public init(
        id: JobID = JobID(), displayName: String, description: String = "", owner: UInt32,
        ownerCredentials: Credentials? = nil, priority: JobPriority = .normal, createdAt: Date,
        minimumRetryDelay: Double = Job.defaultMinimumRetryDelay,
        noProgressTimeout: Double = Job.defaultNoProgressTimeout
    ) {
        self.id = id
        self.displayName = displayName
        self.description = description
        self.owner = owner
        self.ownerCredentials = ownerCredentials.map { $0.uid == owner ? $0 : Credentials(uid: owner, gid: $0.gid, groups: $0.groups) }
        self.priority = priority
        self.state = .suspended
        self.creationTime = createdAt
        self.modificationTime = createdAt
        self.minimumRetryDelay = minimumRetryDelay.isFinite ? max(minimumRetryDelay, Job.minimumRetryDelayFloor) : Job.defaultMinimumRetryDelay
        self.noProgressTimeout = noProgressTimeout.isNaN ? Job.defaultNoProgressTimeout : max(0, noProgressTimeout)
        self.customHeaders = []
    }

    /// Progress summed over the files (kept up to date by ``JobFileList``: no file is visited).
    public var progress: JobProgress {
        JobProgress(bytesTotal: files.unknownSizeCount == 0 ? files.bytesTotalKnown : nil, bytesTransferred: files.bytesTransferred,
                    filesTotal: files.count, filesTransferred: files.transferredCount)
    }

    private enum CodingKeys: String, CodingKey {
        case id, displayName, description, owner, ownerCredentials, priority, state, creationTime, modificationTime
        case transferCompletionTime, minimumRetryDelay, noProgressTimeout, lastError, retryAt, noProgressSince
        case customHeaders, properties, autoComplete, notifyFlags, notifyCommand, activeSeconds, history, policyResumes, deciding
        case dynamicContent, maxFileBytes, tlsCAFile, tlsCAData, tlsPinnedPublicKey
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(JobID.self, forKey: .id)
        displayName = try c.decode(String.self, forKey: .displayName)
        description = try c.decode(String.self, forKey: .description)
        owner = try c.decode(UInt32.self, forKey: .owner)
        ownerCredentials = try c.decodeIfPresent(Credentials.self, forKey: .ownerCredentials)
        priority = try c.decode(JobPriority.self, forKey: .priority)
        state = try c.decode(JobState.self, forKey: .state)
        creationTime = try c.decode(Date.self, forKey: .creationTime)
        modificationTime = try c.decode(Date.self, forKey: .modificationTime)
        transferCompletionTime = try c.decodeIfPresent(Date.self, forKey: .transferCompletionTime)
        minimumRetryDelay = try c.decode(Double.self, forKey: .minimumRetryDelay)
        noProgressTimeout = try c.decode(Double.self, forKey: .noProgressTimeout)
        lastError = try c.decodeIfPresent(FerryError.self, forKey: .lastError)
        retryAt = try c.decodeIfPresent(Date.self, forKey: .retryAt)
        noProgressSince = try c.decodeIfPresent(Date.self, forKey: .noProgressSince)
        // Fields added later decode with their defaults from records that lack them.
        customHeaders = try c.decodeIfPresent([String].self, forKey: .customHeaders) ?? []
        properties = try c.decodeIfPresent([String: String].self, forKey: .properties) ?? [:]
        autoComplete = try c.decodeIfPresent(Bool.self, forKey: .autoComplete) ?? false
        notifyFlags = try c.decodeIfPresent(NotifyFlags.self, forKey: .notifyFlags) ?? .default
        notifyCommand = try c.decodeIfPresent([String].self, forKey: .notifyCommand) ?? []
        activeSeconds = try c.decodeIfPresent(Double.self, forKey: .activeSeconds) ?? 0
        history = try c.decodeIfPresent([String].self, forKey: .history) ?? []
        policyResumes = try c.decodeIfPresent(Int.self, forKey: .policyResumes) ?? 0
        deciding = try c.decodeIfPresent(Bool.self, forKey: .deciding) ?? false
        dynamicContent = try c.decodeIfPresent(Bool.self, forKey: .dynamicContent) ?? false
        maxFileBytes = try c.decodeIfPresent(UInt64.self, forKey: .maxFileBytes)
        tlsCAFile = try c.decodeIfPresent(String.self, forKey: .tlsCAFile)
        tlsCAData = try c.decodeIfPresent(String.self, forKey: .tlsCAData)
        tlsPinnedPublicKey = try c.decodeIfPresent(String.self, forKey: .tlsPinnedPublicKey)
    }

    /// Rebuilds a job from its persisted header (encoded without files) and its file rows.
    public init(persistedHeader header: Job, files: [JobFile]) {
        self = header
        self.files = JobFileList(files)
    }

    /// Rebuilds a job from a header and a file list.
    public init(persistedHeader header: Job, files: JobFileList) {
        self = header
        self.files = files
    }

    /// The hidden temporary a file is downloaded to: in the destination's directory,
    /// named after the destination, the job and the file's index, so that it is
    /// found again after a restart and never collides with another job's.
    public func temporaryPath(ofFile index: Int) -> String {
        let (directory, _) = Job.split(files[index].localPath)
        return "\(directory == "/" ? "" : directory)/\(temporaryName(ofFile: index))"
    }

    /// The name of file `index`'s temporary within its destination's directory.
    public func temporaryName(ofFile index: Int) -> String {
        let (_, name) = Job.split(files[index].localPath)
        return ".\(name).ferry-\(id.description.prefix(8))-\(index).part"
    }

    /// A path's directory and last component (`/a/b` → `/a`, `b`; `/b` → `/`, `b`).
    public static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        return (directory, String(path[path.index(after: slash)...]))
    }

    /// Indices of the files that still need bytes (visits every file: prefer ``hasPendingFiles``).
    public var pendingFileIndices: [Int] { files.indices.filter { !files[$0].isTransferred } }

    /// Whether some file still needs bytes; no file is visited.
    public var hasPendingFiles: Bool { files.transferredCount < files.count }

    /// How many files still need bytes; no file is visited.
    public var pendingFileCount: Int { files.count - files.transferredCount }
}

/// Which notifications a job sends, as BITS' `BG_NOTIFY_*` flags (same bit values).
public struct NotifyFlags: OptionSet, Codable, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let jobTransferred = NotifyFlags(rawValue: 0x1)
    public static let jobError = NotifyFlags(rawValue: 0x2)
    /// Overrides every other flag.
    public static let disable = NotifyFlags(rawValue: 0x4)
    public static let jobModification = NotifyFlags(rawValue: 0x8)
    public static let fileTransferred = NotifyFlags(rawValue: 0x10)

    /// BITS' default: job transferred and job error.
    public static let `default`: NotifyFlags = [.jobTransferred, .jobError]
    public static let known: NotifyFlags = [.jobTransferred, .jobError, .disable, .jobModification, .fileTransferred]

    /// Whether `flag` is on, `disable` taken into account.
    public func delivers(_ flag: NotifyFlags) -> Bool { !contains(.disable) && contains(flag) }
}

/// Who a job acts as: a user id, its primary group and its supplementary groups, as the
/// kernel reported them for the process that created the job (`SO_PEERCRED`,
/// `SO_PEERGROUPS`). The agent reads and writes a job's files with exactly these.
public struct Credentials: Codable, Sendable, Equatable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups, as the caller held them (not as the account database lists them).
    public var groups: [UInt32]

    public init(uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}
