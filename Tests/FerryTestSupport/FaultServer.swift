import Foundation
import Glibc

// MARK: - Public API

/// A fault that ``FaultServer`` injects into its answers for one path.
///
/// Faults that only make sense for a ranged request (``ignoreRanges``,
/// ``rangeAs200WithoutContentRange`` and ``wrongContentRange(offsetDelta:)``) apply only to GET
/// requests that carry a `Range` header; a GET without one neither sees nor consumes them.
/// Every other fault applies to any GET request.
public enum Fault: Sendable, Equatable {
    /// Answer 200 with the full body even when a `Range` was asked for.
    case ignoreRanges
    /// Send the headers (with the full `Content-Length`, as normal), then close the connection
    /// after this many body bytes.
    case dropAfter(bytes: Int)
    /// Send the headers, then send nothing for this long, then continue normally.
    case stall(seconds: Double)
    /// Answer this status with `body` as a small `text/html` body (sent verbatim) and, when
    /// `retryAfter` is given, a `Retry-After` header. It applies even where no file is served.
    case status(Int, retryAfter: String? = nil, body: String = "error page")
    /// Answer 200 with the full body and no `Content-Range` on a ranged request; the same
    /// behaviour as ``ignoreRanges``, under the name of the symptom a client sees.
    case rangeAs200WithoutContentRange
    /// Answer a ranged request with 206, but start both the body and the `Content-Range`
    /// header at the requested offset plus `offsetDelta` (clamped to the file). A range that
    /// runs to the end of the file still does; a closed range keeps its length.
    case wrongContentRange(offsetDelta: Int)
    /// Send the body without `Content-Length` (and not chunked), with `Connection: close`, so
    /// that the client learns the size only when the connection closes.
    case noContentLength
    /// Claim this total size: it becomes the `Content-Length` of a 200 answer (also of a HEAD)
    /// and the total of a `Content-Range`, while the body still carries only the real bytes and
    /// the connection is closed after it. Combine with ``ignoreRanges`` to simulate a huge file.
    case reportSize(Int64)
    /// Promise the full length, send only this many body bytes, then close the connection.
    case truncateBody(bytes: Int)
    /// Send the body followed by `extra` garbage bytes, without `Content-Length` and with
    /// `Connection: close`, so that the client receives more bytes than the file holds.
    case oversizeBody(extra: Int)
}

/// One request as ``FaultServer`` received it.
public struct RecordedRequest: Sendable {
    /// The request method, e.g. `GET`.
    public let method: String
    /// The request path, without the query string.
    public let path: String
    /// The request headers, names lowercased; repeated headers are joined with `", "`.
    public let headers: [String: String]
    /// When the request's head was read.
    public var receivedAt = Date()

    /// The raw `Range` header, e.g. `bytes=1000-`.
    public var range: String? { headers["range"] }

    /// The start offset of a `bytes=N-` or `bytes=N-M` range, or nil when there is no such range.
    public var rangeStart: Int64? {
        guard let range, let spec = ByteRangeSpec(header: range),
              case .from(let start, _) = spec else { return nil }
        return start
    }

    /// The raw `If-Range` header.
    public var ifRange: String? { headers["if-range"] }
}

/// An HTTP/1.1 server on the loopback interface that serves in-memory files and injects faults
/// on demand.
///
/// It answers GET and HEAD, honours single byte ranges and `If-Range`, and keeps connections
/// alive. It runs one thread to accept connections and one thread per connection. Call
/// ``stop()`` when done: the threads keep the server alive until then.
public final class FaultServer: @unchecked Sendable {
    /// The TCP port the server listens on.
    public let port: Int

    /// The URL of the server's root, without a trailing slash, e.g. `http://127.0.0.1:8080`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    private let listenSocket: Int32
    private let lock = NSLock()
    private var state = State()
    private let acceptThreadDone = DispatchSemaphore(value: 0)
    private let connectionThreads = DispatchGroup()

    /// Starts a server on an ephemeral port of 127.0.0.1.
    public convenience init() throws {
        try self.init(port: 0)
    }

    /// Starts a server on the given port of 127.0.0.1 (0 picks an ephemeral one).
    ///
    /// The socket is bound with `SO_REUSEADDR`, so a server can come back on the port of one
    /// that was stopped.
    public init(port: Int) throws {
        let (socket, boundPort) = try Self.listen(onPort: port)
        self.listenSocket = socket
        self.port = boundPort
        let thread = Thread { [self] in
            acceptConnections()
            acceptThreadDone.signal()
        }
        thread.name = "FaultServer accept :\(boundPort)"
        thread.start()
    }

    /// Stops the server: closes the listening socket and every open connection, and waits for
    /// the server's threads to end. Connecting afterwards is refused. Calling it again does
    /// nothing.
    public func stop() {
        let shouldStop = lock.withLock {
            guard !state.isStopped else { return false }
            state.isStopped = true
            // Shutting sockets down wakes threads blocked in accept, recv or send; each thread
            // closes its own socket, so no descriptor is closed while another thread uses it.
            shutdown(listenSocket, Int32(SHUT_RDWR))
            for connection in state.connections {
                shutdown(connection, Int32(SHUT_RDWR))
            }
            return true
        }
        guard shouldStop else { return }
        acceptThreadDone.wait()
        close(listenSocket)
        connectionThreads.wait()
    }

    // MARK: Files

    /// Serves `data` at `path` (e.g. `/a.bin`).
    ///
    /// - Parameters:
    ///   - etag: The `ETag` to send, quotes included. By default a strong ETag derived from a
    ///     hash of the content.
    ///   - lastModified: The `Last-Modified` time, truncated to whole seconds. By default the
    ///     current time when the content changes (at least one second after the previous
    ///     value), and the previous value when the content stays the same.
    public func setFile(_ path: String, data: [UInt8], etag: String? = nil, lastModified: Date? = nil) {
        let derivedETag = "\"\(String(Self.contentHash(of: data), radix: 16))\""
        lock.withLock {
            let previous = state.files[path]
            let modified: Date
            if let lastModified {
                modified = Self.wholeSeconds(lastModified)
            } else if let previous {
                let contentChanged = previous.data.count != data.count
                    || memcmp(previous.data, data, data.count) != 0
                if contentChanged {
                    let now = Self.wholeSeconds(Date())
                    modified = max(now, previous.lastModified.addingTimeInterval(1))
                } else {
                    modified = previous.lastModified
                }
            } else {
                modified = Self.wholeSeconds(Date())
            }
            state.files[path] = ServedFile(
                data: data,
                etag: etag ?? derivedETag,
                lastModified: modified,
                lastModifiedHeader: Self.httpDate(modified)
            )
        }
    }

    /// Stops serving `path`; requests for it get 404.
    public func removeFile(_ path: String) {
        lock.withLock { _ = state.files.removeValue(forKey: path) }
    }

    // MARK: Faults and throttling

    /// Queues `fault` for the next `times` GET requests for `path` to which it applies (nil: all
    /// of them, until ``clearFaults(_:)``), after letting the first `afterRequests` of them
    /// through untouched.
    ///
    /// Several faults may be queued for one path; each request consumes one application of
    /// every queued fault that applies to it (or one of the requests a fault lets through
    /// first). A `times` below 1 queues nothing. HEAD requests consume no faults, but report
    /// the size of a queued ``Fault/reportSize(_:)``. With `afterRequests`, a sequence of
    /// answers is set up before the first request, so no fault has to be added while the
    /// client is between two tries.
    public func addFault(_ path: String, _ fault: Fault, times: Int? = 1, afterRequests: Int = 0) {
        if let times, times < 1 { return }
        lock.withLock {
            state.faults[path, default: []].append(QueuedFault(fault: fault, remaining: times, skipped: max(0, afterRequests)))
        }
    }

    /// Removes the queued faults of `path`, or of every path when `path` is nil.
    public func clearFaults(_ path: String? = nil) {
        lock.withLock {
            if let path {
                state.faults.removeValue(forKey: path)
            } else {
                state.faults.removeAll()
            }
        }
    }

    /// Throttles the body of every response for `path` to about `bytesPerSecond` (nil, or a value
    /// below 1: unthrottled). Bodies are then sent in small chunks, so a client sees steady
    /// progress.
    public func setRate(_ path: String, bytesPerSecond: Int?) {
        lock.withLock {
            if let bytesPerSecond, bytesPerSecond > 0 {
                state.rates[path] = bytesPerSecond
            } else {
                state.rates.removeValue(forKey: path)
            }
        }
    }

    // MARK: Holding answers

    /// Holds every GET answer for `path` that starts from now on: its head and its first
    /// `afterBytes` body bytes are sent (at the path's rate, if it has one), then the rest
    /// waits until ``release(_:)``. An answer whose body is not longer than `afterBytes` is
    /// not held. `afterBytes` counts the bytes of this answer's body, so for a ranged answer
    /// it counts from the start of the range. Holding a path again changes `afterBytes` for
    /// the answers that start afterwards; those already held stay held.
    ///
    /// A test holds a path to know what the client has while it acts: it waits with
    /// ``waitUntilHeld(_:count:timeout:)``, then suspends, kills or inspects, then releases.
    /// A held connection stays quiet, so the client's stall timeout still applies.
    public func hold(_ path: String, afterBytes: Int = 0) {
        lock.withLock { state.holds[path] = max(0, afterBytes) }
    }

    /// Lets every answer held for `path` go on, and holds no new ones.
    public func release(_ path: String) {
        lock.withLock { _ = state.holds.removeValue(forKey: path) }
    }

    /// How many answers are waiting at a hold now, for `path` or (nil) for every path.
    public func heldAnswers(for path: String? = nil) -> Int {
        lock.withLock {
            guard let path else { return state.held.values.reduce(0, +) }
            return state.held[path] ?? 0
        }
    }

    /// Waits until at least `count` answers wait at a hold, for `path` or (nil) for every
    /// path; false if that did not happen within `timeout` seconds.
    @discardableResult
    public func waitUntilHeld(_ path: String? = nil, count: Int = 1, timeout: Double = 60) -> Bool {
        let deadline = Self.monotonicSeconds() + timeout
        while heldAnswers(for: path) < count {
            if Self.monotonicSeconds() > deadline || isStopped { return false }
            usleep(useconds_t(Self.stopCheckInterval * 1_000_000))
        }
        return true
    }

    // MARK: Recorded requests

    /// Every request received so far, in order of arrival.
    public var requests: [RecordedRequest] {
        lock.withLock { state.requests }
    }

    /// The requests received so far for `path`, in order of arrival.
    public func requests(for path: String) -> [RecordedRequest] {
        lock.withLock { state.requests.filter { $0.path == path } }
    }

    /// Forgets the requests received so far.
    public func resetRequests() {
        lock.withLock { state.requests.removeAll() }
    }
}

// MARK: - Server state

extension FaultServer {
    /// Everything the threads share; guarded by `lock`.
    private struct State {
        var files: [String: ServedFile] = [:]
        var faults: [String: [QueuedFault]] = [:]
        var rates: [String: Int] = [:]
        /// The held paths, with the body bytes sent before the hold.
        var holds: [String: Int] = [:]
        /// How many answers wait at a hold, by path.
        var held: [String: Int] = [:]
        var requests: [RecordedRequest] = []
        var connections: Set<Int32> = []
        var isStopped = false
    }

    private struct ServedFile {
        let data: [UInt8]
        let etag: String
        let lastModified: Date
        let lastModifiedHeader: String
    }

    private struct QueuedFault {
        let fault: Fault
        /// How many more requests it applies to; nil for all of them.
        var remaining: Int?
        /// How many more requests it lets through before it starts to apply.
        var skipped = 0
    }

    private var isStopped: Bool {
        lock.withLock { state.isStopped }
    }

    /// Takes one application of every fault queued for `path` that applies to a GET request,
    /// dropping the faults that are used up.
    private func takeFaults(for path: String, isRanged: Bool) -> [Fault] {
        lock.withLock {
            guard var queue = state.faults[path] else { return [] }
            var taken: [Fault] = []
            for index in queue.indices where isRanged || !queue[index].fault.needsRange {
                if queue[index].skipped > 0 {
                    queue[index].skipped -= 1
                    continue
                }
                taken.append(queue[index].fault)
                if let remaining = queue[index].remaining {
                    queue[index].remaining = remaining - 1
                }
            }
            queue.removeAll { $0.remaining == 0 }
            state.faults[path] = queue.isEmpty ? nil : queue
            return taken
        }
    }

    /// The size a queued ``Fault/reportSize(_:)`` claims for `path`, without consuming it.
    private func claimedSize(for path: String) -> Int64? {
        lock.withLock {
            state.faults[path]?.lazy.compactMap { queued -> Int64? in
                if case .reportSize(let size) = queued.fault { return size }
                return nil
            }.first
        }
    }
}

extension Fault {
    /// Whether the fault only makes sense for a request that carries a `Range` header.
    fileprivate var needsRange: Bool {
        switch self {
        case .ignoreRanges, .rangeAs200WithoutContentRange, .wrongContentRange: true
        default: false
        }
    }
}

// MARK: - Sockets and threads

extension FaultServer {
    private static let unthrottledChunkSize = 64 * 1024
    private static let throttledChunkSize = 16 * 1024
    private static let maximumHeadSize = 64 * 1024
    /// The longest a sleeping thread goes without checking whether the server stopped.
    private static let stopCheckInterval = 0.02

    private static func listen(onPort port: Int) throws -> (socket: Int32, port: Int) {
        guard (0...Int(UInt16.max)).contains(port) else { throw POSIXError(.EINVAL) }
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw lastPOSIXError() }
        do {
            var reuse: Int32 = 1
            guard setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size)) == 0
            else { throw lastPOSIXError() }

            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port)).bigEndian
            address.sin_addr.s_addr = in_addr_t(INADDR_LOOPBACK).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0, Glibc.listen(listener, 128) == 0 else { throw lastPOSIXError() }

            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let named = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
            }
            guard named == 0 else { throw lastPOSIXError() }
            return (listener, Int(UInt16(bigEndian: address.sin_port)))
        } catch {
            close(listener)
            throw error
        }
    }

    private static func lastPOSIXError() -> POSIXError {
        POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
    }

    private func acceptConnections() {
        while true {
            let connection = accept(listenSocket, nil, nil)
            if connection < 0 {
                let error = errno
                if isStopped { return }
                switch error {
                case EINTR, ECONNABORTED:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    usleep(10_000)
                    continue
                default:
                    return
                }
            }
            let registered = lock.withLock {
                guard !state.isStopped else { return false }
                state.connections.insert(connection)
                connectionThreads.enter()
                return true
            }
            guard registered else {
                close(connection)
                return
            }
            var noDelay: Int32 = 1
            setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            let thread = Thread { [self] in
                serve(connection: connection)
                lock.withLock {
                    state.connections.remove(connection)
                    close(connection)
                }
                connectionThreads.leave()
            }
            thread.name = "FaultServer connection \(connection)"
            thread.start()
        }
    }

    /// Answers the requests of one connection until either side closes it.
    private func serve(connection: Int32) {
        var buffer: [UInt8] = []
        while !isStopped {
            guard let head = readHead(from: connection, buffer: &buffer) else { return }
            guard let request = ParsedRequest(head: head) else {
                _ = send(Response(plainStatus: 400, closeConnection: true), to: connection, path: nil)
                return
            }
            guard discardBody(of: request, from: connection, buffer: &buffer) else { return }
            lock.withLock { state.requests.append(request.recorded) }
            let response = self.response(to: request)
            guard send(response, to: connection, path: request.recorded.path), !response.closeConnection else {
                return
            }
        }
    }

    /// Reads up to and including the blank line that ends a request head, keeping any bytes
    /// after it in `buffer`. Returns nil when the connection closes or the head is too large.
    private func readHead(from connection: Int32, buffer: inout [UInt8]) -> [UInt8]? {
        var searchedUpTo = 0
        while true {
            if let end = Self.endOfHead(in: buffer, from: searchedUpTo) {
                let head = Array(buffer[..<end])
                buffer.removeFirst(end)
                return head
            }
            guard buffer.count < Self.maximumHeadSize else { return nil }
            searchedUpTo = max(0, buffer.count - 3)
            guard receive(from: connection, into: &buffer) else { return nil }
        }
    }

    /// The index just past the first empty line (CRLF CRLF, or bare LF LF) at or after `start`.
    private static func endOfHead(in bytes: [UInt8], from start: Int) -> Int? {
        let lineFeed = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")
        var index = start
        while index < bytes.count {
            if bytes[index] == lineFeed {
                if index + 1 < bytes.count, bytes[index + 1] == lineFeed { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == carriageReturn, bytes[index + 2] == lineFeed {
                    return index + 3
                }
            }
            index += 1
        }
        return nil
    }

    /// Reads and drops a request body announced by `Content-Length`.
    private func discardBody(of request: ParsedRequest, from connection: Int32, buffer: inout [UInt8]) -> Bool {
        var remaining = request.contentLength
        while remaining > 0 {
            if buffer.isEmpty {
                guard receive(from: connection, into: &buffer) else { return false }
            }
            let dropped = min(remaining, buffer.count)
            buffer.removeFirst(dropped)
            remaining -= dropped
        }
        return true
    }

    /// Appends what the socket has to `buffer`; false when the connection is closed or broken.
    private func receive(from connection: Int32, into buffer: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                buffer.append(contentsOf: chunk[..<count])
                return true
            }
            if count < 0, errno == EINTR { continue }
            return false
        }
    }

    /// Sends `response`; false when the connection broke or the server stopped.
    private func send(_ response: Response, to connection: Int32, path: String?) -> Bool {
        let head = Array(response.head.utf8)
        var writer = BodyWriter(socket: connection, server: self, bytesPerSecond: path.flatMap { path in
            lock.withLock { state.rates[path] }
        })
        guard head.withUnsafeBytes({ writer.writeUnthrottled($0) }) else { return false }
        if response.stallSeconds > 0, !pause(seconds: response.stallSeconds) { return false }

        var body = response.body
        if let limit = response.bodyLimit {
            body = body.prefix(limit)
        }
        if let holdAfter = response.holdAfter, body.count > holdAfter {
            let before = body.prefix(holdAfter)
            guard before.withUnsafeBytes({ writer.write($0) }), let path, waitWhileHeld(path: path) else {
                return false
            }
            body = body.dropFirst(holdAfter)
        }
        guard body.withUnsafeBytes({ writer.write($0) }) else { return false }
        if response.bodyLimit != nil { return false }

        if response.trailingGarbage > 0 {
            let garbage = [UInt8](repeating: UInt8(ascii: "#"), count: response.trailingGarbage)
            guard garbage.withUnsafeBytes({ writer.write($0) }) else { return false }
        }
        return true
    }

    /// Waits while `path` is held; false if the server stopped.
    private func waitWhileHeld(path: String) -> Bool {
        lock.withLock { state.held[path, default: 0] += 1 }
        defer {
            lock.withLock {
                state.held[path, default: 1] -= 1
                if state.held[path] == 0 { state.held.removeValue(forKey: path) }
            }
        }
        while lock.withLock({ state.holds[path] != nil }) {
            if isStopped { return false }
            usleep(useconds_t(Self.stopCheckInterval * 1_000_000))
        }
        return !isStopped
    }

    /// Sleeps for `seconds`, waking early when the server stops; false if it did.
    fileprivate func pause(seconds: Double) -> Bool {
        let deadline = Self.monotonicSeconds() + seconds
        while true {
            if isStopped { return false }
            let remaining = deadline - Self.monotonicSeconds()
            if remaining <= 0 { return true }
            usleep(useconds_t(min(remaining, Self.stopCheckInterval) * 1_000_000))
        }
    }

    fileprivate static func monotonicSeconds() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1_000_000_000
    }

    /// Writes bytes to a socket, pacing the body when a rate is set.
    private struct BodyWriter {
        let socket: Int32
        let server: FaultServer
        let bytesPerSecond: Int?
        /// When the first paced byte was written.
        private var pacingStart: Double?
        private var bytesPaced = 0

        init(socket: Int32, server: FaultServer, bytesPerSecond: Int?) {
            self.socket = socket
            self.server = server
            self.bytesPerSecond = bytesPerSecond
        }

        /// Writes all of `bytes` now; false when the connection broke.
        func writeUnthrottled(_ bytes: UnsafeRawBufferPointer) -> Bool {
            guard let base = bytes.baseAddress else { return true }
            var offset = 0
            while offset < bytes.count {
                let count = Glibc.send(socket, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { return false }
                offset += count
            }
            return true
        }

        /// Writes `bytes` in chunks, at the writer's rate if it has one; false when the
        /// connection broke or the server stopped.
        mutating func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
            let chunkSize = bytesPerSecond.map { max(1, min(FaultServer.throttledChunkSize, $0 / 10)) }
                ?? FaultServer.unthrottledChunkSize
            var offset = 0
            while offset < bytes.count {
                if server.isStopped { return false }
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(offset + chunkSize, bytes.count)])
                guard writeUnthrottled(chunk) else { return false }
                offset += chunk.count
                if let bytesPerSecond {
                    let start = pacingStart ?? FaultServer.monotonicSeconds()
                    pacingStart = start
                    bytesPaced += chunk.count
                    let due = start + Double(bytesPaced) / Double(bytesPerSecond)
                    guard server.pause(seconds: due - FaultServer.monotonicSeconds()) else { return false }
                }
            }
            return true
        }
    }
}

// MARK: - Answering requests

extension FaultServer {
    private func response(to request: ParsedRequest) -> Response {
        let path = request.recorded.path
        let isHead = request.recorded.method == "HEAD"
        guard isHead || request.recorded.method == "GET" else {
            return Response(plainStatus: 405, extraHeaders: [("Allow", "GET, HEAD")], closeConnection: !request.keepAlive)
        }

        let faults: [Fault]
        if isHead {
            faults = claimedSize(for: path).map { [.reportSize($0)] } ?? []
        } else {
            faults = takeFaults(for: path, isRanged: request.recorded.range != nil)
        }
        let plan = FaultPlan(faults)

        var response: Response
        if let status = plan.status {
            response = Response(
                status: status.code,
                headers: [("Content-Type", "text/html; charset=utf-8")]
                    + (status.retryAfter.map { [("Retry-After", $0)] } ?? []),
                body: ArraySlice(status.body.utf8),
                closeConnection: !request.keepAlive
            )
        } else if let file = lock.withLock({ state.files[path] }) {
            response = fileResponse(file, request: request, plan: plan)
        } else {
            response = Response(plainStatus: 404, closeConnection: !request.keepAlive)
        }

        response.stallSeconds = plan.stallSeconds
        if plan.omitsContentLength {
            response.headers.removeAll { $0.name == "Content-Length" }
            response.closeConnection = true
            response.trailingGarbage = plan.trailingGarbage
        }
        if let limit = plan.bodyLimit {
            response.bodyLimit = limit
        }
        if isHead {
            response.body = []
            response.trailingGarbage = 0
        } else {
            response.holdAfter = lock.withLock { state.holds[path] }
        }
        return response
    }

    private func fileResponse(_ file: ServedFile, request: ParsedRequest, plan: FaultPlan) -> Response {
        let realSize = file.data.count
        let total = plan.claimedSize ?? Int64(realSize)
        var headers = [
            ("Content-Type", "application/octet-stream"),
            ("Accept-Ranges", "bytes"),
            ("ETag", file.etag),
            ("Last-Modified", file.lastModifiedHeader),
        ]
        // A lie about the size leaves the connection out of step with what the client expects.
        let closeConnection = !request.keepAlive || plan.claimedSize != nil

        var rangeSpec = plan.ignoresRanges ? nil : request.recorded.range.flatMap(ByteRangeSpec.init(header:))
        if let ifRange = request.recorded.ifRange, !Self.validatorMatches(ifRange, file: file) {
            rangeSpec = nil
        }
        guard let rangeSpec else {
            headers.append(("Content-Length", String(total)))
            return Response(status: 200, headers: headers, body: file.data[...], closeConnection: closeConnection)
        }
        guard var range = rangeSpec.resolved(total: total) else {
            headers.append(("Content-Range", "bytes */\(total)"))
            headers.append(("Content-Length", "0"))
            return Response(status: 416, headers: headers, body: [], closeConnection: closeConnection)
        }
        if let delta = plan.offsetDelta {
            range = range.shifted(by: Int64(delta), total: total, keepingEnd: rangeSpec.isOpenEnded)
        }
        headers.append(("Content-Range", "bytes \(range.lowerBound)-\(range.upperBound)/\(total)"))
        headers.append(("Content-Length", String(range.upperBound - range.lowerBound + 1)))
        let bodyStart = Int(min(range.lowerBound, Int64(realSize)))
        let bodyEnd = Int(min(range.upperBound + 1, Int64(realSize)))
        return Response(status: 206, headers: headers, body: file.data[bodyStart..<bodyEnd], closeConnection: closeConnection)
    }

    /// Whether an `If-Range` value names the current representation: a strong comparison with
    /// the ETag, or an exact match of the `Last-Modified` header.
    private static func validatorMatches(_ ifRange: String, file: ServedFile) -> Bool {
        if ifRange.hasPrefix("\"") || ifRange.hasPrefix("W/") {
            return !ifRange.hasPrefix("W/") && !file.etag.hasPrefix("W/") && ifRange == file.etag
        }
        return ifRange == file.lastModifiedHeader
    }
}

/// The combined effect of the faults applied to one request.
private struct FaultPlan {
    var status: (code: Int, retryAfter: String?, body: String)?
    var ignoresRanges = false
    var offsetDelta: Int?
    var claimedSize: Int64?
    var stallSeconds = 0.0
    var bodyLimit: Int?
    var omitsContentLength = false
    var trailingGarbage = 0

    init(_ faults: [Fault]) {
        for fault in faults {
            switch fault {
            case .ignoreRanges, .rangeAs200WithoutContentRange:
                ignoresRanges = true
            case .dropAfter(let bytes), .truncateBody(let bytes):
                bodyLimit = min(bodyLimit ?? Int.max, max(0, bytes))
            case .stall(let seconds):
                stallSeconds += max(0, seconds)
            case .status(let code, let retryAfter, let body):
                if status == nil { status = (code, retryAfter, body) }
            case .wrongContentRange(let delta):
                offsetDelta = (offsetDelta ?? 0) + delta
            case .noContentLength:
                omitsContentLength = true
            case .reportSize(let size):
                if claimedSize == nil { claimedSize = max(0, size) }
            case .oversizeBody(let extra):
                omitsContentLength = true
                trailingGarbage += max(0, extra)
            }
        }
    }
}

/// An answer ready to be written to a connection.
private struct Response {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: ArraySlice<UInt8>
    /// Whether to close the connection after this answer.
    var closeConnection: Bool
    /// How long to wait between the head and the body.
    var stallSeconds = 0.0
    /// When set, the connection is closed after this many body bytes.
    var bodyLimit: Int?
    /// How many garbage bytes to send after the body.
    var trailingGarbage = 0
    /// When the path was held as the answer was made: the body bytes sent before the hold.
    var holdAfter: Int?

    init(status: Int, headers: [(name: String, value: String)], body: ArraySlice<UInt8>, closeConnection: Bool) {
        self.status = status
        self.headers = headers
        self.body = body
        self.closeConnection = closeConnection
        if !headers.contains(where: { $0.name == "Content-Length" }) {
            self.headers.append(("Content-Length", String(body.count)))
        }
    }

    /// A small HTML page that names the status.
    init(plainStatus status: Int, extraHeaders: [(name: String, value: String)] = [], closeConnection: Bool) {
        let page = "<html><body><h1>\(status) \(Self.reason(for: status))</h1></body></html>\n"
        self.init(
            status: status,
            headers: [("Content-Type", "text/html; charset=utf-8")] + extraHeaders,
            body: ArraySlice(page.utf8),
            closeConnection: closeConnection
        )
    }

    /// The status line and headers, up to and including the blank line.
    var head: String {
        var lines = ["HTTP/1.1 \(status) \(Self.reason(for: status))"]
        lines += headers.map { "\($0.name): \($0.value)" }
        lines.append("Connection: \(closeConnection ? "close" : "keep-alive")")
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    static func reason(for status: Int) -> String {
        switch status {
        case 200: "OK"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 410: "Gone"
        case 416: "Range Not Satisfiable"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status \(status)"
        }
    }
}

// MARK: - Request parsing

/// A request head, split into its parts.
private struct ParsedRequest {
    let recorded: RecordedRequest
    let keepAlive: Bool
    let contentLength: Int

    /// Parses a request head; nil when it is not a well-formed HTTP/1.x request.
    init?(head: [UInt8]) {
        // CR LF is a single Character in Swift, so split on any line break rather than on "\n".
        let lines = String(decoding: head, as: UTF8.self).split(whereSeparator: \.isNewline)
        let requestLine = lines.first?.split(separator: " ", omittingEmptySubsequences: true) ?? []
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else { return nil }

        var headers: [String: String] = [:]
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { "\($0), \(value)" } ?? value
        }

        let connectionOptions = (headers["connection"] ?? "").lowercased()
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if requestLine[2] == "HTTP/1.0" {
            keepAlive = connectionOptions.contains("keep-alive")
        } else {
            keepAlive = !connectionOptions.contains("close")
        }
        // A chunked request body could not be skipped without decoding it; no client of this
        // server sends one, so such a request is refused as malformed.
        guard headers["transfer-encoding"] == nil else { return nil }
        contentLength = headers["content-length"].flatMap { Int($0) }.map { max(0, $0) } ?? 0

        recorded = RecordedRequest(
            method: String(requestLine[0]),
            path: Self.path(ofTarget: String(requestLine[1])),
            headers: headers
        )
    }

    /// The path of a request target, without the query; the target may be in absolute form.
    private static func path(ofTarget target: String) -> String {
        var rest = Substring(target)
        if let scheme = rest.range(of: "://") {
            rest = rest[scheme.upperBound...]
            rest = rest.firstIndex(of: "/").map { rest[$0...] } ?? "/"
        }
        let path = rest.prefix { $0 != "?" && $0 != "#" }
        return path.isEmpty ? "/" : String(path)
    }
}

/// A single byte range from a `Range` header.
private enum ByteRangeSpec {
    /// `bytes=N-` (last nil) or `bytes=N-M`.
    case from(Int64, through: Int64?)
    /// `bytes=-N`: the last N bytes.
    case suffix(Int64)

    /// Parses a single-range `Range` header; nil when it is malformed, has several ranges or
    /// another unit, in which case the header is ignored.
    init?(header: String) {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard trimmed.lowercased().hasPrefix("bytes=") else { return nil }
        let spec = trimmed.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash].trimmingCharacters(in: .whitespaces)
        let last = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        let isNumber = { (text: String) in !text.isEmpty && text.allSatisfy { ("0"..."9").contains($0) } }

        if first.isEmpty {
            guard isNumber(last), let length = Int64(last) else { return nil }
            self = .suffix(length)
        } else {
            guard isNumber(first), let start = Int64(first) else { return nil }
            if last.isEmpty {
                self = .from(start, through: nil)
            } else {
                guard isNumber(last), let end = Int64(last), end >= start else { return nil }
                self = .from(start, through: end)
            }
        }
    }

    /// Whether the range runs to the end of the file.
    var isOpenEnded: Bool {
        switch self {
        case .from(_, let end): end == nil
        case .suffix: true
        }
    }

    /// The inclusive byte range within a file of `total` bytes; nil when it is unsatisfiable.
    func resolved(total: Int64) -> ClosedRange<Int64>? {
        switch self {
        case .from(let start, let end):
            guard start < total else { return nil }
            return start...min(end ?? total - 1, total - 1)
        case .suffix(let length):
            guard length > 0, total > 0 else { return nil }
            return max(0, total - length)...(total - 1)
        }
    }
}

extension ClosedRange<Int64> {
    /// The range with its start moved by `delta` and kept within a file of `total` bytes. The
    /// end stays put when `keepingEnd` is set (a range that runs to the end of the file), and
    /// moves with the start otherwise.
    fileprivate func shifted(by delta: Int64, total: Int64, keepingEnd: Bool) -> ClosedRange<Int64> {
        let start = Swift.min(Swift.max(0, lowerBound + delta), total - 1)
        let end = keepingEnd ? upperBound : Swift.min(Swift.max(start, upperBound + delta), total - 1)
        return start...end
    }
}

// MARK: - Validators

extension FaultServer {
    /// A 64-bit hash of `data`, fast enough for files of tens of megabytes; not cryptographic.
    fileprivate static func contentHash(of data: [UInt8]) -> UInt64 {
        let prime: UInt64 = 0x0000_0100_0000_01b3
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(data.count)
        data.withUnsafeBytes { bytes in
            var offset = 0
            while offset + 8 <= bytes.count {
                hash = (hash ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* prime
                hash ^= hash >> 29
                offset += 8
            }
            while offset < bytes.count {
                hash = (hash ^ UInt64(bytes[offset])) &* prime
                offset += 1
            }
        }
        hash ^= hash >> 33
        hash = hash &* 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return hash
    }

    fileprivate static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }

    /// Formats `date` as an HTTP date (RFC 1123, GMT), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    fileprivate static func httpDate(_ date: Date) -> String {
        var time = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&time, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func padded(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(days[Int(parts.tm_wday)]), \(padded(parts.tm_mday, 2)) \(months[Int(parts.tm_mon)]) "
            + "\(padded(parts.tm_year + 1900, 4)) \(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):"
            + "\(padded(parts.tm_sec, 2)) GMT"
    }
}
