import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `ferry` binary's help screens, its refusal of bad arguments, and what it says when
/// no agent answers: everything that needs no running ferryd.
@Suite(.serialized)
final class HelpTests {
    let directory: TemporaryDirectory

    /// A socket path where nothing listens.
    var nowhere: String { directory.file("no-agent/ferryd.sock") }

    init() throws {
        directory = try TemporaryDirectory("ferry-cli-help")
    }

    deinit {
        directory.remove()
    }

    /// Runs `ferry` with help screens laid out for 80 columns, in the test's directory.
    private func ferry(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        var env = ["COLUMNS": "80"]
        for (key, value) in environment { env[key] = value }
        return try ChildProcess.run("ferry", arguments, environment: env, workingDirectory: directory.path, timeout: 30)
    }

    // MARK: - Help screens

    @Test func rootHelpListsEverySubcommand() throws {
        let result = try ferry(["--help"])
        #expect(result.status == 0, "\(result.stderr)")
        let subcommands = [
            "create", "addfile", "addfiles", "addmirror", "resume", "suspend", "cancel", "complete",
            "list", "info", "monitor", "geterror", "events", "sources",
            "setpriority", "setremotename", "replaceremoteprefix", "setminretrydelay", "setnoprogresstimeout",
            "setcustomheaders", "setnotifycmdline", "setnotifyflags", "setdisplayname", "setdescription",
            "setproperty", "setautocomplete", "setdynamic", "settls", "transfer",
        ]
        let listed = Set(result.stdout.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("  "), let word = line.split(separator: " ").first else { return nil }
            return String(word)
        })
        for name in subcommands {
            #expect(listed.contains(name), "ferry --help should list \(name):\n\(result.stdout)")
        }
    }

    @Test func createHelp() throws {
        try assertHelp(["create", "--help"], """
            OVERVIEW: Create a suspended download job and print its id.

            Add files with 'ferry addfile', then start it with 'ferry resume'. Example:
            JOB=$(ferry create nightly)

            USAGE: ferry create [--socket <path>] [--priority <priority>] [--description <description>] <name>

            ARGUMENTS:
              <name>                  The job's display name.

            OPTIONS:
              --socket <path>         ferryd's control socket (default: $FERRY_SOCKET, else
                                      the path ferryd uses).
              --priority <priority>   foreground, high, normal or low (default: normal).
                                      (values: foreground, high, normal, low)
              --description <description>
                                      A longer description of the job.
              --version               Show the version.
              -h, --help              Show help information.
            """)
    }

    @Test func addFileHelp() throws {
        try assertHelp(["addfile", "--help"], """
            OVERVIEW: Add a file to a job.

            A relative PATH is made absolute against the current directory. The directory
            must exist.

            USAGE: ferry addfile [--socket <path>] [--property <property> ...] [--mirror <url> ...] <job> <url> <path>

            ARGUMENTS:
              <job>                   The job's id.
              <url>                   The source URL (http, https or file).
              <path>                  The destination path.

            OPTIONS:
              --socket <path>         ferryd's control socket (default: $FERRY_SOCKET, else
                                      the path ferryd uses).
              --property <property>   A file property key=value (repeatable), such as
                                      sha256=<hex> or size=<bytes>.
              --mirror <url>          Another URL serving the same bytes (repeatable).
              --version               Show the version.
              -h, --help              Show help information.
            """)
    }

    @Test func setTLSHelp() throws {
        try assertHelp(["settls", "--help"], """
            OVERVIEW: Trust an extra CA or pin a key for a job's https URLs.

            --ca-file adds the certificate authorities of a PEM file to the system's, for
            this job only; the job's owner must be able to read it. A relative path is made
            absolute against the current directory. --pin makes the servers present this
            public key, given as sha256// and the base64 SHA-256 of the key (as curl's
            --pinnedpubkey). An option not given keeps the job's value; --clear removes
            both. Verification itself cannot be turned off.

            USAGE: ferry settls [--socket <path>] [--ca-file <path>] [--pin <pin>] [--clear] <job>

            ARGUMENTS:
              <job>                   The job's id.

            OPTIONS:
              --socket <path>         ferryd's control socket (default: $FERRY_SOCKET, else
                                      the path ferryd uses).
              --ca-file <path>        A PEM file of extra certificate authorities.
              --pin <pin>             The key the servers must present: sha256//<base64>.
              --clear                 Remove both the CA file and the pin.
              --version               Show the version.
              -h, --help              Show help information.
            """)
    }

    @Test func setNotifyFlagsHelp() throws {
        try assertHelp(["setnotifyflags", "--help"], """
            OVERVIEW: Choose which notifications a job sends.

            FLAGS is a number (0x3 or 3) or names joined by commas:
              transferred   0x1   the job is transferred
              error         0x2   the job is in ERROR
              disable       0x4   no notification at all, whatever else is set
              modification  0x8   any change of the job
              file          0x10  one file is transferred
            The default is transferred,error.

            USAGE: ferry setnotifyflags [--socket <path>] <job> <flags>

            ARGUMENTS:
              <job>                   The job's id.
              <flags>                 The flags, such as 0x3 or transferred,error.

            OPTIONS:
              --socket <path>         ferryd's control socket (default: $FERRY_SOCKET, else
                                      the path ferryd uses).
              --version               Show the version.
              -h, --help              Show help information.
            """)
    }

    @Test func completionScriptNamesTheSubcommands() throws {
        let result = try ferry(["--generate-completion-script", "bash"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("setnotifyflags"), "\(result.stdout)")
    }

    // MARK: - No agent

    @Test(arguments: [["list"], ["list", "--json"], ["info", "some-job"], ["resume", "some-job"]])
    func listWithoutAnAgentExits69(_ arguments: [String]) throws {
        let result = try ferry(arguments + ["--socket", nowhere])
        #expect(result.status == 69, "\(arguments): \(result.stderr)")
        #expect(result.stderr == "ferry: cannot reach ferryd at \(nowhere): is it running? (start it with: ferryd)\n", "\(arguments)")
        #expect(result.stdout == "", "\(arguments)")
    }

    @Test func aSocketNobodyListensOnIsReportedAsSuch() throws {
        let path = directory.file("stale.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0, "bind \(path)")
        let result = try ferry(["list", "--socket", path])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("ferry: cannot reach ferryd at \(path): is it running?"), "\(result.stderr)")
        #expect(result.stderr.contains("nothing listens on \(path)"), "\(result.stderr)")
    }

    @Test func theSocketDefaultsToFerrySocket() throws {
        let result = try ferry(["list"], environment: ["FERRY_SOCKET": nowhere])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("cannot reach ferryd at \(nowhere):"), "\(result.stderr)")
    }

    @Test func aUserSocketDefaultsToTheRuntimeDirectory() throws {
        // Run as a user other than root: as root, a second account plays it.
        let runtime = directory.file("runtime")
        var result = try ferryAsUser(["list"], environment: ["FERRY_SOCKET": "", "XDG_RUNTIME_DIR": runtime, "XDG_STATE_HOME": directory.file("state")])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("cannot reach ferryd at \(runtime)/ferry/ferryd.sock:"), "\(result.stderr)")
        // Trailing slashes are dropped, as ferryd drops them when it makes the socket.
        result = try ferryAsUser(["list"], environment: ["FERRY_SOCKET": "", "XDG_RUNTIME_DIR": runtime + "//", "XDG_STATE_HOME": directory.file("state")])
        #expect(result.stderr.contains("cannot reach ferryd at \(runtime)/ferry/ferryd.sock:"), "\(result.stderr)")
        result = try ferryAsUser(["list"], environment: ["FERRY_SOCKET": "", "XDG_RUNTIME_DIR": "", "XDG_STATE_HOME": directory.file("state")])
        #expect(result.stderr.contains("cannot reach ferryd at \(directory.file("state"))/ferry/ferryd.sock:"), "\(result.stderr)")
    }

    @Test(.enabled(if: getuid() == 0, "only root's default is /run/ferry/ferryd.sock (the other case runs as a user)"))
    func rootsSocketDefaultsToRun() throws {
        let result = try ferry(["list"], environment: ["FERRY_SOCKET": "", "XDG_RUNTIME_DIR": directory.file("runtime")])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("cannot reach ferryd at /run/ferry/ferryd.sock:"), "\(result.stderr)")
    }

    /// Runs `ferry` as a user other than root: this process's user, or, as root, a second
    /// account (`runuser`), with exactly the environment given.
    private func ferryAsUser(_ arguments: [String], environment: [String: String]) throws -> (status: Int32, stdout: String, stderr: String) {
        guard getuid() == 0 else { return try ferry(arguments, environment: environment) }
        let user = "ferrytest"
        try SecondUser.ensure(user)
        chmod(directory.path, 0o777)
        // A copy the user can surely reach, wherever the package was built.
        let program = try SecondUser.ferryCopy(in: directory.path)
        let variables = environment.map { "\($0.key)=\($0.value)" }.sorted()
        return try ChildProcess.run("/usr/sbin/runuser", ["-u", user, "--", "/usr/bin/env", "-i", "PATH=/usr/bin:/bin"] + variables
                                    + [program] + arguments, workingDirectory: directory.path, timeout: 30)
    }

    @Test func transferRequiringTheAgentExits69WithoutOne() throws {
        let result = try ferry(["transfer", "--agent", "--socket", nowhere, "http://127.0.0.1:1/a", "a"])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("cannot reach ferryd at \(nowhere)"), "\(result.stderr)")
        #expect(!directoryEntries(directory.path).contains("a"))
    }

    @Test func transferSaysItRunsInThisProcess() throws {
        let result = try ferry(["transfer", "--socket", nowhere, "--state-dir", directory.file("state"), "ftp://example.invalid/a", "a"])
        #expect(result.status == 65, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("Transferring in this process: --state-dir given\n"), "\(result.stderr)")
    }

    // MARK: - Bad arguments

    @Test(arguments: [
        (["setpriority", "JOB", "urgent"], "The value 'urgent' is invalid for '<priority>'"),
        (["setnotifyflags", "JOB", "0x400"], "unknown flag bits 0x400 (known: 0x1 transferred, 0x2 error, 0x4 disable, 0x8 modification, 0x10 file)"),
        (["setnotifyflags", "JOB", "transferred,finished"], "unknown flag 'finished'"),
        (["addfiles", "JOB", "missing.txt"], "cannot read the list missing.txt: No such file or directory"),
        (["addfile", "--property", "novalue", "JOB", "http://h/a", "a"], "--property takes key=value, got 'novalue'"),
        (["setnotifycmdline", "JOB", "notify-send", "done"], "PROGRAM must be an absolute path"),
        (["setminretrydelay", "JOB", "soon"], "The value 'soon' is invalid for '<seconds>'"),
        (["setautocomplete", "JOB", "maybe"], "The value 'maybe' is invalid for '<true|false>'"),
        (["setcustomheaders", "JOB", "no colon"], "a header must be one line 'Name: value', got 'no colon'"),
        (["setproperty", "JOB"], "give at least one key=value"),
        (["addmirror", "JOB", "0"], "Missing expected argument '<url> ...'"),
        (["setdynamic", "JOB", "maybe"], "The value 'maybe' is invalid for '<on|off>'"),
        (["setdynamic", "JOB", "on", "--max-size", "-5"], "--max-size"),
        (["settls", "JOB"], "give --ca-file, --pin or --clear"),
        (["settls", "JOB", "--clear", "--ca-file", "/etc/ca.pem"], "--clear removes both options; give it alone"),
        (["settls", "JOB", "--pin", "abc"], "--pin takes sha256// and the base64 SHA-256 of the key, got 'abc'"),
        (["create"], "Missing expected argument '<name>'"),
        (["transfer", "--agent", "--no-agent", "http://h/a", "a"], "give --agent or --no-agent, not both"),
    ] as [([String], String)])
    func badArgumentsExit64NamingTheProblem(_ arguments: [String], _ expected: String) throws {
        let result = try ferry(arguments + ["--socket", nowhere])
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(expected), "\(arguments) should say '\(expected)': \(result.stderr)")
    }

    @Test func aBadListNamesItsLineAndExits65() throws {
        let list = directory.file("list.txt")
        try "# mirror\n\nhttp://h/a.deb pool/a.deb\nhttp://h/b.deb\n".write(toFile: list, atomically: true, encoding: .utf8)
        let result = try ferry(["addfiles", "--socket", nowhere, "JOB", "list.txt"])
        #expect(result.status == 65, "\(result.stderr)")
        #expect(result.stderr == "ferry: list.txt:4: expected 'URL PATH', got only 'http://h/b.deb'\n")
    }

    // MARK: - Helpers

    /// Compares a whole help screen (trailing blank lines aside).
    private func assertHelp(_ arguments: [String], _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try ferry(arguments)
        #expect(result.status == 0, "\(result.stderr)", sourceLocation: sourceLocation)
        var text = result.stdout
        while text.hasSuffix("\n") { text.removeLast() }
        #expect(text == expected, sourceLocation: sourceLocation)
    }
}
