import FerryPluginKit

/// Placeholder: the signature validator (detached OpenSSL and minisign signatures).
final class SignatureValidator: FerryPlugin {
    init(host: PluginHostAccess, settings: [String: String]) throws(PluginFailure) {
        throw PluginFailure("the signature validator is not implemented yet")
    }
}

@_cdecl("ferry_plugin_v1")
public func ferryPluginV1() -> UnsafeRawPointer {
    PluginKit.descriptor(name: "signature", version: "0.0.0", roles: .validator, type: SignatureValidator.self)
}
