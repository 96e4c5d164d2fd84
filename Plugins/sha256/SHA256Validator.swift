import FerryCrypto
import FerryPluginKit

/// Validates a file against its `sha256` (or `sha512`) property.
///
/// Uses the digest the host computed while the bytes streamed in, and reads the
/// temporary only when the host has none. A file with no expectation is left
/// alone (abstain), unless `require = true`.
///
/// Settings: `require` (`true`/`false`, default `false`).
final class SHA256Validator: FerryPlugin {
    let require: Bool

    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        if let unknown = settings.keys.sorted().first(where: { $0 != "require" }) {
            throw PluginFailure("unknown setting '\(unknown)' (known: require)")
        }
        switch settings["require"] ?? "false" {
        case "true": require = true
        case "false": require = false
        case let other: throw PluginFailure("require must be true or false, got '\(other)'")
        }
    }

    func fileTransferred(job: PluginJob, file: PluginFile) -> PluginOutcome {
        for algorithm in [DigestAlgorithm.sha256, .sha512] {
            guard let text = file.property(algorithm.rawValue) else { continue }
            let expectedText = text.trimmingCharacters(in: " \t\n")
            guard let expected = bytes(fromHex: expectedText), expected.count == algorithm.byteCount else {
                file.setValidationState(valid: false, reason: "the \(algorithm.rawValue) property is not \(algorithm.byteCount * 2) hexadecimal digits: '\(text.prefix(80))'")
                return .ok
            }
            let actual: [UInt8]
            if let streamed = file.digest(algorithm.rawValue) {
                actual = streamed
            } else {
                do {
                    actual = try StreamingDigest.ofFile(atPath: file.temporaryPath, algorithm)
                } catch {
                    return .failed("cannot hash \(file.temporaryPath): \(error)")
                }
            }
            if actual == expected {
                file.setValidationState(valid: true, reason: "\(algorithm.rawValue) matches")
            } else {
                file.setValidationState(valid: false, reason: "\(algorithm.rawValue) mismatch: expected \(hexString(expected)), got \(hexString(actual))")
            }
            return .ok
        }
        if require {
            file.setValidationState(valid: false, reason: "no sha256 or sha512 property to check against (require = true)")
        }
        return .ok
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text.removeFirst() }
        while let last = text.last, set.contains(last) { text.removeLast() }
        return String(text)
    }
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "sha256", version: "1.0.0", roles: .validator, type: SHA256Validator.self)
}
