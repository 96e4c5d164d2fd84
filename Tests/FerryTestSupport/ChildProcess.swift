import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starts `process` with no signal blocked in it, as a child of the main thread starts.
///
/// Swift Testing runs each test on a worker thread that blocks most signals, and a child
/// inherits the mask of the thread that started it: a SIGTERM or SIGINT the test sends it
/// would stay pending for ever (a server that is told to stop never stops).
public func runWithSignalsUnblocked(_ process: Process) throws {
    var none = sigset_t()
    sigemptyset(&none)
    var previous = sigset_t()
    pthread_sigmask(SIG_SETMASK, &none, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
}

/// A program of the package started as a real child process, its output captured in files.
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    private let stdoutPath: String
    private let stderrPath: String

    /// Starts `productsDirectory()/name` (or `name` itself, when it is an absolute path) with `arguments`.
    public init(_ name: String, _ arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil) throws {
        let scratch = NSTemporaryDirectory() + "/ferry-child-\(UUID().uuidString)"
        stdoutPath = scratch + ".out"
        stderrPath = scratch + ".err"
        FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: name.hasPrefix("/") ? name : productsDirectory() + "/" + name)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        try runWithSignalsUnblocked(process)
    }

    public var pid: Int32 { process.processIdentifier }

    public func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for the process to end (killing it after `timeout` seconds) and returns its exit status.
    @discardableResult
    public func wait(timeout: Double = 60) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    public var standardOutput: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var standardError: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Runs a program to the end and returns its status and output.
    public static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:],
                           workingDirectory: String? = nil, timeout: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try ChildProcess(name, arguments, environment: environment, workingDirectory: workingDirectory)
        let status = child.wait(timeout: timeout)
        return (status, child.standardOutput, child.standardError)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        unlink(stdoutPath)
        unlink(stderrPath)
    }
}
