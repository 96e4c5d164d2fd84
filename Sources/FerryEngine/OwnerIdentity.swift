import CFerrySystem
import FerryCore
#if canImport(Glibc)
import Glibc
#endif

/// Acting as a job's owner for file operations.
///
/// When the agent runs as root, every file of a job is opened, created, written, renamed
/// and removed with the owner's filesystem identity (fsuid, fsgid and supplementary
/// groups, as the kernel reported them for the caller that created the job), changed for
/// the calling thread only. The kernel then refuses what the owner could not do: the
/// agent never reads or writes, as root, where the job's owner could not. Each path is
/// looked up once, in that identity, and the descriptor it gives is what is used. A
/// non-root agent runs every job as itself.
public enum OwnerIdentity {
    /// Whether this process switches identity for its jobs (it runs as root).
    static var switchesIdentity: Bool { geteuid() == 0 }

    /// The identity a job's files are handled with: the credentials recorded when the job
    /// was created, or, for a job recorded without them, the account database's.
    public static func credentials(of job: Job) -> Credentials {
        job.ownerCredentials ?? credentials(ofAccount: job.owner)
    }

    /// A user's identity from the account database: its primary group and the groups that
    /// list it. A uid without an account gets its own number as its group and nothing more.
    public static func credentials(ofAccount uid: UInt32) -> Credentials {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
            return Credentials(uid: uid, gid: uid, groups: [])
        }
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, entry.pw_gid, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, entry.pw_gid, &list, &count)
        }
        return Credentials(uid: uid, gid: entry.pw_gid, groups: Array(list.prefix(Int(max(0, count)))))
    }

    /// Runs `body` with the filesystem identity of `job`'s owner on this thread.
    static func run<T>(as job: Job, _ body: () throws(FerryError) -> T) throws(FerryError) -> T {
        guard switchesIdentity, job.owner != 0 else { return try body() }
        return try run(as: credentials(of: job), body)
    }

    /// Runs `body` with the filesystem identity `credentials` on this thread (when the
    /// agent runs as root and the identity is not root's; as itself otherwise).
    static func run<T>(as credentials: Credentials, _ body: () throws(FerryError) -> T) throws(FerryError) -> T {
        guard switchesIdentity, credentials.uid != 0 else { return try body() }
        // Calls do not nest: a nested call would end the outer one's identity on its way out.
        // setfsuid with an invalid id changes nothing and answers the current one.
        let current = UInt32(bitPattern: ferry_thread_setfsuid(UInt32.max))
        guard current == 0 else {
            assertionFailure("OwnerIdentity.run nested inside another (fsuid \(current))")
            throw FerryError(code: .localFileError, context: .localFile, message: "internal: an identity switch inside another (fsuid \(current))")
        }
        var capabilities: [UInt32] = [0, 0]
        guard ferry_thread_get_effective_caps(&capabilities) == 0 else {
            throw FerryError(code: .localFileError, context: .localFile, message: "cannot read the thread's capabilities: \(errnoText())")
        }
        var groups = credentials.groups.isEmpty ? [credentials.gid] : credentials.groups
        guard ferry_thread_setgroups(Int32(groups.count), &groups) == 0 else {
            throw FerryError(code: .localFileError, context: .localFile, message: "cannot take the groups of uid \(credentials.uid): \(errnoText())")
        }
        _ = ferry_thread_setfsgid(credentials.gid)
        _ = ferry_thread_setfsuid(credentials.uid)
        // No capability stays in effect: a check on CAP_SYS_ADMIN or CAP_SYS_PTRACE (a
        // driver's, /proc's) must see the owner, not root. Permitted ones are restored after.
        var none: [UInt32] = [0, 0]
        let dropped = ferry_thread_set_effective_caps(&none) == 0
        defer {
            _ = ferry_thread_set_effective_caps(&capabilities)
            _ = ferry_thread_setfsuid(0)
            _ = ferry_thread_setfsgid(0)
            var root: [gid_t] = [0]
            _ = ferry_thread_setgroups(1, &root)
        }
        guard dropped else {
            throw FerryError(code: .localFileError, context: .localFile, message: "cannot drop the thread's capabilities: \(errnoText())")
        }
        return try body()
    }

    /// Starts the program at `path` with `arguments` as `credentials` (when the agent runs as
    /// root; as itself otherwise), without a shell, its output appended to
    /// `outputDescriptor` (or discarded).
    ///
    /// The program is opened once, as its user (`O_PATH`), checked to be a regular file,
    /// and executed through that descriptor: a link swapped in after the check cannot
    /// change what runs, and the kernel checks the execute permission as that user.
    /// - Returns: the child's pid.
    /// - Throws: ``FerryError`` naming the program when it cannot be opened or started.
    public static func spawn(_ path: String, arguments: [String], environment: [String: String], as credentials: Credentials,
                             outputDescriptor: Int32 = -1) throws(FerryError) -> pid_t {
        let switchUser = switchesIdentity && credentials.uid != 0
        let program = try run(as: credentials) { () throws(FerryError) -> Int32 in
            let fd = open(path, Linux.O_PATH | O_CLOEXEC)
            guard fd >= 0 else {
                throw FerryError(code: .accessDenied, context: .notification, message: "cannot open the program \(path) as uid \(credentials.uid): \(errnoText())")
            }
            var info = stat()
            guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                close(fd)
                throw FerryError(code: .notARegularFile, context: .notification, message: "the program \(path) is not a regular file")
            }
            return fd
        }
        defer { close(program) }
        var groups = credentials.groups.isEmpty ? [credentials.gid] : credentials.groups
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = argv.withUnsafeBufferPointer { argvBuffer in
            envp.withUnsafeBufferPointer { envpBuffer in
                ferry_spawn_fd_as(switchUser ? credentials.uid : UInt32.max, credentials.gid, Int32(groups.count), &groups, program,
                                  argvBuffer.baseAddress!, envpBuffer.baseAddress!, outputDescriptor)
            }
        }
        guard pid > 0 else {
            throw FerryError(code: .localFileError, context: .notification, message: "cannot start \(path): \(errnoText())")
        }
        return pid
    }
}

/// Linux flags that Glibc's Swift module leaves out (they need `_GNU_SOURCE`).
enum Linux {
    /// `O_PATH`: a descriptor that names a file without opening its contents.
    static let O_PATH: Int32 = 0o10000000
    /// `AT_EMPTY_PATH`: an `*at` call acts on the descriptor itself.
    static let AT_EMPTY_PATH: Int32 = 0x1000
}
