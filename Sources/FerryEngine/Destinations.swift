import CFerrySystem
import FerryCore
#if canImport(Glibc)
import Glibc
#endif

/// A destination directory, opened once as a job's owner.
///
/// A job's temporaries are created in it, renamed to their final names in it and
/// removed from it by name relative to this descriptor (`openat`, `renameat`,
/// `unlinkat`), never through the directory's path again: a directory swapped for a link
/// after it was opened cannot redirect a write.
final class DirectoryHandle: @unchecked Sendable {
    let path: String
    let descriptor: Int32

    /// Opens `path` as a directory with the calling thread's identity (call it inside
    /// ``OwnerIdentity/run(as:_:)-(Job,_)``). Every component is resolved by the kernel
    /// in that identity.
    /// - Throws: ``ErrorCode/destinationMissing`` or ``ErrorCode/accessDenied``, with what the
    ///   kernel answered the owner (never what root could see).
    init(opening path: String) throws(FerryError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let code = errno
            switch code {
            case ENOENT, ENOTDIR, ELOOP:
                throw FerryError(code: .destinationMissing, context: .localFile,
                                 message: "the destination directory \(path) does not exist or is not a directory (\(errnoText(code)))")
            default:
                throw FerryError(code: .accessDenied, context: .localFile,
                                 message: "cannot open the destination directory \(path): \(errnoText(code))")
            }
        }
        self.path = path
        self.descriptor = fd
    }

    deinit { close(descriptor) }

    /// Whether the calling thread's identity may create files here (write and search).
    func allowsCreatingFiles() -> Bool {
        ferry_access_here(descriptor, "", W_OK | X_OK, AT_EACCESS | Linux.AT_EMPTY_PATH) == 0
    }

    /// `fstatat` of an entry, without following a link.
    func status(of name: String) -> stat? {
        var info = stat()
        return fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 ? info : nil
    }

    /// Renames an entry to another name in this directory (replacing it, never following it).
    func rename(_ name: String, to newName: String) -> Bool {
        renameat(descriptor, name, descriptor, newName) == 0
    }

    /// Removes an entry (a file, or a link itself).
    func remove(_ name: String) {
        _ = unlinkat(descriptor, name, 0)
    }

    /// Makes the directory's entries durable.
    func sync() {
        _ = fsync(descriptor)
    }

    /// Cuts a regular file to `length` bytes, without following a symbolic link.
    func cut(_ name: String, to length: UInt64) {
        let fd = openat(descriptor, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return }
        _ = ftruncate(fd, off_t(length))
    }
}

/// The destination directories of the engine's jobs, each opened once as its job's owner
/// and kept while the job lives. Lives on the engine's thread.
///
/// Bounded: past ``maxOpen`` descriptors the cache is emptied (directories still in use by a
/// temporary stay open through it) and opened again on demand, as the owner.
final class DestinationDirectories {
    private var byJob: [JobID: [String: DirectoryHandle]] = [:]
    private var count = 0
    static let maxOpen = 2048

    /// The directory of file `index` of `job`, opened as the owner if it is not yet.
    func directory(of job: Job, file index: Int) throws(FerryError) -> DirectoryHandle {
        let (path, _) = Job.split(job.files[index].localPath)
        if let known = byJob[job.id]?[path] { return known }
        let handle = try OwnerIdentity.run(as: job) { () throws(FerryError) in try DirectoryHandle(opening: path) }
        if count >= Self.maxOpen {
            byJob.removeAll()
            count = 0
        }
        byJob[job.id, default: [:]][path] = handle
        count += 1
        return handle
    }

    /// Closes what `id` held (the job is final or gone).
    func forget(_ id: JobID) {
        count -= byJob.removeValue(forKey: id)?.count ?? 0
    }
}
