import FerryControl
import FerryCore
import FerryEngine
import FerryPluginHost
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// `ferryd`: the engine, its control API on a Unix socket, and notifications, run as a service.
///
/// SIGTERM and SIGINT stop it gracefully: the API stops accepting, every transfer
/// is checkpointed, and the process exits 0. SIGHUP re-reads the configuration
/// file; a file with errors is reported and the running configuration kept.
public final class Agent: Sendable {
    public static let version = "0.1.0"

    private let configurationPath: String?
    private let overrides: AgentConfiguration.Overrides
    private let current: Mutex<AgentConfiguration>
    /// The configuration the agent started with: what settings not applied on reload still are.
    private let started: AgentConfiguration
    private let logger: Logger

    public init(configuration: AgentConfiguration, path: String?, overrides: AgentConfiguration.Overrides, logger: Logger) {
        self.configurationPath = path
        self.overrides = overrides
        self.current = Mutex(configuration)
        self.started = configuration
        self.logger = logger
    }

    /// Runs until SIGTERM or SIGINT.
    /// - Throws: ``AgentError`` when the agent cannot start (socket in use, store unreadable, plugin refused).
    public func run() async throws {
        let configuration = current.withLock { $0 }
        do { try StateDirectory.ensure(configuration.stateDirectory) } catch {
            throw AgentError("cannot use the state directory \(configuration.stateDirectory): \(StateDirectory.explain(error))")
        }
        // Before the store is touched: a second agent must not recover the running one's jobs.
        let socket = configuration.socketPath
        try SocketFile.prepare(socket)
        let engine: Engine
        do {
            engine = try Engine(configuration: configuration.engine, logger: logger)
            try engine.start()
        } catch {
            throw AgentError(error.message)
        }
        do { try configuration.checkPluginRoles(engine.plugins) } catch {
            engine.shutdown()
            throw error
        }
        let service = AgentService(engine: engine, settings: .init(jobsPerUser: configuration.quotas.jobsPerUser,
                                                                   filesPerJob: configuration.quotas.filesPerJob))
        let limits = configuration.limits
        let notifications = NotificationCenter(
            engine: engine, logger: logger, modificationInterval: configuration.modificationMinimumInterval,
            commandLimits: .init(timeout: limits.commandTimeout, perUser: limits.commandsPerUser, total: limits.commands),
            streamLimits: .init(perUser: limits.eventStreamsPerUser, total: limits.eventStreams, bufferBytes: limits.eventBufferBytes))
        notifications.start()
        let routes = ControlRoutes(service: service, notifications: notifications, maxRequestBytes: configuration.maxRequestBytes,
                                   version: Agent.version)
        let logger = self.logger
        let mode = configuration.socketMode
        let group = configuration.socketGroup
        let app = Application(
            router: routes.router(),
            server: .http1WithCallerCredentials(budget: ConnectionBudget(perUser: limits.connectionsPerUser, total: limits.connections),
                                                headerTimeout: limits.requestHeaderTimeout),
            configuration: .init(address: .unixDomainSocket(path: socket), serverName: "ferryd/\(Agent.version)"),
            onServerRunning: { _ in
                do { try SocketFile.setAccess(socket, mode: mode, group: group) } catch {
                    logger.error("cannot set the socket's access", metadata: ["socket": "\(socket)", "error": "\(error)"])
                }
                logger.info("serving the control API", metadata: ["socket": "\(socket)", "mode": "\(String(mode, radix: 8))",
                                                                  "version": "\(Agent.version)"])
            },
            logger: logger)

        let reload = installReloadHandler(service: service, notifications: notifications)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: EngineService(engine: engine)),
                .init(service: app),
                .init(service: StreamsService(notifications: notifications)),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(20)
        defer {
            reload.cancel()
            unlink(socket)
        }
        try await ServiceGroup(configuration: groupConfiguration).run()
        logger.info("stopped; every transfer is checkpointed")
    }

    /// SIGHUP: read the file again; keep the running configuration if it has errors.
    private func installReloadHandler(service: AgentService, notifications: NotificationCenter) -> SignalLatch {
        SignalLatch(signals: [SIGHUP]) { [self] in
            do {
                let fresh = try AgentConfiguration.load(path: configurationPath, overrides: overrides)
                let previous = current.withLock { state -> AgentConfiguration in
                    let old = state
                    state = fresh
                    return old
                }
                service.update(.init(jobsPerUser: fresh.quotas.jobsPerUser, filesPerJob: fresh.quotas.filesPerJob))
                notifications.setModificationInterval(fresh.modificationMinimumInterval)
                let live = AgentConfiguration.keysAppliedOnReload
                let applied = fresh.changedKeys(comparedTo: previous).filter { live.contains($0) }
                // Compared with what the agent started with, so a second reload still reports them.
                let pending = fresh.changedKeys(comparedTo: started).filter { !live.contains($0) }
                logger.notice("configuration reloaded", metadata: [
                    "file": "\(configurationPath ?? "(none)")",
                    "applied": "\(applied.isEmpty ? "nothing" : applied.joined(separator: ", "))",
                    "after restart": "\(pending.isEmpty ? "nothing" : pending.joined(separator: ", "))",
                ])
            } catch {
                logger.error("configuration not reloaded: the running one is kept", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// A reason the agent cannot run.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Owns the engine's life inside the service group: it stops last, after the API.
struct EngineService: Service {
    let engine: Engine

    func run() async throws {
        try? await gracefulShutdown()
        engine.shutdown()
    }
}

/// Ends every event stream on shutdown, so open subscribers do not hold the server up.
struct StreamsService: Service {
    let notifications: NotificationCenter

    func run() async throws {
        try? await gracefulShutdown()
        notifications.finishAll()
    }
}

/// The socket's file: its directory, a stale socket left by a crash, and its access.
enum SocketFile {
    /// Creates the directory and removes a stale socket; refuses one a live agent serves.
    static func prepare(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            } catch {
                throw AgentError("cannot create the socket's directory \(directory): \(StateDirectory.explain(error))")
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw AgentError("\(path) exists and is not a socket; refusing to replace it")
        }
        if isServed(path) { throw AgentError("another ferryd is already serving \(path)") }
        unlink(path)
    }

    static func setAccess(_ path: String, mode: UInt16, group: String?) throws {
        if let group {
            guard let entry = getgrnam(group) else { throw AgentError("no group \(group)") }
            guard chown(path, UInt32.max, entry.pointee.gr_gid) == 0 else { throw AgentError("chown: \(String(cString: strerror(errno)))") }
        }
        guard chmod(path, mode_t(mode)) == 0 else { throw AgentError("chmod: \(String(cString: strerror(errno)))") }
    }

    private static func isServed(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }
}

extension AgentConfiguration {
    /// Refuses a plugin whose declared roles do not include the role its entry expects.
    public func checkPluginRoles(_ host: PluginHost) throws(AgentError) {
        for (entry, plugin) in zip(plugins, host.plugins) {
            guard let role = entry.role else { continue }
            let ok = role == .validator ? plugin.isValidator : plugin.isErrorPolicy
            if !ok {
                throw AgentError("plugin \(plugin.path): configured as \(role.rawValue) but it declares \(plugin.roleNames.joined(separator: ", "))")
            }
        }
    }
}
