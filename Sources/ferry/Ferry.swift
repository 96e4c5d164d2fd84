import ArgumentParser
import FerryControl
import FerryCore
import FerryEngine
import Foundation
import Logging

/// `ferry`: drives Ferry transfers from the command line, like `bitsadmin`.
///
/// Every command but `transfer` talks to the agent `ferryd` over its control socket;
/// `transfer` uses the agent when one answers and runs the job in this process otherwise.
@main
struct Ferry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Background transfers with BITS semantics: resumable, crash-safe, validated.",
        discussion: """
            Jobs live in the agent ferryd, which keeps them across restarts. \
            JOB is a job id, as printed by 'ferry create' and 'ferry list'.
            """,
        version: "0.1.0",
        groupedSubcommands: [
            CommandGroup(name: "Jobs", subcommands: [
                CreateCommand.self, AddFileCommand.self, AddFilesCommand.self, AddMirrorCommand.self,
                ResumeCommand.self, SuspendCommand.self, CancelCommand.self, CompleteCommand.self,
            ]),
            CommandGroup(name: "Inspection", subcommands: [
                ListCommand.self, InfoCommand.self, MonitorCommand.self, GetErrorCommand.self, EventsCommand.self,
                SourcesCommand.self,
            ]),
            CommandGroup(name: "Settings", subcommands: [
                SetPriorityCommand.self, SetRemoteNameCommand.self, ReplaceRemotePrefixCommand.self,
                SetMinRetryDelayCommand.self, SetNoProgressTimeoutCommand.self, SetCustomHeadersCommand.self,
                SetNotifyCmdLineCommand.self, SetNotifyFlagsCommand.self, SetDisplayNameCommand.self,
                SetDescriptionCommand.self, SetPropertyCommand.self, SetAutoCompleteCommand.self,
                SetDynamicCommand.self, SetTLSCommand.self,
            ]),
            CommandGroup(name: "Transfer", subcommands: [TransferCommand.self]),
        ]
    )
}

/// Exit codes shared by every command (documented in docs/cli.md).
enum ExitStatus {
    static let success: Int32 = 0
    /// The job or the operation failed (a fatal job error; the agent refused for another reason).
    static let jobFailed: Int32 = 1
    /// No such job (the API answered 404).
    static let notFound: Int32 = 2
    /// EX_USAGE: reported by the argument parser.
    static let usage: Int32 = 64
    /// EX_DATAERR: a manifest, list or argument the agent or the engine cannot use.
    static let badInput: Int32 = 65
    /// EX_UNAVAILABLE: the agent cannot be reached, or the store or state directory is unusable.
    static let cannotRun: Int32 = 69
    /// EX_TEMPFAIL: the same transfer is already running, or the agent is too busy to answer.
    static let busy: Int32 = 75
    /// EX_NOPERM: the agent refused the caller (API 403), or its socket is closed to the caller.
    static let permission: Int32 = 77
    /// 128 + SIGINT.
    static let interrupted: Int32 = 130

    /// The exit status for a refused or failed control request.
    static func of(_ error: ControlError) -> Int32 {
        switch error.status {
        case 0: cannotRun
        case 400, 413: badInput
        case 403: permission
        case 404: notFound
        case 429, 503: busy
        default: jobFailed
        }
    }
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
