#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// glibc's `struct ucred` (declared only under _GNU_SOURCE, which Swift's Glibc module lacks).
struct UCred: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

enum PeerCredentialsError: Error { case notAUnixSocket, noSocketOptions }

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

/// Reads SO_PEERCRED once per accepted connection and serves the connection with it.
struct PeerCredentialsChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let base: Base.Value
        let caller: Caller?
        var channel: any Channel { base.channel }
    }

    let base: Base

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.peerCredentials()
            .map { Optional($0) }
            .flatMapErrorThrowing { error in
                logger.error("cannot read the caller's credentials", metadata: ["error": "\(error)"])
                return nil  // fails closed: every request of this connection is refused
            }
            .flatMap { caller in base.setup(channel: channel, logger: logger).map { Value(base: $0, caller: caller) } }
    }

    func handle(value: Value, logger: Logger) async {
        await Caller.$current.withValue(value.caller) {
            await base.handle(value: value.base, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with the caller's credentials read at accept.
    static func http1WithCallerCredentials(configuration: HTTP1Channel.Configuration = .init()) -> HTTPServerBuilder {
        .init { responder in PeerCredentialsChildChannel(base: HTTP1Channel(responder: responder, configuration: configuration)) }
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
