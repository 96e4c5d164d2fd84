import ArgumentParser
import FerryControl
import FerryCore
import FerryEngine
import Foundation

// Creating jobs, giving them files, and moving them through their states
// (bitsadmin /create, /addfile, /addfileset, /resume, /suspend, /cancel, /complete).

/// `ferry create`: a new, suspended job; prints its id and nothing else.
struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a suspended download job and print its id.",
        discussion: "Add files with 'ferry addfile', then start it with 'ferry resume'. Example: JOB=$(ferry create nightly)"
    )

    @OptionGroup var agent: AgentOptions

    @Option(name: .long, help: "foreground, high, normal or low (default: normal).")
    var priority: JobPriority?

    @Option(name: .long, help: "A longer description of the job.")
    var description: String?

    @Argument(help: "The job's display name.")
    var name: String

    func run() throws {
        let request = CreateJobRequest(displayName: name, description: description, priority: priority)
        let job = try agent.link().call { try $0.createJob(request) }
        print(job.id)
    }
}

/// `ferry addfile`: one file.
struct AddFileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "addfile",
        abstract: "Add a file to a job.",
        discussion: "A relative PATH is made absolute against the current directory. The directory must exist."
    )

    @OptionGroup var agent: AgentOptions

    @Option(name: .customLong("property"), help: "A file property key=value (repeatable), such as sha256=<hex> or size=<bytes>.")
    var properties: [String] = []

    @Option(name: .customLong("mirror"), help: ArgumentHelp("Another URL serving the same bytes (repeatable).", valueName: "url"))
    var mirrors: [String] = []

    @Argument(help: "The job's id.")
    var job: String

    @Argument(help: "The source URL (http, https or file).")
    var url: String

    @Argument(help: "The destination path.")
    var path: String

    func validate() throws {
        _ = try KeyValue.parse(properties, option: "--property")
    }

    func run() throws {
        let parsed = try KeyValue.parse(properties, option: "--property")
        let file = NewFileDocument(url: url, path: LocalPath.absolute(path), properties: parsed.isEmpty ? nil : parsed,
                                   mirrors: mirrors.isEmpty ? nil : mirrors)
        let link = agent.link()
        let result = try link.call(job: job) { try $0.addFiles(job, [file]) }
        let index = result.progress.filesTotal - 1
        print("Added file \(index) to job \(result.id): \(file.url) -> \(file.path)")
        // The answer pages its files: the new one is asked for by index.
        if let added = try link.call(job: job, { try $0.file(job, index: index) }), !added.mirrors.isEmpty {
            print("Mirrors: \(added.mirrors.joined(separator: " "))")
        }
    }
}

/// `ferry addmirror`: more sources for one file.
struct AddMirrorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "addmirror",
        abstract: "Add mirror URLs to one file of a job.",
        discussion: """
            FILEINDEX counts from 0, in the order the files were added ('ferry info' shows it). \
            The agent starts the file from the healthiest of its URLs ('ferry sources' shows what \
            it knows of each), and on errors the mirror-failover policy moves it to the next one. \
            A URL the file already has is not added again.
            """
    )

    @OptionGroup var target: JobTarget
    @OptionGroup var file: FileIndexArgument
    @Argument(help: ArgumentHelp("The mirror URLs (http, https or file).", valueName: "url")) var urls: [String]

    func run() throws {
        let result = try target.call { try $0.addMirrors(target.job, file: file.fileIndex, urls: urls) }
        let mirrors = try target.call { try $0.file(target.job, index: file.fileIndex) }?.mirrors ?? []
        print("Job \(result.id): file \(file.fileIndex) mirrors " + (mirrors.isEmpty ? "(none)" : mirrors.joined(separator: " ")))
    }
}

/// `ferry addfiles`: many files from a list, in one request.
struct AddFilesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "addfiles",
        abstract: "Add the files a list names to a job.",
        discussion: """
            Each line of LISTFILE is 'URL PATH'; blank lines and lines starting with # are skipped. \
            PATH is the rest of the line and may hold spaces; a relative PATH is made absolute \
            against the current directory. All the files are added, or none.
            """
    )

    @OptionGroup var agent: AgentOptions

    @Argument(help: "The job's id.")
    var job: String

    @Argument(help: "The list file, or - for standard input.")
    var listFile: String

    func validate() throws {
        guard listFile != "-" else { return }
        var info = stat()
        guard stat(listFile, &info) == 0 else {
            throw ValidationError("cannot read the list \(listFile): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) != S_IFDIR else { throw ValidationError("the list \(listFile) is a directory") }
        guard access(listFile, R_OK) == 0 else {
            throw ValidationError("cannot read the list \(listFile): \(String(cString: strerror(errno)))")
        }
    }

    func run() throws {
        let data = listFile == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: listFile)
        let source = listFile == "-" ? "standard input" : listFile
        guard let data else {
            printError("ferry: cannot read the list \(source)")
            throw ExitCode(ExitStatus.badInput)
        }
        let files: [NewFileDocument]
        do { files = try FileList.parse(String(decoding: data, as: UTF8.self), source: source) } catch {
            printError("ferry: \(error)")
            throw ExitCode(ExitStatus.badInput)
        }
        let result = try agent.link().call(job: job) { try $0.addFiles(job, files) }
        print("Added \(files.count) file\(files.count == 1 ? "" : "s") to job \(result.id) (\(result.progress.filesTotal) in all)")
    }
}

/// The moves `resume`, `suspend`, `cancel` and `complete` ask of a job: each command is
/// one request, then the job's new state (`Job <id> resumed: QUEUED`).
enum JobAction: String {
    case resume, suspend, cancel, complete

    /// The command's name and help.
    var configuration: CommandConfiguration {
        switch self {
        case .resume:
            CommandConfiguration(commandName: rawValue, abstract: "Start a job, or retry one in error at once.",
                                 discussion: "A job in TRANSIENT_ERROR or ERROR is queued again without waiting for its retry delay.")
        case .suspend:
            CommandConfiguration(commandName: rawValue, abstract: "Stop a job's transfers; 'ferry resume' continues them.")
        case .cancel:
            CommandConfiguration(commandName: rawValue, abstract: "Cancel a job and delete its temporary files.",
                                 discussion: "This cannot be undone. The destinations are not touched.")
        case .complete:
            CommandConfiguration(commandName: rawValue, abstract: "Complete a job: move its transferred files into place.",
                                 discussion: "Files that have not arrived are deleted, not moved. Until a job is completed its files stay hidden.")
        }
    }

    /// The past participle printed on success.
    var done: String {
        switch self {
        case .resume: "resumed"
        case .suspend: "suspended"
        case .cancel: "cancelled"
        case .complete: "completed"
        }
    }
}

/// Names one ``JobAction`` at the type level, so that one generic command serves all four.
protocol JobActionKind {
    static var action: JobAction { get }
}

enum ResumeAction: JobActionKind { static let action = JobAction.resume }
enum SuspendAction: JobActionKind { static let action = JobAction.suspend }
enum CancelAction: JobActionKind { static let action = JobAction.cancel }
enum CompleteAction: JobActionKind { static let action = JobAction.complete }

/// `ferry resume`, `ferry suspend`, `ferry cancel` and `ferry complete`: asks `Kind`'s
/// ``JobAction`` of one job, then prints the job's new state.
struct JobActionCommand<Kind: JobActionKind>: ParsableCommand {
    static var configuration: CommandConfiguration { Kind.action.configuration }

    @OptionGroup var target: JobTarget

    func run() throws {
        let result = try target.call { try $0.perform(Kind.action.rawValue, on: target.job) }
        print("Job \(result.id) \(Kind.action.done): \(result.state.rawValue)")
    }
}

// MARK: - Input helpers

/// `key=value` arguments.
enum KeyValue {
    /// Reads `key=value` words into a dictionary; a later key wins.
    /// - Parameters:
    ///   - words: the arguments.
    ///   - option: the option or argument they came from, for the message.
    /// - Throws: `ValidationError` naming the first word without `=` or with an empty key.
    static func parse(_ words: [String], option: String) throws(ValidationError) -> [String: String] {
        var result: [String: String] = [:]
        for word in words {
            guard let equals = word.firstIndex(of: "="), equals != word.startIndex else {
                throw ValidationError("\(option) takes key=value, got '\(word)'")
            }
            result[String(word[..<equals])] = String(word[word.index(after: equals)...])
        }
        return result
    }
}

/// The `FILEINDEX` argument of `addmirror` and `setremotename`: one file of the job, counted from 0.
struct FileIndexArgument: ParsableArguments {
    @Argument(help: "The file's index.") var fileIndex: Int

    func validate() throws {
        guard fileIndex >= 0 else { throw ValidationError("FILEINDEX must be 0 or more, got \(fileIndex)") }
    }
}

/// Local paths as the agent needs them: absolute.
enum LocalPath {
    /// `path` made absolute against the current directory and cleaned the way `ferry transfer`
    /// cleans destinations (`.` and repeated slashes removed, `..` resolved by text).
    static func absolute(_ path: String, base: String = FileManager.default.currentDirectoryPath) -> String {
        TransferManifest.normalize(path.hasPrefix("/") ? path : base + "/" + path)
    }
}

/// The list `ferry addfiles` reads: one `URL PATH` per line.
enum FileList {
    /// A line that cannot be used, with its place.
    struct ParseError: Error, CustomStringConvertible {
        let source: String
        let line: Int?
        let message: String
        var description: String { "\(source)" + (line.map { ":\($0)" } ?? "") + ": \(message)" }
    }

    /// Reads the list. Blank lines and lines whose first non-blank character is `#` are skipped;
    /// the URL is the first word and the path the rest of the line, trimmed.
    /// - Parameters:
    ///   - text: the list's contents.
    ///   - source: the list's name, for messages.
    ///   - base: the directory relative paths are resolved against.
    /// - Throws: ``ParseError`` naming the line.
    static func parse(_ text: String, source: String,
                      base: String = FileManager.default.currentDirectoryPath) throws(ParseError) -> [NewFileDocument] {
        var files: [NewFileDocument] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let gap = line.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
                throw ParseError(source: source, line: index + 1, message: "expected 'URL PATH', got only '\(line.prefix(200))'")
            }
            let url = String(line[..<gap])
            let path = line[gap...].trimmingCharacters(in: .whitespaces)
            files.append(NewFileDocument(url: url, path: LocalPath.absolute(path, base: base)))
        }
        guard !files.isEmpty else { throw ParseError(source: source, line: nil, message: "lists no file") }
        return files
    }
}
