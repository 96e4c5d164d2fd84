/// How Ferry's programs end: one table for `ferry` and `ferryd` (sysexits.h where one fits).
/// docs/cli.md and docs/configuration.md list what each status means for each program.
public enum ExitStatus {
    public static let success: Int32 = 0
    /// The job or the operation failed (a fatal job error; the agent refused for another reason).
    public static let jobFailed: Int32 = 1
    /// No such job (the API answered 404).
    public static let notFound: Int32 = 2
    /// EX_USAGE: the command line is wrong.
    public static let usage: Int32 = 64
    /// EX_DATAERR: a manifest, list or argument the agent or the engine cannot use.
    public static let badInput: Int32 = 65
    /// EX_UNAVAILABLE: the agent cannot be reached or cannot start; the store, the state
    /// directory or a plugin is unusable.
    public static let cannotRun: Int32 = 69
    /// EX_TEMPFAIL: the same transfer is already running, or the agent is too busy to answer.
    public static let busy: Int32 = 75
    /// EX_NOPERM: the agent refused the caller, or its socket is closed to the caller.
    public static let permission: Int32 = 77
    /// EX_CONFIG: `ferryd`'s configuration has an error.
    public static let configuration: Int32 = 78
    /// 128 + SIGINT.
    public static let interrupted: Int32 = 130
}

extension ErrorCode {
    /// What an error with this code says to the outside, in one place: the control API's
    /// answer, the exit status of a program that ends with it, and whether it may go away by
    /// itself.
    public struct Mapping: Equatable, Sendable {
        /// The HTTP status of the control API's answer refusing a request with this code.
        public var httpStatus: Int
        /// The exit status of `ferry` when a request or its job ends with this code.
        public var exitStatus: Int32
        /// Whether a failure with this code is retried by itself (network, timeouts, a full
        /// disk, 5xx, 408, 429). The place that raises an error may know better and say so.
        public var isTransient: Bool
    }

    /// This code's mapping (``Mapping``).
    public var mapping: Mapping {
        if let status = httpErrorStatus {
            // A server's answer failed the job; transient as BITS retries them.
            return Mapping(httpStatus: 500, exitStatus: ExitStatus.jobFailed, isTransient: status >= 500 || status == 408 || status == 429)
        }
        return Self.table[self] ?? Mapping(httpStatus: 500, exitStatus: ExitStatus.jobFailed, isTransient: false)
    }

    /// The HTTP status of the control API's answer refusing a request with this code.
    public var httpStatus: Int { mapping.httpStatus }
    /// The exit status of `ferry` when a request or its job ends with this code.
    public var exitStatus: Int32 { mapping.exitStatus }
    /// Whether a failure with this code is, by its nature, retried by itself.
    public var isTransient: Bool { mapping.isTransient }

    /// `N` for `HTTP_ERROR_N`.
    public var httpErrorStatus: Int? {
        guard rawValue.hasPrefix("HTTP_ERROR_") else { return nil }
        return Int(rawValue.dropFirst("HTTP_ERROR_".count))
    }

    private static let table: [ErrorCode: Mapping] = {
        func entry(_ http: Int, _ exit: Int32, transient: Bool = false) -> Mapping {
            Mapping(httpStatus: http, exitStatus: exit, isTransient: transient)
        }
        return [
            // A caller's request the agent refuses.
            .notFound: entry(404, ExitStatus.notFound),
            .invalidState: entry(409, ExitStatus.jobFailed),
            .empty: entry(409, ExitStatus.jobFailed),
            .accessDenied: entry(403, ExitStatus.permission),
            .quotaExceeded: entry(403, ExitStatus.permission),
            .invalidArgument: entry(400, ExitStatus.badInput),
            .unsupportedURL: entry(400, ExitStatus.badInput),
            .destinationMissing: entry(400, ExitStatus.badInput),
            .notARegularFile: entry(400, ExitStatus.badInput),
            .busy: entry(503, ExitStatus.busy, transient: true),
            // A job that fails: the request that reports it succeeded; ferry exits 1.
            .networkDisconnected: entry(500, ExitStatus.jobFailed, transient: true),
            .timeout: entry(500, ExitStatus.jobFailed, transient: true),
            .truncatedBody: entry(500, ExitStatus.jobFailed, transient: true),
            .diskFull: entry(500, ExitStatus.jobFailed, transient: true),
        ]
    }()
}

/// The code a library gave for a failure, kept with the error beside Ferry's own code.
public struct UnderlyingError: Codable, Equatable, Sendable, CustomStringConvertible {
    /// Which library: `"curl"` (a `CURLcode`), `"sqlite"` (an extended result code),
    /// `"errno"`, `"openssl"`.
    public var library: String
    public var code: Int32

    public init(library: String, code: Int32) {
        self.library = library
        self.code = code
    }

    public var description: String { "\(library) \(code)" }
}
