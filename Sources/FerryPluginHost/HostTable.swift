import FerryCore
import FerryPluginABI
import Foundation
import Logging
import Synchronization

/// The state of one plugin callback: the job it may see, the strings handed out,
/// and what the plugin asked for. Used only on the thread that runs the callback.
final class CallbackScope: @unchecked Sendable {
    let view: PluginJobView
    let plugin: String
    let thread = pthread_self()
    var token: UInt = 0
    private var strings: [UnsafeMutablePointer<CChar>] = []
    var verdicts: [(file: Int, valid: Bool, reason: String)] = []
    var actions: [PluginAction] = []

    init(view: PluginJobView, plugin: String) {
        self.view = view
        self.plugin = plugin
    }

    /// A C copy of `text` that lives until the callback returns.
    func borrowed(_ text: String) -> UnsafePointer<CChar>? {
        guard let copy = strdup(text) else { return nil }
        strings.append(copy)
        return UnsafePointer(copy)
    }

    func release() {
        strings.forEach { free($0) }
        strings.removeAll()
    }

    var job: Job { view.job }
}

/// The host function table and the handles plugins receive.
///
/// Handles are not pointers to memory: a job handle carries the token of its
/// callback scope, a file handle the token and the file's index. A handle used
/// after its callback returned, from another thread, or forged, finds no scope
/// and gets `FERRY_INVALID_HANDLE` (or NULL, 0, -1) instead of a crash.
enum HostTable {
    private static let scopes = Mutex<[UInt: CallbackScope]>([:])
    private static let nextToken = Atomic<UInt>(1)
    private static let indexBits: UInt = 24
    private static let loggerBox = Mutex<Logger?>(nil)
    /// The plugin each thread is calling now, for log lines.
    private static let callingPlugin = Mutex<[UInt: String]>([:])

    static func installLogger(_ logger: Logger) { loggerBox.withLock { $0 = logger } }

    static func whileCalling<T>(plugin: String, _ body: () -> T) -> T {
        let thread = UInt(pthread_self())
        let previous = callingPlugin.withLock { map in
            let old = map[thread]
            map[thread] = plugin
            return old
        }
        defer { callingPlugin.withLock { $0[thread] = previous } }
        return body()
    }

    /// Registers the scope, runs `body` with the job handle, and retires the scope.
    static func withScope<T>(_ scope: CallbackScope, _ body: (OpaquePointer) -> T) -> T {
        let token = nextToken.wrappingAdd(1, ordering: .relaxed).oldValue
        scope.token = token
        scopes.withLock { $0[token] = scope }
        defer {
            scopes.withLock { $0[token] = nil }
            scope.release()
        }
        return body(OpaquePointer(bitPattern: token << indexBits)!)
    }

    static func fileHandle(_ job: OpaquePointer, _ index: Int) -> OpaquePointer {
        OpaquePointer(bitPattern: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(job))) | UInt(index + 1))!
    }

    private static func scope(_ handle: OpaquePointer?) -> (CallbackScope, Int?)? {
        guard let handle else { return nil }
        let raw = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        let token = raw >> indexBits
        let low = raw & ((1 << indexBits) - 1)
        guard let scope = scopes.withLock({ $0[token] }), pthread_equal(scope.thread, pthread_self()) != 0 else { return nil }
        return (scope, low == 0 ? nil : Int(low - 1))
    }

    private static func jobScope(_ handle: OpaquePointer?) -> CallbackScope? {
        guard let (scope, index) = scope(handle), index == nil else { return nil }
        return scope
    }

    private static func fileScope(_ handle: OpaquePointer?) -> (CallbackScope, Int)? {
        guard let (scope, index) = scope(handle), let index, scope.job.files.indices.contains(index) else { return nil }
        return (scope, index)
    }

    static func statusName(_ status: Int32) -> String {
        switch status {
        case FERRY_OK: "OK"
        case FERRY_RETRY_LATER: "RETRY_LATER"
        case FERRY_PENDING: "PENDING"
        case FERRY_ERROR: "ERROR"
        case FERRY_INVALID_ARGUMENT: "INVALID_ARGUMENT"
        case FERRY_NOT_FOUND: "NOT_FOUND"
        case FERRY_INVALID_HANDLE: "INVALID_HANDLE"
        case FERRY_UNSUPPORTED: "UNSUPPORTED"
        case FERRY_INVALID_STATE: "INVALID_STATE"
        default: "status \(status)"
        }
    }

    static func stateCode(_ state: JobState) -> Int32 {
        switch state {
        case .suspended: FERRY_STATE_SUSPENDED
        case .queued: FERRY_STATE_QUEUED
        case .connecting: FERRY_STATE_CONNECTING
        case .transferring: FERRY_STATE_TRANSFERRING
        case .transferred: FERRY_STATE_TRANSFERRED
        case .transientError: FERRY_STATE_TRANSIENT_ERROR
        case .error: FERRY_STATE_ERROR
        case .acknowledged: FERRY_STATE_ACKNOWLEDGED
        case .cancelled: FERRY_STATE_CANCELLED
        }
    }

    static func priorityCode(_ priority: JobPriority) -> Int32 { Int32(priority.rank) }

    static func priority(fromCode code: Int32) -> JobPriority? {
        JobPriority.allCases.first { Int32($0.rank) == code }
    }

    /// Fills a `ferry_error_info` whose strings live for the duration of `body`.
    static func withErrorInfo<T>(_ error: FerryError, _ body: (UnsafePointer<ferry_error_info>) -> T) -> T {
        error.code.rawValue.withCString { code in
            error.context.rawValue.withCString { context in
                error.message.withCString { description in
                    var info = ferry_error_info(
                        struct_size: UInt32(MemoryLayout<ferry_error_info>.size),
                        http_status: Int32(error.httpStatus ?? 0),
                        file_index: Int32(error.fileIndex ?? -1),
                        is_transient: error.isTransient ? 1 : 0,
                        code: code, context: context, description: description,
                        retry_after_seconds: error.retryAfterSeconds ?? -1,
                        remote_size: error.remoteSize ?? UInt64.max)
                    return body(&info)
                }
            }
        }
    }

    /// The sizes of the output structs when each was introduced (ABI 1.0, or 1.1 for source
    /// health): the smallest `struct_size` a plugin may pass.
    static let progressFirstSize = MemoryLayout<ferry_progress>.offset(of: \ferry_progress.bytes_transferred)! + MemoryLayout<UInt64>.size
    static let errorInfoFirstSize = MemoryLayout<ferry_error_info>.offset(of: \ferry_error_info.remote_size)! + MemoryLayout<UInt64>.size
    static let sourceHealthFirstSize = MemoryLayout<ferry_source_health>.offset(of: \ferry_source_health.bytes_per_second)! + MemoryLayout<Double>.size

    /// Writes `value` into a plugin's output struct as the header's evolution rule says: the
    /// plugin sets `struct_size` before the call; a size below `firstSize` (the struct as it was
    /// introduced) is refused; otherwise the host writes `min(struct_size, its own size)` bytes
    /// and sets `struct_size` to what it wrote. A plugin built against an older header gets the
    /// fields it knows, one built against a newer header the fields this host knows.
    static func copyOut<T>(_ value: T, to out: UnsafeMutablePointer<T>, firstSize: Int) -> Int32 {
        let declared = declaredSize(out)
        guard declared >= firstSize else { return FERRY_INVALID_ARGUMENT }
        let raw = UnsafeMutableRawPointer(out)
        let count = min(declared, MemoryLayout<T>.size)
        withUnsafeBytes(of: value) { raw.copyMemory(from: $0.baseAddress!, byteCount: count) }
        raw.storeBytes(of: UInt32(count), as: UInt32.self)
        return FERRY_OK
    }

    /// The `struct_size` a plugin set in an output struct (its first field, whatever the
    /// header it was built against).
    static func declaredSize<T>(_ out: UnsafeMutablePointer<T>) -> Int {
        Int(UnsafeRawPointer(out).load(as: UInt32.self))
    }

    /// Copies an error into a plugin's struct (``copyOut(_:to:firstSize:)``).
    private static func copy(_ error: FerryError, into out: UnsafeMutablePointer<ferry_error_info>, scope: CallbackScope) -> Int32 {
        copyOut(ferry_error_info(
            struct_size: UInt32(MemoryLayout<ferry_error_info>.size),
            http_status: Int32(error.httpStatus ?? 0), file_index: Int32(error.fileIndex ?? -1),
            is_transient: error.isTransient ? 1 : 0,
            code: scope.borrowed(error.code.rawValue), context: scope.borrowed(error.context.rawValue),
            description: scope.borrowed(error.message),
            retry_after_seconds: error.retryAfterSeconds ?? -1, remote_size: error.remoteSize ?? UInt64.max),
            to: out, firstSize: errorInfoFirstSize)
    }

    private static func log(_ level: Int32, _ message: UnsafePointer<CChar>?) {
        guard let message, let logger = loggerBox.withLock({ $0 }) else { return }
        let plugin = callingPlugin.withLock { $0[UInt(pthread_self())] } ?? "?"
        let text = Logger.Message(stringLiteral: String(cString: message))
        let metadata: Logger.Metadata = ["plugin": "\(plugin)"]
        switch level {
        case FERRY_LOG_DEBUG: logger.debug(text, metadata: metadata)
        case FERRY_LOG_INFO: logger.info(text, metadata: metadata)
        case FERRY_LOG_WARNING: logger.warning(text, metadata: metadata)
        default: logger.error(text, metadata: metadata)
        }
    }

    /// The table handed to every plugin's create(); static, valid for the life of the process.
    nonisolated(unsafe) static let table: UnsafePointer<ferry_host> = {
        let table = UnsafeMutablePointer<ferry_host>.allocate(capacity: 1)
        table.initialize(to: ferry_host(
            struct_size: UInt32(MemoryLayout<ferry_host>.size),
            abi_version: UInt32(FERRY_PLUGIN_ABI_VERSION),
            log: { level, message in HostTable.log(level, message) },
            job_id: { handle in
                guard let scope = HostTable.jobScope(handle) else { return nil }
                return scope.borrowed(scope.job.id.description)
            },
            job_display_name: { handle in
                guard let scope = HostTable.jobScope(handle) else { return nil }
                return scope.borrowed(scope.job.displayName)
            },
            job_owner: { handle in HostTable.jobScope(handle)?.job.owner ?? UInt32.max },
            job_priority: { handle in HostTable.jobScope(handle).map { HostTable.priorityCode($0.job.priority) } ?? -1 },
            job_state: { handle in HostTable.jobScope(handle).map { HostTable.stateCode($0.job.state) } ?? -1 },
            job_progress: { handle, out in
                guard let scope = HostTable.jobScope(handle) else { return FERRY_INVALID_HANDLE }
                guard let out else { return FERRY_INVALID_ARGUMENT }
                let progress = scope.job.progress
                return HostTable.copyOut(ferry_progress(
                    struct_size: UInt32(MemoryLayout<ferry_progress>.size), files_total: UInt32(progress.filesTotal),
                    files_transferred: UInt32(progress.filesTransferred), reserved: 0,
                    bytes_total: progress.bytesTotal ?? UInt64.max, bytes_transferred: progress.bytesTransferred),
                    to: out, firstSize: HostTable.progressFirstSize)
            },
            job_error: { handle, out in
                guard let scope = HostTable.jobScope(handle) else { return FERRY_INVALID_HANDLE }
                guard let out else { return FERRY_INVALID_ARGUMENT }
                guard let error = scope.job.lastError else { return FERRY_NOT_FOUND }
                return HostTable.copy(error, into: out, scope: scope)
            },
            job_file_count: { handle in UInt32(HostTable.jobScope(handle)?.job.files.count ?? 0) },
            job_file: { handle, index in
                guard let handle, let scope = HostTable.jobScope(handle), Int(index) < scope.job.files.count else { return nil }
                return HostTable.fileHandle(handle, Int(index))
            },
            job_set_priority: { handle, code in
                guard let scope = HostTable.jobScope(handle) else { return FERRY_INVALID_HANDLE }
                guard let priority = HostTable.priority(fromCode: code) else { return FERRY_INVALID_ARGUMENT }
                scope.actions.append(.setPriority(priority))
                return FERRY_OK
            },
            job_resume: { handle in
                guard let scope = HostTable.jobScope(handle) else { return FERRY_INVALID_HANDLE }
                guard !scope.job.state.isFinal else { return FERRY_INVALID_STATE }
                scope.actions.append(.resume)
                return FERRY_OK
            },
            job_suspend: { handle in
                guard let scope = HostTable.jobScope(handle) else { return FERRY_INVALID_HANDLE }
                guard !scope.job.state.isFinal else { return FERRY_INVALID_STATE }
                scope.actions.append(.suspend)
                return FERRY_OK
            },
            file_index: { handle in HostTable.fileScope(handle).map { UInt32($0.1) } ?? UInt32.max },
            file_remote_url: { handle in
                guard let (scope, index) = HostTable.fileScope(handle) else { return nil }
                return scope.borrowed(scope.job.files[index].remoteURL)
            },
            file_local_path: { handle in
                guard let (scope, index) = HostTable.fileScope(handle) else { return nil }
                return scope.borrowed(scope.job.files[index].localPath)
            },
            file_temporary_path: { handle in
                guard let (scope, index) = HostTable.fileScope(handle) else { return nil }
                // Computed on demand: building every file's path for each callback would cost a job of n files n² work.
                return scope.borrowed(scope.view.temporaryPaths[index] ?? scope.job.temporaryPath(ofFile: index))
            },
            file_bytes_total: { handle in
                guard let (scope, index) = HostTable.fileScope(handle) else { return UInt64.max }
                return scope.view.bytesTotal(ofFile: index) ?? UInt64.max
            },
            file_bytes_transferred: { handle in
                guard let (scope, index) = HostTable.fileScope(handle) else { return 0 }
                return scope.view.bytesTransferred(ofFile: index)
            },
            file_property: { handle, key in
                guard let (scope, index) = HostTable.fileScope(handle), let key else { return nil }
                guard let value = scope.job.files[index].properties[String(cString: key)] else { return nil }
                return scope.borrowed(value)
            },
            file_digest: { handle, algorithm, out, outSize, written in
                guard let (scope, index) = HostTable.fileScope(handle) else { return FERRY_INVALID_HANDLE }
                guard let algorithm, let out else { return FERRY_INVALID_ARGUMENT }
                guard let name = DigestName(rawValue: String(cString: algorithm)) else { return FERRY_UNSUPPORTED }
                guard let digest = scope.view.digests[index]?[name] else { return FERRY_NOT_FOUND }
                guard outSize >= digest.count else { return FERRY_INVALID_ARGUMENT }
                digest.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: digest.count) }
                written?.pointee = digest.count
                return FERRY_OK
            },
            file_set_remote_url: { handle, url in
                guard let (scope, index) = HostTable.fileScope(handle) else { return FERRY_INVALID_HANDLE }
                guard let url else { return FERRY_INVALID_ARGUMENT }
                scope.actions.append(.setRemoteURL(file: index, url: String(cString: url)))
                return FERRY_OK
            },
            file_set_validation_state: { handle, valid, reason in
                guard let (scope, index) = HostTable.fileScope(handle) else { return FERRY_INVALID_HANDLE }
                guard scope.view.completeFiles.contains(index) else { return FERRY_PENDING }
                guard valid == 0 || valid == 1 else { return FERRY_INVALID_ARGUMENT }
                let text = reason.map { String(cString: $0) } ?? (valid == 1 ? "valid" : "invalid")
                scope.verdicts.append((file: index, valid: valid == 1, reason: text))
                return FERRY_OK
            },
            job_minimum_retry_delay: { handle in HostTable.jobScope(handle)?.job.minimumRetryDelay ?? -1 },
            job_set_retry_delay: { handle, seconds in
                guard let scope = HostTable.jobScope(handle) else { return FERRY_INVALID_HANDLE }
                guard seconds.isFinite, seconds >= 0 else { return FERRY_INVALID_ARGUMENT }
                guard scope.job.state == .transientError else { return FERRY_INVALID_STATE }
                scope.actions.append(.setRetryDelay(seconds))
                return FERRY_OK
            },
            source_health: { handle, url, out in
                guard let scope = HostTable.jobScope(handle) else { return FERRY_INVALID_HANDLE }
                guard let url, let out, HostTable.declaredSize(out) >= HostTable.sourceHealthFirstSize else { return FERRY_INVALID_ARGUMENT }
                guard let origin = SourceHealth.origin(of: String(cString: url)), let health = scope.view.sourceHealth[origin] else { return FERRY_NOT_FOUND }
                return HostTable.copyOut(ferry_source_health(
                    struct_size: UInt32(MemoryLayout<ferry_source_health>.size),
                    consecutive_failures: health.consecutiveFailures, failures: health.failures, successes: health.successes,
                    last_failure: health.lastFailure?.timeIntervalSince1970 ?? -1,
                    last_success: health.lastSuccess?.timeIntervalSince1970 ?? -1,
                    bytes_per_second: health.bytesPerSecond),
                    to: out, firstSize: HostTable.sourceHealthFirstSize)
            },
            abi_minor: UInt32(FERRY_PLUGIN_ABI_MINOR),
            job_property: { handle, key in
                guard let scope = HostTable.jobScope(handle), let key, let value = scope.job.properties[String(cString: key)] else { return nil }
                return scope.borrowed(value)
            }
        ))
        return UnsafePointer(table)
    }()
}
