#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdCore
import FerryControl
import FerryCore
import Foundation
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// glibc's `struct ucred` (declared only under _GNU_SOURCE, which Swift's Glibc module lacks).
struct UCred: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

enum PeerCredentialsError: Error { case notAUnixSocket, noSocketOptions, overLimit }

/// Room for the groups `SO_PEERGROUPS` reports; a caller in more groups is refused
/// (the kernel answers ERANGE), never served with some of its groups left out.
typealias PeerGroupsBuffer = InlineArray<1024, UInt32>

/// `SO_PEERGROUPS` (Linux 4.13), which Glibc's Swift module does not declare.
private let soPeerGroups: Int32 = 59

extension Channel {
    /// The connecting process's credentials, from SO_PEERCRED, and its supplementary groups,
    /// from SO_PEERGROUPS.
    func peerCredentials() -> EventLoopFuture<Caller> {
        // SO_PEERCRED does not fail on TCP sockets (it answers uid -1): refuse anything but a Unix socket.
        guard case .unixDomainSocket = localAddress else { return eventLoop.makeFailedFuture(PeerCredentialsError.notAUnixSocket) }
        guard let provider = self as? any SocketOptionProvider else { return eventLoop.makeFailedFuture(PeerCredentialsError.noSocketOptions) }
        let credentials: EventLoopFuture<UCred> = provider.unsafeGetSocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: SO_PEERCRED))
        let groups: EventLoopFuture<PeerGroupsBuffer> = provider.unsafeGetSocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: soPeerGroups))
        return credentials.and(groups).map { credentials, buffer in
            var raw = [UInt32](repeating: 0, count: buffer.count)
            for index in buffer.indices { raw[index] = buffer[index] }
            return Caller(uid: credentials.uid, gid: credentials.gid, pid: credentials.pid, groups: Caller.groups(inPeerGroupsBuffer: raw))
        }
    }
}

extension Caller {
    /// The caller of the connection being served.
    @TaskLocal static var current: Caller?
}

/// Reads SO_PEERCRED once per accepted connection and serves the connection with it,
/// within the connection limits of ``ConnectionBudget``.
struct PeerCredentialsChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let base: Base.Value
        let caller: Caller?
        var channel: any Channel { base.channel }
    }

    let base: Base
    let budget: ConnectionBudget

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.peerCredentials()
            .map { Optional($0) }
            .flatMapErrorThrowing { error in
                logger.error("cannot read the caller's credentials", metadata: ["error": "\(error)"])
                return nil  // fails closed: every request of this connection is refused
            }
            .flatMap { caller in
                if let refusal = budget.admit(caller) {
                    // Refused before a request is read: the answer is written raw, first in the
                    // pipeline, as soon as the connection is active; then it closes.
                    if budget.shouldLogRefusal(of: caller) {
                        logger.warning("control connection refused (logged once per user every 10 s)",
                                       metadata: ["caller": "\(caller.map(\.description) ?? "unknown")", "reason": "\(refusal)"])
                    }
                    do { try channel.pipeline.syncOperations.addHandler(ConnectionRefusal(ConnectionBudget.refusal(refusal)), position: .first) } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                    return base.setup(channel: channel, logger: logger).map { Value(base: $0, caller: nil) }
                }
                channel.closeFuture.whenComplete { _ in budget.release(caller) }
                return base.setup(channel: channel, logger: logger).map { Value(base: $0, caller: caller) }
            }
    }

    func handle(value: Value, logger: Logger) async {
        await Caller.$current.withValue(value.caller) {
            await base.handle(value: value.base, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with the caller's credentials read at accept, within `budget`, and a deadline
    /// for each request's headers.
    static func http1WithCallerCredentials(budget: ConnectionBudget, headerTimeout: Double) -> HTTPServerBuilder {
        // A request's headers: 16 KiB in all is plenty for this API (bodies have their own limit).
        let configuration = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestHeaderDeadline(seconds: headerTimeout)],
            httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 << 10, maxHeaderListSize: 16 << 10, maxHeaderFieldCount: 100))
        return .init { responder in
            PeerCredentialsChildChannel(base: HTTP1Channel(responder: responder, configuration: configuration), budget: budget)
        }
    }
}

/// The open control connections by user, within `api.max_connections_per_user` and
/// `api.max_connections`. Root's connections are not counted: the administrator can
/// always reach the agent, whatever other users hold.
final class ConnectionBudget: Sendable {
    let perUser: Int
    let total: Int
    private let counts = Mutex<(byUser: [UInt32: Int], total: Int)>(([:], 0))

    init(perUser: Int, total: Int) {
        self.perUser = perUser
        self.total = total
    }

    /// Connections whose caller could not be told are counted under this id (they are
    /// refused request by request, but still hold a descriptor).
    static let unknownCaller = UInt32.max

    /// Counts a new connection; `nil` when admitted, else why it is refused.
    func admit(_ caller: Caller?) -> String? {
        if caller?.isAdministrator ?? false { return nil }
        let uid = caller?.uid ?? Self.unknownCaller
        return counts.withLock { counts -> String? in
            let mine = counts.byUser[uid, default: 0]
            if mine >= perUser {
                return "uid \(caller.map { "\($0.uid)" } ?? "unknown") already has \(mine) connections open, the most allowed (api.max_connections_per_user = \(perUser)); close some first"
            }
            if counts.total >= total {
                return "the agent has \(counts.total) connections open, the most allowed (api.max_connections = \(total)); try again later"
            }
            counts.byUser[uid] = mine + 1
            counts.total += 1
            return nil
        }
    }

    func release(_ caller: Caller?) {
        if caller?.isAdministrator ?? false { return }
        let uid = caller?.uid ?? Self.unknownCaller
        counts.withLock { counts in
            let mine = counts.byUser[uid, default: 1] - 1
            counts.byUser[uid] = mine > 0 ? mine : nil
            counts.total -= 1
        }
    }

    private let lastLogged = Mutex<[UInt32: Date]>([:])

    /// Whether a refusal of `caller` should be logged: once per user every 10 seconds, so
    /// that a flood of connections cannot fill the log.
    func shouldLogRefusal(of caller: Caller?) -> Bool {
        let uid = caller?.uid ?? Self.unknownCaller
        let now = Date()
        return lastLogged.withLock { last in
            guard now.timeIntervalSince(last[uid] ?? .distantPast) >= 10 else { return false }
            if last.count > 4096 { last.removeAll() }
            last[uid] = now
            return true
        }
    }

    /// Open connections of non-root users (for tests and health).
    var open: Int { counts.withLock { $0.total } }

    /// A whole HTTP answer, `503` with the API's error document, for a refused connection.
    static func refusal(_ reason: String) -> ByteBuffer {
        let body = (try? ControlJSON.encoder.encode(ErrorEnvelope(error: ErrorDocument(code: ErrorCode.busy.rawValue, context: "queueManager", message: reason))))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        let head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        return ByteBuffer(string: head + body)
    }
}

/// Answers a refused connection with a whole HTTP response as soon as it is active, drops
/// whatever it sends, and closes it.
final class ConnectionRefusal: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let answer: ByteBuffer
    private var sent = false

    init(_ answer: ByteBuffer) { self.answer = answer }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func refuse(_ context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        // Only the sending side closes at once: a client still writing its request must not
        // fail on a closed socket before it reads the answer. The rest closes in a moment.
        context.writeAndFlush(NIOAny(answer)).whenComplete { _ in
            loopBound.value.close(mode: .output, promise: nil)
            loopBound.value.eventLoop.scheduleTask(in: .seconds(2)) { loopBound.value.close(promise: nil) }
        }
    }
}

/// Closes a connection that does not finish a request's headers within `seconds` of
/// opening, or of the end of the previous answer reaching the socket: an idle or trickling
/// client cannot hold a connection (and a descriptor of the agent's) for long. An answer
/// being written (an event stream) is never cut by it; an end still waiting behind bytes the
/// client has not read (the last line of a stream cut for a slow reader) is given
/// ``unreadEndGrace`` to be read.
final class RequestHeaderDeadline: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let seconds: Double
    private var timer: Scheduled<Void>?

    init(seconds: Double) { self.seconds = seconds }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    /// Request heads read so far, and answers ended so far: while more requests were read
    /// than answered, one is under way (or waits its turn, pipelined) and no deadline runs.
    private var requestsRead = 0
    private var answersEnded = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            requestsRead += 1
            disarm()
        }
        context.fireChannelRead(data)
    }

    /// How long an answer's end may wait for a client that does not read it.
    static let unreadEndGrace = 30.0

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        answersEnded += 1
        // A request read meanwhile (pipelined) is answered next: no deadline while it is.
        guard answersEnded >= requestsRead else {
            context.write(data, promise: promise)
            return
        }
        // The deadline counts from the end reaching the socket; a client that never reads it
        // still loses the connection, later.
        arm(context, after: max(seconds, Self.unreadEndGrace))
        let written = context.eventLoop.makePromise(of: Void.self)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.futureResult.whenComplete { result in
            let handler = loopBound.value.0
            if case .success = result, handler.answersEnded >= handler.requestsRead { handler.arm(loopBound.value.1) }
            promise?.completeWith(result)
        }
        context.write(data, promise: written)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext, after delay: Double? = nil) {
        disarm()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: .milliseconds(Int64((delay ?? seconds) * 1000))) {
            loopBound.value.close(promise: nil)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}

/// Each request's context: the caller, known from the connection.
struct AgentRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let caller: Caller?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        caller = Caller.current
    }
}
