import FerryPluginABI
#if canImport(Glibc)
import Glibc
#endif

/// Writing a Ferry plugin in Swift: implement ``FerryPlugin`` and export the entry.
///
/// ```swift
/// final class MyValidator: FerryPlugin {
///     init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {}
///     func fileTransferred(job: PluginJob, file: PluginFile) -> PluginOutcome {
///         file.setValidationState(valid: true, reason: "looks fine")
///         return .ok
///     }
/// }
///
/// @_cdecl("ferry_plugin_v1")
/// public func ferryPluginV1() -> UnsafeRawPointer {
///     PluginKit.descriptor(name: "mine", version: "1.0.0", roles: .validator, type: MyValidator.self)
/// }
/// ```
/// Each plugin links its own copy of this module, so its globals are per plugin.
public protocol FerryPlugin: AnyObject {
    /// Makes the instance from the plugin's settings in the agent's configuration.
    /// - Throws: ``PluginFailure`` with a message naming the bad setting.
    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure)
    /// A file's bytes are complete: judge it with ``PluginFile/setValidationState(valid:reason:)``.
    func fileTransferred(job: PluginJob, file: PluginFile) -> PluginOutcome
    /// Every file of the job is transferred.
    func jobTransferred(job: PluginJob) -> PluginOutcome
    /// The job entered ERROR (or TRANSIENT_ERROR, for policies that asked for it).
    func jobError(job: PluginJob, error: PluginError) -> PluginOutcome
}

extension FerryPlugin {
    public func fileTransferred(job: PluginJob, file: PluginFile) -> PluginOutcome { .ok }
    public func jobTransferred(job: PluginJob) -> PluginOutcome { .ok }
    public func jobError(job: PluginJob, error: PluginError) -> PluginOutcome { .ok }
}

/// What a callback answers.
public enum PluginOutcome: Equatable, Sendable {
    case ok
    /// Call this callback again later.
    case retryLater
    /// The plugin failed; the text is logged.
    case failed(String)
}

/// A plugin's own failure, with a message for the log.
public struct PluginFailure: Error, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// The roles a plugin takes.
public struct PluginRoles: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let validator = PluginRoles(rawValue: UInt32(FERRY_ROLE_VALIDATOR))
    public static let errorPolicy = PluginRoles(rawValue: UInt32(FERRY_ROLE_ERROR_POLICY))
}

/// Flags a plugin declares.
public struct PluginFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let singleThreaded = PluginFlags(rawValue: UInt32(FERRY_PLUGIN_SINGLE_THREADED))
    public static let wantsTransientErrors = PluginFlags(rawValue: UInt32(FERRY_PLUGIN_WANTS_TRANSIENT_ERRORS))
}

/// The host's functions, for logging outside a job.
public struct PluginHostAccess: @unchecked Sendable {
    let table: UnsafePointer<ferry_host>

    public func log(_ level: LogLevel, _ message: String) { table.pointee.log(level.rawValue, message) }

    public enum LogLevel: Int32, Sendable {
        case debug = 0, info = 1, warning = 2, error = 3
    }
}

/// A job, during one callback.
public struct PluginJob {
    let host: UnsafePointer<ferry_host>
    let handle: OpaquePointer

    public var id: String { host.pointee.job_id(handle).map { String(cString: $0) } ?? "" }
    public var displayName: String { host.pointee.job_display_name(handle).map { String(cString: $0) } ?? "" }
    public var owner: UInt32 { host.pointee.job_owner(handle) }
    /// `FERRY_PRIORITY_*`.
    public var priority: Int32 { host.pointee.job_priority(handle) }
    /// `FERRY_STATE_*`.
    public var state: Int32 { host.pointee.job_state(handle) }
    public var fileCount: Int { Int(host.pointee.job_file_count(handle)) }
    /// Bytes written to the job's files so far.
    public var bytesTransferred: UInt64 {
        var progress = ferry_progress()
        progress.struct_size = UInt32(MemoryLayout<ferry_progress>.size)
        return host.pointee.job_progress(handle, &progress) == FERRY_OK ? progress.bytes_transferred : 0
    }

    public func file(_ index: Int) -> PluginFile? {
        guard index >= 0, let file = host.pointee.job_file(handle, UInt32(index)) else { return nil }
        return PluginFile(host: host, handle: file)
    }

    @discardableResult public func setPriority(_ priority: Int32) -> Int32 { host.pointee.job_set_priority(handle, priority) }
    @discardableResult public func resume() -> Int32 { host.pointee.job_resume(handle) }
    @discardableResult public func suspend() -> Int32 { host.pointee.job_suspend(handle) }

    /// Whether the host offers the 1.1 functions (retry delay, source health).
    var hostHasVersion1_1: Bool {
        let end = MemoryLayout<ferry_host>.offset(of: \ferry_host.source_health)! + MemoryLayout<UnsafeRawPointer>.size
        return Int(host.pointee.struct_size) >= end
    }

    /// The job's minimum retry delay in seconds; `nil` from a host older than ABI 1.1.
    public var minimumRetryDelay: Double? {
        guard hostHasVersion1_1 else { return nil }
        let value = host.pointee.job_minimum_retry_delay(handle)
        return value < 0 ? nil : value
    }

    /// Postpones the next retry of a job in TRANSIENT_ERROR to `seconds` from now.
    @discardableResult public func setRetryDelay(_ seconds: Double) -> Int32 {
        guard hostHasVersion1_1 else { return FERRY_UNSUPPORTED }
        return host.pointee.job_set_retry_delay(handle, seconds)
    }

    /// What the agent remembers of `url`'s origin; `nil` when nothing is known yet.
    public func sourceHealth(_ url: String) -> PluginSourceHealth? {
        guard hostHasVersion1_1 else { return nil }
        var out = ferry_source_health()
        out.struct_size = UInt32(MemoryLayout<ferry_source_health>.size)
        guard host.pointee.source_health(handle, url, &out) == FERRY_OK else { return nil }
        return PluginSourceHealth(consecutiveFailures: Int(out.consecutive_failures), failures: out.failures, successes: out.successes,
                                  lastFailure: out.last_failure < 0 ? nil : out.last_failure,
                                  lastSuccess: out.last_success < 0 ? nil : out.last_success,
                                  bytesPerSecond: out.bytes_per_second)
    }
    public func log(_ level: PluginHostAccess.LogLevel, _ message: String) { host.pointee.log(level.rawValue, message) }
}

/// What the agent remembers of one source, as ``PluginJob/sourceHealth(_:)`` returns it.
public struct PluginSourceHealth: Sendable, Equatable {
    public var consecutiveFailures: Int
    public var failures: UInt64
    public var successes: UInt64
    /// Seconds since 1970.
    public var lastFailure: Double?
    public var lastSuccess: Double?
    /// 0 while unknown.
    public var bytesPerSecond: Double
}

/// A file, during one callback.
public struct PluginFile {
    let host: UnsafePointer<ferry_host>
    let handle: OpaquePointer

    public var index: Int { Int(host.pointee.file_index(handle)) }
    public var remoteURL: String { host.pointee.file_remote_url(handle).map { String(cString: $0) } ?? "" }
    public var localPath: String { host.pointee.file_local_path(handle).map { String(cString: $0) } ?? "" }
    public var temporaryPath: String { host.pointee.file_temporary_path(handle).map { String(cString: $0) } ?? "" }
    /// `nil` while unknown.
    public var bytesTotal: UInt64? {
        let value = host.pointee.file_bytes_total(handle)
        return value == UInt64.max ? nil : value
    }
    public var bytesTransferred: UInt64 { host.pointee.file_bytes_transferred(handle) }

    public func property(_ key: String) -> String? {
        host.pointee.file_property(handle, key).map { String(cString: $0) }
    }

    /// The digest the host computed while the bytes streamed in, if it did.
    public func digest(_ algorithm: String) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 64)
        var written = 0
        let status = host.pointee.file_digest(handle, algorithm, &out, out.count, &written)
        return status == FERRY_OK ? Array(out.prefix(written)) : nil
    }

    /// `IBackgroundCopyFile3::SetValidationState`. Returns the host's status (PENDING before the file is complete).
    @discardableResult
    public func setValidationState(valid: Bool, reason: String) -> Int32 {
        host.pointee.file_set_validation_state(handle, valid ? 1 : 0, reason)
    }

    @discardableResult
    public func setRemoteURL(_ url: String) -> Int32 { host.pointee.file_set_remote_url(handle, url) }
}

/// A job's error, as handed to ``FerryPlugin/jobError(job:error:)``.
public struct PluginError: Sendable, Equatable {
    public var code: String
    public var context: String
    public var description: String
    public var httpStatus: Int?
    public var fileIndex: Int?
    public var isTransient: Bool
    public var retryAfterSeconds: Double?
    public var remoteSize: UInt64?

    init(_ info: UnsafePointer<ferry_error_info>) {
        let i = info.pointee
        code = i.code.map { String(cString: $0) } ?? ""
        context = i.context.map { String(cString: $0) } ?? ""
        description = i.description.map { String(cString: $0) } ?? ""
        httpStatus = i.http_status == 0 ? nil : Int(i.http_status)
        fileIndex = i.file_index < 0 ? nil : Int(i.file_index)
        isTransient = i.is_transient != 0
        retryAfterSeconds = i.retry_after_seconds < 0 ? nil : i.retry_after_seconds
        remoteSize = i.remote_size == UInt64.max ? nil : i.remote_size
    }
}

/// Builds the static descriptor for a Swift plugin.
public enum PluginKit {
    nonisolated(unsafe) private static var factory: ((PluginHostAccess, [String: String]) throws(PluginFailure) -> any FerryPlugin)?
    nonisolated(unsafe) private static var host: UnsafePointer<ferry_host>?
    nonisolated(unsafe) private static var built: UnsafeMutablePointer<ferry_plugin_descriptor>?

    /// The descriptor for `type`; call it from the plugin's `@_cdecl("ferry_plugin_v1")` function.
    /// `name` and `version` must be string literals.
    public static func descriptor<P: FerryPlugin>(
        name: StaticString, version: StaticString, roles: PluginRoles, flags: PluginFlags = [], type: P.Type
    ) -> UnsafeRawPointer {
        if let built { return UnsafeRawPointer(built) }
        factory = { (host, settings) throws(PluginFailure) in try P(host: host, settings: settings) }
        let descriptor = UnsafeMutablePointer<ferry_plugin_descriptor>.allocate(capacity: 1)
        descriptor.initialize(to: ferry_plugin_descriptor(
            struct_size: UInt32(MemoryLayout<ferry_plugin_descriptor>.size),
            abi_version: UInt32(FERRY_PLUGIN_ABI_VERSION),
            name: UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self),
            version: UnsafeRawPointer(version.utf8Start).assumingMemoryBound(to: CChar.self),
            roles: roles.rawValue, flags: flags.rawValue,
            create: { host, config, count, instance, errorText, errorSize in
                guard let host, let instance, let factory = PluginKit.factory else { return FERRY_INVALID_ARGUMENT }
                PluginKit.host = host
                var settings: [String: String] = [:]
                for index in 0..<count {
                    guard let config, let key = config[index].key, let value = config[index].value else { continue }
                    settings[String(cString: key)] = String(cString: value)
                }
                do throws(PluginFailure) {
                    let plugin = try factory(PluginHostAccess(table: host), settings)
                    instance.pointee = Unmanaged.passRetained(plugin as AnyObject).toOpaque()
                    return FERRY_OK
                } catch let failure {
                    PluginKit.write(failure.message, to: errorText, size: errorSize)
                    return FERRY_ERROR
                }
            },
            destroy: { instance in
                guard let instance else { return }
                Unmanaged<AnyObject>.fromOpaque(instance).release()
            },
            file_transferred: roles.contains(.validator) ? { instance, job, file, error, errorSize in
                guard let (plugin, host) = PluginKit.resolve(instance), let job, let file else { return FERRY_INVALID_ARGUMENT }
                return PluginKit.answer(plugin.fileTransferred(job: PluginJob(host: host, handle: job), file: PluginFile(host: host, handle: file)),
                                        error, errorSize)
            } : nil,
            job_transferred: { instance, job, error, errorSize in
                guard let (plugin, host) = PluginKit.resolve(instance), let job else { return FERRY_INVALID_ARGUMENT }
                return PluginKit.answer(plugin.jobTransferred(job: PluginJob(host: host, handle: job)), error, errorSize)
            },
            job_error: roles.contains(.errorPolicy) ? { instance, job, info, error, errorSize in
                guard let (plugin, host) = PluginKit.resolve(instance), let job, let info else { return FERRY_INVALID_ARGUMENT }
                return PluginKit.answer(plugin.jobError(job: PluginJob(host: host, handle: job), error: PluginError(info)), error, errorSize)
            } : nil,
            job_modification: nil
        ))
        built = descriptor
        return UnsafeRawPointer(descriptor)
    }

    private static func resolve(_ instance: UnsafeMutableRawPointer?) -> (any FerryPlugin, UnsafePointer<ferry_host>)? {
        guard let instance, let host,
              let plugin = Unmanaged<AnyObject>.fromOpaque(instance).takeUnretainedValue() as? any FerryPlugin else { return nil }
        return (plugin, host)
    }

    private static func answer(_ outcome: PluginOutcome, _ error: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int32 {
        switch outcome {
        case .ok: return FERRY_OK
        case .retryLater: return FERRY_RETRY_LATER
        case .failed(let message):
            write(message, to: error, size: size)
            return FERRY_ERROR
        }
    }

    /// Copies `message` into a caller-owned buffer, truncated and NUL-terminated.
    static func write(_ message: String, to buffer: UnsafeMutablePointer<CChar>?, size: Int) {
        guard let buffer, size > 0 else { return }
        let bytes = Array(message.utf8.prefix(size - 1))
        for (index, byte) in bytes.enumerated() { buffer[index] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
    }
}
