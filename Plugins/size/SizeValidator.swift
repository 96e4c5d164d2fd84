import FerryPluginKit
#if canImport(Glibc)
import Glibc
#endif

/// Validates a file's size: exactly its `size` property, and at most the smaller of
/// its `max_size` property and the `max_size` setting. A file with no limit is left alone.
///
/// Settings: `max_size` (bytes, optional).
final class SizeValidator: FerryPlugin {
    let maxSize: UInt64?

    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        if let unknown = settings.keys.sorted().first(where: { $0 != "max_size" }) {
            throw PluginFailure("unknown setting '\(unknown)' (known: max_size)")
        }
        if let text = settings["max_size"] {
            guard let value = UInt64(text) else { throw PluginFailure("max_size must be a number of bytes, got '\(text)'") }
            maxSize = value
        } else {
            maxSize = nil
        }
    }

    func fileTransferred(job: PluginJob, file: PluginFile) -> PluginOutcome {
        var info = stat()
        guard stat(file.temporaryPath, &info) == 0 else {
            return .failed("cannot stat \(file.temporaryPath): \(String(cString: strerror(errno)))")
        }
        let actual = UInt64(info.st_size)
        var checks: [String] = []
        if let text = file.property("size") {
            guard let expected = UInt64(text) else {
                file.setValidationState(valid: false, reason: "the size property is not a number of bytes: '\(text.prefix(40))'")
                return .ok
            }
            guard actual == expected else {
                file.setValidationState(valid: false, reason: "size is \(actual) bytes, expected \(expected)")
                return .ok
            }
            checks.append("size \(actual) matches")
        }
        var limit = maxSize
        if let text = file.property("max_size") {
            guard let value = UInt64(text) else {
                file.setValidationState(valid: false, reason: "the max_size property is not a number of bytes: '\(text.prefix(40))'")
                return .ok
            }
            limit = min(limit ?? value, value)
        }
        if let limit {
            guard actual <= limit else {
                file.setValidationState(valid: false, reason: "size is \(actual) bytes, more than the maximum of \(limit)")
                return .ok
            }
            checks.append("within \(limit) bytes")
        }
        if !checks.isEmpty { file.setValidationState(valid: true, reason: checks.joined(separator: ", ")) }
        return .ok
    }
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "size", version: "1.0.0", roles: .validator, type: SizeValidator.self)
}
