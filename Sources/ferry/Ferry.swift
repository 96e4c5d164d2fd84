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
                JobActionCommand<ResumeAction>.self, JobActionCommand<SuspendAction>.self,
                JobActionCommand<CancelAction>.self, JobActionCommand<CompleteAction>.self,
            ]),
            CommandGroup(name: "Inspection", subcommands: [
                ListCommand.self, InfoCommand.self, MonitorCommand.self, GetErrorCommand.self, EventsCommand.self,
                SourcesCommand.self,
            ]),
            CommandGroup(name: "Settings", subcommands: [
                SetValueCommand<PrioritySetting>.self, SetRemoteNameCommand.self, ReplaceRemotePrefixCommand.self,
                SetValueCommand<MinRetryDelaySetting>.self, SetValueCommand<NoProgressTimeoutSetting>.self,
                SetCustomHeadersCommand.self, SetNotifyCmdLineCommand.self, SetNotifyFlagsCommand.self,
                SetValueCommand<DisplayNameSetting>.self, SetValueCommand<DescriptionSetting>.self,
                SetPropertyCommand.self, SetValueCommand<AutoCompleteSetting>.self,
                SetDynamicCommand.self, SetTLSCommand.self,
            ]),
            CommandGroup(name: "Transfer", subcommands: [TransferCommand.self]),
        ]
    )
}

/// Exit codes shared by every command (documented in docs/cli.md).
extension ExitStatus {
    /// The exit status for a refused or failed control request: the error table's for the
    /// code the agent answered (``ErrorCode/exitStatus``); 69 when no agent answered.
    static func of(_ error: ControlError) -> Int32 {
        guard error.status != 0 else { return cannotRun }
        return ErrorCode(rawValue: error.error.code).exitStatus
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
