import CFerrySystem
import FerryCore
import FerryPluginHost
#if canImport(Glibc)
import Glibc
#endif

/// Every tunable of the engine, with the defaults a package pipeline wants.
public struct EngineConfiguration: Sendable, Equatable {
    /// The SQLite file holding every job.
    public var storePath: String
    /// Transfers in flight at once, across all jobs (and libcurl's connection cap).
    public var maxConnections: Int = 16
    /// Connections to one host at once.
    public var maxConnectionsPerHost: Int = 6
    /// Files of one job transferred at the same time.
    public var maxParallelFilesPerJob: Int = 8
    /// Background jobs that run at once (BITS runs one); foreground jobs are not counted.
    public var maxActiveBackgroundJobs: Int = 1
    /// Seconds a background job runs before it yields to a queued job of the same priority.
    public var timeSliceSeconds: Double = 30
    /// The most new bytes a crash may cost a transfer: its progress is flushed and recorded
    /// every quarter of this (a flush under way lets the recorded length trail)...
    public var checkpointBytes: UInt64 = 8 << 20
    /// ...or after this many seconds, whichever comes first.
    public var checkpointIntervalSeconds: Double = 2
    /// Seconds allowed to connect to a server.
    public var connectTimeoutSeconds: Int = 30
    /// Seconds without a byte after which a transfer counts as stalled (a transient error).
    public var stallTimeoutSeconds: Int = 60
    /// The minimum retry delay of new jobs, in seconds (BITS: 600; floor 1, where BITS has 5).
    public var defaultMinimumRetryDelay: Double = Job.defaultMinimumRetryDelay
    /// The no-progress timeout of new jobs, in seconds (BITS: 14 days).
    public var defaultNoProgressTimeout: Double = Job.defaultNoProgressTimeout
    /// Caps the bytes per second of all background transfers together; 0 leaves them uncapped.
    public var backgroundBytesPerSecond: Int64 = 0
    /// Daily windows (local time) with their own background cap, overriding
    /// ``backgroundBytesPerSecond`` while they last.
    public var bandwidthSchedule: [BandwidthWindow] = []
    /// Seconds a job may spend CONNECTING or TRANSFERRING before it fails with
    /// MAXDOWNLOAD_TIMEOUT (BITS: 90 days); 0 means no limit.
    public var maxDownloadTimeSeconds: Double = 7_776_000
    /// Seconds without any change after which a job is cancelled (BITS' JobInactivityTimeout,
    /// 90 days); 0 means never.
    public var jobInactivityTimeoutSeconds: Double = 7_776_000

    /// How many times error policies may resume one job; after that its error stands.
    public var maxPolicyResumes: Int = 10
    /// Where each call into a plugin is recorded before it is made, so that a plugin that
    /// crashes the process costs one file, not the agent (see `PluginCrashRecords`); nil
    /// records nothing.
    public var pluginCallRecordsDirectory: String?
    /// Crashes after which a plugin is disabled until the plugin configuration changes.
    public var pluginCrashLimit: Int = 3
    /// The shortest time between two ``EngineEvent/jobProgressed(_:)`` events of one job, in seconds.
    public var progressEventInterval: Double = 0.1
    /// Refuse any file larger than this many bytes, aborting its transfer as soon as it
    /// is crossed; `nil` leaves files unbounded except by their `size`/`max_size` properties.
    public var maxFileBytes: UInt64?
    /// The plugins to load, in order. The embedded default validates every job with the
    /// built-in sha256 and size validators, which abstain on files with no expectation,
    /// and handles errors with the built-in range-fallback, mirror-failover and
    /// retry-backoff policies, in that order.
    public var plugins: [PluginSpec] = EngineConfiguration.defaultPlugins
    /// Where bare plugin names are looked up: next to the running executable, then
    /// in `../lib/ferry/plugins` beside it.
    public var pluginDirectories: [String] = EngineConfiguration.defaultPluginDirectories()

    public static let defaultPlugins = [
        PluginSpec(reference: "sha256"), PluginSpec(reference: "size"),
        PluginSpec(reference: "range-fallback"), PluginSpec(reference: "mirror-failover"), PluginSpec(reference: "retry-backoff"),
    ]

    public static func defaultPluginDirectories() -> [String] {
        let executable = executableDirectory()
        return [executable, executable + "/../lib/ferry/plugins"]
    }

    public init(storePath: String) {
        self.storePath = storePath
    }
}

/// Process-wide settings the engine's processes (ferryd, ferry transfer) apply at start.
public enum ProcessTuning {
    /// Limits glibc to two malloc arenas. The engine's worker threads (validation,
    /// durability, temporaries) would otherwise each keep an arena of freed memory,
    /// which shows as resident memory that never shrinks; two keep contention low.
    public static func limitMallocArenas() { _ = ferry_limit_malloc_arenas(2) }
}

/// The directory of the running executable, read from `/proc/self/exe`.
func executableDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return "." }
    let path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return String(path[..<slash])
}

/// A daily window with its own cap on background bandwidth.
public struct BandwidthWindow: Sendable, Equatable {
    /// Minutes after local midnight when the window opens (0..<1440).
    public var startMinute: Int
    /// Minutes after local midnight when it closes; a window may wrap past midnight.
    public var endMinute: Int
    /// The cap while the window is open; 0 leaves background transfers uncapped.
    public var bytesPerSecond: Int64

    public init(startMinute: Int, endMinute: Int, bytesPerSecond: Int64) {
        self.startMinute = startMinute
        self.endMinute = endMinute
        self.bytesPerSecond = bytesPerSecond
    }

    /// Whether the window is open at `minute` minutes after midnight.
    public func contains(minute: Int) -> Bool {
        startMinute <= endMinute ? (startMinute..<endMinute).contains(minute) : (minute >= startMinute || minute < endMinute)
    }
}

extension EngineConfiguration {
    /// The background cap in force at `minuteOfDay` (local time).
    public func backgroundCap(atMinute minuteOfDay: Int) -> Int64 {
        bandwidthSchedule.first { $0.contains(minute: minuteOfDay) }?.bytesPerSecond ?? backgroundBytesPerSecond
    }
}
