import FerryPluginABI
import FerryPluginKit

/// The range fallback from BITS' JobError sample, exactly:
/// on INSUFFICIENT_RANGE_SUPPORT, a file of unknown size (dynamic content) or of
/// more than 2 GiB leaves the error standing; otherwise the job is switched to
/// FOREGROUND and resumed, and a foreground job may fetch the file whole from zero.
///
/// Settings: `max_bytes` (default 2147483648, the BITS limit).
final class RangeFallbackPolicy: FerryPlugin {
    let maxBytes: UInt64

    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        if let unknown = settings.keys.sorted().first(where: { $0 != "max_bytes" }) {
            throw PluginFailure("unknown setting '\(unknown)' (known: max_bytes)")
        }
        if let text = settings["max_bytes"] {
            guard let value = UInt64(text) else { throw PluginFailure("max_bytes must be a number of bytes, got '\(text)'") }
            maxBytes = value
        } else {
            maxBytes = 2 << 30
        }
    }

    func jobError(job: PluginJob, error: PluginError) -> PluginOutcome {
        guard error.code == "INSUFFICIENT_RANGE_SUPPORT" else { return .ok }
        guard let size = error.remoteSize else {
            job.log(.info, "size unknown (dynamic content): range support is required, the error stands")
            return .ok
        }
        guard size <= maxBytes else {
            job.log(.info, "\(size) bytes is more than \(maxBytes): range support is required, the error stands")
            return .ok
        }
        job.setPriority(Int32(FERRY_PRIORITY_FOREGROUND))
        job.resume()
        return .ok
    }
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "range-fallback", version: "1.0.0", roles: .errorPolicy, type: RangeFallbackPolicy.self)
}
