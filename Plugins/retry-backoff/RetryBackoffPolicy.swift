import FerryPluginABI
import FerryPluginKit
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Transient errors retried with exponential backoff and jitter.
///
/// The n-th failure in a row without progress waits `min(cap, minimum × factor^(n-1))`,
/// less up to `jitter` of it at random (never below the job's minimum retry delay), and
/// never less than the server's `Retry-After` (seconds or an HTTP date, on 429 and 503).
/// Progress between two failures starts the count again. The engine gives up when the
/// job's no-progress timeout passes, whatever this policy asked.
///
/// Settings: `cap_sec` (default 3600), `factor` (default 2), `jitter` (0…1, default 0.5).
final class RetryBackoffPolicy: FerryPlugin {
    let cap: Double
    let factor: Double
    let jitter: Double

    /// Per job: failures in a row, and the bytes the job had at the last one.
    private let attempts = Mutex<[String: (count: Int, bytes: UInt64)]>([:])
    /// Jobs are forgotten oldest first beyond this many (finished jobs are never told to us).
    private static let remembered = 10_000

    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        let known = ["cap_sec", "factor", "jitter"]
        if let unknown = settings.keys.sorted().first(where: { !known.contains($0) }) {
            throw PluginFailure("unknown setting '\(unknown)' (known: \(known.joined(separator: ", ")))")
        }
        cap = try Self.number(settings, "cap_sec", default: 3600, in: 1...31_536_000)
        factor = try Self.number(settings, "factor", default: 2, in: 1...10)
        jitter = try Self.number(settings, "jitter", default: 0.5, in: 0...1)
    }

    private static func number(_ settings: [String: String], _ key: String, default value: Double,
                               in range: ClosedRange<Double>) throws(PluginFailure) -> Double {
        guard let text = settings[key] else { return value }
        guard let number = Double(text), range.contains(number) else {
            throw PluginFailure("\(key) must be a number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return number
    }

    func jobError(job: PluginJob, error: PluginError) -> PluginOutcome {
        guard error.isTransient, let minimum = job.minimumRetryDelay else { return .ok }
        let bytes = job.bytesTransferred
        let failures = attempts.withLock { table -> Int in
            var entry = table[job.id] ?? (count: 0, bytes: bytes)
            // Progress since the last failure: the backoff starts again.
            if bytes > entry.bytes { entry.count = 0 }
            entry.count += 1
            entry.bytes = bytes
            if table[job.id] == nil, table.count >= Self.remembered, let victim = table.keys.first { table[victim] = nil }
            table[job.id] = entry
            return entry.count
        }
        let base = min(cap, minimum * pow(factor, Double(min(failures - 1, 64))))
        var delay = max(minimum, base * (1 - jitter * Double.random(in: 0..<1)))
        if let asked = error.retryAfterSeconds { delay = max(delay, asked) }
        let status = job.setRetryDelay(delay)
        guard status == FERRY_OK else { return .failed("the host refused the retry delay (status \(status))") }
        job.log(.info, "failure \(failures) in a row (\(error.code)): next try in \((delay * 10).rounded() / 10) s"
                + (error.retryAfterSeconds.map { " (Retry-After \($0.rounded()) s)" } ?? ""))
        return .ok
    }
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "retry-backoff", version: "1.0.0", roles: .errorPolicy, flags: .wantsTransientErrors,
                         type: RetryBackoffPolicy.self)
}
