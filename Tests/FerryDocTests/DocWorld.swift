import FerryControl
import FerryCrypto
import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Whom a doc example's commands run as.
enum ExampleUser: Sendable {
    /// root, as the docs' agent examples say.
    case root
    /// An ordinary account, with its own home and state directory (`ferry transfer`'s examples).
    case ordinary
}

/// How `ferry transfer` finds (or does not find) an agent.
enum TransferMode: String, Sendable, CaseIterable {
    /// No agent answers: `ferry transfer` runs the job in its own process.
    case inProcess = "in its own process"
    /// `ferryd` answers on `FERRY_SOCKET`: the job runs there.
    case throughAgent = "through ferryd"
}

/// A streaming command running in the background (``DocWorld/startStream(_:)``).
struct EventStream {
    /// The process group (and session) of the command.
    let pid: pid_t
    /// What the shell started (`setsid`), to wait for.
    let launcher: pid_t
    let output: String
}

/// The world a doc example runs in: copies of the built programs and plugins, a loopback
/// server standing for the docs' `127.0.0.1:8099` and `127.0.0.1:8080`, a port where nobody
/// listens standing for `127.0.0.1:8098`, a directory standing for `/srv/pkgs`, and on demand
/// the real `ferryd`, run as root. What a doc names is mapped to this world in both the
/// commands and the output the doc shows (``substitute(_:with:)``).
final class DocWorld: @unchecked Sendable {
    let directory: TemporaryDirectory
    /// Where `ferry`, `ferryd` and the plugins are (a copy every account can reach).
    let bin: String
    /// The docs' `/srv/pkgs`.
    let pkgs: String
    let home: String
    let server: FaultServer
    let socket: String
    let user: ExampleUser
    let mode: TransferMode
    private(set) var agent: ChildProcess?
    private let refusedSocket: Int32
    let refusedPort: Int
    private var substitutions: [(doc: String, real: String)] = []
    var transcript = Transcript()
    private var shellSession: ShellSession?
    private(set) var agentConfig = ""

    init(user: ExampleUser, mode: TransferMode) throws {
        self.user = user
        self.mode = mode
        directory = try TemporaryDirectory("ferry-doc")
        chmod(directory.path, 0o755)
        bin = try directory.subdirectory("bin")
        pkgs = try directory.subdirectory("srv/pkgs")
        home = try directory.subdirectory("home")
        try directory.subdirectory("run")
        try directory.subdirectory("etc/ferry")
        socket = directory.file("run/ferryd.sock")
        server = try FaultServer()
        // The docs list the down origin (8098) before the server (8099), as origins sort: the
        // server's port is an ephemeral one (32768 and up), so a port from 10000 to 19999
        // always sorts before it.
        let refused = try Self.boundButNotListening(below: server.port)
        (refusedSocket, refusedPort) = refused
        for name in try FileManager.default.contentsOfDirectory(atPath: productsDirectory())
        where ["ferry", "ferryd", "ferry-plugin-helper"].contains(name) || (name.hasPrefix("libferry-") && name.hasSuffix(".so")) {
            try FileManager.default.copyItem(atPath: productsDirectory() + "/" + name, toPath: bin + "/" + name)
            chmod(bin + "/" + name, 0o755)
        }
        if user == .root { chmod(pkgs, 0o1777) }  // the docs' second user names files there too
        if user == .ordinary && getuid() == 0 {
            let account = try SecondUser.ensure()
            for path in [pkgs, home] { chown(path, account.uid, account.gid) }
        }
        substitute("/srv/ferry/.build/x86_64-unknown-linux-gnu/release", with: bin)
        substitute("/usr/local/bin/libferry", with: bin + "/libferry")
        substitute("/run/ferry/ferryd.sock", with: socket)
        substitute("/srv/pkgs", with: pkgs)
        substitute("/etc/ferry/", with: directory.file("etc/ferry/"))
        substitute("127.0.0.1:8099", with: "127.0.0.1:\(server.port)")
        substitute("127.0.0.1:8080", with: "127.0.0.1:\(server.port)")
        substitute("127.0.0.1:8098", with: "127.0.0.1:\(refusedPort)")
        substitute("port 8098", with: "port \(refusedPort)")
        substitute("port 8099", with: "port \(server.port)")
        // Where `ferry transfer` looked for an agent, in the README's examples (an ordinary user's
        // default socket).
        substitute("/run/user/1000/ferry/ferryd.sock", with: mode == .throughAgent ? socket : directory.file("run/no-agent.sock"))
    }

    /// Maps what a doc names (a path, an address, a digest) to this world, in the commands
    /// and in the output (also as JSON writes it, with `\/`). With `first`, the mapping
    /// comes before the world's own (an example in which `127.0.0.1:8099` is down, say).
    func substitute(_ doc: String, with real: String, first: Bool = false) {
        if first { substitutions.insert((doc, real), at: 0) } else { substitutions.append((doc, real)) }
    }

    /// `text` as it reads in this world.
    func mapped(_ text: String) -> String {
        var result = text
        for (doc, real) in substitutions {
            result = result.replacingOccurrences(of: doc.replacingOccurrences(of: "/", with: "\\/"), with: real.replacingOccurrences(of: "/", with: "\\/"))
            result = result.replacingOccurrences(of: doc, with: real)
        }
        return transcript.substituted(result)
    }

    /// The shell the example's commands are typed into, started on first use.
    var shell: ShellSession {
        get throws {
            if let shellSession { return shellSession }
            var environment = [
                "HOME": home, "PATH": bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "TERM": "xterm",
                "SHELL": "/bin/bash", "SOCK": socket,
                "FERRY_SOCKET": mode == .throughAgent ? socket : directory.file("run/no-agent.sock"),
            ]
            if user == .root { environment["USER"] = "root" } else { environment["USER"] = SecondUser.name }
            let session = try ShellSession(user: user == .ordinary && getuid() == 0 ? SecondUser.name : nil, environment: environment, workingDirectory: pkgs)
            shellSession = session
            return session
        }
    }

    /// Serves `data` at `path` and maps the doc's digest of the file to its real one.
    func serve(_ path: String, _ data: [UInt8], docSHA256: String? = nil) {
        server.setFile(path, data: data)
        if let docSHA256 { substitute(docSHA256, with: Self.sha256(data)) }
    }

    static func sha256(_ data: [UInt8]) -> String {
        let digest = try! StreamingDigest(.sha256)
        digest.update(data)
        return hexString(digest.finish())
    }

    // MARK: - The agent

    var client: ControlClient { ControlClient(socketPath: socket) }

    /// Starts `ferryd` as root on this world's state directory and socket, with `config`
    /// (empty: its embedded defaults), and waits until it answers.
    @discardableResult
    func startAgent(config: String = "") throws -> ChildProcess {
        agentConfig = config
        let configPath = directory.file("ferryd.yaml")
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let child = try ChildProcess(bin + "/ferryd", ["--config", configPath, "--state-dir", directory.file("state"), "--socket", socket])
        agent = child
        guard waitUntil(timeout: 60, { (try? self.client.health()) != nil || !child.process.isRunning }), child.process.isRunning else {
            throw ShellError(message: "ferryd did not start: \(child.standardError)")
        }
        return child
    }

    func stopAgent() {
        agent?.signal(SIGTERM)
        agent?.wait(timeout: 30)
        agent = nil
    }

    /// Waits until the job is in `state` (polling the API).
    func waitForJob(_ id: String, _ state: String, timeout: Double = 60) throws {
        var last = "gone"
        let reached = waitUntil(timeout: timeout) {
            last = (try? self.client.job(id).state.rawValue) ?? "gone"
            return last == state
        }
        if !reached { throw ShellError(message: "job \(id) is \(last), not \(state)") }
    }

    /// Makes a request through the API with curl, as root or as `user`, and returns the body.
    @discardableResult
    func request(_ method: String, _ path: String, _ body: String? = nil, as user: String? = nil) throws -> String {
        let prefix = user.map { "runuser -u \($0) -- " } ?? ""
        let data = body.map { " -d " + ShellSession.quoted(mapped($0)) } ?? ""
        let result = try shell.run("\(prefix)curl -s --unix-socket \"$SOCK\" -X \(method) http://localhost\(mapped(path))\(data)")
        return result.lines.joined(separator: "\n")
    }

    /// Exports a variable into the example's shell (`JOB`, say).
    func export(_ name: String, _ value: String) throws {
        _ = try shell.run("\(name)=\(ShellSession.quoted(value))")
    }

    /// Creates a job through the API as root (or `user`) and returns its id.
    func createJob(_ body: String, as user: String? = nil) throws -> String {
        let answer = try request("POST", "/v1/jobs", body, as: user)
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any], let id = object["id"] as? String else {
            throw ShellError(message: "could not create a job: \(answer)")
        }
        return id
    }

    // MARK: - Running the doc's commands

    /// Runs one of the doc's commands in this world and checks its output against the doc's.
    /// - Returns: the exit status and the output (as printed, before any matching).
    @discardableResult
    func check(_ command: ExampleCommand, of example: ConsoleExample, terminal: Bool = false, timeout: Double = 120,
               sourceLocation: SourceLocation = #_sourceLocation) throws -> (status: Int32, lines: [String]) {
        let line = mapped(command.line)
        let unbound = transcript.unboundIDs(in: line)
        #expect(unbound.isEmpty, "\(location(command, example)): the command names \(unbound), which no earlier output or setup made", sourceLocation: sourceLocation)
        let result = try shell.run(line, terminal: terminal, timeout: timeout)
        let expected = modeLines(command.output.map(mapped))
        if let problem = transcript.match(expected: expected, actual: result.lines) {
            Issue.record("\(location(command, example)): $ \(command.line)\n\(problem)\n-- whole output:\n\(result.lines.joined(separator: "\n"))", sourceLocation: sourceLocation)
        }
        return result
    }

    /// Runs the doc's commands `range` (all by default) in order, each checked.
    func checkAll(_ example: ConsoleExample, _ range: Range<Int>? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for command in example.commands[range ?? example.commands.indices] {
            try check(command, of: example, sourceLocation: sourceLocation)
        }
    }

    /// Starts a doc's command in the background of the example's shell, its output to
    /// `output` (discarded by default).
    /// - Returns: its process id.
    func startInBackground(_ command: String, output: String = "/dev/null") throws -> pid_t {
        let bare = command.replacingOccurrences(of: #"\s+#.*$"#, with: "", options: .regularExpression)
        let result = try shell.run("\(mapped(bare)) >\(output) 2>&1 & echo $!")
        guard let pid = result.lines.last.flatMap({ pid_t($0) }) else { throw ShellError(message: "no pid: \(result.lines)") }
        return pid
    }

    /// The value of a variable of the example's shell (`JOB`, say).
    func variable(_ name: String) throws -> String {
        try shell.run("printf '%s\\n' \"$\(name)\"").lines.first ?? ""
    }

    /// Waits for a command started by ``startInBackground(_:)`` to end.
    /// - Returns: its exit status.
    func waitForBackground(_ pid: pid_t, timeout: Double = 60) throws -> Int32 {
        try shell.run("wait \(pid)", timeout: timeout).status
    }

    /// Waits until the hidden temporary of `name` in the docs' `/srv/pkgs` holds `bytes`.
    func waitForTemporary(of name: String, atLeast bytes: Int, timeout: Double = 60) throws {
        var size = 0
        let reached = waitUntil(timeout: timeout) {
            size = directoryEntries(pkgs).filter { $0.hasPrefix(".\(name).ferry-") && $0.hasSuffix(".part") }
                .compactMap { (try? FileManager.default.attributesOfItem(atPath: pkgs + "/" + $0))?[.size] as? Int }.max() ?? 0
            return size >= bytes
        }
        if !reached { throw ShellError(message: "the temporary of \(name) holds \(size) bytes, not \(bytes)") }
    }

    /// Starts a doc's streaming command (`curl -N …/v1/events`) in the background, in a
    /// process group of its own, its output to a file, and waits until the agent counts its
    /// stream (`eventStreams` in `GET /v1/health`): no event after this is missed.
    func startStream(_ command: String) throws -> EventStream {
        let output = home + "/stream-\(UUID().uuidString).out"
        let groupFile = home + "/stream-\(UUID().uuidString).pgid"
        let before = try client.health().eventStreams
        // The command runs in a session of its own, which names itself, so that it can be ended
        // whole, and on a terminal (`script`), as for a person: `jq` writes each line at once.
        let inner = "echo $$ > \(groupFile); exec script -qfec \(ShellSession.quoted(mapped(command))) /dev/null"
        let result = try shell.run("setsid bash -c \(ShellSession.quoted(inner)) >\(output) 2>&1 & echo $!")
        guard let launcher = result.lines.last.flatMap({ pid_t($0) }) else { throw ShellError(message: "no pid: \(result.lines)") }
        var group: pid_t?
        waitUntil(timeout: 30) {
            group = (try? String(contentsOfFile: groupFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            return group != nil
        }
        guard let pid = group else { throw ShellError(message: "the stream `\(command)` did not start") }
        guard waitUntil(timeout: 30, { ((try? self.client.health().eventStreams) ?? 0) > before }) else {
            throw ShellError(message: "the agent never counted the stream of `\(command)`")
        }
        return EventStream(pid: pid, launcher: launcher, output: output)
    }

    /// Lets `jobs.modification_min_interval_ms` pass since the job's last change, as between a
    /// person's commands: a `jobModification` sooner than that is dropped, by design.
    func outlastModificationInterval(_ seconds: Double) {
        Thread.sleep(forTimeInterval: seconds + 0.1)
    }

    /// Waits until a stream printed `count` lines, ends it and returns them.
    func finish(_ stream: EventStream, lines count: Int, timeout: Double = 60) throws -> [String] {
        var lines: [String] = []
        waitUntil(timeout: timeout) {
            lines = ShellSession.lines(of: (try? String(contentsOfFile: stream.output, encoding: .utf8)) ?? "")
            return lines.count >= count
        }
        kill(-stream.pid, SIGTERM)
        if !waitUntil(timeout: 10, { kill(-stream.pid, 0) != 0 }) { kill(-stream.pid, SIGKILL) }
        _ = try? waitForBackground(stream.launcher, timeout: 10)
        // What it printed before it was ended (not what `script` says on its way out).
        return lines
    }

    /// Checks a doc's streaming command: started, `during` run, its output compared with the
    /// doc's once it has as many lines.
    func checkStream(_ command: ExampleCommand, of example: ConsoleExample, expected: [String]? = nil, during: () throws -> Void,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let stream = try startStream(command.line)
        try during()
        let wanted = (expected ?? command.output).map(mapped)
        let lines = try finish(stream, lines: wanted.count)
        if let problem = transcript.match(expected: wanted, actual: lines) {
            Issue.record("\(location(command, example)): $ \(command.line)\n\(problem)", sourceLocation: sourceLocation)
        }
    }

    /// Starts the agent as the doc's `ferryd` command shows and checks the lines it logs on
    /// starting against the doc's.
    func checkAgentStart(_ command: ExampleCommand, of example: ConsoleExample, config: String = "",
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
        let child = try startAgent(config: config)
        let expected = command.output.map(mapped)
        var lines: [String] = []
        waitUntil(timeout: 30) {
            lines = child.standardError.split(separator: "\n").map(String.init)
            return lines.count >= expected.count
        }
        if let problem = transcript.match(expected: expected, actual: lines) {
            Issue.record("\(location(command, example)): $ \(command.line)\n\(problem)", sourceLocation: sourceLocation)
        }
    }

    /// The docs show `ferry transfer` run without an agent; through `ferryd`, its first line
    /// names the agent instead and the next one the job it created.
    private func modeLines(_ lines: [String]) -> [String] {
        guard mode == .throughAgent else { return lines }
        return lines.indices.flatMap { index -> [String] in
            guard lines[index].hasPrefix("Transferring in this process: no agent at ") else { return [lines[index]] }
            let continuing = index + 1 < lines.count && lines[index + 1].hasPrefix("Continuing job ")
            return ["Transferring via ferryd at \(socket)"] + (continuing ? [] : ["Created job \(Transcript.anyJob)"])
        }
    }

    private func location(_ command: ExampleCommand, _ example: ConsoleExample) -> String {
        "\(example.key.file):\(command.docLine) (\(example.key.heading), \(mode.rawValue))"
    }

    func tearDown() {
        shellSession?.close()
        if let agent {
            agent.signal(SIGTERM)
            agent.wait(timeout: 30)
        }
        server.stop()
        Glibc.close(refusedSocket)
        directory.remove()
    }

    /// A TCP port on 127.0.0.1 that is bound but never listened on: connecting is refused at
    /// once, every time, for as long as the socket stays open. It is one of 10000 to 19999,
    /// whose text sorts before `port`'s (an ephemeral port, 32768 and up).
    private static func boundButNotListening(below port: Int) throws -> (Int32, Int) {
        precondition(port >= 20000, "the server's port \(port) is not an ephemeral one")
        let first = 10000 + Int(getpid() % 5000)
        for offset in 0..<10000 {
            let candidate = 10000 + (first - 10000 + offset) % 10000
            let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { throw ShellError(message: "cannot open a TCP socket") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(candidate).bigEndian
            let length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(descriptor, $0, length) == 0 }
            }
            if bound { return (descriptor, candidate) }
            Glibc.close(descriptor)
        }
        throw ShellError(message: "no TCP port from 10000 to 19999 is free")
    }
}
