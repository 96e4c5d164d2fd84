/// A stable error code, modelled on BITS' `BG_E_*` values.
///
/// Codes are strings so that logs, the store and the control API show the
/// same spelling; they are append-only and never reused.
public struct ErrorCode: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// A call that the job's current state does not allow (`BG_E_INVALID_STATE`).
    public static let invalidState = ErrorCode(rawValue: "INVALID_STATE")
    /// `resume` on a job with no files (`BG_E_EMPTY`).
    public static let empty = ErrorCode(rawValue: "EMPTY")
    /// The connection could not be made or was lost (`BG_E_NETWORK_DISCONNECTED`).
    public static let networkDisconnected = ErrorCode(rawValue: "NETWORK_DISCONNECTED")
    /// The server did not answer in time, or the transfer stalled.
    public static let timeout = ErrorCode(rawValue: "TIMEOUT")
    /// A resumed transfer was answered with the whole file (`BG_E_INSUFFICIENT_RANGE_SUPPORT`).
    public static let insufficientRangeSupport = ErrorCode(rawValue: "INSUFFICIENT_RANGE_SUPPORT")
    /// A 206 whose `Content-Range` is not the range that was asked for (`BG_E_INVALID_RANGE`).
    public static let invalidRange = ErrorCode(rawValue: "INVALID_RANGE")
    /// The body ended before the length the server announced.
    public static let truncatedBody = ErrorCode(rawValue: "TRUNCATED_BODY")
    /// More bytes arrived than the file's known or maximum size.
    public static let fileTooLarge = ErrorCode(rawValue: "FILE_TOO_LARGE")
    /// A local file could not be created, written, renamed or removed.
    public static let localFileError = ErrorCode(rawValue: "LOCAL_FILE_ERROR")
    /// The destination directory does not exist or is not a directory.
    public static let destinationMissing = ErrorCode(rawValue: "DESTINATION_MISSING")
    /// The URL is malformed or uses a scheme Ferry does not fetch.
    public static let unsupportedURL = ErrorCode(rawValue: "UNSUPPORTED_URL")
    /// TLS failed: handshake, certificate verification, or a refused downgrade.
    public static let tlsError = ErrorCode(rawValue: "TLS_ERROR")
    /// An `https` URL redirected to plain `http`; refused, as a downgrade.
    public static let insecureRedirect = ErrorCode(rawValue: "INSECURE_REDIRECT")
    /// The transport failed in a way not covered by a more precise code.
    public static let transportError = ErrorCode(rawValue: "TRANSPORT_ERROR")
    /// A validator set the file invalid (`BG_E_VALIDATION_FAILED`); reserved for validators.
    public static let validationFailed = ErrorCode(rawValue: "VALIDATION_FAILED")
    /// The job spent longer than its maximum download time connecting or transferring.
    public static let maxDownloadTimeout = ErrorCode(rawValue: "MAXDOWNLOAD_TIMEOUT")
    /// A job property has a value out of range, or a file could not be added.
    public static let invalidArgument = ErrorCode(rawValue: "INVALID_ARGUMENT")
    /// The job does not exist (or belongs to someone else).
    public static let notFound = ErrorCode(rawValue: "NOT_FOUND")
    /// The job's owner may not write where a file is to go.
    public static let accessDenied = ErrorCode(rawValue: "ACCESS_DENIED")
    /// The user has too many jobs, or the job too many files (`BG_E_TOO_MANY_JOBS_PER_USER`, `BG_E_TOO_MANY_FILES_IN_JOB`).
    public static let quotaExceeded = ErrorCode(rawValue: "QUOTA_EXCEEDED")
    /// A `file:` source (or a file the job names, such as its CA file) is not a regular file:
    /// a FIFO, a device, a socket or a directory. Ferry reads only regular files for a job.
    public static let notARegularFile = ErrorCode(rawValue: "NOT_A_REGULAR_FILE")

    /// The destination's file system is full, or the owner's disk quota is reached (`ENOSPC`,
    /// `EDQUOT`). Transient: the job retries by itself once there is room again.
    public static let diskFull = ErrorCode(rawValue: "DISK_FULL")
    /// The agent is at one of its limits for this caller or in total (open connections, event
    /// streams, running notify commands): try again later.
    public static let busy = ErrorCode(rawValue: "BUSY")

    /// A plugin crashed the process while it handled this file (or it is disabled after
    /// crashing too often): the file fails, the agent goes on.
    public static let pluginCrashed = ErrorCode(rawValue: "PLUGIN_CRASHED")

    /// `HTTP_ERROR_<status>`, as BITS' `BG_E_HTTP_ERROR_nnn`.
    public static func httpError(_ status: Int) -> ErrorCode { ErrorCode(rawValue: "HTTP_ERROR_\(status)") }
}

/// Where an error happened, as BITS' `BG_ERROR_CONTEXT`.
public enum ErrorContext: String, Codable, Sendable, CaseIterable {
    case none
    case unknown
    case queueManager
    case notification
    case localFile
    case remoteFile
    case transport
    case validation
}

/// The last error of a job, or the typed error of a refused call.
///
/// Carries the stable ``code``, the ``context`` it happened in, the HTTP
/// status if any, the index of the file concerned and a sentence a person can
/// act on.
public struct FerryError: Error, Codable, Equatable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var context: ErrorContext
    /// True when the failure may go away by itself (network, 5xx, 408, 429, timeouts).
    public var isTransient: Bool
    public var httpStatus: Int?
    /// The index of the file the error concerns, within its job.
    public var fileIndex: Int?
    /// The delay the server asked for (`Retry-After`), in seconds.
    public var retryAfterSeconds: Double?
    /// The size of the remote file when the server told it.
    public var remoteSize: UInt64?
    /// The library's own code for the failure (libcurl, SQLite, errno), when one caused it.
    public var underlying: UnderlyingError?
    public var message: String

    /// - Parameter isTransient: `nil` takes the code's nature (``ErrorCode/isTransient``).
    public init(
        code: ErrorCode, context: ErrorContext, isTransient: Bool? = nil, httpStatus: Int? = nil,
        fileIndex: Int? = nil, retryAfterSeconds: Double? = nil, remoteSize: UInt64? = nil,
        underlying: UnderlyingError? = nil, message: String
    ) {
        self.code = code
        self.context = context
        self.isTransient = isTransient ?? code.isTransient
        self.underlying = underlying
        self.httpStatus = httpStatus
        self.fileIndex = fileIndex
        self.retryAfterSeconds = retryAfterSeconds
        self.remoteSize = remoteSize
        self.message = message
    }

    public var description: String { "\(code) (\(context)): \(message)" }

    /// A call refused because of the job's state.
    public static func invalidState(_ state: JobState, _ operation: String) -> FerryError {
        FerryError(code: .invalidState, context: .queueManager, message: "cannot \(operation) a job in state \(state.rawValue)")
    }
}
