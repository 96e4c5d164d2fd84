import FerryCore
import FerryPluginABI
import Foundation
import Logging
import Synchronization

/// A plugin that was loaded, checked and created.
public final class LoadedPlugin: @unchecked Sendable {
    public let path: String
    public let name: String
    public let version: String
    public let spec: PluginSpec
    /// The plugin's own descriptor, when it runs in this process; nil when it is isolated.
    let descriptor: UnsafePointer<ferry_plugin_descriptor>?
    let instance: UnsafeMutableRawPointer?
    /// The helper process that runs the plugin, for `isolation: process`.
    let isolated: IsolatedPlugin?
    /// `FERRY_ROLE_*` and `FERRY_PLUGIN_*` bits, as the descriptor declares them.
    public let roles: UInt32
    public let flags: UInt32
    /// Held around every call when the plugin declared itself single-threaded.
    let callLock = NSLock()

    init(path: String, spec: PluginSpec, descriptor: UnsafePointer<ferry_plugin_descriptor>, instance: UnsafeMutableRawPointer?) {
        self.path = path
        self.spec = spec
        self.descriptor = descriptor
        self.instance = instance
        self.isolated = nil
        self.name = String(cString: descriptor.pointee.name)
        self.version = String(cString: descriptor.pointee.version)
        self.roles = descriptor.pointee.roles
        self.flags = descriptor.pointee.flags
    }

    init(isolated: IsolatedPlugin, spec: PluginSpec) {
        self.path = isolated.identity.path
        self.spec = spec
        self.descriptor = nil
        self.instance = nil
        self.isolated = isolated
        self.name = isolated.identity.name
        self.version = isolated.identity.version
        self.roles = isolated.identity.roles
        self.flags = isolated.identity.flags
    }

    public var isValidator: Bool { roles & UInt32(FERRY_ROLE_VALIDATOR) != 0 }
    public var isErrorPolicy: Bool { roles & UInt32(FERRY_ROLE_ERROR_POLICY) != 0 }
    public var wantsTransientErrors: Bool { flags & UInt32(FERRY_PLUGIN_WANTS_TRANSIENT_ERRORS) != 0 }
    var isSingleThreaded: Bool { flags & UInt32(FERRY_PLUGIN_SINGLE_THREADED) != 0 }

    /// The roles, for people: "validator", "error-policy".
    public var roleNames: [String] {
        var names: [String] = []
        if isValidator { names.append("validator") }
        if isErrorPolicy { names.append("error-policy") }
        return names
    }
}

/// What a plugin sees of a job during one callback.
public struct PluginJobView: Sendable, Codable {
    public var job: Job
    /// Digests the host computed while bytes streamed in, by file index.
    public var digests: [Int: [DigestName: [UInt8]]]
    /// Files whose bytes are all on disk: only these may be given a validation state.
    public var completeFiles: Set<Int>
    /// What is remembered of the sources the job's files may come from, by origin.
    public var sourceHealth: [String: SourceHealth]
    /// Files whose bytes are all on disk, by length: validators see them transferred, with
    /// their size known, while the job's own record catches up after the verdict.
    public var finishedLengths: [Int: UInt64]
    /// Paths that open finished files' temporaries through the descriptors the engine wrote
    /// them with (`/proc/self/fd/N`), by file index: a plugin reads the very file that was
    /// written, whatever its directory's path now leads to.
    public var temporaryPaths: [Int: String]

    public init(job: Job, digests: [Int: [DigestName: [UInt8]]] = [:], completeFiles: Set<Int> = [],
                sourceHealth: [String: SourceHealth] = [:], finishedLengths: [Int: UInt64] = [:],
                temporaryPaths: [Int: String] = [:]) {
        self.job = job
        self.digests = digests
        self.completeFiles = completeFiles
        self.sourceHealth = sourceHealth
        self.finishedLengths = finishedLengths
        self.temporaryPaths = temporaryPaths
    }

    private enum CodingKeys: String, CodingKey { case job, files, digests, completeFiles, sourceHealth, finishedLengths, temporaryPaths }

    /// A job's record leaves its files out (they are stored apart): the view carries them.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        job = Job(persistedHeader: try c.decode(Job.self, forKey: .job), files: try c.decode([JobFile].self, forKey: .files))
        digests = try c.decode([Int: [DigestName: [UInt8]]].self, forKey: .digests)
        completeFiles = try c.decode(Set<Int>.self, forKey: .completeFiles)
        sourceHealth = try c.decode([String: SourceHealth].self, forKey: .sourceHealth)
        finishedLengths = try c.decode([Int: UInt64].self, forKey: .finishedLengths)
        temporaryPaths = try c.decodeIfPresent([Int: String].self, forKey: .temporaryPaths) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job)
        try c.encode(Array(job.files), forKey: .files)
        try c.encode(digests, forKey: .digests)
        try c.encode(completeFiles, forKey: .completeFiles)
        try c.encode(sourceHealth, forKey: .sourceHealth)
        try c.encode(finishedLengths, forKey: .finishedLengths)
        // Another process (an isolated plugin's helper) reaches this process's descriptors
        // through its pid, not through /proc/self.
        let me = "/proc/\(getpid())/"
        try c.encode(temporaryPaths.mapValues { $0.hasPrefix("/proc/self/") ? me + $0.dropFirst("/proc/self/".count) : $0 }, forKey: .temporaryPaths)
    }

    /// The bytes of file `index` on disk, as plugins see them.
    func bytesTransferred(ofFile index: Int) -> UInt64 { finishedLengths[index] ?? job.files[index].bytesTransferred }

    /// The size of file `index`, as plugins see it (a finished file's length when unknown).
    func bytesTotal(ofFile index: Int) -> UInt64? { job.files[index].bytesTotal ?? finishedLengths[index] }
}

/// A digest algorithm's name as the ABI spells it.
public enum DigestName: String, Sendable, Hashable, CaseIterable, Codable {
    case sha256
    case sha512
}

/// What a plugin asked the host to do; applied by the engine after the callback returned.
public enum PluginAction: Equatable, Sendable, CustomStringConvertible, Codable {
    case setPriority(JobPriority)
    case resume
    case suspend
    case setRemoteURL(file: Int, url: String)
    /// Wait this many seconds before the next retry (transient errors only).
    case setRetryDelay(Double)

    public var description: String {
        switch self {
        case .setPriority(let priority): "set priority \(priority.rawValue)"
        case .resume: "resume"
        case .suspend: "suspend"
        case .setRemoteURL(let file, let url): "point file \(file) at \(url)"
        case .setRetryDelay(let seconds): "retry in \(seconds < 10 ? String(format: "%.1f", seconds) : seconds < 1e15 ? String(Int(seconds.rounded())) : "\(seconds)") s"
        }
    }
}

/// One validator's verdict on one file.
public struct ValidationVerdict: Equatable, Sendable, Codable {
    public var plugin: String
    public var valid: Bool
    public var reason: String
}

/// The result of running every applicable validator on one file.
public enum ValidationOutcome: Equatable, Sendable, Codable {
    /// No validator said invalid; `verdicts` lists those that said valid (abstentions are not listed).
    case valid([ValidationVerdict])
    /// A validator said invalid, or failed: the file is not proven.
    case invalid(ValidationVerdict)
    /// A validator asked to be called again later.
    case retryLater(plugin: String)
    /// A validator may not be called about this file: it crashed on it before, or it is
    /// disabled after crashing too often. The file is not proven.
    case pluginCrashed(ValidationVerdict)
}

/// What an error policy did about a job's error.
public struct PolicyDecision: Equatable, Sendable, Codable {
    public var plugin: String
    public var actions: [PluginAction]
    /// The callback's status, as the ABI gives it; ``answer`` is what it means.
    public var status: Int32
    public var message: String

    public init(plugin: String, actions: [PluginAction], status: Int32, message: String) {
        self.plugin = plugin
        self.actions = actions
        self.status = status
        self.message = message
    }

    /// How a policy answered.
    public enum Answer: Equatable, Sendable {
        /// It answered (`FERRY_OK`); its actions, if any, are what it asks for.
        case answered
        /// It asked to be called again later (`FERRY_RETRY_LATER`).
        case retryLater
        /// It failed, or could not be called; the status says how.
        case failed(Int32)
    }

    /// The callback's status as a typed answer.
    public var answer: Answer {
        switch status {
        case FERRY_OK: .answered
        case FERRY_RETRY_LATER: .retryLater
        default: .failed(status)
        }
    }

    /// It answered and asked for something.
    public var acted: Bool { answer == .answered && !actions.isEmpty }
}

/// Loads plugins and calls them, offering them the host function table.
public final class PluginHost: @unchecked Sendable {
    public let plugins: [LoadedPlugin]
    private let logger: Logger
    /// Where each call is recorded before it is made, so that a plugin that crashes the process
    /// is known when it starts again; nil records nothing. Set before the first call.
    public var crashRecords: PluginCrashRecords?

    /// Loads every plugin in order; the first that cannot be loaded stops the whole load.
    /// - Throws: ``PluginLoadError`` naming the file and the reason.
    public init(specs: [PluginSpec], directories: [String], logger: Logger) throws(PluginLoadError) {
        self.logger = logger
        HostTable.installLogger(logger)
        var loaded: [LoadedPlugin] = []
        do {
            for spec in specs {
                loaded.append(try PluginHost.load(spec, directories: directories, logger: logger))
            }
        } catch {
            for plugin in loaded { PluginHost.destroy(plugin) }
            throw error
        }
        plugins = loaded
    }

    private static func load(_ spec: PluginSpec, directories: [String], logger: Logger) throws(PluginLoadError) -> LoadedPlugin {
        if spec.isolation == .process {
            let isolated = try IsolatedPlugin.start(spec, directories: directories, logger: logger)
            let plugin = LoadedPlugin(isolated: isolated, spec: spec)
            logger.info("plugin loaded", metadata: ["plugin": "\(plugin.name)", "version": "\(plugin.version)", "isolation": "process",
                                                    "roles": "\(plugin.roleNames.joined(separator: ","))", "path": "\(plugin.path)"])
            return plugin
        }
        let trusted = try PluginLoader.checkTrust(try PluginLoader.resolve(spec.reference, in: directories))
        let path = trusted.realPath
        let descriptor = try PluginLoader.open(trusted)
        let name = String(cString: descriptor.pointee.name)
        // Configuration strings live until create() returns.
        let keys = spec.settings.map { strdup($0.key) }
        let values = spec.settings.map { strdup($0.value) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        var entries = zip(keys, values).map { ferry_kv(key: $0, value: $1) }
        var instance: UnsafeMutableRawPointer?
        let errorBuffer = ErrorBuffer()
        let status = HostTable.whileCalling(plugin: name) {
            entries.withUnsafeMutableBufferPointer { buffer in
                descriptor.pointee.create(HostTable.table, buffer.baseAddress, buffer.count, &instance, errorBuffer.pointer, errorBuffer.size)
            }
        }
        guard status == FERRY_OK else {
            let text = errorBuffer.text
            throw PluginLoadError(path: path, reason: .createFailed,
                                  message: "create() failed with status \(status)\(text.isEmpty ? "" : ": \(text)")")
        }
        let plugin = LoadedPlugin(path: path, spec: spec, descriptor: descriptor, instance: instance)
        logger.info("plugin loaded", metadata: ["plugin": "\(plugin.name)", "version": "\(plugin.version)",
                                                "roles": "\(plugin.roleNames.joined(separator: ","))", "path": "\(path)"])
        return plugin
    }

    private static func destroy(_ plugin: LoadedPlugin) {
        plugin.isolated?.stop()
        guard let destroy = plugin.descriptor?.pointee.destroy else { return }
        HostTable.whileCalling(plugin: plugin.name) { destroy(plugin.instance) }
    }

    /// Calls every plugin's `destroy`. The shared objects stay mapped (RTLD_NODELETE).
    public func shutdown() {
        for plugin in plugins { PluginHost.destroy(plugin) }
    }

    /// The validators that apply to a job, in configured order.
    public func validators(for job: Job) -> [LoadedPlugin] {
        plugins.filter { $0.isValidator && $0.spec.appliesTo.matches(job) }
    }

    /// The error policies that apply to a job's error, in configured order.
    public func errorPolicies(for job: Job, transient: Bool) -> [LoadedPlugin] {
        plugins.filter { $0.isErrorPolicy && $0.spec.appliesTo.matches(job) && (!transient || $0.wantsTransientErrors) }
    }

    // MARK: - Validation

    /// Runs every applicable validator's `file_transferred` on one finished file.
    ///
    /// The file is valid only if no validator set it invalid; a validator that
    /// fails (any status but OK and RETRY_LATER) leaves it unproven, which counts as invalid.
    public func validate(file index: Int, view: PluginJobView) -> ValidationOutcome {
        var verdicts: [ValidationVerdict] = []
        for plugin in validators(for: view.job) {
            // Fail closed: a validator that cannot be asked leaves the file unproven.
            if let refusal = crashRecords?.refusal(of: plugin.name, job: view.job.id, file: index) {
                return .pluginCrashed(ValidationVerdict(plugin: plugin.name, valid: false, reason: refusal))
            }
            if let isolated = plugin.isolated {
                switch isolated.validate(file: index, view: view) {
                case .answered(.valid(let more)): verdicts += more
                case .answered(let other): return other
                case .crashed(let cause):
                    crashRecords?.recordIsolatedCrash(of: plugin.name, job: view.job.id, file: index)
                    return .pluginCrashed(ValidationVerdict(plugin: plugin.name, valid: false,
                                                            reason: "plugin \(plugin.name) crashed (\(cause)) in its helper process while checking file \(index); the helper is started again"))
                }
                continue
            }
            guard let callback = plugin.descriptor?.pointee.file_transferred else { continue }
            let (status, text, scope) = invoke(plugin, view, callback: "file_transferred", file: index) { instance, job, errorBuffer in
                callback(instance, job, HostTable.fileHandle(job, index), errorBuffer.pointer, errorBuffer.size)
            }
            let verdict = scope.verdicts.last { $0.file == index }
            switch status {
            case FERRY_OK:
                guard let verdict else {
                    logger.debug("validator abstained", metadata: ["plugin": "\(plugin.name)", "file": "\(index)"])
                    continue
                }
                let result = ValidationVerdict(plugin: plugin.name, valid: verdict.valid, reason: verdict.reason)
                guard verdict.valid else { return .invalid(result) }
                verdicts.append(result)
            case FERRY_RETRY_LATER:
                return .retryLater(plugin: plugin.name)
            default:
                let reason = "validator \(plugin.name) failed with \(HostTable.statusName(status))\(text.isEmpty ? "" : ": \(text)")"
                logger.error("validator failed", metadata: ["plugin": "\(plugin.name)", "file": "\(index)", "status": "\(status)", "error": "\(text)"])
                return .invalid(ValidationVerdict(plugin: plugin.name, valid: false, reason: reason))
            }
        }
        return .valid(verdicts)
    }

    // MARK: - Notifications and error policies

    /// Calls `job_error` on the applicable error policies, in order, until one acts.
    /// - Returns: every policy's answer, the acting one last.
    public func handleError(view: PluginJobView, error: FerryError, policies: [LoadedPlugin]) -> [PolicyDecision] {
        var decisions: [PolicyDecision] = []
        for plugin in policies {
            // A policy that crashed about this error is not asked again: it did not act.
            if let refusal = crashRecords?.refusal(of: plugin.name, job: view.job.id, file: error.fileIndex) {
                decisions.append(PolicyDecision(plugin: plugin.name, actions: [], status: FERRY_ERROR, message: refusal))
                continue
            }
            if let isolated = plugin.isolated {
                switch isolated.handleError(view: view, error: error) {
                case .answered(let answers):
                    decisions += answers
                    if let last = answers.last, last.acted || last.answer == .retryLater { return decisions }
                case .crashed(let cause):
                    crashRecords?.recordIsolatedCrash(of: plugin.name, job: view.job.id, file: error.fileIndex)
                    decisions.append(PolicyDecision(plugin: plugin.name, actions: [], status: FERRY_ERROR,
                                                    message: "crashed (\(cause)) in its helper process; no policy acted for it"))
                }
                continue
            }
            guard let callback = plugin.descriptor?.pointee.job_error else { continue }
            let (status, text, scope) = invoke(plugin, view, callback: "job_error", file: error.fileIndex) { instance, job, errorBuffer in
                HostTable.withErrorInfo(error) { info in callback(instance, job, info, errorBuffer.pointer, errorBuffer.size) }
            }
            decisions.append(PolicyDecision(plugin: plugin.name, actions: scope.actions, status: status, message: text))
            // The first that acts wins; one that asks to be called later stops the round too.
            if let last = decisions.last, last.acted || last.answer == .retryLater { break }
        }
        return decisions
    }

    /// Calls `job_transferred` (or `job_modification`) on every plugin that implements it.
    /// - Returns: the plugins that asked to be called again later.
    public func notify(_ kind: Notification, view: PluginJobView) -> [String] {
        var retry: [String] = []
        for plugin in plugins where plugin.spec.appliesTo.matches(view.job) {
            let status: Int32
            let text: String
            switch kind {
            case .jobTransferred:
                guard let callback = plugin.descriptor?.pointee.job_transferred else { continue }
                (status, text, _) = invoke(plugin, view, callback: "job_transferred", file: nil) { instance, job, errorBuffer in
                    callback(instance, job, errorBuffer.pointer, errorBuffer.size)
                }
            case .jobModification:
                guard let callback = plugin.descriptor?.pointee.job_modification else { continue }
                (status, text, _) = invoke(plugin, view, callback: "job_modification", file: nil) { instance, job, errorBuffer in
                    callback(instance, job, errorBuffer.pointer, errorBuffer.size)
                }
            }
            if status == FERRY_RETRY_LATER { retry.append(plugin.name) }
            else if status != FERRY_OK {
                logger.error("plugin callback failed", metadata: ["plugin": "\(plugin.name)", "callback": "\(kind)", "status": "\(HostTable.statusName(status))", "error": "\(text)"])
            }
        }
        return retry
    }

    public enum Notification: String, Sendable { case jobTransferred, jobModification }

    /// Calls one plugin callback inside a scope that gives it the job's handles.
    /// The call is recorded first (``crashRecords``) and its record removed once it returned.
    private func invoke(
        _ plugin: LoadedPlugin, _ view: PluginJobView, callback: String, file: Int?,
        _ body: (UnsafeMutableRawPointer?, OpaquePointer, ErrorBuffer) -> Int32
    ) -> (Int32, String, CallbackScope) {
        if plugin.isSingleThreaded { plugin.callLock.lock() }
        defer { if plugin.isSingleThreaded { plugin.callLock.unlock() } }
        let errorBuffer = ErrorBuffer()
        let scope = CallbackScope(view: view, plugin: plugin.name)
        let record = crashRecords?.begin(plugin: plugin, callback: callback, job: view.job.id, file: file)
        let status = HostTable.withScope(scope) { job in
            HostTable.whileCalling(plugin: plugin.name) { body(plugin.instance, job, errorBuffer) }
        }
        crashRecords?.end(record)
        let known = (FERRY_OK...FERRY_INVALID_STATE).contains(status)
        if !known {
            logger.error("plugin returned an unknown status; treated as an error",
                         metadata: ["plugin": "\(plugin.name)", "status": "\(status)"])
        }
        return (known ? status : FERRY_ERROR, errorBuffer.text, scope)
    }
}

/// A caller-owned, zeroed buffer for a plugin's error text.
final class ErrorBuffer {
    let size = 1024
    let pointer: UnsafeMutablePointer<CChar>

    init() {
        pointer = .allocate(capacity: size)
        pointer.initialize(repeating: 0, count: size)
    }

    deinit { pointer.deallocate() }

    /// The text, even if the plugin forgot the final NUL.
    var text: String {
        pointer[size - 1] = 0
        return String(cString: pointer).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
