import CFerrySystem
import FerryCore
#if canImport(Glibc)
import Glibc
#endif

/// Acting as a job's owner for file operations.
///
/// When the agent runs as root, every file of a job is created, written, renamed
/// and removed with the owner's filesystem identity (fsuid, fsgid and
/// supplementary groups), changed for the engine's thread only. The kernel then
/// refuses what the owner could not do: the agent never writes, as root, where
/// the job's owner could not. A non-root agent runs every job as itself.
public enum OwnerIdentity {
    /// Runs `body` with the filesystem identity of `uid` on this thread.
    static func run<T>(as uid: UInt32, _ body: () throws(FerryError) -> T) throws(FerryError) -> T {
        guard geteuid() == 0, uid != 0 else { return try body() }
        let account = Account(uid: uid)
        var groups = account.groups
        guard ferry_thread_setgroups(Int32(groups.count), &groups) == 0 else {
            throw FerryError(code: .localFileError, context: .localFile, message: "cannot take the groups of uid \(uid): \(errnoText())")
        }
        _ = ferry_thread_setfsgid(account.gid)
        _ = ferry_thread_setfsuid(uid)
        defer {
            _ = ferry_thread_setfsuid(0)
            _ = ferry_thread_setfsgid(0)
            var none: [gid_t] = [0]
            _ = ferry_thread_setgroups(1, &none)
        }
        return try body()
    }

    /// Whether `uid` (with its groups) may create files in `directory`, judged from the
    /// directory's mode as the kernel would: owner, then group, then others.
    static func canCreateFiles(in directory: String, uid: UInt32) -> Bool {
        var info = stat()
        guard stat(directory, &info) == 0 else { return false }
        if uid == 0 { return true }
        let account = Account(uid: uid)
        let needed: mode_t = S_IWOTH | S_IXOTH
        if info.st_uid == uid { return info.st_mode & (needed << 6) == (needed << 6) }
        if account.groups.contains(info.st_gid) || account.gid == info.st_gid { return info.st_mode & (needed << 3) == (needed << 3) }
        return info.st_mode & needed == needed
    }

    /// Starts `program` with `arguments` as `uid` (when the agent runs as root; as itself
    /// otherwise), without a shell, its output appended to `outputDescriptor` (or discarded).
    /// - Returns: the child's pid.
    /// - Throws: ``FerryError`` when the process cannot be started.
    public static func spawn(_ program: String, arguments: [String], environment: [String: String], as uid: UInt32,
                             outputDescriptor: Int32 = -1) throws(FerryError) -> pid_t {
        let switchUser = geteuid() == 0 && uid != 0
        let account = Account(uid: uid)
        var groups = account.groups
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = argv.withUnsafeBufferPointer { argvBuffer in
            envp.withUnsafeBufferPointer { envpBuffer in
                ferry_spawn_as(switchUser ? uid : UInt32.max, account.gid, Int32(groups.count), &groups, program,
                               argvBuffer.baseAddress!, envpBuffer.baseAddress!, outputDescriptor)
            }
        }
        guard pid > 0 else {
            throw FerryError(code: .localFileError, context: .notification, message: "cannot start \(program): \(errnoText())")
        }
        return pid
    }

    /// A user's primary group and supplementary groups, from the user database.
    struct Account {
        let gid: gid_t
        let groups: [gid_t]

        init(uid: UInt32) {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: 16 * 1024)
            guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
                // No account: the uid's own number as its group, nothing more.
                gid = uid
                groups = [uid]
                return
            }
            gid = entry.pw_gid
            var count: Int32 = 64
            var list = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(name, entry.pw_gid, &list, &count) < 0 {
                list = [gid_t](repeating: 0, count: Int(count))
                _ = getgrouplist(name, entry.pw_gid, &list, &count)
            }
            groups = Array(list.prefix(Int(max(0, count))))
        }
    }
}
