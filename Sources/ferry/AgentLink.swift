import ArgumentParser
import FerryControl
import FerryCore
import FerryEngine
import Foundation

/// The options every command that talks to the agent shares.
struct AgentOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "ferryd's control socket (default: $FERRY_SOCKET, else the path ferryd uses).",
        valueName: "path"))
    var socket: String?

    /// The socket to use: `--socket`, else ``AgentSocket/defaultPath(environment:uid:)``.
    var socketPath: String { socket ?? AgentSocket.defaultPath() }

    /// A link to the agent at ``socketPath``.
    func link() -> AgentLink { AgentLink(socket: socketPath) }
}

/// The job a command acts on and the agent holding it: `[--socket <path>] <job>`, for the
/// commands that take nothing between the two.
struct JobTarget: ParsableArguments {
    @OptionGroup var agent: AgentOptions
    @Argument(help: "The job's id.") var job: String

    /// Runs one request about the job through ``AgentLink/call(job:_:)``, which names the job
    /// in a refusal.
    /// - Throws: `ExitCode` after printing the agent's refusal.
    func call<Answer>(_ request: (ControlClient) throws -> Answer) throws(ExitCode) -> Answer {
        try agent.link().call(job: job, request)
    }

    /// Applies `settings` to the job (`PATCH /v1/jobs/{id}`) and returns the job as it now is.
    /// - Throws: `ExitCode` after printing the agent's refusal.
    func update(_ settings: JobSettings) throws(ExitCode) -> JobDocument {
        try agent.link().update(job, settings)
    }
}

/// `--json`, shared by the commands that show something.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print the control API's JSON documents instead of text.")
    var json = false
}

/// Where ferryd listens when nothing says otherwise.
enum AgentSocket {
    /// The socket's default path: `$FERRY_SOCKET`, else the ``DefaultSocket`` of a ferryd run
    /// by this user with its built-in paths (its state directory the default one,
    /// `$XDG_STATE_HOME/ferry` or `~/.local/state/ferry`).
    /// - Parameters:
    ///   - environment: the variables to read.
    ///   - uid: the caller's user id.
    /// - Returns: an absolute path (unless `FERRY_SOCKET` is relative).
    static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment,
                            uid: uid_t = getuid()) -> String {
        if let path = environment["FERRY_SOCKET"], !path.isEmpty { return path }
        return DefaultSocket(isRoot: uid == 0, environment: environment,
                             stateDirectory: StateDirectory.defaultPath(environment: environment)).path
    }
}

/// One command's connection to ferryd, and the single place where a refused or failed
/// request becomes a message on standard error and an exit status.
struct AgentLink {
    /// The socket, as given or defaulted.
    let socket: String
    let client: ControlClient

    init(socket: String) {
        self.socket = socket
        client = ControlClient(socketPath: socket)
    }

    /// Runs one request. On failure, prints the error and throws the matching exit status.
    /// - Parameters:
    ///   - job: the job the request concerns, named in the message.
    ///   - request: the request.
    /// - Returns: the agent's answer.
    /// - Throws: `ExitCode` after the error is printed.
    func call<Answer>(job: String? = nil, _ request: (ControlClient) throws -> Answer) throws(ExitCode) -> Answer {
        do { return try request(client) } catch let error as ControlError { throw fail(error, job: job) } catch {
            // The client throws ControlError only; anything else is reported as it is.
            printError("ferry: \(error)")
            throw ExitCode(ExitStatus.jobFailed)
        }
    }

    /// Prints `error` and returns the exit status to leave with.
    /// - Parameters:
    ///   - error: what the client threw.
    ///   - job: the job the request concerned, if any.
    func fail(_ error: ControlError, job: String?) -> ExitCode {
        if error.status == 0 { return unreachable(error.error) }
        printError(Self.message(error.error, job: job))
        return ExitCode(ExitStatus.of(error))
    }

    /// Says why nothing answered on the socket and returns the exit status.
    /// - Parameter error: the client's account of the failure (a request that got no HTTP answer).
    func unreachable(_ error: ErrorDocument) -> ExitCode {
        let silence = diagnose(error)
        printError(silence.message)
        return ExitCode(silence.status)
    }

    /// Why a request got no answer, told from the socket file and the client's error.
    struct Silence {
        /// The line or lines to print.
        var message: String
        var status: Int32
        /// No agent is there: no socket, or nothing listening on it. (Not so when the caller
        /// may not use the socket, or when an agent accepted the connection but did not answer.)
        var agentAbsent: Bool
    }

    /// Classifies a request that got no HTTP answer.
    func diagnose(_ error: ErrorDocument) -> Silence {
        let notRunning = "ferry: cannot reach ferryd at \(socket): is it running? (start it with: ferryd)"
        var info = stat()
        guard lstat(socket, &info) == 0 else { return Silence(message: notRunning, status: ExitStatus.cannotRun, agentAbsent: true) }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            return Silence(message: notRunning + "\n  \(socket) exists but is not a socket", status: ExitStatus.cannotRun, agentAbsent: true)
        }
        if access(socket, R_OK | W_OK) != 0, errno == EACCES {
            return Silence(message: "ferry: cannot reach ferryd at \(socket): permission denied (the socket's mode and group decide who may use the agent)",
                           status: ExitStatus.permission, agentAbsent: false)
        }
        if error.code == ErrorCode.timeout.rawValue {
            return Silence(message: "ferry: ferryd at \(socket) did not answer in time: \(error.message)", status: ExitStatus.busy, agentAbsent: false)
        }
        if error.code == ErrorCode.networkDisconnected.rawValue && error.message.contains("curl error 7)") {
            // Connection refused: the file outlived its agent.
            return Silence(message: notRunning + "\n  nothing listens on \(socket) (left by an agent that stopped?)",
                           status: ExitStatus.cannotRun, agentAbsent: true)
        }
        return Silence(message: notRunning + "\n  \(error.message)", status: ExitStatus.cannotRun, agentAbsent: false)
    }

    /// `ferry: job <id>: <CODE> (<context>): <message>`, or without the job part.
    static func message(_ error: ErrorDocument, job: String?) -> String {
        "ferry: " + (job.map { "job \($0): " } ?? "") + "\(error.code) (\(error.context)): \(error.message)"
    }
}
