import FerryCore
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Files a caller names, opened once with the caller's identity.
///
/// Each open is non-blocking (a FIFO or a device never holds the opening thread), and
/// only a regular file is accepted; the descriptor is then what is read. Nothing here
/// follows a path a second time.
enum OwnedFile {
    /// Opens `path` for reading as `job`'s owner and checks that it is a regular file.
    /// - Parameter what: how messages name the file ("the source", "the CA file").
    /// - Returns: the descriptor (close it) and its `stat`.
    /// - Throws: ``ErrorCode/accessDenied`` with what the kernel answered the owner, or
    ///   ``ErrorCode/notARegularFile``.
    static func open(_ path: String, as job: Job, what: String, context: ErrorContext) throws(FerryError) -> (descriptor: Int32, info: stat) {
        try OwnerIdentity.run(as: job) { () throws(FerryError) in
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
            guard fd >= 0 else {
                throw FerryError(code: .accessDenied, context: context, message: "uid \(job.owner) may not read \(what) \(path): \(errnoText())")
            }
            var info = stat()
            guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                let kind = OwnedFile.kind(of: info.st_mode)
                close(fd)
                throw FerryError(code: .notARegularFile, context: context,
                                 message: "\(what) \(path) is \(kind), not a regular file; Ferry reads only regular files")
            }
            return (fd, info)
        }
    }

    /// Reads a small regular file whole, as `job`'s owner (a CA file).
    /// - Throws: as ``open(_:as:what:context:)``, or ``ErrorCode/invalidArgument`` when it is
    ///   larger than `limit`.
    static func read(_ path: String, as job: Job, what: String, limit: Int) throws(FerryError) -> [UInt8] {
        let (fd, info) = try open(path, as: job, what: what, context: .localFile)
        defer { close(fd) }
        guard info.st_size <= limit else {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "\(what) \(path) is \(info.st_size) bytes, more than the \(limit) allowed")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        return Array(bytes.prefix(done))
    }

    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        default: return "not a file"
        }
    }
}

/// Reads a `file:` source for one transfer, on a thread of its own.
///
/// The source is opened once, as the job's owner, without blocking; only a regular file
/// is read, and only the bytes it had when it was opened. Its bytes reach the transfer on
/// the engine's thread a chunk at a time, with at most ``maxChunksInFlight`` chunks waiting,
/// so a large or slow source never holds the engine's thread and costs bounded memory.
final class LocalSource: @unchecked Sendable {
    static let chunkSize = 256 << 10
    static let maxChunksInFlight = 4

    private let cancelled = Atomic<Bool>(false)
    private let credits = DispatchSemaphore(value: LocalSource.maxChunksInFlight)

    var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    /// Stops reading; nothing more is delivered.
    func cancel() {
        cancelled.store(true, ordering: .releasing)
        credits.signal()
    }

    /// Opens the source at `path` as `job`'s owner and streams it to `transfer` from
    /// `offset` (or from zero when the source changed since its first byte).
    static func start(path: String, offset: UInt64, job: Job, transfer: FileTransfer, thread: EngineThread) -> LocalSource {
        let source = LocalSource()
        let target = UncheckedSendable(transfer)
        let thread = Thread {
            // `action` gets nil once the source was cancelled: it frees what it carries.
            source.run(path: path, offset: offset, job: job, deliver: { action in
                thread.post { action(source.isCancelled ? nil : target.value) }
            })
        }
        thread.name = "ferry-local-source"
        thread.stackSize = 256 << 10
        thread.start()
        return source
    }

    private func run(path: String, offset: UInt64, job: Job, deliver: @escaping @Sendable (@escaping @Sendable (FileTransfer?) -> Void) -> Void) {
        let opened: (descriptor: Int32, info: stat)
        do { opened = try OwnedFile.open(path, as: job, what: "the source", context: .remoteFile) } catch {
            deliver { $0?.localSourceFailed(error) }
            return
        }
        let fd = opened.descriptor
        defer { close(fd) }
        let size = UInt64(opened.info.st_size)
        let identity = "local \(opened.info.st_mtim.tv_sec).\(opened.info.st_mtim.tv_nsec) \(size)"
        // The transfer decides on its thread whether the bytes already written still match.
        let decision = Mutex<UInt64?>(nil)
        let decided = DispatchSemaphore(value: 0)
        deliver { transfer in
            decision.withLock { $0 = transfer?.localSourceOpened(size: size, identity: identity) }
            decided.signal()
        }
        while decided.wait(timeout: .now() + 1) == .timedOut { if isCancelled { return } }
        guard let start = decision.withLock({ $0 }), !isCancelled else { return }

        var position = start
        while position < size {
            credits.wait()
            if isCancelled { return }
            let wanted = Int(min(UInt64(LocalSource.chunkSize), size - position))
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: wanted, alignment: 16)
            let count = pread(fd, chunk.baseAddress!, wanted, off_t(position))
            if count < 0 {
                let text = errnoText()
                chunk.deallocate()
                if errno == EINTR { credits.signal(); continue }
                deliver { $0?.localSourceFailed(FerryError(code: .localFileError, context: .remoteFile, isTransient: true,
                                                           message: "cannot read the source \(path): \(text)")) }
                return
            }
            if count == 0 {
                chunk.deallocate()
                break  // cut short while being read: the transfer reports a truncated body
            }
            position += UInt64(count)
            let bytes = UncheckedSendable(chunk)
            deliver { [self] transfer in
                defer {
                    bytes.value.deallocate()
                    credits.signal()
                }
                transfer?.localSourceReceived(UnsafeRawBufferPointer(start: bytes.value.baseAddress, count: count))
            }
        }
        deliver { $0?.localSourceFinished() }
    }
}
