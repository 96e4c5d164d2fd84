import ArgumentParser
import FerryAgent
import FerryCore
import FerryEngine
import FerryPluginHost
import Foundation
import Logging

/// `ferryd`: the Ferry agent. Runs in the foreground; see docs/configuration.md.
@main
struct FerryDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferryd",
        abstract: "The Ferry agent: background transfers with BITS semantics, driven over a local socket.",
        discussion: """
            Runs in the foreground on its embedded defaults, or on --config FILE (YAML).
            SIGTERM/SIGINT stop it after checkpointing every transfer; SIGHUP reloads the file.
            """,
        version: Agent.version
    )

    @Option(name: .long, help: "The configuration file (YAML). Without it, the embedded defaults.")
    var config: String?

    @Option(name: .customLong("state-dir"), help: "Where jobs are kept (overrides paths.state_dir).")
    var stateDirectory: String?

    @Option(name: .long, help: "The control socket (overrides paths.socket).")
    var socket: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (overrides logging.level).")
    var logLevel: String?

    @Flag(name: .customLong("check-config"), help: "Print the effective configuration and where each value came from, load every plugin, and exit (non-zero on any error).")
    var checkConfig = false

    func run() async throws {
        ProcessTuning.limitMallocArenas()
        var overrides = AgentConfiguration.Overrides()
        overrides.stateDirectory = stateDirectory
        overrides.socketPath = socket
        let configuration: AgentConfiguration
        do {
            if let logLevel { try overrides.setLogLevel(named: logLevel) }
            configuration = try AgentConfiguration.load(path: config, overrides: overrides)
        } catch {
            FileHandle.standardError.write(Data("ferryd: \(error)\n".utf8))
            throw ExitCode(ExitStatus.configuration)
        }
        let level = configuration.logLevel
        LoggingSystem.bootstrap { AgentLogHandler(label: $0, level: level) }
        let logger = Logger(label: "ferryd")

        if checkConfig {
            print(configuration.describe())
            do {
                let host = try PluginHost(specs: configuration.engine.plugins, directories: configuration.engine.pluginDirectories, logger: logger)
                defer { host.shutdown() }
                try configuration.checkPluginRoles(host)
                let disabled = Dictionary(
                    PluginCrashRecords.disabledPlugins(in: configuration.engine.pluginCallRecordsDirectory ?? "",
                                                       configuration: PluginSpec.describe(configuration.engine.plugins)).map { ($0.plugin, $0.crashes) },
                    uniquingKeysWith: { first, _ in first })
                for plugin in host.plugins {
                    print("plugin \(plugin.name) \(plugin.version) (\(plugin.roleNames.joined(separator: ", "))): \(plugin.path)"
                          + (disabled[plugin.name].map { " (disabled after \($0) crashes, until the plugin configuration changes)" } ?? ""))
                }
            } catch {
                FileHandle.standardError.write(Data("ferryd: \(error)\n".utf8))
                throw ExitCode(ExitStatus.configuration)
            }
            print("configuration OK")
            return
        }
        do {
            try await Agent(configuration: configuration, path: config, overrides: overrides, logger: logger).run()
        } catch let error as AgentError {
            logger.critical("cannot run: \(error.description)")
            throw ExitCode(ExitStatus.cannotRun)
        }
    }
}
