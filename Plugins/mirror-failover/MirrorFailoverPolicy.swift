import FerryPluginABI
import FerryPluginKit
import Synchronization

/// Switches a failing file to its next healthy mirror and resumes the job.
///
/// A file's alternatives are its `mirrors` property (URLs separated by spaces). On an
/// HTTP error, a validation failure, a stall, a dropped or truncated transfer, a bad
/// range or a TLS failure of one file, the policy points the file at the best mirror
/// not yet tried in this round — fewest failures since their last success first, then
/// the fastest measured, then the order given — and resumes the job. When every
/// candidate failed once, the round ends: the error is left to the next policy
/// (`retry-backoff` for transient errors) or stands, and the next failure starts a new round.
///
/// What the switch keeps is the engine's rule: after a validation failure the file
/// starts again from zero; after a transport error it continues from its checkpoint
/// only if the new mirror serves the same size and ETag (`If-Range`), else from zero.
final class MirrorFailoverPolicy: FerryPlugin {
    /// Per job and file: the URLs tried in the current round.
    private let tried = Mutex<[String: Set<String>]>([:])
    private static let remembered = 10_000

    /// The error codes a mirror switch can cure; local errors (disk, permissions) are not among them.
    static func failsOver(_ code: String) -> Bool {
        code.hasPrefix("HTTP_ERROR_") || [
            "VALIDATION_FAILED", "TIMEOUT", "TRUNCATED_BODY", "NETWORK_DISCONNECTED", "INVALID_RANGE",
            "INSUFFICIENT_RANGE_SUPPORT", "TLS_ERROR", "TRANSPORT_ERROR", "FILE_TOO_LARGE",
        ].contains(code)
    }

    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        if let unknown = settings.keys.sorted().first {
            throw PluginFailure("unknown setting '\(unknown)' (mirror-failover has none)")
        }
    }

    func jobError(job: PluginJob, error: PluginError) -> PluginOutcome {
        guard Self.failsOver(error.code), let index = error.fileIndex, let file = job.file(index) else { return .ok }
        let current = file.remoteURL
        var candidates = [current]
        for mirror in (file.property("mirrors") ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)
        where !candidates.contains(mirror) {
            candidates.append(mirror)
        }
        guard candidates.count > 1 else { return .ok }
        let health = Dictionary(uniqueKeysWithValues: candidates.map { ($0, job.sourceHealth($0)) })
        let key = "\(job.id)#\(index)"
        let next = tried.withLock { table -> String? in
            var seen = table[key] ?? []
            seen.insert(current)
            let left = candidates.enumerated().filter { !seen.contains($0.element) }
            guard let best = left.min(by: { Self.preferred((health[$0.element] ?? nil, $0.offset), (health[$1.element] ?? nil, $1.offset)) }) else {
                table[key] = nil
                return nil
            }
            seen.insert(best.element)
            if table[key] == nil, table.count >= Self.remembered, let victim = table.keys.first { table[victim] = nil }
            table[key] = seen
            return best.element
        }
        guard let next else {
            job.log(.info, "file \(index): every one of its \(candidates.count) sources failed in this round; the error is left to the next policy")
            return .ok
        }
        let switched = file.setRemoteURL(next)
        guard switched == FERRY_OK else { return .failed("the host refused to point file \(index) at \(next) (status \(switched))") }
        job.resume()
        job.log(.info, "file \(index): \(error.code) from \(current); switching to \(next)")
        return .ok
    }

    /// Fewest failures since the last success, then clearly faster, then the order given.
    static func preferred(_ a: (PluginSourceHealth?, Int), _ b: (PluginSourceHealth?, Int)) -> Bool {
        let failuresA = a.0?.consecutiveFailures ?? 0
        let failuresB = b.0?.consecutiveFailures ?? 0
        if failuresA != failuresB { return failuresA < failuresB }
        let speedA = a.0?.bytesPerSecond ?? 0
        let speedB = b.0?.bytesPerSecond ?? 0
        if speedA > 0, speedB > 0, max(speedA, speedB) > 1.5 * min(speedA, speedB) { return speedA > speedB }
        return a.1 < b.1
    }
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "mirror-failover", version: "1.0.0", roles: .errorPolicy, flags: .wantsTransientErrors,
                         type: MirrorFailoverPolicy.self)
}
