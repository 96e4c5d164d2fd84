import ArgumentParser
import FerryControl
import FerryCore
import Foundation

// Looking at jobs (bitsadmin /list, /info, /monitor, /geterror) and following their notifications.

/// `ferry list`.
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List your jobs.",
        discussion: "Completed and cancelled jobs are not listed."
    )

    @OptionGroup var agent: AgentOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .customLong("all-users"), help: "Every user's jobs (root only).")
    var allUsers = false

    @Flag(name: .shortAndLong, help: "Also show each job's owner, times, error and files.")
    var verbose = false

    func run() throws {
        let jobs = try agent.link().call { try $0.listJobs(allUsers: allUsers) }
        if output.json {
            print(JSONOutput.pretty(JobList(jobs: jobs)))
        } else if jobs.isEmpty {
            print("No jobs.")
        } else {
            print(JobText.table(jobs, verbose: verbose))
        }
    }
}

/// `ferry info`.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show a job's state, files, error and settings."
    )

    @OptionGroup var agent: AgentOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job's id.") var job: String

    func run() throws {
        let document = try agent.link().call(job: job) { try $0.job(job) }
        print(output.json ? JSONOutput.pretty(document) : JobText.details(document))
    }
}

/// `ferry sources`.
struct SourcesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sources",
        abstract: "Show the health of each source the agent fetched from.",
        discussion: """
            One row per origin (scheme://host:port): failures since the last success and in all, \
            successes, the last success and failure, and the measured throughput. The agent starts \
            a file with mirrors from its healthiest source. root sees every origin; other users see \
            the origins their own jobs' URLs and mirrors name.
            """
    )

    @OptionGroup var agent: AgentOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let sources = try agent.link().call { try $0.sources() }
        if output.json {
            print(JSONOutput.pretty(SourceList(sources: sources)))
        } else if sources.isEmpty {
            print("No sources.")
        } else {
            print(Self.table(sources))
        }
    }

    /// The table: origin, failures (consecutive/total), successes, last success, last failure, throughput.
    static func table(_ sources: [SourceDocument]) -> String {
        var table = Table(header: ["ORIGIN", "FAILURES", "SUCCESSES", "LAST SUCCESS", "LAST FAILURE", "THROUGHPUT"])
        table.rows = sources.map { source in
            [source.origin, "\(source.consecutiveFailures)/\(source.failures)", "\(source.successes)",
             source.lastSuccess.map(Format.date) ?? "-", source.lastFailure.map(Format.date) ?? "-",
             Format.rate(source.bytesPerSecond)]
        }
        return table.lines().joined(separator: "\n")
    }
}

/// `ferry geterror`.
struct GetErrorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "geterror",
        abstract: "Show a job's error.",
        discussion: "Exits 1 when the job is not in ERROR or TRANSIENT_ERROR."
    )

    @OptionGroup var agent: AgentOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job's id.") var job: String

    func run() throws {
        let link = agent.link()
        let error = try link.call(job: job) { try $0.error(job) }
        if output.json {
            print(JSONOutput.pretty(error))
            return
        }
        var fields: [(String, String)] = [("Code", error.code), ("Context", error.context)]
        fields.append(("HTTP status", error.httpStatus.map(String.init) ?? "-"))
        if let index = error.file {
            // The file's URL and path, when the job can still be read.
            let file = (try? link.client.job(job))?.files.first { $0.index == index }
            fields.append(("File", "\(index)" + (file.map { ": \($0.url) -> \($0.path)" } ?? "")))
        } else {
            fields.append(("File", "-"))
        }
        fields.append(("Description", error.message))
        if let transient = error.transient { fields.append(("Transient", Format.yesNo(transient))) }
        if let wait = error.retryAfterSec { fields.append(("Retry after", Format.seconds(wait))) }
        if let size = error.remoteSize { fields.append(("Remote size", "\(size) bytes")) }
        print(JobText.aligned(fields, indent: "").joined(separator: "\n"))
    }
}

/// `ferry monitor`.
struct MonitorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "Watch jobs live, refreshed every second.",
        discussion: """
            On a terminal the view redraws in place; elsewhere each refresh prints a new block. \
            Ctrl-C ends it, as does the watched job being completed or cancelled.
            """
    )

    @OptionGroup var agent: AgentOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Show one view and exit.")
    var once = false

    @Argument(help: "The job's id (default: all your jobs).")
    var job: String?

    func run() throws {
        let link = agent.link()
        let interrupted = SignalLatch()
        let redraw = isatty(STDOUT_FILENO) == 1 && !output.json
        var seen = false
        var finished = false
        while true {
            let frame: String
            if let job {
                let document: JobDocument
                do throws(ControlError) { document = try link.client.job(job) } catch {
                    // A job completed or cancelled while watched leaves the list: that ends the watch.
                    if seen && error.status == 404 {
                        print("Job \(job) is no longer listed (completed or cancelled).")
                        return
                    }
                    throw link.fail(error, job: job)
                }
                seen = true
                frame = output.json ? JSONOutput.pretty(document) : JobText.details(document)
                finished = document.state.isFinal
            } else {
                let jobs = try link.call { try $0.listJobs() }
                frame = output.json ? JSONOutput.pretty(JobList(jobs: jobs)) : (jobs.isEmpty ? "No jobs." : JobText.table(jobs))
            }
            if output.json {
                print(frame)
            } else {
                let header = "ferryd at \(link.socket), \(Format.date(Date()))" + (once ? "" : " (Ctrl-C to quit)")
                // Home and clear, then the frame: the view replaces the last one in place.
                print((redraw ? "\u{1B}[H\u{1B}[2J" : "") + header + "\n\n" + frame + (redraw ? "" : "\n"))
            }
            fflush(nil)
            // A final job never changes again.
            if once || finished { return }
            if interrupted.wait(seconds: 1) { return }
        }
    }
}

/// `ferry events`.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Print notifications as they happen, until Ctrl-C.",
        discussion: """
            Each line shows the time, the sequence number, the kind (jobTransferred, jobError, \
            jobModification, fileTransferred), the job, its state and its name. Which kinds a job \
            sends is set with 'ferry setnotifyflags'. Kept events (sequence above 0) are sent again \
            on each --pending stream until acknowledged.
            """
    )

    @OptionGroup var agent: AgentOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Start with the events not yet acknowledged.")
    var pending = false

    @Flag(name: .long, help: "Acknowledge each kept event after printing it.")
    var ack = false

    @Argument(help: "Only this job's events (default: all your jobs').")
    var job: String?

    func run() throws {
        let link = agent.link()
        // Checked first, so that a wrong id is reported as such rather than as a refused stream.
        if let job { _ = try link.call(job: job) { try $0.job(job) } }
        // Ctrl-C is how this command ends: leave at once with status 0, whatever the stream is doing.
        let interrupt = SignalLatch { fflush(nil); _exit(ExitStatus.success) }
        defer { withExtendedLifetime(interrupt) {} }
        var ackFailure: ControlError?
        let json = output.json
        let acknowledge = ack
        do throws(ControlError) {
            try link.client.events(job: job, pending: pending) { event in
                print(json ? JSONOutput.line(event) : Self.line(event))
                fflush(nil)
                guard acknowledge, event.sequence > 0 else { return true }
                do throws(ControlError) { try link.client.acknowledgeEvents(upTo: event.sequence) } catch {
                    ackFailure = error
                    return false
                }
                return true
            }
        } catch {
            throw link.fail(error, job: job)
        }
        if let ackFailure { throw link.fail(ackFailure, job: job) }
        printError("ferry: ferryd at \(link.socket) closed the event stream (did it stop?)")
        throw ExitCode(ExitStatus.cannotRun)
    }

    /// `2025-06-01 10:00:05 #42 jobTransferred <id> TRANSFERRED nightly`.
    static func line(_ event: EventDocument) -> String {
        var text = "\(Format.date(event.time)) #\(event.sequence) \(event.kind) \(event.job.id) \(event.job.state.rawValue)"
        if let index = event.file, let file = event.job.files.first(where: { $0.index == index }) {
            text += " file \(index) \(file.path)"
        }
        return text + " \(event.job.displayName)"
    }
}
