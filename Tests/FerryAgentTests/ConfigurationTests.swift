import FerryControl
import FerryEngine
import FerryPluginHost
import FerryTestSupport
import Foundation
import Testing

@testable import FerryAgent

/// The package root, three directories above this file (Tests/FerryAgentTests/…).
private let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The shipped default configuration file.
private let shippedConfiguration = packageRoot + "/config/ferryd.yaml"

/// Loads configuration text as the root agent would, with a fixed environment.
private func load(_ yaml: String, overrides: AgentConfiguration.Overrides = .init()) throws(ConfigurationError) -> AgentConfiguration {
    try AgentConfiguration.load(yaml: yaml, file: "ferryd.yaml", overrides: overrides, environment: [:], isRoot: true)
}

/// The defaults of the root agent (what the shipped file documents).
private func rootDefaults() -> AgentConfiguration { AgentConfiguration.defaults(environment: [:], isRoot: true) }

/// The error `yaml` is refused with, or `nil` if it loads.
private func refusal(_ yaml: String) -> ConfigurationError? {
    do {
        _ = try load(yaml)
        return nil
    } catch {
        return error
    }
}

@Suite("Configuration: defaults and valid files")
struct ConfigurationDefaultsTests {
    @Test func defaultsWithNoFile() throws {
        let configuration = try AgentConfiguration.load(path: nil, environment: [:])
        #expect(configuration == AgentConfiguration.defaults(environment: [:]))

        let root = rootDefaults()
        #expect(root.stateDirectory == "/var/lib/ferry")
        #expect(root.socketPath == "/run/ferry/ferryd.sock")
        #expect(root.socketMode == 0o666)
        #expect(root.socketGroup == nil)
        #expect(root.logLevel == .info)
        #expect(root.quotas == .init(jobsPerUser: 300, filesPerJob: 100_000))
        #expect(root.modificationMinimumInterval == 0.5)
        #expect(root.maxRequestBytes == 4 << 20)
        #expect(root.engine.storePath == "/var/lib/ferry/jobs.db")
        #expect(root.engine.pluginDirectories == EngineConfiguration.defaultPluginDirectories())
        #expect(root.engine.plugins == EngineConfiguration.defaultPlugins)
        #expect(root.plugins.map(\.role) == [.validator, .validator, .errorPolicy, .errorPolicy, .errorPolicy])
        var engine = EngineConfiguration(storePath: "/var/lib/ferry/jobs.db")
        engine.plugins = EngineConfiguration.defaultPlugins
        engine.pluginCallRecordsDirectory = "/var/lib/ferry/plugin-calls"
        #expect(root.engine == engine)
        #expect(Set(root.sources.keys) == Set(AgentConfiguration.knownKeys))
        #expect(root.sources.values.allSatisfy { $0 == .builtInDefault })
    }

    @Test func emptyAndCommentOnlyFilesAreTheDefaults() throws {
        #expect(try load("") == rootDefaults())
        #expect(try load("# nothing here\n\n   # still nothing\n") == rootDefaults())
        #expect(try load("transfers:\njobs:\n") == rootDefaults())
    }

    @Test func socketDefaultForAUserFollowsTheRuntimeDirectory() {
        let withRuntime = AgentConfiguration.defaults(environment: ["XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/ann"], isRoot: false)
        #expect(withRuntime.socketPath == "/run/user/1000/ferry/ferryd.sock")
        #expect(withRuntime.sources["paths.socket"] == .environment("XDG_RUNTIME_DIR"))

        let withoutRuntime = AgentConfiguration.defaults(environment: ["HOME": "/home/ann"], isRoot: false)
        #expect(withoutRuntime.socketPath == withoutRuntime.stateDirectory + "/ferryd.sock")
        #expect(withoutRuntime.sources["paths.socket"] == .builtInDefault)

        // ferry finds the socket through the same DefaultSocket.
        let slashes = ["XDG_RUNTIME_DIR": "/run/user/1000//", "HOME": "/home/ann"]
        #expect(AgentConfiguration.defaults(environment: slashes, isRoot: false).socketPath == "/run/user/1000/ferry/ferryd.sock")
        #expect(DefaultSocket(isRoot: false, environment: slashes, stateDirectory: "/home/ann/.local/state/ferry") == .runtimeDirectory("/run/user/1000"))
        #expect(DefaultSocket(isRoot: false, environment: ["XDG_RUNTIME_DIR": "run"], stateDirectory: "/srv/state/").path == "/srv/state/ferryd.sock")
        #expect(DefaultSocket(isRoot: true, environment: slashes, stateDirectory: "/var/lib/ferry").path == "/run/ferry/ferryd.sock")
    }

    @Test func aFullValidFile() throws {
        let yaml = """
            paths:
              state_dir: /srv/ferry/
              socket: /srv/ferry/run/ferryd.sock
              socket_mode: "0660"
              socket_group: ferry
              plugin_dirs: [/usr/local/lib/ferry/plugins, /opt/ferry/plugins]
            logging:
              level: debug
            transfers:
              max_connections: 32
              max_connections_per_host: 4
              max_parallel_files_per_job: 2
              max_active_background_jobs: 3
              time_slice_sec: 12.5
              connect_timeout_sec: 9.2
              stall_timeout_sec: 120
              max_file_bytes: 1_000_000
            checkpoints:
              interval_sec: 0.25
              bytes: 65536
            jobs:
              min_retry_delay_sec: 5
              no_progress_timeout_sec: 0
              max_download_time_sec: 3600.5
              inactivity_timeout_sec: 0
              max_policy_resumes: 3
              modification_min_interval_ms: 250
            plugin_host:
              crash_limit: 5
            bandwidth:
              background_bytes_per_sec: 2000000
              schedule:
                - from: "08:00"
                  to: "18:00"
                  bytes_per_sec: 1048576
                - { from: 22:30, to: "24:00", bytes_per_sec: 0 }
            quotas:
              jobs_per_user: 0
              files_per_job: 10
            api:
              max_request_bytes: 65536
              max_connections_per_user: 3
              max_connections: 40
              request_header_timeout_sec: 2.5
              max_event_streams_per_user: 2
              max_event_streams: 20
              event_buffer_bytes: 131072
            notifications:
              command_timeout_sec: 30
              max_commands_per_user: 1
              max_commands: 5
            plugins:
              - name: sha256
                settings: { require: false, max: 10, ratio: 1.5, label: "a b" }
              - path: /opt/ferry/libferry-html-guard.so
                role: validator
                applies_to: { property: channel, value: stable }
              - name: retry-backoff
                role: error-policy
                applies_to: { property: mirrored }
            """
        let configuration = try load(yaml)
        #expect(configuration.stateDirectory == "/srv/ferry")
        #expect(configuration.socketPath == "/srv/ferry/run/ferryd.sock")
        #expect(configuration.socketMode == 0o660)
        #expect(configuration.socketGroup == "ferry")
        #expect(configuration.pluginDirectories == ["/usr/local/lib/ferry/plugins", "/opt/ferry/plugins"])
        #expect(configuration.logLevel == .debug)
        let engine = configuration.engine
        #expect(engine.storePath == "/srv/ferry/jobs.db")
        #expect(engine.pluginDirectories == ["/usr/local/lib/ferry/plugins", "/opt/ferry/plugins"] + EngineConfiguration.defaultPluginDirectories())
        #expect(engine.maxConnections == 32)
        #expect(engine.maxConnectionsPerHost == 4)
        #expect(engine.maxParallelFilesPerJob == 2)
        #expect(engine.maxActiveBackgroundJobs == 3)
        #expect(engine.timeSliceSeconds == 12.5)
        #expect(engine.connectTimeoutSeconds == 10)
        #expect(engine.stallTimeoutSeconds == 120)
        #expect(engine.maxFileBytes == 1_000_000)
        #expect(engine.checkpointIntervalSeconds == 0.25)
        #expect(engine.checkpointBytes == 65_536)
        #expect(engine.defaultMinimumRetryDelay == 5)
        #expect(engine.defaultNoProgressTimeout == 0)
        #expect(engine.maxDownloadTimeSeconds == 3600.5)
        #expect(engine.jobInactivityTimeoutSeconds == 0)
        #expect(engine.maxPolicyResumes == 3)
        #expect(engine.pluginCrashLimit == 5)
        #expect(configuration.modificationMinimumInterval == 0.25)
        #expect(engine.backgroundBytesPerSecond == 2_000_000)
        #expect(engine.bandwidthSchedule == [
            BandwidthWindow(startMinute: 480, endMinute: 1080, bytesPerSecond: 1_048_576),
            BandwidthWindow(startMinute: 1350, endMinute: 1440, bytesPerSecond: 0),
        ])
        #expect(configuration.quotas == .init(jobsPerUser: 0, filesPerJob: 10))
        #expect(configuration.maxRequestBytes == 65_536)
        var limits = AgentConfiguration.ServiceLimits()
        (limits.connectionsPerUser, limits.connections, limits.requestHeaderTimeout) = (3, 40, 2.5)
        (limits.eventStreamsPerUser, limits.eventStreams, limits.eventBufferBytes) = (2, 20, 131_072)
        (limits.commandTimeout, limits.commandsPerUser, limits.commands) = (30, 1, 5)
        #expect(configuration.limits == limits)

        #expect(configuration.plugins == [
            PluginEntry(spec: PluginSpec(reference: "sha256", settings: [("require", "false"), ("max", "10"), ("ratio", "1.5"), ("label", "a b")])),
            PluginEntry(spec: PluginSpec(reference: "/opt/ferry/libferry-html-guard.so",
                                         appliesTo: .jobsWithProperty(key: "channel", value: "stable")), role: .validator),
            PluginEntry(spec: PluginSpec(reference: "retry-backoff", appliesTo: .jobsWithProperty(key: "mirrored", value: nil)),
                        role: .errorPolicy),
        ])
        #expect(engine.plugins == configuration.plugins.map(\.spec))

        #expect(configuration.sources["transfers.max_connections"] == .file(path: "ferryd.yaml", line: 10))
        #expect(configuration.sources["plugins"] == .file(path: "ferryd.yaml", line: 52))
        #expect(AgentConfiguration.knownKeys.allSatisfy { configuration.sources[$0] != .builtInDefault })
    }

    @Test func windowsLineEndingsAreFine() throws {
        #expect(try load("transfers:\r\n  max_connections: 4\r\n").engine.maxConnections == 4)
    }

    @Test func anExplicitEmptyPluginListLoadsNone() throws {
        let configuration = try load("plugins: []\n")
        #expect(configuration.plugins.isEmpty)
        #expect(configuration.engine.plugins.isEmpty)
    }

    @Test func loadsAFileFromDisk() throws {
        let directory = try TemporaryDirectory("ferry-config")
        defer { directory.remove() }
        let path = directory.file("ferryd.yaml")
        try "transfers:\n  max_connections: 7\n".write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try AgentConfiguration.load(path: path)
        #expect(configuration.engine.maxConnections == 7)
        #expect(configuration.sources["transfers.max_connections"] == .file(path: path, line: 2))
        let line = configuration.describe().split(separator: "\n").first { $0.hasPrefix("transfers.max_connections = 7 ") }
        #expect(line?.hasSuffix("   (\(path):2)") == true)
    }
}

@Suite("Configuration: the command line")
struct ConfigurationOverrideTests {
    @Test func commandLineOverridesWinAndAreReported() throws {
        let yaml = """
            paths:
              state_dir: /srv/from-file
              socket: /srv/from-file/ferryd.sock
            logging:
              level: error
            transfers:
              max_connections: 32
            """
        let overrides = AgentConfiguration.Overrides(stateDirectory: "/srv/from-cli", socketPath: "/run/cli.sock", logLevel: .trace)
        let configuration = try load(yaml, overrides: overrides)
        #expect(configuration.stateDirectory == "/srv/from-cli")
        #expect(configuration.engine.storePath == "/srv/from-cli/jobs.db")
        #expect(configuration.socketPath == "/run/cli.sock")
        #expect(configuration.logLevel == .trace)
        #expect(configuration.engine.maxConnections == 32)
        #expect(configuration.sources["paths.state_dir"] == .commandLine)
        #expect(configuration.sources["paths.socket"] == .commandLine)
        #expect(configuration.sources["logging.level"] == .commandLine)
        #expect(configuration.sources["transfers.max_connections"] == .file(path: "ferryd.yaml", line: 7))

        let lines = configuration.describe().split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("paths.state_dir = /srv/from-cli ") && $0.hasSuffix("(command line)") })
        #expect(lines.contains { $0.hasPrefix("logging.level = trace ") && $0.hasSuffix("(command line)") })
        #expect(lines.contains { $0.hasPrefix("transfers.max_connections = 32 ") && $0.hasSuffix("(ferryd.yaml:7)") })
        #expect(lines.contains { $0.hasPrefix("transfers.stall_timeout_sec = 60 ") && $0.hasSuffix("(default)") })
    }

    @Test func aStateDirectoryOnTheCommandLineMovesTheDefaultSocketOfAUser() throws {
        let configuration = try AgentConfiguration.load(
            yaml: "", file: "ferryd.yaml", overrides: .init(stateDirectory: "/srv/state/"), environment: ["HOME": "/home/ann"], isRoot: false)
        #expect(configuration.stateDirectory == "/srv/state")
        #expect(configuration.socketPath == "/srv/state/ferryd.sock")
    }

    @Test func relativeCommandLinePathsAreTakenFromTheWorkingDirectory() throws {
        let configuration = try load("", overrides: .init(stateDirectory: "state"))
        #expect(configuration.stateDirectory == FileManager.default.currentDirectoryPath + "/state")
    }

    @Test func aCommandLineSocketThatIsTooLongIsRefused() {
        let long = "/" + String(repeating: "s", count: 120)
        #expect(throws: ConfigurationError.self) { try load("", overrides: .init(socketPath: long)) }
    }

    @Test func theLogLevelIsReadAsTheFileReadsIt() throws {
        var overrides = AgentConfiguration.Overrides()
        try overrides.setLogLevel(named: "DEBUG")
        #expect(overrides.logLevel == .debug)
        #expect(try load("logging:\n  level: DEBUG\n").logLevel == .debug)

        let message = "must be one of trace, debug, info, notice, warning, error, critical, got 'loud'"
        #expect(performing: { try overrides.setLogLevel(named: "loud") }, throws: { error in
            (error as? ConfigurationError)?.description == "command line: logging.level: " + message
        })
        #expect(refusal("logging:\n  level: loud\n")?.description == "ferryd.yaml:2:10: logging.level: " + message)
        #expect(overrides.logLevel == .debug, "a refused name changes nothing")
    }

    /// ferryd takes `--log-level` in any case, as the file, and names the command line when it
    /// refuses one, with the file's message and status.
    @Test func ferrydReadsItsLogLevelAsTheFileDoes() throws {
        let directory = try TemporaryDirectory("ferry-log-level")
        defer { directory.remove() }
        let arguments = ["--check-config", "--state-dir", directory.file("state"), "--socket", directory.file("ferryd.sock")]
        let upper = try ChildProcess.run("ferryd", arguments + ["--log-level", "DEBUG"], timeout: 60)
        #expect(upper.status == 0, "\(upper.stderr)")
        #expect(upper.stdout.split(separator: "\n").contains { $0.hasPrefix("logging.level = debug ") && $0.hasSuffix("(command line)") },
                "\(upper.stdout)")

        let loud = try ChildProcess.run("ferryd", arguments + ["--log-level", "loud"], timeout: 60)
        #expect(loud.status == 78, "\(loud.stderr)")
        #expect(loud.stderr == "ferryd: command line: logging.level: must be one of trace, debug, info, notice, warning, error, critical, got 'loud'\n")
    }
}

@Suite("Configuration: reloading")
struct ConfigurationReloadTests {
    @Test func changedKeysNameWhatAReloadChanges() throws {
        let running = try load("transfers:\n  max_connections: 16\n")
        let reloaded = try load("transfers:\n  max_connections: 32\npaths:\n  state_dir: /srv/x\n")
        let changed = reloaded.changedKeys(comparedTo: running)
        #expect(changed == ["paths.state_dir", "transfers.max_connections"])
        #expect(Set(changed).intersection(AgentConfiguration.keysAppliedOnReload).isEmpty, "neither applies live")
        #expect(running.changedKeys(comparedTo: running).isEmpty)
        #expect(AgentConfiguration.keysAppliedOnReload.isSubset(of: AgentConfiguration.knownKeys))
    }
}

@Suite("Configuration: describe()")
struct ConfigurationDescribeTests {
    @Test func describeListsEveryKeyExactlyOnce() throws {
        let configuration = try load("transfers:\n  max_connections: 32\n")
        let lines = configuration.describe().split(separator: "\n").map(String.init)
        #expect(lines.count == AgentConfiguration.knownKeys.count)
        for key in AgentConfiguration.knownKeys {
            #expect(lines.filter { $0.hasPrefix(key + " = ") }.count == 1, "\(key)")
        }
        #expect(lines.contains { $0.hasPrefix("transfers.max_connections = 32 ") && $0.hasSuffix("   (ferryd.yaml:2)") })
        #expect(lines.contains { $0.hasPrefix("plugins = [{name: sha256, role: validator, applies_to: all, settings: {}}, {name: size") })
    }

    @Test func describeWritesValuesAsTheFileWouldBeWritten() throws {
        let configuration = try load("""
            paths:
              socket_mode: "0600"
            bandwidth:
              schedule: [{ from: "8:05", to: "18:00", bytes_per_sec: 1024 }]
            plugins:
              - path: /opt/p.so
                settings: { require: "yes" }
                applies_to: { property: channel, value: stable }
            """)
        let text = configuration.describe()
        #expect(text.contains("paths.socket_mode = \"0600\""))
        #expect(text.contains("bandwidth.schedule = [{from: \"08:05\", to: \"18:00\", bytes_per_sec: 1024}]"))
        #expect(text.contains("plugins = [{path: /opt/p.so, applies_to: {property: channel, value: \"stable\"}, settings: {require: \"yes\"}}]"))
        #expect(text.contains("jobs.modification_min_interval_ms = 500"))
        #expect(text.contains("checkpoints.interval_sec = 2 "))
    }
}

@Suite("Configuration: the shipped file")
struct ShippedConfigurationTests {
    @Test func theShippedFileEqualsTheDefaults() throws {
        let configuration = try AgentConfiguration.load(path: shippedConfiguration)
        #expect(configuration == AgentConfiguration.defaults())
        #expect(!configuration.sources.values.contains { $0.isFile })
    }

    @Test func everyKeyOfTheShippedFileUncommentedStillEqualsTheDefaults() throws {
        let text = try String(contentsOfFile: shippedConfiguration, encoding: .utf8)
        let keyLine = /^#( *)(- +)?[a-z_]+:( |$)/
        var uncommented = 0
        let yaml = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            guard line.prefixMatch(of: keyLine) != nil else { return line }
            uncommented += 1
            return line.dropFirst()
        }.joined(separator: "\n")

        // The shipped file documents the agent running as root (the service).
        let configuration = try load(yaml)
        #expect(configuration == rootDefaults())
        let missing = AgentConfiguration.knownKeys.filter { configuration.sources[$0] == .builtInDefault }
        #expect(missing.isEmpty, "keys the shipped file does not show: \(missing)")
        #expect(uncommented > AgentConfiguration.knownKeys.count)
    }
}

private extension ValueSource {
    var isFile: Bool { if case .file = self { true } else { false } }
}

/// A configuration that must be refused, with what the error must say.
struct MalformedConfiguration: Sendable, CustomTestStringConvertible {
    let name: String
    let yaml: String
    /// Substrings of the error's description: the location, the dotted key, the reason.
    let expected: [String]
    var testDescription: String { name }

    init(_ name: String, _ yaml: String, _ expected: String...) {
        self.name = name
        self.yaml = yaml
        self.expected = expected
    }
}

@Suite("Configuration: malformed files")
struct MalformedConfigurationTests {
    static let cases: [MalformedConfiguration] = [
        .init("unknown top-level key", "transfer:\n  max_connections: 4\n",
              "ferryd.yaml:1:1: transfer: unknown key", "did you mean 'transfers'?", "known keys at the top level: paths, logging"),
        .init("unknown nested key", "transfers:\n  max_conections: 4\n",
              "ferryd.yaml:2:3: transfers.max_conections: unknown key", "did you mean 'max_connections'?", "known keys in transfers:"),
        .init("max_connections is a word", "transfers:\n  max_connections: lots\n",
              "ferryd.yaml:2:20: transfers.max_connections: must be an integer between 1 and 1024, got 'lots'"),
        .init("max_connections is 0", "transfers:\n  max_connections: 0\n",
              "ferryd.yaml:2:", "transfers.max_connections", "between 1 and 1024, got '0'"),
        .init("max_connections is a decimal", "transfers:\n  max_connections: 1.5\n",
              "ferryd.yaml:2:", "transfers.max_connections", "must be an integer", "got '1.5'"),
        .init("max_connections is a quoted number", "transfers:\n  max_connections: \"16\"\n",
              "ferryd.yaml:2:", "transfers.max_connections", "quoted string"),
        .init("max_connections is hexadecimal", "transfers:\n  max_connections: 0x10\n",
              "ferryd.yaml:2:", "transfers.max_connections", "got '0x10'"),
        .init("max_connections has no value", "transfers:\n  max_connections:\n",
              "ferryd.yaml:2:", "transfers.max_connections", "got no value"),
        .init("max_connections is a list", "transfers:\n  max_connections: [1, 2]\n",
              "ferryd.yaml:2:", "transfers.max_connections", "got a list"),
        .init("retry delay under the floor", "jobs:\n  min_retry_delay_sec: 0.5\n",
              "ferryd.yaml:2:", "jobs.min_retry_delay_sec", "of at least 1, got '0.5'", "Ferry's floor", "rather than silently raising it"),
        .init("negative timeout", "jobs:\n  no_progress_timeout_sec: -5\n",
              "ferryd.yaml:2:", "jobs.no_progress_timeout_sec", "of at least 0, got '-5'"),
        .init("time slice of zero", "transfers:\n  time_slice_sec: 0\n",
              "ferryd.yaml:2:", "transfers.time_slice_sec", "between 0.1 and 86400"),
        .init("notification interval too long", "jobs:\n  modification_min_interval_ms: 60001\n",
              "ferryd.yaml:2:", "jobs.modification_min_interval_ms", "between 0 and 60000 (milliseconds)"),
        .init("socket mode 999", "paths:\n  socket_mode: \"999\"\n",
              "ferryd.yaml:2:", "paths.socket_mode", "octal mode", "got '999'"),
        .init("socket mode abc", "paths:\n  socket_mode: abc\n",
              "ferryd.yaml:2:", "paths.socket_mode", "octal mode", "got 'abc'"),
        .init("socket mode with setuid", "paths:\n  socket_mode: \"4777\"\n",
              "ferryd.yaml:2:", "paths.socket_mode", "at most \"0777\""),
        .init("socket group with a space", "paths:\n  socket_group: \"my group\"\n",
              "ferryd.yaml:2:", "paths.socket_group", "must be a group name"),
        .init("socket path too long", "paths:\n  socket: /\(String(repeating: "x", count: 110))\n",
              "ferryd.yaml:2:", "paths.socket", "at most 107"),
        .init("relative state dir", "paths:\n  state_dir: var/lib/ferry\n",
              "ferryd.yaml:2:", "paths.state_dir", "state dirs must be absolute", "got 'var/lib/ferry'"),
        .init("plugin dirs as a string", "paths:\n  plugin_dirs: /opt/plugins\n",
              "ferryd.yaml:2:", "paths.plugin_dirs", "must be a list"),
        .init("relative plugin dir", "paths:\n  plugin_dirs: [/opt/a, plugins]\n",
              "ferryd.yaml:2:", "paths.plugin_dirs[1]", "must be absolute"),
        .init("schedule time 25:00", "bandwidth:\n  schedule:\n    - from: \"25:00\"\n      to: \"18:00\"\n      bytes_per_sec: 1\n",
              "ferryd.yaml:3:", "bandwidth.schedule[0].from", "time of day", "got '25:00'"),
        .init("schedule with a negative rate", "bandwidth:\n  schedule:\n    - { from: \"08:00\", to: \"09:00\", bytes_per_sec: 1 }\n    - { from: \"10:00\", to: \"11:00\", bytes_per_sec: -1 }\n",
              "ferryd.yaml:4:", "bandwidth.schedule[1].bytes_per_sec", "of at least 0", "got '-1'"),
        .init("schedule window without an end", "bandwidth:\n  schedule:\n    - from: \"08:00\"\n      bytes_per_sec: 1\n",
              "ferryd.yaml:3:", "bandwidth.schedule[0]", "missing to"),
        .init("empty schedule window", "bandwidth:\n  schedule:\n    - { from: \"08:00\", to: \"08:00\", bytes_per_sec: 1 }\n",
              "ferryd.yaml:3:", "bandwidth.schedule[0]", "must not be empty"),
        .init("schedule as a mapping", "bandwidth:\n  schedule:\n    from: \"08:00\"\n",
              "ferryd.yaml:3:", "bandwidth.schedule", "must be a list of windows", "got a mapping"),
        .init("plugin with name and path", "plugins:\n  - name: sha256\n    path: /opt/libferry-sha256.so\n",
              "ferryd.yaml:2:", "plugins[0]", "either name or path, not both"),
        .init("plugin with neither name nor path", "plugins:\n  - name: sha256\n  - role: validator\n",
              "ferryd.yaml:3:", "plugins[1]", "needs a name", "or a path"),
        .init("plugin role sorcerer", "plugins:\n  - name: sha256\n    role: sorcerer\n",
              "ferryd.yaml:3:", "plugins[0].role", "unknown role 'sorcerer'", "validator, error-policy"),
        .init("plugin applies_to sometimes", "plugins:\n  - name: sha256\n    applies_to: sometimes\n",
              "ferryd.yaml:3:", "plugins[0].applies_to", "must be 'all' or a mapping", "got 'sometimes'"),
        .init("plugin applies_to without property", "plugins:\n  - name: sha256\n    applies_to: { value: stable }\n",
              "ferryd.yaml:3:", "plugins[0].applies_to", "needs a property"),
        .init("plugin settings as a list", "plugins:\n  - name: sha256\n    settings: [require, true]\n",
              "ferryd.yaml:3:", "plugins[0].settings", "must be a mapping of setting names to values", "got a list"),
        .init("plugin setting that is not a scalar", "plugins:\n  - name: sha256\n    settings:\n      require: { deep: true }\n",
              "ferryd.yaml:4:", "plugins[0].settings.require", "a string, a number or a boolean", "got a mapping"),
        .init("plugin with an unknown field", "plugins:\n  - nmae: sha256\n",
              "ferryd.yaml:2:", "plugins[0].nmae", "unknown key", "did you mean 'name'?"),
        .init("plugin with a relative path", "plugins:\n  - path: lib/libferry-x.so\n",
              "ferryd.yaml:2:", "plugins[0].path", "plugin paths must be absolute"),
        .init("plugin name with a slash", "plugins:\n  - name: ../evil\n",
              "ferryd.yaml:2:", "plugins[0].name", "bare plugin name"),
        .init("plugins with no value", "plugins:\n",
              "ferryd.yaml:", "plugins", "write [] to load none"),
        .init("duplicate section", "transfers:\n  max_connections: 4\njobs:\n  min_retry_delay_sec: 60\ntransfers:\n  stall_timeout_sec: 9\n",
              "ferryd.yaml:5:1: transfers: duplicate key: already set on line 1"),
        .init("duplicate nested key", "transfers:\n  max_connections: 4\n  stall_timeout_sec: 9\n  max_connections: 8\n",
              "ferryd.yaml:4:3: transfers.max_connections: duplicate key: already set on line 2"),
        .init("duplicate key in a plugin entry", "plugins:\n  - name: sha256\n    role: validator\n  - name: size\n    role: validator\n    role: error-policy\n",
              "ferryd.yaml:6:5: plugins[1].role: duplicate key: already set on line 5"),
        .init("duplicate plugin setting on one line", "plugins:\n  - name: sha256\n    settings: { require: a, require: b }\n",
              "ferryd.yaml:3:", "plugins[0].settings.require", "duplicate key"),
        .init("duplicate key in a list written flush with its key", "plugins:\n- name: sha256\n- name: size\n  name: other\n",
              "ferryd.yaml:4:3: plugins[1].name: duplicate key: already set on line 3"),
        .init("duplicate key with Windows line endings", "transfers:\r\n  max_connections: 4\r\n  max_connections: 5\r\n",
              "ferryd.yaml:3:3: transfers.max_connections: duplicate key: already set on line 2"),
        .init("two documents in one file", "transfers: {}\n---\njobs: {}\n",
              "ferryd.yaml:2:", "not valid YAML", "single document"),
        .init("a control character", "transfers:\n  max_connections: 4\u{7}\n",
              "ferryd.yaml:2:", "not valid YAML text", "control characters"),
        .init("tab indentation", "transfers:\n\tmax_connections: 4\n",
              "ferryd.yaml:2:", "not valid YAML", "never tabs"),
        .init("unclosed bracket", "paths:\n  plugin_dirs: [/opt/a, /opt/b\nlogging:\n  level: info\n",
              "ferryd.yaml:", "not valid YAML"),
        .init("a top-level list", "- transfers\n- jobs\n",
              "ferryd.yaml:1:1: the file must be a mapping of sections", "got a list"),
        .init("prose instead of YAML", "This is not a configuration file at all, just words.\n",
              "ferryd.yaml:1:1: the file must be a mapping of sections", "got 'This is not"),
        .init("a section that is a list", "transfers: [1, 2]\n",
              "ferryd.yaml:1:", "transfers: must be a mapping of transfers settings", "got a list"),
        .init("logging level loud", "logging:\n  level: loud\n",
              "ferryd.yaml:2:", "logging.level", "must be one of trace, debug, info, notice, warning, error, critical, got 'loud'"),
        .init("negative jobs per user", "quotas:\n  jobs_per_user: -3\n",
              "ferryd.yaml:2:", "quotas.jobs_per_user", "of at least 0, got '-3'"),
        .init("checkpoint bytes too small", "checkpoints:\n  bytes: 10\n",
              "ferryd.yaml:2:", "checkpoints.bytes", "between 65536 and 1099511627776, got '10'"),
        .init("request limit too large", "api:\n  max_request_bytes: 99999999999\n",
              "ferryd.yaml:2:", "api.max_request_bytes", "between 1024 and 1073741824"),
        .init("a non-scalar key", "? [a, b]\n: 1\n",
              "ferryd.yaml:1:", "keys must be plain names"),
    ]

    @Test(arguments: cases)
    func malformedConfigurationIsRefused(_ malformed: MalformedConfiguration) {
        guard let error = refusal(malformed.yaml) else {
            Issue.record("\(malformed.name): loaded without an error")
            return
        }
        for part in malformed.expected {
            #expect(error.description.contains(part), "\(malformed.name): '\(error)' does not say '\(part)'")
        }
    }

    @Test func malformedCasesAreMany() { #expect(Self.cases.count >= 20) }

    @Test func theErrorReadsLikeACompilerDiagnostic() {
        let error = ConfigurationError(file: "ferryd.yaml", line: 12, column: 3, key: "transfers.max_connections",
                                       message: "must be an integer between 1 and 1024, got 'lots'")
        #expect(error.description == "ferryd.yaml:12:3: transfers.max_connections: must be an integer between 1 and 1024, got 'lots'")
        #expect(ConfigurationError(file: "/etc/ferry/ferryd.yaml", message: "gone").description == "/etc/ferry/ferryd.yaml: gone")
    }

    @Test func aMissingFileIsNamed() {
        let path = "/nonexistent-ferry-directory/ferryd.yaml"
        #expect {
            try AgentConfiguration.load(path: path)
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.file == path && error.description.hasPrefix(path + ": cannot read the configuration file")
                && error.description.contains("No such file")
        }
    }

    @Test func aDirectoryOrABinaryFileIsRefused() throws {
        let directory = try TemporaryDirectory("ferry-config")
        defer { directory.remove() }
        #expect(throws: ConfigurationError.self) { try AgentConfiguration.load(path: directory.path) }
        let binary = directory.file("ferryd.yaml")
        _ = FileManager.default.createFile(atPath: binary, contents: Data([0xff, 0xfe, 0x00, 0x81, 0x13]))
        #expect {
            try AgentConfiguration.load(path: binary)
        } throws: { error in
            (error as? ConfigurationError)?.description.contains("not UTF-8 text") == true
        }
    }
}
