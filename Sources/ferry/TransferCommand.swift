import ArgumentParser
import FerryControl
import FerryCore
import FerryEngine
import Foundation
import Logging

/// `ferry transfer`: one job, run to the end, like `bitsadmin /transfer`.
///
/// One ``TransferSession`` runs it, over either backend: ferryd when it answers on the
/// socket (``AgentBackend``), this process otherwise (``InProcessBackend``).
struct TransferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfer",
        abstract: "Download files in one job, wait for it, and complete it.",
        discussion: """
            Give URL/destination pairs, or --manifest with a JSON manifest (docs/cli.md).
            The files appear at their destinations only when every one has arrived.
            Transient errors are retried; a fatal error cancels the job and exits 1.
            Rerunning the same command after an interruption continues where it stopped.
            The job runs in ferryd when it answers on the socket, in this process otherwise.
            """
    )

    @Option(name: .long, help: "A JSON manifest listing the files (see docs/cli.md).")
    var manifest: String?

    @Option(name: .long, help: "foreground, high, normal or low.")
    var priority: JobPriority?

    @Option(name: .customLong("property"), help: "A file property key=value, stored with every file given on the command line.")
    var properties: [String] = []

    @Option(name: .customLong("min-retry-delay"), help: "Seconds to wait before retrying after a transient error (floor \(Int(Job.minimumRetryDelayFloor))).")
    var minRetryDelay: Double = 5

    @Option(name: .customLong("no-progress-timeout"), help: "Seconds without progress after which a transient error becomes fatal.")
    var noProgressTimeout: Double = 300

    @Option(name: .customLong("name"), help: "The job's display name.")
    var displayName: String?

    @Option(name: .customLong("ca-file"), help: ArgumentHelp("A PEM file of certificate authorities to trust besides the system's for the https URLs.", valueName: "path"))
    var caFile: String?

    @Option(name: .customLong("state-dir"), help: "Where unfinished transfers are kept (default: $XDG_STATE_HOME/ferry, or /var/lib/ferry as root).")
    var stateDirectory: String?

    @OptionGroup var agent: AgentOptions

    @Flag(name: .customLong("agent"), help: "Run the job in ferryd; exit 69 if it does not answer.")
    var requireAgent = false

    @Flag(name: .customLong("no-agent"), help: "Run the job in this process even when ferryd answers.")
    var noAgent = false

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Log the engine's decisions to standard error.")
    var verbose = false

    @Argument(help: "URL and destination pairs: URL DEST [URL DEST ...].")
    var pairs: [String] = []

    func validate() throws {
        if manifest == nil && pairs.isEmpty { throw ValidationError("give URL DEST pairs or --manifest FILE") }
        if manifest != nil && !pairs.isEmpty { throw ValidationError("give either URL DEST pairs or --manifest, not both") }
        if pairs.count % 2 != 0 { throw ValidationError("every URL needs a destination: got \(pairs.count) arguments") }
        if manifest != nil && !properties.isEmpty {
            throw ValidationError("--property applies to URL DEST pairs; put properties in the manifest's entries instead")
        }
        _ = try KeyValue.parse(properties, option: "--property")
        guard minRetryDelay.isFinite, minRetryDelay >= 0 else { throw ValidationError("--min-retry-delay must be ≥ 0") }
        guard noProgressTimeout.isFinite, noProgressTimeout >= 0 else { throw ValidationError("--no-progress-timeout must be ≥ 0") }
        if requireAgent && noAgent { throw ValidationError("give --agent or --no-agent, not both") }
        if requireAgent && stateDirectory != nil {
            throw ValidationError("--state-dir is for a transfer run in this process; ferryd keeps its jobs in its own state directory")
        }
    }

    func run() throws {
        ProcessTuning.limitMallocArenas()
        bootstrapLogging(verbose: verbose)
        let plan: TransferPlan
        do {
            plan = try makePlan()
        } catch {
            printError("ferry: \(error)")
            throw ExitCode(ExitStatus.badInput)
        }
        let socket = agent.socketPath
        let reason: String
        if noAgent {
            reason = "--no-agent"
        } else if stateDirectory != nil {
            reason = "--state-dir given"
        } else {
            let link = agent.link()
            guard let refusal = Self.probe(link) else {
                if !quiet { printError("Transferring via ferryd at \(socket)") }
                throw ExitCode(TransferSession(plan: plan, backend: AgentBackend(link: link), quiet: quiet).run())
            }
            // An agent that answers but refuses, or is there but silent, is reported, not bypassed:
            // running the same files in this process beside it would make two writers.
            guard refusal.status == 0, link.diagnose(refusal.error).agentAbsent, !requireAgent else {
                throw link.fail(refusal, job: nil)
            }
            reason = "no agent at \(socket)"
        }
        if !quiet { printError("Transferring in this process: \(reason)") }
        let backend: InProcessBackend
        do { backend = try InProcessBackend(plan: plan, stateDirectory: stateDirectory ?? StateDirectory.defaultPath()) } catch {
            if let message = error.message { printError(message) }
            throw ExitCode(error.status)
        }
        throw ExitCode(TransferSession(plan: plan, backend: backend, quiet: quiet).run())
    }

    /// Asks the agent for its health: nil when it answers, else why not.
    private static func probe(_ link: AgentLink) -> ControlError? {
        do {
            _ = try link.client.health()
            return nil
        } catch {
            return error
        }
    }

    private func makePlan() throws(ManifestError) -> TransferPlan {
        let cwd = FileManager.default.currentDirectoryPath
        var plan = TransferPlan(displayName: displayName, priority: priority ?? .normal, files: [],
                                minimumRetryDelay: minRetryDelay, noProgressTimeout: noProgressTimeout,
                                caFile: caFile.map { LocalPath.absolute($0, base: cwd) })
        if let manifest {
            let path = manifest.hasPrefix("/") ? manifest : cwd + "/" + manifest
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ManifestError(source: manifest, field: nil, message: "cannot read the file")
            }
            let parsed = try TransferManifest.parse(data, source: manifest, baseDirectory: cwd)
            plan.files = parsed.files
            plan.displayName = displayName ?? parsed.displayName
            plan.priority = priority ?? parsed.priority ?? .normal
        } else {
            // Checked by validate(): every property has a key and an '='.
            let shared = (try? KeyValue.parse(properties, option: "--property")) ?? [:]
            for pair in stride(from: 0, to: pairs.count, by: 2) {
                let destination = pairs[pair + 1]
                let absolute = destination.hasPrefix("/") ? destination : cwd + "/" + destination
                plan.files.append(NewFile(remoteURL: pairs[pair], localPath: TransferManifest.normalize(absolute), properties: shared))
            }
        }
        return plan
    }
}

extension JobPriority: ExpressibleByArgument {}

