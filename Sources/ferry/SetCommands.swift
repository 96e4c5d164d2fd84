import ArgumentParser
import FerryControl
import FerryCore
import Foundation

// Changing a job (bitsadmin /setpriority, /setminretrydelay, /setnotifycmdline, ...).
// Each command is one request; it prints the setting as the agent now holds it.

extension AgentLink {
    /// Applies `settings` to the job (`PATCH /v1/jobs/{id}`) and returns the job as it now is.
    /// - Throws: `ExitCode` after printing the agent's refusal.
    func update(_ job: String, _ settings: JobSettings) throws(ExitCode) -> JobDocument {
        try call(job: job) { try $0.update(job, settings) }
    }
}

/// What every command of this file shares: it changes one job with one request, then prints
/// the setting as the agent now holds it, `Job <id>: <setting>`.
protocol JobSettingCommand: ParsableCommand {
    /// Asks the agent for the change.
    /// - Returns: the job as it now is.
    /// - Throws: `ExitCode` after printing the agent's refusal.
    func change() throws -> JobDocument

    /// The setting as `job` now holds it, such as `priority high`.
    func setting(of job: JobDocument) -> String
}

extension JobSettingCommand {
    func run() throws {
        let result = try change()
        print("Job \(result.id): \(setting(of: result))")
    }
}

/// `ferry setremotename`.
struct SetRemoteNameCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "setremotename",
        abstract: "Point one file of a job at another URL.",
        discussion: "FILEINDEX counts from 0, in the order the files were added ('ferry info' shows it)."
    )

    @OptionGroup var target: JobTarget
    @OptionGroup var file: FileIndexArgument
    @Argument(help: "The new source URL.") var url: String

    func change() throws(ExitCode) -> JobDocument {
        try target.call { try $0.setRemoteURL(target.job, file: file.fileIndex, url: url) }
    }

    func setting(of job: JobDocument) -> String {
        "file \(file.fileIndex) now comes from \(job.files.first { $0.index == file.fileIndex }?.url ?? url)"
    }
}

/// `ferry replaceremoteprefix`.
struct ReplaceRemotePrefixCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "replaceremoteprefix",
        abstract: "Change the URL prefix of files not yet transferred.",
        discussion: "Example: ferry replaceremoteprefix JOB http://old-mirror/ https://new-mirror/ (case-sensitive)."
    )

    @OptionGroup var target: JobTarget
    @Argument(help: "The prefix to replace.") var old: String
    @Argument(help: "The prefix to put in its place.") var new: String

    func change() throws(ExitCode) -> JobDocument {
        try target.call { try $0.replaceRemotePrefix(target.job, old: old, new: new) }
    }

    func setting(of job: JobDocument) -> String {
        "\(old) replaced with \(new) in the URLs of the files not yet transferred"
    }
}

/// A job setting that one argument sets: the command's help, the field of the request it
/// fills, and the words that show what the job now holds. One generic command,
/// ``SetValueCommand``, serves each of them.
protocol SingleValueSetting {
    associatedtype Value: ExpressibleByArgument
    static var configuration: CommandConfiguration { get }
    static var argumentHelp: ArgumentHelp { get }
    /// The field of the request that sets it.
    static var request: WritableKeyPath<JobSettings, Value?> { get }
    /// Refuses a value before anything is sent.
    static func check(_ value: Value) throws(ValidationError)
    /// The setting as `job` now holds it, such as `priority high`.
    static func described(_ job: JobDocument) -> String
}

extension SingleValueSetting {
    static func check(_ value: Value) throws(ValidationError) {}
}

/// `ferry setpriority`, `setminretrydelay`, `setnoprogresstimeout`, `setdisplayname`,
/// `setdescription` and `setautocomplete`.
struct SetValueCommand<Setting: SingleValueSetting>: JobSettingCommand {
    static var configuration: CommandConfiguration { Setting.configuration }

    @OptionGroup var target: JobTarget
    @Argument(help: Setting.argumentHelp) var value: Setting.Value

    func validate() throws { try Setting.check(value) }

    func change() throws(ExitCode) -> JobDocument {
        var settings = JobSettings()
        settings[keyPath: Setting.request] = value
        return try target.update(settings)
    }

    func setting(of job: JobDocument) -> String { Setting.described(job) }
}

/// `setpriority`.
enum PrioritySetting: SingleValueSetting {
    static let configuration = CommandConfiguration(
        commandName: "setpriority",
        abstract: "Set a job's priority.",
        discussion: "Foreground jobs run at once; background levels (high, normal, low) take turns, the higher first."
    )
    static var argumentHelp: ArgumentHelp { ArgumentHelp("foreground, high, normal or low.", valueName: "priority") }
    static var request: WritableKeyPath<JobSettings, JobPriority?> { \.priority }
    static func described(_ job: JobDocument) -> String { "priority \(job.priority.rawValue)" }
}

/// A number of seconds ≥ 0, as `setminretrydelay` and `setnoprogresstimeout` take it.
protocol SecondsSetting: SingleValueSetting where Value == Double {}

extension SecondsSetting {
    static var argumentHelp: ArgumentHelp { ArgumentHelp("Seconds.", valueName: "seconds") }

    static func check(_ seconds: Double) throws(ValidationError) {
        guard seconds.isFinite, seconds >= 0 else { throw ValidationError("SECONDS must be a number ≥ 0, got \(seconds)") }
    }
}

/// `setminretrydelay`: the wait after a transient error.
enum MinRetryDelaySetting: SecondsSetting {
    static let configuration = CommandConfiguration(
        commandName: "setminretrydelay",
        abstract: "Set the wait after a transient error.",
        discussion: """
            How long the job waits after a transient error before trying again. Values below \
            \(Int(Job.minimumRetryDelayFloor)) are raised to \(Int(Job.minimumRetryDelayFloor)). A server's \
            Retry-After can make the wait longer.
            """
    )
    static var request: WritableKeyPath<JobSettings, Double?> { \.minRetryDelaySec }
    static func described(_ job: JobDocument) -> String { "minimum retry delay \(Format.seconds(job.minRetryDelaySec))" }
}

/// `setnoprogresstimeout`: when a transient error becomes fatal.
enum NoProgressTimeoutSetting: SecondsSetting {
    static let configuration = CommandConfiguration(
        commandName: "setnoprogresstimeout",
        abstract: "Set when a transient error becomes fatal.",
        discussion: """
            How long the job may go without progress before a transient error becomes fatal \
            and the job goes to ERROR. 0 makes every error fatal.
            """
    )
    static var request: WritableKeyPath<JobSettings, Double?> { \.noProgressTimeoutSec }
    static func described(_ job: JobDocument) -> String { "no-progress timeout \(Format.seconds(job.noProgressTimeoutSec))" }
}

/// `setdisplayname`.
enum DisplayNameSetting: SingleValueSetting {
    static let configuration = CommandConfiguration(commandName: "setdisplayname", abstract: "Rename a job.")
    static var argumentHelp: ArgumentHelp { ArgumentHelp("The new display name (1 to 256 characters).", valueName: "name") }
    static var request: WritableKeyPath<JobSettings, String?> { \.displayName }
    static func described(_ job: JobDocument) -> String { "display name \(job.displayName)" }
}

/// `setdescription`.
enum DescriptionSetting: SingleValueSetting {
    static let configuration = CommandConfiguration(commandName: "setdescription", abstract: "Set a job's description.")
    static var argumentHelp: ArgumentHelp { ArgumentHelp("The new description (empty to clear it).", valueName: "text") }
    static var request: WritableKeyPath<JobSettings, String?> { \.description }
    static func described(_ job: JobDocument) -> String { job.description.isEmpty ? "no description" : "description \(job.description)" }
}

/// `setautocomplete`.
enum AutoCompleteSetting: SingleValueSetting {
    static let configuration = CommandConfiguration(
        commandName: "setautocomplete",
        abstract: "Complete a job by itself once every file arrives.",
        discussion: "A job already TRANSFERRED is completed at once when this is turned on."
    )
    static var argumentHelp: ArgumentHelp { ArgumentHelp("true or false.", valueName: "true|false") }
    static var request: WritableKeyPath<JobSettings, Bool?> { \.autoComplete }

    static func described(_ job: JobDocument) -> String {
        "auto-complete \(job.autoComplete ? "on" : "off")" + (job.state == .acknowledged ? " (completed now)" : "")
    }
}

/// `ferry setcustomheaders`.
struct SetCustomHeadersCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "setcustomheaders",
        abstract: "Set the extra HTTP headers of a job's requests.",
        discussion: "Each header is one argument, 'Name: value'. They replace the job's headers; none clears them."
    )

    @OptionGroup var target: JobTarget
    @Argument(help: "Headers such as 'Authorization: Bearer abc'.") var headers: [String] = []

    func validate() throws {
        for header in headers {
            guard let colon = header.firstIndex(of: ":"), colon != header.startIndex, !header.contains("\n") else {
                throw ValidationError("a header must be one line 'Name: value', got '\(header.prefix(80))'")
            }
        }
    }

    func change() throws(ExitCode) -> JobDocument { try target.update(JobSettings(customHeaders: headers)) }

    func setting(of job: JobDocument) -> String {
        let count = job.customHeaders.count
        return count == 0 ? "no custom headers" : "\(count) custom header\(count == 1 ? "" : "s")"
    }
}

/// `ferry setnotifycmdline`.
struct SetNotifyCmdLineCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "setnotifycmdline",
        abstract: "Set the program run on a job's transfer or error.",
        discussion: """
            The agent runs PROGRAM with ARGS directly, without a shell and without searching PATH, \
            so PROGRAM must be an absolute path. If it exits non-zero while the job is still open, \
            it runs again after the job's retry delay. Give no PROGRAM to clear it.
            """
    )

    @OptionGroup var target: JobTarget
    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The program's absolute path and its arguments.", valueName: "program-and-args"))
    var command: [String] = []

    func validate() throws {
        if let program = command.first, !program.hasPrefix("/") {
            throw ValidationError("PROGRAM must be an absolute path (the agent does not search PATH), got '\(program)'")
        }
    }

    func change() throws(ExitCode) -> JobDocument { try target.update(JobSettings(notifyCommand: command)) }

    func setting(of job: JobDocument) -> String {
        job.notifyCommand.isEmpty ? "no notify command" : "notify command \(Format.shellWords(job.notifyCommand))"
    }
}

/// `ferry setnotifyflags`.
struct SetNotifyFlagsCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "setnotifyflags",
        abstract: "Choose which notifications a job sends.",
        discussion: """
            FLAGS is a number (0x3 or 3) or names joined by commas:
              transferred   0x1   the job is transferred
              error         0x2   the job is in ERROR
              disable       0x4   no notification at all, whatever else is set
              modification  0x8   any change of the job
              file          0x10  one file is transferred
            The default is transferred,error.
            """
    )

    @OptionGroup var target: JobTarget
    @Argument(help: "The flags, such as 0x3 or transferred,error.", transform: { try NotifyFlagNames.parse($0) })
    var flags: UInt32

    func change() throws(ExitCode) -> JobDocument { try target.update(JobSettings(notifyFlags: flags)) }
    func setting(of job: JobDocument) -> String { "notify flags \(NotifyFlagNames.describe(job.notifyFlags))" }
}

/// `ferry setproperty`.
struct SetPropertyCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "setproperty",
        abstract: "Set properties of a job.",
        discussion: """
            The given keys are set and the job's other properties kept. With --replace, the given \
            properties replace them all (none given: every property is removed).
            """
    )

    @OptionGroup var agent: AgentOptions

    @Flag(name: .long, help: "Replace every property instead of setting only the keys given.")
    var replace = false

    @Argument(help: "The job's id.") var job: String
    @Argument(help: "key=value pairs.") var properties: [String] = []

    func validate() throws {
        if properties.isEmpty && !replace { throw ValidationError("give at least one key=value (or --replace alone to remove every property)") }
        _ = try KeyValue.parse(properties, option: "a property")
    }

    func change() throws -> JobDocument {
        let given = try KeyValue.parse(properties, option: "a property")
        let link = agent.link()
        var merged = given
        if !replace {
            // The API replaces the whole set: start from the job's own.
            let current = try link.call(job: job) { try $0.job(job) }
            merged = current.properties.merging(given) { _, new in new }
        }
        return try link.update(job, JobSettings(properties: merged))
    }

    func setting(of job: JobDocument) -> String { "properties \(Format.properties(job.properties))" }
}

/// `on` or `off`, as `setdynamic` takes it.
enum Switch: String, ExpressibleByArgument, CaseIterable {
    case on, off
}

/// `ferry setdynamic`.
struct SetDynamicCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "setdynamic",
        abstract: "Fetch a job's files as dynamic content.",
        discussion: """
            BITS' DYNAMIC_CONTENT. On: the servers need not tell a size nor take range requests, and a file whose \
            transfer is interrupted starts again from zero. --max-size bounds every file of the \
            job (0 removes the job's limit; the agent's own limit always applies); without it the \
            job keeps its limit.
            """
    )

    @OptionGroup var agent: AgentOptions

    @Option(name: .customLong("max-size"), help: ArgumentHelp("The most bytes any file of the job may have (0: no job limit).", valueName: "bytes"))
    var maxSize: UInt64?

    @Argument(help: "The job's id.") var job: String
    @Argument(help: ArgumentHelp("on or off.", valueName: "on|off")) var mode: Switch

    func change() throws(ExitCode) -> JobDocument {
        try agent.link().update(job, JobSettings(dynamicContent: mode == .on, maxFileBytes: maxSize))
    }

    func setting(of job: JobDocument) -> String {
        "dynamic content \(job.dynamicContent ? "on" : "off"), "
            + (job.maxFileBytes.map { "max file size \(Format.byteCount($0))" } ?? "no job limit on file size")
    }
}

/// `ferry settls`.
struct SetTLSCommand: JobSettingCommand {
    static let configuration = CommandConfiguration(
        commandName: "settls",
        abstract: "Trust an extra CA or pin a key for a job's https URLs.",
        discussion: """
            --ca-file adds the certificate authorities of a PEM file to the system's, for this \
            job only; the job's owner must be able to read it. A relative path is made absolute \
            against the current directory. --pin makes the servers present this public key, \
            given as sha256// and the base64 SHA-256 of the key (as curl's --pinnedpubkey). \
            An option not given keeps the job's value; --clear removes both. Verification itself \
            cannot be turned off.
            """
    )

    @OptionGroup var agent: AgentOptions

    @Option(name: .customLong("ca-file"), help: ArgumentHelp("A PEM file of extra certificate authorities.", valueName: "path"))
    var caFile: String?

    @Option(name: .customLong("pin"), help: ArgumentHelp("The key the servers must present: sha256//<base64>.", valueName: "pin"))
    var pin: String?

    @Flag(name: .long, help: "Remove both the CA file and the pin.")
    var clear = false

    @Argument(help: "The job's id.") var job: String

    func validate() throws {
        if clear && (caFile != nil || pin != nil) { throw ValidationError("--clear removes both options; give it alone") }
        if !clear && caFile == nil && pin == nil { throw ValidationError("give --ca-file, --pin or --clear") }
        if let caFile, caFile.isEmpty { throw ValidationError("--ca-file needs a path (--clear removes it)") }
        if let pin, !pin.hasPrefix("sha256//") || pin.count <= "sha256//".count {
            throw ValidationError("--pin takes sha256// and the base64 SHA-256 of the key, got '\(pin)'")
        }
    }

    func change() throws(ExitCode) -> JobDocument {
        let settings = clear
            ? JobSettings(tlsCAFile: "", tlsPinnedPublicKey: "")
            : JobSettings(tlsCAFile: caFile.map { LocalPath.absolute($0) }, tlsPinnedPublicKey: pin)
        return try agent.link().update(job, settings)
    }

    func setting(of job: JobDocument) -> String {
        var held: [String] = []
        if let file = job.tlsCAFile { held.append("CA file \(file)") }
        if let key = job.tlsPinnedPublicKey { held.append("pinned key \(key)") }
        return held.isEmpty ? "no TLS options (the system's CAs, no pin)" : held.joined(separator: ", ")
    }
}
