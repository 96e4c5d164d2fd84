import FerryCore
import FerryCrypto
import FerryPluginHost
import FerryTransport
import Foundation

/// What a file transfer reports, on the engine's thread.
protocol FileTransferObserver: AnyObject {
    /// A server answered; `restartFromZero` when the file starts again from its first byte.
    func fileResponded(_ transfer: FileTransfer, restartFromZero: Bool)
    /// Bytes arrived in the temporary.
    func fileProgressed(_ transfer: FileTransfer)
    /// The transfer failed; nothing more comes from it.
    func fileFailed(_ transfer: FileTransfer, _ failure: FerryError)
    /// The server's file changed under a resume: start the file again from zero.
    func fileRestartRequested(_ transfer: FileTransfer, reason: String)
    /// Every byte arrived.
    func fileFinished(_ transfer: FileTransfer)
}

/// One file of one job moving bytes: checks each answer against what was asked,
/// writes the body to the temporary and reports to its observer (the engine).
///
/// Lives on the engine's loop thread.
final class FileTransfer: TransferDelegate {
    unowned let observer: any FileTransferObserver
    let jobID: JobID
    let fileIndex: Int
    let file: TemporaryFile
    let request: TransferRequest
    /// What was known of the remote file when this request was made.
    let knownTotal: UInt64?
    let knownETag: String?
    let knownLastModified: String?
    /// A foreground job may take a whole file from zero when the server ignores ranges.
    let mayRestartWithoutRanges: Bool
    /// The file held bytes from an earlier try that this request does not continue (dynamic
    /// content): the job's record of them is reset when the answer arrives.
    let restartsFromZero: Bool
    /// When this request was made, for the source's measured throughput.
    let startedAt: Date
    /// The libcurl transfer moving the bytes (`http`, `https`), or the reader of a `file:`
    /// source; one of them while the file moves.
    var transfer: Transfer?
    var localSource: LocalSource?
    /// When bytes last arrived (or the transfer started), to fail a local source that stalls.
    var lastActivity: Date
    /// Digests computed while the bytes stream in, for the validators: one per expected
    /// digest property (`sha256`, `sha512`) the file carries.
    private(set) var digests: [DigestName: StreamingDigest] = [:]
    /// Past ``trailingThreshold`` bytes, the digests are fed by a worker reading back what was
    /// written, so hashing a large file runs beside the transfer, not on its thread.
    private var trailing: TrailingDigests?
    /// How many bytes a file hashes as they arrive before a worker takes its digests over.
    static let trailingThreshold: UInt64 = 4 << 20
    /// No file may grow past this: the smallest of its `size` and `max_size` properties
    /// and the engine's maximum. A hostile server cannot fill the disk.
    let byteLimit: UInt64?

    /// The server said the file is already complete (416 for our own size), or sent another
    /// version of it: ignore the body.
    private var discardBody = false
    /// Why the file must start again from zero once this answer is over.
    private var restartReason: String?
    /// The total the server announced for this request's file, if any.
    private(set) var expectedTotal: UInt64?
    var lastCheckpointLength: UInt64
    var lastCheckpointTime: Date
    var checkpointInFlight = false
    /// Every byte arrived; waiting for the final flush.
    var isFinishing = false

    init(observer: any FileTransferObserver, jobID: JobID, fileIndex: Int, file: TemporaryFile, request: TransferRequest,
         jobFile: JobFile, mayRestartWithoutRanges: Bool, restartsFromZero: Bool = false, maxFileBytes: UInt64?, now: Date) throws(FerryError) {
        self.observer = observer
        self.jobID = jobID
        self.fileIndex = fileIndex
        self.file = file
        self.request = request
        self.knownTotal = jobFile.bytesTotal
        self.knownETag = jobFile.remoteETag
        self.knownLastModified = jobFile.remoteLastModified
        self.mayRestartWithoutRanges = mayRestartWithoutRanges
        self.restartsFromZero = restartsFromZero
        self.startedAt = now
        self.lastCheckpointLength = request.offset
        self.lastCheckpointTime = now
        self.lastActivity = now
        let limits = [jobFile.properties["size"], jobFile.properties["max_size"]].compactMap { $0.flatMap { UInt64($0) } }
            + [maxFileBytes].compactMap { $0 }
        self.byteLimit = limits.min()
        // Resuming: the bytes already on disk enter the digests first, read by
        // ``hashBytesAlreadyHere()`` off the engine's thread before the transfer moves.
        for name in DigestName.allCases where jobFile.properties[name.rawValue] != nil {
            do { digests[name] = try StreamingDigest(name == .sha256 ? .sha256 : .sha512) } catch {
                throw FerryError(code: .localFileError, context: .localFile, fileIndex: fileIndex, message: "cannot start a \(name.rawValue) digest: \(error)")
            }
        }
    }

    /// Whether bytes already in the temporary must be hashed before the transfer moves.
    var needsHashingFirst: Bool { request.offset > 0 && !digests.isEmpty }

    /// Feeds the first `request.offset` bytes of the temporary to the digests. Called on a
    /// worker thread while nothing else touches them (the transfer has not started).
    func hashBytesAlreadyHere() throws(FerryError) {
        for digest in digests.values {
            do { try digest.update(fromDescriptor: file.descriptor, length: request.offset) } catch {
                throw FerryError(code: .localFileError, context: .localFile, fileIndex: fileIndex,
                                 message: "cannot hash the first \(request.offset) bytes of \(file.path): \(error)")
            }
        }
    }

    deinit { trailing?.cancel() }

    /// Restarting from zero: the digests start again too.
    private func resetDigests() {
        trailing?.cancel()
        trailing = nil
        for name in Array(digests.keys) {
            digests[name] = try? StreamingDigest(name == .sha256 ? .sha256 : .sha512)
        }
    }

    /// Whether a worker feeds the digests (see ``trailingThreshold``).
    var hasTrailingDigests: Bool { trailing != nil }

    /// The finished digests, by algorithm, of a file hashed as its bytes arrived; call once,
    /// after the last byte, when ``hasTrailingDigests`` is false.
    func finishDigests() -> [DigestName: [UInt8]] {
        digests.mapValues { $0.finish() }
    }

    /// Calls `done`, on a worker, with the finished digests once the worker has hashed every
    /// byte written, or with why it could not; call once, after the last byte, when
    /// ``hasTrailingDigests`` is true.
    func whenTrailingDigestsFinished(_ done: @escaping @Sendable (Result<[DigestName: [UInt8]], FerryError>) -> Void) {
        trailing?.whenCaughtUp(done)
    }

    // MARK: - TransferDelegate

    func transfer(_ transfer: Transfer, didReceive response: TransferResponse) -> FerryError? {
        let offset = request.offset
        let status = response.status
        var restart = false

        switch status {
        case 206 where offset > 0:
            guard let range = response.contentRange, range.first == offset else {
                return error(.invalidRange, status: status, transient: false,
                             "asked for bytes \(offset)- but the server sent \(response.header("content-range").map { "Content-Range: \($0)" } ?? "no Content-Range"); nothing was written")
            }
            let sizeChanged = range.total.map { total in knownTotal.map { $0 != total } ?? false } ?? false
            let tagChanged = knownETag != nil && response.strongETag != nil && response.strongETag != knownETag
            if sizeChanged || tagChanged {
                // Another version of the file: never splice it onto ours. Start again from zero.
                do { try file.restartFromZero() } catch { return error }
                restartReason = sizeChanged ? "its size changed" : "its ETag changed"
                discardBody = true
                return nil
            }
            expectedTotal = range.total ?? knownTotal
        case 200..<300 where status != 206:
            if offset > 0 {
                if remoteChanged(response) || mayRestartWithoutRanges {
                    restart = true
                } else {
                    return FerryError(
                        code: .insufficientRangeSupport, context: .remoteFile, httpStatus: status, fileIndex: fileIndex,
                        remoteSize: response.contentLength ?? knownTotal,
                        message: "the server answered \(status) with the whole file to a request for bytes \(offset)- of \(request.url)"
                            + (response.contentLength.map { " (size \($0) bytes)" } ?? " (size unknown)"))
                }
            }
            expectedTotal = response.contentLength
        case 416 where offset > 0:
            if let total = response.header("content-range").flatMap(unsatisfiedTotal), total == offset {
                discardBody = true
                expectedTotal = offset
            } else {
                return error(.httpError(416), status: status, transient: false,
                             "the server cannot serve bytes \(offset)- of \(request.url)")
            }
        default:
            let transient = status == 408 || status == 429 || (500..<600).contains(status)
            var failure = error(.httpError(status), status: status, transient: transient,
                                "the server answered HTTP \(status) for \(request.url)")
            failure.retryAfterSeconds = response.retryAfterSeconds(now: Date().timeIntervalSince1970)
            return failure
        }

        if restartsFromZero { restart = true }
        if restart {
            do { try file.restartFromZero() } catch { return error }
            resetDigests()
        }
        if let limit = byteLimit, let total = expectedTotal, total > limit, !discardBody {
            return FerryError(code: .fileTooLarge, context: .remoteFile, httpStatus: status, fileIndex: fileIndex, remoteSize: total,
                              message: "\(request.url) is \(total) bytes, more than the \(limit) allowed for it; nothing was written")
        }
        if discardBody {
            file.setRemoteIdentity(bytesTotal: expectedTotal, etag: knownETag, lastModified: knownLastModified)
        } else {
            file.setRemoteIdentity(bytesTotal: expectedTotal, etag: response.strongETag, lastModified: response.lastModified)
        }
        observer.fileResponded(self, restartFromZero: restart)
        return nil
    }

    func transfer(_ transfer: Transfer, didReceiveBody bytes: UnsafeRawBufferPointer) -> FerryError? {
        handleBody(bytes)
    }

    /// Checks and writes the next body bytes, from either kind of source.
    private func handleBody(_ bytes: UnsafeRawBufferPointer) -> FerryError? {
        if discardBody { return nil }
        let length = file.snapshot.length
        if let total = expectedTotal, length + UInt64(bytes.count) > total {
            return FerryError(code: .fileTooLarge, context: .remoteFile, fileIndex: fileIndex, remoteSize: total,
                              message: "\(request.url) sent more than the \(total) bytes it announced; transfer aborted")
        }
        if let limit = byteLimit, length + UInt64(bytes.count) > limit {
            return FerryError(code: .fileTooLarge, context: .remoteFile, fileIndex: fileIndex,
                              message: "\(request.url) sent more than the \(limit) bytes allowed for it; transfer aborted")
        }
        if trailing == nil {
            for digest in digests.values { digest.update(bytes) }
        }
        do {
            try file.append(bytes)
        } catch {
            var failure = error
            failure.fileIndex = fileIndex
            return failure
        }
        if let trailing {
            trailing.advance(to: length + UInt64(bytes.count))
        } else if !digests.isEmpty, length + UInt64(bytes.count) >= Self.trailingThreshold {
            // Large enough for a worker: it takes the digests over from here.
            trailing = TrailingDigests(file: file, fileIndex: fileIndex, digests: digests, hashed: length + UInt64(bytes.count))
        }
        observer.fileProgressed(self)
        return nil
    }

    func transfer(_ transfer: Transfer, didCompleteWith failure: FerryError?) {
        self.transfer = nil
        complete(with: failure)
    }

    /// The source ended: every byte arrived (`nil`), or why it stopped.
    private func complete(with failure: FerryError?) {
        if let restartReason {
            observer.fileRestartRequested(self, reason: restartReason)
            return
        }
        if var failure {
            failure.fileIndex = fileIndex
            if failure.context == .transport, failure.message.contains(request.url) == false {
                failure.message += " while fetching \(request.url)"
            }
            observer.fileFailed(self, failure)
            return
        }
        let length = file.snapshot.length
        if let total = expectedTotal, length < total {
            observer.fileFailed(self, FerryError(
                code: .truncatedBody, context: .transport, isTransient: true, fileIndex: fileIndex, remoteSize: total,
                message: "\(request.url) ended after \(length) of \(total) bytes"))
            return
        }
        observer.fileFinished(self)
    }

    // MARK: - A local source (file:), read by LocalSource

    /// The source was opened: `size` bytes, its modification time and size as `identity`.
    /// - Returns: the offset to read from (the bytes already here when the source is the one
    ///   they came from, else zero), or `nil` when the transfer ended here.
    func localSourceOpened(size: UInt64, identity: String) -> UInt64? {
        lastActivity = Date()
        var offset = request.offset
        let sameSource = knownLastModified == nil || knownLastModified == identity
        var restart = restartsFromZero
        if offset > 0, !sameSource || offset > size { restart = true }
        if restart {
            do { try file.restartFromZero() } catch {
                localSourceFailed(error)
                return nil
            }
            resetDigests()
            offset = 0
        }
        expectedTotal = size
        if let limit = byteLimit, size > limit {
            localSourceFailed(FerryError(code: .fileTooLarge, context: .remoteFile, fileIndex: fileIndex, remoteSize: size,
                                         message: "\(request.url) is \(size) bytes, more than the \(limit) allowed for it; nothing was written"))
            return nil
        }
        file.setRemoteIdentity(bytesTotal: size, etag: nil, lastModified: identity)
        observer.fileResponded(self, restartFromZero: restart)
        return offset
    }

    /// The next bytes of the local source.
    func localSourceReceived(_ bytes: UnsafeRawBufferPointer) {
        lastActivity = Date()
        if let failure = handleBody(bytes) { localSourceFailed(failure) }
    }

    func localSourceFinished() {
        guard localSource != nil else { return }
        localSource = nil
        complete(with: nil)
    }

    func localSourceFailed(_ failure: FerryError) {
        guard let source = localSource else { return }
        source.cancel()
        localSource = nil
        complete(with: failure)
    }

    // MARK: - Helpers

    private func error(_ code: ErrorCode, status: Int, transient: Bool, _ message: String) -> FerryError {
        FerryError(code: code, context: .remoteFile, isTransient: transient, httpStatus: status, fileIndex: fileIndex, message: message)
    }

    /// True when the answer describes another version of the file than the bytes we hold.
    private func remoteChanged(_ response: TransferResponse) -> Bool {
        if let known = knownETag { return response.strongETag != known }
        if let known = knownLastModified { return response.lastModified != known }
        if let known = knownTotal, let length = response.contentLength { return known != length }
        return false
    }

    /// The size in a `Content-Range: bytes */N` header.
    private func unsatisfiedTotal(_ header: String) -> UInt64? {
        let text = header.trimmingCharacters(in: .whitespaces)
        guard text.hasPrefix("bytes */") else { return nil }
        return UInt64(text.dropFirst("bytes */".count))
    }
}
