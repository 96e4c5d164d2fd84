// min-size, in Swift: a finished file smaller than the `min_bytes` setting (default 1) is
// invalid, unless its property `allow_small` is "true", in which case the validator abstains.
import FerryPluginKit

final class MinSizeValidator: FerryPlugin {
    let minBytes: UInt64

    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        if let unknown = settings.keys.sorted().first(where: { $0 != "min_bytes" }) {
            throw PluginFailure("unknown setting '\(unknown)' (known: min_bytes)")
        }
        let text = settings["min_bytes"] ?? "1"
        guard let value = UInt64(text) else { throw PluginFailure("min_bytes must be a number of bytes, got '\(text)'") }
        minBytes = value
    }

    func fileTransferred(job: PluginJob, file: PluginFile) -> PluginOutcome {
        if file.property("allow_small") == "true" { return .ok }       // abstain: no verdict
        guard let size = file.bytesTotal else { return .failed("the size of \(file.remoteURL) is unknown") }
        let valid = size >= minBytes
        file.setValidationState(valid: valid, reason: "\(size) bytes, \(valid ? "at least" : "below") the minimum of \(minBytes)")
        return .ok
    }
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "min-size", version: "1.0.0", roles: .validator, type: MinSizeValidator.self)
}
