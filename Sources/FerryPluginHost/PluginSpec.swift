import FerryCore

/// One plugin the agent is told to load, as its configuration names it.
public struct PluginSpec: Sendable, Equatable {
    /// A path to a shared object, or a bare name looked up as `libferry-<name>.so`
    /// in the plugin directories.
    public var reference: String
    /// Key/value settings handed to the plugin's `create`.
    public var settings: [(key: String, value: String)]
    /// Which jobs the plugin applies to.
    public var appliesTo: Applicability
    /// Where the plugin runs: in the agent, or in a helper process of its own.
    public var isolation: Isolation

    /// Where a plugin runs.
    public enum Isolation: String, Sendable, Equatable, CaseIterable {
        /// Loaded into the calling process with `dlopen`: the fastest; a crash takes the process down.
        case inProcess = "in-process"
        /// Loaded into a `ferry-plugin-helper` process, talking over a socketpair with the same
        /// ABI for the plugin: a crash costs only the call, and the helper is started again.
        case process
    }

    /// Which jobs a plugin applies to.
    public enum Applicability: Sendable, Equatable {
        case allJobs
        /// Jobs whose property `key` is set (to `value`, when given).
        case jobsWithProperty(key: String, value: String?)

        public func matches(_ job: Job) -> Bool {
            switch self {
            case .allJobs: true
            case .jobsWithProperty(let key, let value):
                job.properties[key].map { actual in value.map { $0 == actual } ?? true } ?? false
            }
        }
    }

    public init(reference: String, settings: [(key: String, value: String)] = [], appliesTo: Applicability = .allJobs,
                isolation: Isolation = .inProcess) {
        self.reference = reference
        self.settings = settings
        self.appliesTo = appliesTo
        self.isolation = isolation
    }

    /// The plugin configuration as one line per entry, for telling configurations apart
    /// (crash counts belong to one configuration).
    public static func describe(_ specs: [PluginSpec]) -> String {
        specs.map { spec in
            "\(spec.reference) \(spec.appliesTo) \(spec.isolation.rawValue) " + spec.settings.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }.joined(separator: "\n")
    }

    public static func == (lhs: PluginSpec, rhs: PluginSpec) -> Bool {
        lhs.reference == rhs.reference && lhs.appliesTo == rhs.appliesTo && lhs.isolation == rhs.isolation
            && lhs.settings.map(\.key) == rhs.settings.map(\.key) && lhs.settings.map(\.value) == rhs.settings.map(\.value)
    }
}

/// Why a plugin was refused. Always names the file and the reason.
public struct PluginLoadError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Reason: String, Sendable {
        case notFound
        case untrusted
        case notASharedObject
        case missingSymbol
        case wrongABI
        case badDescriptor
        case createFailed
    }
    public let path: String
    public let reason: Reason
    public let message: String

    public var description: String { "plugin \(path): \(message)" }
}
