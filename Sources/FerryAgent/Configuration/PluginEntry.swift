import FerryEngine
import FerryPluginHost

/// One entry of the configuration's `plugins` list: the ``PluginSpec`` the engine loads,
/// and the role the configuration expects the plugin to play.
///
/// The role is only recorded here; the agent compares it with the roles the plugin
/// declares once the plugin is loaded, and refuses a plugin that does not play it.
public struct PluginEntry: Sendable, Equatable {
    /// A role a plugin can be expected to play, spelled as in the configuration file.
    public enum Role: String, Sendable, Equatable, CaseIterable {
        /// The plugin implements `fileTransferred` and judges files.
        case validator
        /// The plugin implements `jobError` and reacts to errors.
        case errorPolicy = "error-policy"
    }

    /// What to load, with its settings and the jobs it applies to.
    public var spec: PluginSpec
    /// The role the plugin must play; `nil` accepts whatever roles it declares.
    public var role: Role?

    /// Creates an entry.
    /// - Parameters:
    ///   - spec: what to load, with its settings and the jobs it applies to.
    ///   - role: the role the plugin must play; `nil` accepts whatever roles it declares.
    public init(spec: PluginSpec, role: Role? = nil) {
        self.spec = spec
        self.role = role
    }

    /// The built-in `sha256` and `size` validators and the `range-fallback`, `mirror-failover`
    /// and `retry-backoff` error policies, applied to every job (``EngineConfiguration/defaultPlugins``).
    public static let defaults: [PluginEntry] = EngineConfiguration.defaultPlugins.map {
        PluginEntry(spec: $0, role: ["sha256", "size"].contains($0.reference) ? .validator : .errorPolicy)
    }
}

