import ArgumentParser
import FerryCore
import FerryEngine
import Foundation
import Logging

/// `ferry`: drives Ferry transfers from the command line.
@main
struct Ferry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Background transfers with BITS semantics: resumable, crash-safe, validated.",
        version: "0.1.0",
        subcommands: [TransferCommand.self]
    )
}

/// Exit codes shared by every command (documented in docs/cli.md).
enum ExitStatus {
    static let success: Int32 = 0
    static let jobFailed: Int32 = 1
    static let badInput: Int32 = 65        // EX_DATAERR: manifest or arguments that cannot be used
    static let cannotRun: Int32 = 69       // EX_UNAVAILABLE: store or state directory unusable
    static let busy: Int32 = 75            // EX_TEMPFAIL: the same transfer is already running
    static let interrupted: Int32 = 130
}

/// Sets swift-log up to write to standard error.
func bootstrapLogging(verbose: Bool) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = verbose ? .info : .error
        return handler
    }
}

/// Prints to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
