import FerryCore
import Foundation
import Logging

/// One request to a plugin's helper process, and its answer. Frames on the socketpair are a
/// 4-byte big-endian length followed by that many bytes of JSON.
enum HelperRequest: Codable {
    /// Load the plugin (trust checks, `dlopen`, `create` with its settings) and say what it is.
    case load(reference: String, settings: [[String]], directories: [String])
    case validate(file: Int, view: PluginJobView, files: FilesDelta)
    case handleError(view: PluginJobView, error: FerryError, files: FilesDelta)
}

/// The job's files as the helper must see them, sent as the changes since the previous call
/// about the same job: sending every file with every call would cost a job of n files n² work.
/// The view itself travels without its files.
struct FilesDelta: Codable {
    /// The helper drops what it holds and starts from an empty list (another job, a new helper).
    var reset: Bool
    var count: Int
    /// The files that changed (or are new), by index.
    var changed: [Int: JobFile]
}

enum HelperAnswer: Codable {
    case loaded(PluginIdentity)
    case refused(reason: String, message: String, path: String)
    case validated(ValidationOutcome)
    case decided([PolicyDecision])
}

/// What a helper says of the plugin it loaded.
public struct PluginIdentity: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var path: String
    public var roles: UInt32
    public var flags: UInt32
}

/// Framed JSON over one file descriptor.
enum HelperWire {
    static func send<T: Encodable>(_ value: T, on fd: Int32) -> Bool {
        guard let body = try? JSONEncoder().encode(value) else { return false }
        var length = UInt32(body.count).bigEndian
        var frame = Data(bytes: &length, count: 4)
        frame.append(body)
        return frame.withUnsafeBytes { raw -> Bool in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                done += n
            }
            return true
        }
    }

    static func receive<T: Decodable>(_ type: T.Type, on fd: Int32) -> T? {
        guard let head = read(4, from: fd) else { return nil }
        let length = head.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }
        guard length < 1 << 30, let body = read(Int(length), from: fd) else { return nil }
        return try? JSONDecoder().decode(type, from: body)
    }

    private static func read(_ count: Int, from fd: Int32) -> Data? {
        var data = Data(count: count)
        var done = 0
        let ok = data.withUnsafeMutableBytes { raw -> Bool in
            while done < count {
                let n = Glibc.read(fd, raw.baseAddress! + done, count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                done += n
            }
            return true
        }
        return ok ? data : nil
    }
}

/// A plugin run in a `ferry-plugin-helper` process of its own (`isolation: process`).
///
/// The helper loads the plugin with the same loader and the same host table as the agent, so
/// the plugin sees the same ABI. Each call sends the job's view over a socketpair and waits for
/// the answer; calls are serialized. If the helper dies during a call (a crash of the plugin),
/// the call is reported as crashed and a new helper is started for the next call.
final class IsolatedPlugin: @unchecked Sendable {
    let identity: PluginIdentity
    private let spec: PluginSpec
    private let directories: [String]
    private let logger: Logger
    private let lock = NSLock()
    private var helper: (process: Process, fd: Int32)?
    /// The files the helper holds: those of the last job it was called about.
    private var sent: (job: JobID, files: JobFileList)?

    /// What a call came to.
    enum Result<Answer> {
        case answered(Answer)
        /// The helper died during the call; `cause` names the signal or the exit status.
        case crashed(cause: String)
    }

    private init(identity: PluginIdentity, spec: PluginSpec, directories: [String], logger: Logger, helper: (Process, Int32)) {
        self.identity = identity
        self.spec = spec
        self.directories = directories
        self.logger = logger
        self.helper = helper
    }

    /// The helper executable: `ferry-plugin-helper` beside the running program.
    static var helperPath: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).deletingLastPathComponent().path + "/ferry-plugin-helper"
    }

    /// Starts a helper and has it load the plugin.
    static func start(_ spec: PluginSpec, directories: [String], logger: Logger) throws(PluginLoadError) -> IsolatedPlugin {
        let (helper, identity) = try launch(spec, directories: directories)
        return IsolatedPlugin(identity: identity, spec: spec, directories: directories, logger: logger, helper: helper)
    }

    private static func launch(_ spec: PluginSpec, directories: [String]) throws(PluginLoadError) -> ((Process, Int32), PluginIdentity) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw PluginLoadError(path: spec.reference, reason: .createFailed, message: "cannot make a socketpair for its helper: \(String(cString: strerror(errno)))")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: helperPath)
        // Foundation dup2s the child's end onto standard input and output.
        let childEnd = FileHandle(fileDescriptor: pair[1], closeOnDealloc: true)
        process.standardInput = childEnd
        process.standardOutput = childEnd
        do { try process.run() } catch {
            close(pair[0])
            throw PluginLoadError(path: spec.reference, reason: .createFailed, message: "cannot start its helper \(helperPath): \(error)")
        }
        try? childEnd.close()
        let fd = pair[0]
        let request = HelperRequest.load(reference: spec.reference, settings: spec.settings.map { [$0.key, $0.value] }, directories: directories)
        guard HelperWire.send(request, on: fd), let answer = HelperWire.receive(HelperAnswer.self, on: fd) else {
            close(fd)
            process.waitUntilExit()
            throw PluginLoadError(path: spec.reference, reason: .createFailed, message: "its helper process ended while loading it (\(Self.cause(process)))")
        }
        switch answer {
        case .loaded(let identity):
            return ((process, fd), identity)
        case .refused(let reason, let message, let path):
            close(fd)
            process.waitUntilExit()
            throw PluginLoadError(path: path, reason: PluginLoadError.Reason(rawValue: reason) ?? .createFailed, message: message)
        default:
            close(fd)
            throw PluginLoadError(path: spec.reference, reason: .createFailed, message: "its helper answered out of turn")
        }
    }

    func validate(file: Int, view: PluginJobView) -> Result<ValidationOutcome> {
        call(view) { .validate(file: file, view: $0, files: $1) } unwrap: { answer in
            if case .validated(let outcome) = answer { return outcome }
            return nil
        }
    }

    func handleError(view: PluginJobView, error: FerryError) -> Result<[PolicyDecision]> {
        call(view) { .handleError(view: $0, error: error, files: $1) } unwrap: { answer in
            if case .decided(let decisions) = answer { return decisions }
            return nil
        }
    }

    private func call<Answer>(_ view: PluginJobView, _ request: (PluginJobView, FilesDelta) -> HelperRequest,
                              unwrap: (HelperAnswer) -> Answer?) -> Result<Answer> {
        lock.lock()
        defer { lock.unlock() }
        if helper == nil {
            sent = nil
            do { helper = try Self.launch(spec, directories: directories).0 } catch {
                return .crashed(cause: "its helper could not be started again: \(error)")
            }
        }
        let (process, fd) = helper!
        let files = view.job.files
        var delta = FilesDelta(reset: true, count: files.count, changed: [:])
        let indices: [Int]
        if let sent, sent.job == view.job.id, sent.files.count <= files.count {
            delta.reset = false
            indices = files.changedIndices(since: sent.files)
        } else {
            indices = Array(files.indices)
        }
        for index in indices { delta.changed[index] = files[index] }
        var bare = view
        bare.job = Job(persistedHeader: view.job, files: JobFileList())
        if HelperWire.send(request(bare, delta), on: fd), let answer = HelperWire.receive(HelperAnswer.self, on: fd), let value = unwrap(answer) {
            sent = (view.job.id, files)
            return .answered(value)
        }
        // The helper died (or spoke nonsense): the call is lost, the next one gets a new helper.
        close(fd)
        helper = nil
        sent = nil
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let cause = Self.cause(process)
        logger.error("plugin helper process died during a call; it will be started again",
                     metadata: ["plugin": "\(identity.name)", "cause": "\(cause)"])
        return .crashed(cause: cause)
    }

    /// Ends the helper: it calls the plugin's `destroy` when its socket closes.
    func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard let (process, fd) = helper else { return }
        close(fd)
        helper = nil
        process.waitUntilExit()
    }

    private static func cause(_ process: Process) -> String {
        if process.terminationReason == .uncaughtSignal {
            let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL", SIGFPE: "SIGFPE", SIGABRT: "SIGABRT", SIGKILL: "SIGKILL"]
            let number = process.terminationStatus
            return names[number].map { "\($0), signal \(number)" } ?? "signal \(number)"
        }
        return "exit status \(process.terminationStatus)"
    }
}

/// The helper's side: serves one plugin on a socket until it closes.
public enum PluginHelperServer {
    /// Reads requests from `fd` and answers them; returns when the agent closes the socket.
    public static func serve(on fd: Int32, logger: Logger) {
        var host: PluginHost?
        var held: (job: JobID, files: JobFileList)?
        /// The view with the files the helper holds, patched with the call's changes.
        func complete(_ view: PluginJobView, _ delta: FilesDelta) -> PluginJobView {
            var files = delta.reset || held?.job != view.job.id ? JobFileList() : held!.files
            for index in 0..<delta.count {
                if let file = delta.changed[index] {
                    if index < files.count { files[index] = file } else { files.append(file) }
                }
            }
            held = (view.job.id, files)
            var full = view
            full.job = Job(persistedHeader: view.job, files: files)
            return full
        }
        while let request = HelperWire.receive(HelperRequest.self, on: fd) {
            let answer: HelperAnswer
            switch request {
            case .load(let reference, let settings, let directories):
                let spec = PluginSpec(reference: reference, settings: settings.compactMap { $0.count == 2 ? ($0[0], $0[1]) : nil })
                do {
                    let loaded = try PluginHost(specs: [spec], directories: directories, logger: logger)
                    host = loaded
                    let plugin = loaded.plugins[0]
                    answer = .loaded(PluginIdentity(name: plugin.name, version: plugin.version, path: plugin.path, roles: plugin.roles, flags: plugin.flags))
                } catch {
                    answer = .refused(reason: error.reason.rawValue, message: error.message, path: error.path)
                }
            case .validate(let file, let view, let delta):
                answer = .validated(host?.validate(file: file, view: complete(view, delta)) ?? .valid([]))
            case .handleError(let view, let error, let delta):
                let full = complete(view, delta)
                answer = .decided(host.map { $0.handleError(view: full, error: error, policies: $0.plugins) } ?? [])
            }
            guard HelperWire.send(answer, on: fd) else { break }
        }
        host?.shutdown()
    }
}
