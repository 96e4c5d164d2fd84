import FerryCore
import Foundation

/// What the engine knows of every source (a mirror's origin): failures since the last
/// success and measured throughput. It picks the source a file starts from, tells error
/// policies what is known, and hands the changed entries to the store in batches.
struct SourceHealthBook {
    private var byOrigin: [String: SourceHealth] = [:]
    private var changed: Set<String> = []
    private var lastFlush = Date()
    /// How often changed entries are written (seconds).
    static let flushInterval = 2.0

    init(_ known: [SourceHealth] = []) {
        for health in known { byOrigin[health.origin] = health }
    }

    /// Every source, by origin.
    var all: [SourceHealth] { byOrigin.values.sorted { $0.origin < $1.origin } }

    /// What is known of the origin of `url`.
    func health(of url: String) -> SourceHealth? {
        SourceHealth.origin(of: url).flatMap { byOrigin[$0] }
    }

    /// The candidate URL to start a file from: fewest failures since the last success, then
    /// clearly faster, then the order given.
    func preferredSource(of file: JobFile) -> String {
        let candidates = file.candidateURLs.enumerated().map { (url: $0.element, position: $0.offset) }
        let best = candidates.min { a, b in
            SourceHealth.preferred((health(of: a.url), a.position), (health(of: b.url), b.position))
        }
        return best?.url ?? file.remoteURL
    }

    /// What error policies may know of the sources of the file an error concerns.
    func known(for job: Job, file index: Int?) -> [String: SourceHealth] {
        guard let index, job.files.indices.contains(index) else { return [:] }
        var known: [String: SourceHealth] = [:]
        for url in job.files[index].candidateURLs {
            if let origin = SourceHealth.origin(of: url), let health = byOrigin[origin] { known[origin] = health }
        }
        return known
    }

    /// A fetch from `url` ended: `success` with the bytes and seconds it took, or `nil` for a failure.
    mutating func record(_ url: String, success: (bytes: UInt64, seconds: Double)?, at now: Date = Date()) {
        guard let origin = SourceHealth.origin(of: url) else { return }
        var health = byOrigin[origin] ?? SourceHealth(origin: origin)
        if let success {
            health.recordSuccess(at: now, bytes: success.bytes, seconds: success.seconds)
        } else {
            health.recordFailure(at: now)
        }
        byOrigin[origin] = health
        changed.insert(origin)
    }

    /// Whether changed entries wait and the flush interval went by.
    func flushIsDue(now: Date) -> Bool {
        !changed.isEmpty && now.timeIntervalSince(lastFlush) >= Self.flushInterval
    }

    /// The entries changed since the last call, to be written; empty when none did.
    mutating func takeChanged(now: Date = Date()) -> [SourceHealth] {
        lastFlush = now
        defer { changed.removeAll() }
        return changed.compactMap { byOrigin[$0] }
    }
}
