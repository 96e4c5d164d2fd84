import CFerrySystem
import FerryCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The hidden file a download is written to, in its destination's directory.
///
/// The descriptor stays open as long as anything (a transfer, a pending
/// checkpoint) holds the object. ``snapshot`` tells a checkpoint what it may
/// record: the length written so far and the remote identity of those bytes.
final class TemporaryFile: @unchecked Sendable {
    /// For messages only: the file is reached through ``descriptor`` and ``directory``.
    let path: String
    let descriptor: Int32
    /// The directory it was created in, and its name there: a commit renames it relative
    /// to that same descriptor.
    let directory: DirectoryHandle
    let name: String
    /// The file system it lives on (`st_dev`), to flush many files with one `syncfs`.
    let device: UInt64
    /// Whether that file system is a local one whose `syncfs` is known to write every file's
    /// data and report its errors (ext4, XFS, Btrfs, tmpfs).
    let isOnLocalFileSystem: Bool

    /// What is in the file: guarded because checkpoints read it from another thread.
    struct Contents: Equatable {
        var length: UInt64
        /// Raised whenever the file restarts from zero, so a checkpoint taken of older
        /// content is never recorded over the newer one.
        var generation: UInt64
        var bytesTotal: UInt64?
        var etag: String?
        var lastModified: String?
    }
    private let contents: Mutex<Contents>

    /// Opens (creating if needed) the temporary `name` in `directory` and cuts it to `length`
    /// bytes, with the calling thread's identity. Never follows a symbolic link, and refuses
    /// anything but a regular file.
    init(in directory: DirectoryHandle, name: String, length: UInt64, bytesTotal: UInt64?, etag: String?, lastModified: String?) throws(FerryError) {
        let path = (directory.path == "/" ? "" : directory.path) + "/" + name
        let fd = openat(directory.descriptor, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        guard fd >= 0 else {
            throw TemporaryFile.failure("cannot open \(path)")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FerryError(code: .localFileError, context: .localFile, message: "cannot use \(path): it is not a regular file")
        }
        guard ftruncate(fd, off_t(length)) == 0 else {
            let code = errno
            close(fd)
            throw TemporaryFile.failure("cannot truncate \(path)", code: code)
        }
        self.device = UInt64(info.st_dev)
        let localTypes: Set<Int> = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994]
        self.isOnLocalFileSystem = localTypes.contains(ferry_file_system_type(fd))
        self.path = path
        self.directory = directory
        self.name = name
        self.descriptor = fd
        self.contents = Mutex(Contents(length: length, generation: 0, bytesTotal: bytesTotal, etag: etag, lastModified: lastModified))
    }

    deinit { close(descriptor) }

    var snapshot: Contents { contents.withLock { $0 } }

    /// A path that opens this very file (not whatever its name now points to), for plugins
    /// that read it while the descriptor is open.
    var descriptorPath: String { "/proc/self/fd/\(descriptor)" }

    /// Appends bytes at the current end.
    func append(_ bytes: UnsafeRawBufferPointer) throws(FerryError) {
        let start = contents.withLock { $0.length }
        var done = 0
        while done < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(start + UInt64(done)))
            if n < 0 {
                if errno == EINTR { continue }
                throw TemporaryFile.failure("cannot write \(path)")
            }
            done += n
        }
        contents.withLock { $0.length = start + UInt64(bytes.count) }
    }

    /// Records what the server said about the bytes that follow.
    func setRemoteIdentity(bytesTotal: UInt64?, etag: String?, lastModified: String?) {
        contents.withLock {
            $0.bytesTotal = bytesTotal
            $0.etag = etag
            $0.lastModified = lastModified
        }
    }

    /// Empties the file: the download starts again from zero.
    func restartFromZero() throws(FerryError) {
        try contents.withLock { (c: inout Contents) throws(FerryError) in
            guard ftruncate(descriptor, 0) == 0 else {
                throw TemporaryFile.failure("cannot truncate \(path)")
            }
            c.length = 0
            c.generation += 1
        }
    }

    /// Flushes the file's data to disk. The corresponding C function is `fdatasync`.
    func flush() throws(FerryError) {
        while fdatasync(descriptor) != 0 {
            if errno == EINTR { continue }
            throw TemporaryFile.failure("cannot flush \(path)")
        }
    }

    /// Flushes every file of this file's file system (`syncfs`): one journal commit for a
    /// batch of files instead of one `fdatasync` each. Used only where ``isOnLocalFileSystem``.
    func flushFileSystem() throws(FerryError) {
        while ferry_syncfs(descriptor) != 0 {
            if errno == EINTR { continue }
            throw TemporaryFile.failure("cannot flush the file system of \(path)")
        }
    }
}

extension TemporaryFile {
    /// The error for a failed operation on a temporary, from `errno`: a full file system or
    /// quota is ``ErrorCode/diskFull`` and transient (the job retries by itself when there is
    /// room again); anything else is ``ErrorCode/localFileError``.
    static func failure(_ what: String, code: Int32 = errno, text: String? = nil) -> FerryError {
        let message = "\(what): \(text ?? errnoText(code))"
        if code == ENOSPC || code == EDQUOT {
            return FerryError(code: .diskFull, context: .localFile, isTransient: true, message: message + "; retrying when there is room")
        }
        return FerryError(code: .localFileError, context: .localFile, message: message)
    }
}

/// `strerror(errno)` with the number, for messages.
func errnoText(_ code: Int32 = errno) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}
