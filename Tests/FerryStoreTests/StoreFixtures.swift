import FerryCore
import FerryStore
import Foundation
import Testing

/// A directory under the system's temporary directory, removed when the value is released.
final class ScratchDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-store-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// Runs one SQL statement with the `sqlite3` command-line tool and returns what it prints.
///
/// Used to look at and tamper with a store from outside, as another program would.
@discardableResult
func sqlite3(_ databasePath: String, _ sql: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["sqlite3", databasePath, sql]
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let printed = output.fileHandleForReading.readDataToEndOfFile()
    let complaints = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try #require(
        process.terminationStatus == 0,
        "sqlite3 failed (is the sqlite3 command-line tool installed?): \(String(decoding: complaints, as: UTF8.self))")
    return String(decoding: printed, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A fixed origin for every timestamp; whole and binary-fraction seconds survive JSON exactly.
let origin = Date(timeIntervalSince1970: 1_700_000_000)
func at(_ seconds: Double) -> Date { origin.addingTimeInterval(seconds) }

func sampleFile(_ index: Int, properties: [String: String] = [:]) -> JobFile {
    JobFile(remoteURL: "https://example.com/files/\(index).bin", localPath: "/srv/downloads/file-\(index).bin",
            properties: properties)
}

extension Job {
    /// A new suspended job with `fileCount` sample files.
    static func sample(files fileCount: Int, createdAt: Date = origin) throws -> Job {
        var job = Job(displayName: "sample", description: "a job for the store tests", owner: 1000, createdAt: createdAt)
        _ = try job.apply(.addFiles((0..<fileCount).map { sampleFile($0) }), at: createdAt)
        return job
    }

    /// Applies events that must all be accepted.
    mutating func run(_ events: JobEvent..., at now: Date) throws {
        for event in events { _ = try apply(event, at: now) }
    }
}
