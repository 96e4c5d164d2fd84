import FerryCore
import FerryEngine
import FerryTestSupport
import Foundation
import Logging
import Testing

/// An engine on a private store, a loopback fault server and a download directory.
final class EngineHarness {
    let directory: TemporaryDirectory
    let downloads: String
    let server: FaultServer
    var engine: Engine
    var configuration: EngineConfiguration

    init(configure: (inout EngineConfiguration) -> Void = { _ in }) throws {
        directory = try TemporaryDirectory("ferry-engine")
        downloads = try directory.subdirectory("downloads")
        server = try FaultServer()
        configuration = EngineConfiguration(storePath: directory.file("jobs.db"))
        configuration.checkpointIntervalSeconds = 0.2
        configuration.checkpointBytes = 64 << 10
        configure(&configuration)
        engine = try Engine(configuration: configuration, logger: EngineHarness.logger)
        try engine.start()
    }

    /// Stops the engine and opens a new one on the same store, as after an agent restart.
    func restartEngine() throws {
        engine.shutdown()
        engine = try Engine(configuration: configuration, logger: EngineHarness.logger)
        try engine.start()
    }

    /// Warnings and worse only: the engine's decisions stay visible when a test fails.
    static let logger: Logger = {
        var logger = Logger(label: "ferry.engine.test")
        logger.logLevel = .warning
        return logger
    }()

    func tearDown() {
        engine.shutdown()
        server.stop()
        directory.remove()
    }

    func url(_ path: String) -> String { server.baseURL + path }
    func destination(_ name: String) -> String { downloads + "/" + name }

    /// Creates a job with one file per (server path, destination name) and resumes it.
    func startJob(_ files: [(String, String)], priority: JobPriority = .normal, resume: Bool = true,
                  configure: (JobID) throws -> Void = { _ in }) throws -> JobID {
        let job = try engine.createJob(displayName: "test", owner: getuid(), priority: priority)
        _ = try engine.addFiles(job.id, files.map { NewFile(remoteURL: url($0.0), localPath: destination($0.1)) })
        try configure(job.id)
        if resume { _ = try engine.resume(job.id) }
        return job.id
    }

    /// Waits for the job to reach `state`; fails the test with the job's last error otherwise.
    @discardableResult
    func wait(_ id: JobID, for state: JobState, timeout: Double = 60, sourceLocation: SourceLocation = #_sourceLocation) throws -> Job {
        var last: Job?
        let reached = try waitUntil(timeout: timeout) {
            last = try engine.job(id)
            return last?.state == state
        }
        if !reached {
            Issue.record("job stayed \(last?.state.rawValue ?? "?") instead of \(state.rawValue); last error: \(last?.lastError.map { "\($0)" } ?? "none")", sourceLocation: sourceLocation)
        }
        return try #require(last, sourceLocation: sourceLocation)
    }

    /// Waits until the job has written at least `bytes` bytes in total.
    func waitForProgress(_ id: JobID, atLeast bytes: UInt64, timeout: Double = 60) throws -> Job {
        var last: Job?
        let reached = try waitUntil(timeout: timeout) {
            last = try engine.job(id)
            return (last?.progress.bytesTransferred ?? 0) >= bytes
        }
        #expect(reached, "job did not reach \(bytes) bytes (at \(last?.progress.bytesTransferred ?? 0))")
        return try #require(last)
    }

    /// The hidden temporaries in the download directory.
    var temporaries: [String] { directoryEntries(downloads).filter { $0.hasPrefix(".") && $0.hasSuffix(".part") } }
}
