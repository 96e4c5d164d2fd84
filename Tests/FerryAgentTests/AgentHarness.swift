import FerryControl
import FerryTestSupport
import Foundation
import Testing

/// Thrown by ``AgentHarness/start(sourceLocation:)`` after it recorded why.
struct AgentDidNotStart: Error {}

/// The real `ferryd` binary on a private state directory and socket, with a loopback file server.
final class AgentHarness {
    let directory: TemporaryDirectory
    let downloads: String
    let server: FaultServer
    let socket: String
    let stateDirectory: String
    let configPath: String
    private(set) var process: ChildProcess?
    var client: ControlClient { ControlClient(socketPath: socket) }

    init(config: String = "") throws {
        directory = try TemporaryDirectory("ferryd")
        chmod(directory.path, 0o755)
        downloads = try directory.subdirectory("downloads")
        chmod(downloads, 0o777)
        server = try FaultServer()
        socket = directory.file("run/ferryd.sock")
        stateDirectory = directory.file("state")
        configPath = directory.file("ferryd.yaml")
        try writeConfig(config)
    }

    func writeConfig(_ text: String) throws {
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts ferryd and waits until it answers on its socket.
    func start(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let child = try ChildProcess("ferryd", ["--config", configPath, "--state-dir", stateDirectory, "--socket", socket, "--log-level", "info"])
        process = child
        let up = waitUntil(timeout: 30) { (try? self.client.health()) != nil || !child.process.isRunning }
        guard up, child.process.isRunning else {
            Issue.record("ferryd did not start: \(child.standardError)", sourceLocation: sourceLocation)
            throw AgentDidNotStart()
        }
    }

    /// Sends a signal and waits for the exit status.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM, timeout: Double = 30) -> Int32 {
        guard let process else { return -1 }
        process.signal(signal)
        let status = process.wait(timeout: timeout)
        previousLog = process.standardError
        self.process = nil
        return status
    }

    /// Waits for ferryd to end by itself (a crash), then starts it again, as systemd's
    /// `Restart=` would. Returns how the ended process ended, or nil if it did not end in time.
    func restartAfterExit(timeout: Double = 60, sourceLocation: SourceLocation = #_sourceLocation) throws -> (reason: Process.TerminationReason, status: Int32)? {
        guard let child = process else { return nil }
        guard waitUntil(timeout: timeout, { !child.process.isRunning }) else { return nil }
        child.process.waitUntilExit()
        previousLog = child.standardError
        logs.append(child.standardError)
        let ended = (child.process.terminationReason, child.process.terminationStatus)
        process = nil
        try start(sourceLocation: sourceLocation)
        return ended
    }

    /// What every ferryd started by ``restartAfterExit(timeout:sourceLocation:)`` wrote before it ended.
    private(set) var logs: [String] = []

    var log: String { process?.standardError ?? "" }
    /// What the last stopped ferryd wrote to standard error.
    private(set) var previousLog = ""

    func tearDown() {
        if process != nil { stop(SIGKILL) }
        server.stop()
        directory.remove()
    }

    func url(_ path: String) -> String { server.baseURL + path }
    func destination(_ name: String) -> String { downloads + "/" + name }

    /// Waits for a job to reach a state, polling the API.
    @discardableResult
    func wait(_ id: String, for state: String, timeout: Double = 60, sourceLocation: SourceLocation = #_sourceLocation) -> JobDocument? {
        var last: JobDocument?
        let reached = waitUntil(timeout: timeout) {
            last = try? self.client.job(id)
            return last?.state.rawValue == state
        }
        if !reached {
            Issue.record("job \(id) is \(last?.state.rawValue ?? "gone"), not \(state); error: \(last?.error.map { "\($0)" } ?? "none")", sourceLocation: sourceLocation)
        }
        return last
    }

    /// Runs the real `ferry` against this agent's socket, from the download directory.
    func ferry(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try ChildProcess.run("ferry", arguments + ["--socket", socket], workingDirectory: downloads)
    }

    /// A raw request with the curl command line, as a person would make it by hand.
    func curl(_ method: String, _ path: String, body: String? = nil, asUser user: String? = nil) throws -> (status: Int, body: String) {
        try curl(method, path, body: body, via: user.map { ["runuser", "-u", $0, "--"] } ?? [])
    }

    /// The same, run through `prefix` (`runuser`, `setpriv`: another user's process). A body
    /// starting with @ names a file, as with curl itself; a body too long for one argument
    /// is passed through a file the user may read. JSON's escaped slashes are unescaped, so
    /// paths compare as written.
    func curl(_ method: String, _ path: String, body: String? = nil, via prefix: [String]) throws -> (status: Int, body: String) {
        var arguments = prefix + ["curl", "-sS", "--max-time", "20", "--unix-socket", socket, "-X", method, "-o", "-", "-w", "\n%{http_code}", "http://localhost" + path]
        if var body {
            if body.utf8.count > 32_768 {
                let file = directory.file("body-\(UUID().uuidString).json")
                try body.write(toFile: file, atomically: true, encoding: .utf8)
                chmod(file, 0o644)
                body = "@" + file
            }
            arguments += ["-H", "Content-Type: application/json", "--data-binary", body]
        }
        let result = try PluginBuilder.run("/usr/bin/env", arguments)
        let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n").replacingOccurrences(of: "\\/", with: "/"))
    }
}
