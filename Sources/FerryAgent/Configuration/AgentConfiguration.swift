import FerryControl
import FerryEngine
import FerryPluginHost
import Foundation
import Logging
import Yams
#if canImport(Glibc)
import Glibc
#endif

/// Everything `ferryd` is told by its configuration file and its command line, with the
/// embedded defaults for what neither says.
///
/// Precedence: command line > file > defaults. ``load(path:overrides:environment:)`` reads
/// the YAML file, checks every key (an unknown key, a wrong type or an out-of-range value is
/// a ``ConfigurationError`` naming the line and the dotted key), applies the command-line
/// ``Overrides`` and derives what depends on other values (the default socket, the store
/// path, the plugin search path).
///
/// ## Configuration keys
/// `paths.state_dir`, `paths.socket`, `paths.socket_mode`, `paths.socket_group`,
/// `paths.plugin_dirs`, `logging.level`, `transfers.*`, `checkpoints.*`, `jobs.*`,
/// `bandwidth.*`, `quotas.*`, `api.*`, `notifications.*` and `plugins`: ``knownKeys`` lists
/// them all, and the configuration reference documents each one's type, default and range.
public struct AgentConfiguration: Sendable, Equatable {
    /// Where the agent keeps its job store; the default is `StateDirectory.defaultPath()`.
    public var stateDirectory: String
    /// The control socket. Default (``DefaultSocket``): `/run/ferry/ferryd.sock` for root; otherwise
    /// `$XDG_RUNTIME_DIR/ferry/ferryd.sock`, or `<stateDirectory>/ferryd.sock` without it.
    public var socketPath: String
    /// The socket's permission bits, default `0o666`: access is decided per request from
    /// the caller's credentials (`SO_PEERCRED`), not by the file mode.
    public var socketMode: UInt16
    /// The group given the socket, to use with mode `0o660`; `nil` keeps the agent's own.
    public var socketGroup: String?
    /// The lowest level logged; default `.info`.
    public var logLevel: Logger.Level
    /// Limits per user and per job; root is exempt.
    public var quotas: Quotas
    /// Seconds between two `jobModification` notifications of one job (BITS'
    /// `MINIMUM_NOTIFICATION_INTERVAL_MS`, 500 ms); default 0.5.
    public var modificationMinimumInterval: Double
    /// The largest control API request body accepted, in bytes; default 4 MiB.
    public var maxRequestBytes: Int
    /// What one client may hold of the control API, and of notify commands
    /// (`api.*`, `notifications.*`).
    public var limits: ServiceLimits
    /// The plugin directories the file adds (`paths.plugin_dirs`), searched before the
    /// built-in ones; ``engine`` holds the whole search path.
    public var pluginDirectories: [String]
    /// The plugins to load, in order, with the role each must play; `engine.plugins`
    /// holds the same specs. Default: ``PluginEntry/defaults``.
    public var plugins: [PluginEntry]
    /// The engine's tunables. `storePath` is `<stateDirectory>/jobs.db`, `pluginDirectories`
    /// is ``pluginDirectories`` followed by `EngineConfiguration.defaultPluginDirectories()`,
    /// and `plugins` is `plugins.map(\.spec)`; these are derived when the configuration is loaded.
    public var engine: EngineConfiguration
    /// Where each value came from, by dotted key (`transfers.max_connections`); every key of
    /// ``knownKeys`` is present.
    public var sources: [String: ValueSource]

    /// Bounds on what a client can hold, so that one user cannot take the agent away from
    /// the others. Root is exempt from the per-user bounds and from the totals.
    public struct ServiceLimits: Sendable, Equatable {
        /// Open control connections of one user (`api.max_connections_per_user`); default 32.
        public var connectionsPerUser = 32
        /// Open control connections of every user but root together (`api.max_connections`); default 512.
        public var connections = 512
        /// Seconds a connection may take to send a request's headers, counted from when it
        /// opened or the previous answer ended (`api.request_header_timeout_sec`); default 10.
        public var requestHeaderTimeout: Double = 10
        /// Event streams one user may follow at once (`api.max_event_streams_per_user`); default 8.
        public var eventStreamsPerUser = 8
        /// Event streams of every user but root together (`api.max_event_streams`); default 128.
        public var eventStreams = 128
        /// Bytes of events waiting for one stream's reader (`api.event_buffer_bytes`); a reader
        /// that falls further behind is told so and disconnected. Default 4 MiB.
        public var eventBufferBytes = 4 << 20
        /// Seconds a notify command may run before it is killed (`notifications.command_timeout_sec`); default 300.
        public var commandTimeout: Double = 300
        /// Notify commands of one user running at once (`notifications.max_commands_per_user`); default 4.
        public var commandsPerUser = 4
        /// Notify commands running at once in all (`notifications.max_commands`); default 32.
        public var commands = 32
        public init() {}
    }

    /// Limits that keep one user from exhausting the agent. 0 means unlimited; root is exempt.
    public struct Quotas: Sendable, Equatable {
        /// Jobs one user may own at once (not counting final jobs); default 300.
        public var jobsPerUser: Int
        /// Files one job may hold; default 100 000.
        public var filesPerJob: Int

        /// Creates quotas.
        /// - Parameters:
        ///   - jobsPerUser: jobs one user may own at once; 0 is unlimited.
        ///   - filesPerJob: files one job may hold; 0 is unlimited.
        public init(jobsPerUser: Int = 300, filesPerJob: Int = 100_000) {
            self.jobsPerUser = jobsPerUser
            self.filesPerJob = filesPerJob
        }
    }

    /// Values given on `ferryd`'s command line; each one set wins over the file.
    public struct Overrides: Sendable, Equatable {
        /// `--state-dir`: a relative path is taken from the current directory.
        public var stateDirectory: String?
        /// `--socket`: a relative path is taken from the current directory.
        public var socketPath: String?
        /// `--log-level`.
        public var logLevel: Logger.Level?

        /// Creates overrides; `nil` leaves the file's value (or the default) in force.
        /// - Parameters:
        ///   - stateDirectory: the state directory.
        ///   - socketPath: the control socket.
        ///   - logLevel: the lowest level logged.
        public init(stateDirectory: String? = nil, socketPath: String? = nil, logLevel: Logger.Level? = nil) {
            self.stateDirectory = stateDirectory
            self.socketPath = socketPath
            self.logLevel = logLevel
        }

        /// Sets ``logLevel`` from the text of `--log-level`, read as the file's `logging.level` is.
        /// - Parameter name: a level's name, in any case: `trace`, `debug`, `info`, `notice`,
        ///   `warning`, `error` or `critical`.
        /// - Throws: ``ConfigurationError`` naming the command line where a file's error names its
        ///   line: `command line: logging.level: must be one of trace, …, got 'loud'`.
        public mutating func setLogLevel(named name: String) throws(ConfigurationError) {
            logLevel = try LogLevelName.level(name) { ConfigurationError(file: "command line", key: "logging.level", message: $0) }
        }
    }

    /// Every dotted key the file accepts, in the order ``describe()`` prints them.
    public static var knownKeys: [String] { ConfigurationKey.all.map(\.path) }

    /// The embedded defaults, as if there were no file.
    /// - Parameter environment: the environment, for `XDG_STATE_HOME`, `XDG_RUNTIME_DIR` and `HOME`.
    /// - Returns: the default configuration.
    public static func defaults(environment: [String: String] = ProcessInfo.processInfo.environment) -> AgentConfiguration {
        defaults(environment: environment, isRoot: getuid() == 0)
    }

    /// Reads a YAML file and applies command-line overrides, which win over the file.
    /// - Parameters:
    ///   - path: the configuration file; `nil` uses the defaults.
    ///   - overrides: values from the command line.
    ///   - environment: the environment, for the defaults that depend on it.
    /// - Returns: the effective configuration.
    /// - Throws: a ``ConfigurationError`` naming the file, line, column and key of the first
    ///   mistake, or the path of a file that cannot be read.
    public static func load(
        path: String?, overrides: Overrides = .init(),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> AgentConfiguration {
        guard let path else {
            return try load(root: nil, reader: nil, overrides: overrides, environment: environment, isRoot: getuid() == 0)
        }
        let text = try readFile(path)
        return try load(yaml: text, file: path, overrides: overrides, environment: environment)
    }

    /// Parses configuration text, as ``load(path:overrides:environment:)`` does with a file's.
    /// - Parameters:
    ///   - yaml: the YAML text; empty text (or comments only) means the defaults.
    ///   - file: the name used in errors and in ``sources``.
    ///   - overrides: values from the command line.
    ///   - environment: the environment, for the defaults that depend on it.
    /// - Returns: the effective configuration.
    /// - Throws: a ``ConfigurationError`` naming the line, column and key of the first mistake.
    public static func load(
        yaml: String, file: String = "ferryd.yaml", overrides: Overrides = .init(),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigurationError) -> AgentConfiguration {
        try load(yaml: yaml, file: file, overrides: overrides, environment: environment, isRoot: getuid() == 0)
    }

    /// Every key with its effective value and its source, one per line, in a stable order
    /// (for `ferryd --check-config`), such as `transfers.max_connections = 32   (ferryd.yaml:7)`.
    public func describe() -> String {
        let rows = ConfigurationKey.all.map { key in
            ("\(key.path) = \(key.show(self))", (sources[key.path] ?? .builtInDefault).description)
        }
        let width = rows.map(\.0.count).filter { $0 <= 60 }.max() ?? 0
        return rows.map { left, source in
            left + String(repeating: " ", count: max(width - left.count, 0) + 3) + "(\(source))"
        }.joined(separator: "\n")
    }

    /// The keys a reload (SIGHUP) applies to the running agent: the quotas and the
    /// notification interval. Every other key takes effect at the next start.
    public static let keysAppliedOnReload: Set<String> = [
        "quotas.jobs_per_user", "quotas.files_per_job", "jobs.modification_min_interval_ms",
    ]

    /// The keys whose effective value differs between this configuration and `other`, in
    /// ``knownKeys`` order; for a reload to log what it applied (``keysAppliedOnReload``) and
    /// what waits for a restart.
    /// - Parameter other: the configuration in force.
    /// - Returns: the dotted keys that differ.
    public func changedKeys(comparedTo other: AgentConfiguration) -> [String] {
        ConfigurationKey.all.filter { $0.show(self) != $0.show(other) }.map(\.path)
    }

    /// Two configurations are equal when every value is; where the values came from
    /// (``sources``) does not count.
    public static func == (lhs: AgentConfiguration, rhs: AgentConfiguration) -> Bool {
        lhs.stateDirectory == rhs.stateDirectory && lhs.socketPath == rhs.socketPath
            && lhs.socketMode == rhs.socketMode && lhs.socketGroup == rhs.socketGroup
            && lhs.logLevel == rhs.logLevel && lhs.quotas == rhs.quotas
            && lhs.modificationMinimumInterval == rhs.modificationMinimumInterval
            && lhs.maxRequestBytes == rhs.maxRequestBytes && lhs.limits == rhs.limits && lhs.pluginDirectories == rhs.pluginDirectories
            && lhs.plugins == rhs.plugins && lhs.engine == rhs.engine
    }
}

// MARK: - Loading

extension AgentConfiguration {
    /// The defaults before anything is derived from them.
    private init(environment: [String: String], isRoot: Bool) {
        stateDirectory = StateDirectory.defaultPath(environment: environment)
        socketPath = ""
        socketMode = 0o666
        socketGroup = nil
        logLevel = .info
        quotas = Quotas()
        modificationMinimumInterval = 0.5
        maxRequestBytes = 4 << 20
        limits = ServiceLimits()
        pluginDirectories = []
        plugins = PluginEntry.defaults
        engine = EngineConfiguration(storePath: "")
        sources = Dictionary(uniqueKeysWithValues: ConfigurationKey.all.map { ($0.path, ValueSource.builtInDefault) })
        if !isRoot {
            if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") {
                sources["paths.state_dir"] = .environment("XDG_STATE_HOME")
            } else if environment["HOME"] != nil {
                sources["paths.state_dir"] = .environment("HOME")
            }
        }
    }

    static func defaults(environment: [String: String], isRoot: Bool) -> AgentConfiguration {
        var configuration = AgentConfiguration(environment: environment, isRoot: isRoot)
        configuration.deriveDependentValues(environment: environment, isRoot: isRoot)
        return configuration
    }

    static func load(
        yaml: String, file: String, overrides: Overrides, environment: [String: String], isRoot: Bool
    ) throws(ConfigurationError) -> AgentConfiguration {
        let reader = ConfigurationReader(file: file, text: yaml)
        return try load(root: reader.compose(), reader: reader, overrides: overrides, environment: environment, isRoot: isRoot)
    }

    private static func load(
        root: Node?, reader: ConfigurationReader?, overrides: Overrides, environment: [String: String], isRoot: Bool
    ) throws(ConfigurationError) -> AgentConfiguration {
        var configuration = AgentConfiguration(environment: environment, isRoot: isRoot)
        if let root, let reader { try configuration.apply(root, reader: reader) }
        try configuration.apply(overrides)
        configuration.deriveDependentValues(environment: environment, isRoot: isRoot)
        return configuration
    }

    /// Applies every key of the file's top-level mapping.
    private mutating func apply(_ root: Node, reader: ConfigurationReader) throws(ConfigurationError) {
        if ConfigurationReader.isNull(root) { return }
        guard case .mapping(let top) = root else {
            throw reader.error(at: root, key: nil,
                               "the file must be a mapping of sections (\(ConfigurationKey.topLevelNames.joined(separator: ", "))), got \(ConfigurationReader.describe(root))")
        }
        for (keyNode, value) in top {
            let name = try reader.keyName(keyNode, parent: nil)
            if let key = ConfigurationKey.byPath[name], key.section == nil {
                try key.read(value, name, reader, &self)
                sources[name] = .file(path: reader.file, line: keyNode.mark?.line ?? 0)
                continue
            }
            guard ConfigurationKey.sections.contains(name) else {
                throw reader.unknownKey(name, at: keyNode, dotted: name, in: nil, known: ConfigurationKey.topLevelNames)
            }
            guard let section = try reader.mapping(value, key: name, expected: "a mapping of \(name) settings") else { continue }
            for (settingNode, settingValue) in section {
                let setting = try reader.keyName(settingNode, parent: name)
                let dotted = "\(name).\(setting)"
                guard let key = ConfigurationKey.byPath[dotted] else {
                    let known = ConfigurationKey.all.filter { $0.section == name }.map(\.name)
                    throw reader.unknownKey(setting, at: settingNode, dotted: dotted, in: name, known: known)
                }
                try key.read(settingValue, dotted, reader, &self)
                sources[dotted] = .file(path: reader.file, line: settingNode.mark?.line ?? 0)
            }
        }
    }

    /// Applies the command line, which wins over the file.
    private mutating func apply(_ overrides: Overrides) throws(ConfigurationError) {
        if let directory = overrides.stateDirectory {
            stateDirectory = try Self.commandLinePath(directory, key: "paths.state_dir")
            sources["paths.state_dir"] = .commandLine
        }
        if let socket = overrides.socketPath {
            socketPath = try Self.commandLinePath(socket, key: "paths.socket")
            if let problem = ConfigurationKey.socketPathProblem(socketPath) {
                throw ConfigurationError(file: "command line", key: "paths.socket", message: problem)
            }
            sources["paths.socket"] = .commandLine
        }
        if let level = overrides.logLevel {
            logLevel = level
            sources["logging.level"] = .commandLine
        }
    }

    private static func commandLinePath(_ path: String, key: String) throws(ConfigurationError) -> String {
        guard !path.isEmpty else { throw ConfigurationError(file: "command line", key: key, message: "must not be empty") }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return ConfigurationReader.normalized(path: absolute)
    }

    /// Fills in what depends on other values: the default socket, the store, the plugin search.
    private mutating func deriveDependentValues(environment: [String: String], isRoot: Bool) {
        if sources["paths.socket"] == .builtInDefault {
            let socket = DefaultSocket(isRoot: isRoot, environment: environment, stateDirectory: stateDirectory)
            socketPath = socket.path
            if case .runtimeDirectory = socket { sources["paths.socket"] = .environment("XDG_RUNTIME_DIR") }
        }
        engine.storePath = Self.join(stateDirectory, "jobs.db")
        engine.pluginCallRecordsDirectory = Self.join(stateDirectory, "plugin-calls")
        engine.pluginDirectories = pluginDirectories + EngineConfiguration.defaultPluginDirectories()
        engine.plugins = plugins.map(\.spec)
    }

    private static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// The text of a configuration file; the error names the path and the reason.
    private static func readFile(_ path: String) throws(ConfigurationError) -> String {
        func failure(_ reason: String) -> ConfigurationError {
            ConfigurationError(file: path, message: "cannot read the configuration file: \(reason)")
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw failure(String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw failure(String(cString: strerror(errno))) }
        guard status.st_mode & S_IFMT != S_IFDIR else { throw failure("it is a directory") }
        let limit = 1 << 20
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure(String(cString: strerror(errno)))
            }
            if count == 0 { break }
            bytes += chunk[..<count]
            guard bytes.count <= limit else { throw failure("it is larger than 1 MiB, which no configuration file needs") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigurationError(file: path, message: "not a YAML file: the file is not UTF-8 text")
        }
        return text
    }
}
