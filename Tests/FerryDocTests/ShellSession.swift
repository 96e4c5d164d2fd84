import Foundation
import FerryTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// One `bash` that a doc example's commands are typed into, one after the other, as in a
/// terminal: variables (`JOB=$(…)`) and the working directory carry from one to the next.
/// Standard output and standard error are read together, in the order they were written.
final class ShellSession: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSLock()
    private var buffer = Data()
    private static let marker = "\u{1}ferry-doc-done "

    /// Starts `bash` as `user` (nil: this process's user) with exactly `environment`.
    init(user: String?, environment: [String: String], workingDirectory: String) throws {
        let assignments = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let shell = ["/usr/bin/env", "-i"] + assignments + ["/bin/bash", "--norc", "--noprofile"]
        let command = user.map { ["/usr/sbin/runuser", "-u", $0, "--"] + shell } ?? shell
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory)
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.buffer.append(data)
            self.lock.unlock()
        }
        try process.run()
        // Every assignment is exported, so that a command run under `script` sees it too.
        _ = try run("set -a; cd \(Self.quoted(workingDirectory))")
    }

    /// Runs one command line and returns its exit status and output lines. With `terminal`,
    /// the command runs on a pseudo-terminal (`script`), as when a person types it; what a
    /// line finally shows after carriage returns is kept, and escape sequences are dropped.
    func run(_ command: String, terminal: Bool = false, timeout: Double = 120) throws -> (status: Int32, lines: [String]) {
        lock.lock()
        buffer.removeAll()
        lock.unlock()
        let line = terminal ? "script -qefc \(Self.quoted(command)) /dev/null" : command
        let script = "{ \(line)\n} </dev/null; __ferry_status=$?; printf '\\n\(Self.marker)%d\\n' $__ferry_status; (exit $__ferry_status)\n"
        input.fileHandleForWriting.write(Data(script.utf8))
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            lock.lock()
            let text = String(decoding: buffer, as: UTF8.self)
            lock.unlock()
            if let end = text.range(of: "\n" + Self.marker), let newline = text[end.upperBound...].firstIndex(of: "\n") {
                let status = Int32(text[end.upperBound..<newline]) ?? -1
                return (status, Self.lines(of: String(text[..<end.lowerBound])))
            }
            if Date() > deadline || !process.isRunning {
                throw ShellError(message: "no end of `\(command)` within \(Int(timeout)) s; it printed:\n\(text)")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// Ends the shell (and kills what it still runs).
    func close() {
        try? input.fileHandleForWriting.close()
        if !waitUntil(timeout: 2, { !process.isRunning }) {
            kill(process.processIdentifier, SIGKILL)
            waitUntil(timeout: 10) { !process.isRunning }
        }
        output.fileHandleForReading.readabilityHandler = nil
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    /// `text` as one single-quoted shell word.
    static func quoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The lines a terminal would show for `text`.
    static func lines(of text: String) -> [String] {
        // (A terminal ends lines with "\r\n", which Swift reads as one character: make them "\n".)
        let plain = text.replacingOccurrences(of: "\u{1B}\\[[0-9;?]*[A-Za-z]", with: "", options: .regularExpression)
            .replacingOccurrences(of: "\r\n", with: "\n")
        var lines = plain.split(separator: "\n", omittingEmptySubsequences: false).map { raw -> String in
            var line = String(raw)
            while line.hasSuffix("\r") { line.removeLast() }
            if let lastReturn = line.lastIndex(of: "\r") { line = String(line[line.index(after: lastReturn)...]) }
            return line
        }
        if lines.last == "" { lines.removeLast() }
        return lines
    }
}

struct ShellError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
