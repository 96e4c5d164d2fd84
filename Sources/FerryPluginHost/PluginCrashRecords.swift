import CPluginGuard
import FerryCore
import Foundation
import Logging
import Synchronization

/// One call into a plugin that was under way when the process stopped.
public struct UnfinishedPluginCall: Codable, Sendable, Equatable {
    /// The plugin's name (its descriptor's).
    public var plugin: String
    /// The shared object it was loaded from.
    public var path: String
    /// `file_transferred` (a validator) or `job_error` (an error policy).
    public var callback: String
    /// The job the call was about.
    public var job: String
    /// The file the call was about; nil for an error about no single file.
    public var file: Int?
    public var started: Date
    /// The fatal signal the process died of during the call; nil when it was stopped by
    /// something else (SIGKILL, a power cut, a crash on another thread), which is not the
    /// plugin's fault.
    public var signal: Int32?

    /// Whether the plugin itself brought the process down.
    public var crashed: Bool { signal != nil }
}

/// What the agent remembers of plugins that crashed it, kept beside its store.
///
/// Before each call into a plugin, a record naming the plugin, the callback, the job and the
/// file is written to a slot file in ``directory`` (and its descriptor handed to a signal
/// handler that appends the fatal signal to it); the slot is emptied when the call returns.
/// Slots are kept open and reused, one per call under way, so a call costs two writes to a
/// file that exists, not a file created and deleted (which, for thousands of small files,
/// cost more than the transfers). The file survives the process: a slot found non-empty when
/// the agent starts is a call that never returned. A record with a signal is a crash of that plugin: the file it was about
/// fails with `PLUGIN_CRASHED`, the plugin is never called about that file again, and after
/// ``limit`` crashes the plugin is disabled until the plugin configuration changes.
public final class PluginCrashRecords: Sendable {
    public let directory: String
    /// Crashes after which a plugin is disabled.
    public let limit: Int
    private let logger: Logger
    private let state: Mutex<Ledger>
    /// Slot files not in use, and how many were opened (each one's number names it).
    private let slots = Mutex<(free: [Int32], opened: Int)>(([], 0))

    /// The persistent part: crash counts, disabled plugins, and the files each plugin is kept away from.
    struct Ledger: Codable, Equatable {
        /// A digest of the plugin configuration these counts belong to.
        var configuration: String
        var crashes: [String: Int] = [:]
        var disabled: Set<String> = []
        /// `plugin \u{1F} job \u{1F} file` (file `-` for none).
        var excluded: Set<String> = []
    }

    private var ledgerPath: String { directory + "/crashes.json" }

    /// Opens the records in `directory` (created, mode 0700, if missing) for a plugin
    /// configuration. Counts kept for another configuration are forgotten.
    /// - Parameters:
    ///   - configuration: a description of the plugin configuration; a change resets everything.
    public init(directory: String, limit: Int, configuration: String, logger: Logger) throws(FerryError) {
        self.directory = directory
        self.limit = max(1, limit)
        self.logger = logger
        var info = stat()
        if stat(directory, &info) != 0 {
            guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
                throw FerryError(code: .localFileError, context: .queueManager,
                                 message: "cannot create the plugin call records directory \(directory): \(String(cString: strerror(errno)))")
            }
        }
        let digest = PluginCrashRecords.digest(configuration)
        var ledger = Ledger(configuration: digest)
        if let data = FileManager.default.contents(atPath: directory + "/crashes.json"),
           let stored = try? JSONDecoder().decode(Ledger.self, from: data), stored.configuration == digest {
            ledger = stored
        }
        state = Mutex(ledger)
        guard ferry_plugin_guard_install() == 0 else {
            throw FerryError(code: .localFileError, context: .queueManager,
                             message: "cannot install the plugin crash guard: \(String(cString: strerror(errno)))")
        }
    }

    /// Reads what a stopped agent left, without changing anything (`ferryd --check-config`).
    /// - Returns: the plugins disabled for this configuration, with their crash counts.
    public static func disabledPlugins(in directory: String, configuration: String) -> [(plugin: String, crashes: Int)] {
        guard let data = FileManager.default.contents(atPath: directory + "/crashes.json"),
              let ledger = try? JSONDecoder().decode(Ledger.self, from: data),
              ledger.configuration == digest(configuration) else { return [] }
        return ledger.disabled.sorted().map { ($0, ledger.crashes[$0] ?? 0) }
    }

    /// The plugins disabled now, with their crash counts.
    public var disabled: [(plugin: String, crashes: Int)] {
        state.withLock { ledger in ledger.disabled.sorted().map { ($0, ledger.crashes[$0] ?? 0) } }
    }

    /// Whether `plugin` may be called about this job's file.
    public func refusal(of plugin: String, job: JobID, file: Int?) -> String? {
        state.withLock { ledger in
            if ledger.disabled.contains(plugin) {
                return "plugin \(plugin) is disabled after \(ledger.crashes[plugin] ?? 0) crashes (until the plugin configuration changes)"
            }
            if ledger.excluded.contains(Self.key(plugin, job, file)) {
                return "plugin \(plugin) crashed while handling \(file.map { "file \($0)" } ?? "this job"); it is not called about it again"
            }
            return nil
        }
    }

    /// Collects the calls a stopped agent left unfinished and removes their records. Each crash
    /// is counted against its plugin, which is kept away from that file from now on, and
    /// disabled when it reaches the limit (logged once).
    public func collectUnfinishedCalls() -> [UnfinishedPluginCall] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var calls: [UnfinishedPluginCall] = []
        // `slot-N.record` (reused slots) and `call-….record` (one file a call, as earlier
        // versions wrote them): an empty slot is a call that returned.
        for name in names.sorted() where (name.hasPrefix("slot-") || name.hasPrefix("call-")) && name.hasSuffix(".record") {
            let path = directory + "/" + name
            defer { unlink(path) }
            guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { continue }
            let text = String(decoding: data, as: UTF8.self)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
            guard let first = lines.first, var call = try? JSONDecoder().decode(UnfinishedPluginCall.self, from: Data(first.utf8)) else { continue }
            call.signal = lines.dropFirst().compactMap { line in line.hasPrefix("signal ") ? Int32(line.dropFirst(7)) : nil }.first
            calls.append(call)
        }
        let crashes = calls.filter(\.crashed)
        guard !crashes.isEmpty else { return calls }
        let newlyDisabled = state.withLock { ledger -> [(String, Int)] in
            var disabled: [(String, Int)] = []
            for call in crashes {
                ledger.crashes[call.plugin, default: 0] += 1
                ledger.excluded.insert(Self.key(call.plugin, JobID(call.job) ?? JobID(), call.file))
                if ledger.crashes[call.plugin]! >= limit, ledger.disabled.insert(call.plugin).inserted {
                    disabled.append((call.plugin, ledger.crashes[call.plugin]!))
                }
            }
            return disabled
        }
        for (plugin, count) in newlyDisabled {
            logger.critical("plugin disabled after \(count) crashes; it stays disabled until the plugin configuration changes",
                            metadata: ["plugin": "\(plugin)", "crashes": "\(count)", "limit": "\(limit)"])
        }
        save()
        return calls
    }

    /// A plugin's helper process died during a call (`isolation: process`): counted and kept away
    /// from that file like a crash of the agent, without the agent stopping.
    public func recordIsolatedCrash(of plugin: String, job: JobID, file: Int?) {
        let count = state.withLock { ledger -> Int? in
            ledger.crashes[plugin, default: 0] += 1
            ledger.excluded.insert(Self.key(plugin, job, file))
            let count = ledger.crashes[plugin]!
            return count >= limit && ledger.disabled.insert(plugin).inserted ? count : nil
        }
        if let count {
            logger.critical("plugin disabled after \(count) crashes; it stays disabled until the plugin configuration changes",
                            metadata: ["plugin": "\(plugin)", "crashes": "\(count)", "limit": "\(limit)"])
        }
        save()
    }

    /// Forgets a job's exclusions (the job ended).
    public func forget(job: JobID) {
        let prefix = "\(job)"
        let changed = state.withLock { ledger -> Bool in
            let before = ledger.excluded.count
            ledger.excluded = ledger.excluded.filter { $0.split(separator: "\u{1F}").dropFirst().first.map(String.init) != prefix }
            return ledger.excluded.count != before
        }
        if changed { save() }
    }

    private func save() {
        let ledger = state.withLock { $0 }
        guard let data = try? JSONEncoder().encode(ledger) else { return }
        let temporary = ledgerPath + ".new"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            logger.error("cannot write the plugin crash records", metadata: ["path": "\(ledgerPath)"])
            return
        }
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
        rename(temporary, ledgerPath)
    }

    /// Writes the record of a call about to be made into a free slot and arms the signal
    /// guard on this thread.
    /// - Returns: the slot's descriptor, for ``end(_:)``; nil when no record could be written
    ///   (logged; the call is made all the same).
    func begin(plugin: LoadedPlugin, callback: String, job: JobID, file: Int?) -> Int32? {
        let call = UnfinishedPluginCall(plugin: plugin.name, path: plugin.path, callback: callback, job: job.description, file: file,
                                        started: Date(), signal: nil)
        guard var data = try? JSONEncoder().encode(call), let fd = takeSlot() else { return nil }
        data.append(0x0A)
        // The slot is empty (``end(_:)`` left it so) and opened with O_APPEND: the record
        // starts at 0, and a fatal signal's line goes after it.
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else {
            logger.error("cannot record a plugin call", metadata: ["directory": "\(directory)", "error": "\(String(cString: strerror(errno)))"])
            _ = ftruncate(fd, 0)
            slots.withLock { $0.free.append(fd) }
            return nil
        }
        ferry_plugin_guard_enter(fd)
        return fd
    }

    /// The call returned: disarms the guard, empties the slot and frees it.
    func end(_ slot: Int32?) {
        ferry_plugin_guard_leave()
        guard let slot else { return }
        guard ftruncate(slot, 0) == 0 else {
            // A slot that cannot be emptied would report this call after a restart: drop it.
            logger.error("cannot clear a plugin call record", metadata: ["error": "\(String(cString: strerror(errno)))"])
            close(slot)
            return
        }
        slots.withLock { $0.free.append(slot) }
    }

    /// A free slot, or a new one (`slot-N.record`, created empty).
    private func takeSlot() -> Int32? {
        let taken = slots.withLock { slots -> (fd: Int32?, number: Int) in
            if let fd = slots.free.popLast() { return (fd, 0) }
            slots.opened += 1
            return (nil, slots.opened)
        }
        if let fd = taken.fd { return fd }
        let path = "\(directory)/slot-\(taken.number).record"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            logger.error("cannot record a plugin call", metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
            return nil
        }
        return fd
    }

    private static func key(_ plugin: String, _ job: JobID, _ file: Int?) -> String {
        "\(plugin)\u{1F}\(job)\u{1F}\(file.map(String.init) ?? "-")"
    }

    /// FNV-1a, printed in hexadecimal: enough to tell one configuration from another.
    static func digest(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}
