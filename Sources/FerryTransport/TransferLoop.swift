import CCurl
import CCurlShim
import FerryCore

/// Many transfers at once over one libcurl multi handle, driven from one thread.
///
/// Only the thread that calls ``runOnce(timeoutMilliseconds:)`` may call
/// ``start(_:delegate:)`` and ``cancel(_:)``; ``wakeup()`` may be called from
/// any thread to end a wait early.
public final class TransferLoop: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private var active: [UnsafeMutableRawPointer: Transfer] = [:]

    /// Limits on connections, applied by libcurl across all transfers.
    public struct Limits: Sendable, Equatable {
        public var maxTotalConnections: Int
        public var maxConnectionsPerHost: Int
        public init(maxTotalConnections: Int = 16, maxConnectionsPerHost: Int = 6) {
            self.maxTotalConnections = maxTotalConnections
            self.maxConnectionsPerHost = maxConnectionsPerHost
        }
    }

    public init(limits: Limits = Limits()) throws(FerryError) {
        guard CurlGlobal.ensureInitialised(), let multi = curl_multi_init() else {
            throw FerryError(code: .transportError, context: .transport, message: "libcurl could not create a multi handle")
        }
        self.multi = multi
        _ = ferry_curl_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, limits.maxTotalConnections)
        _ = ferry_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, limits.maxConnectionsPerHost)
        _ = ferry_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(limits.maxTotalConnections, 8))
    }

    deinit {
        for (handle, _) in active { curl_multi_remove_handle(multi, handle) }
        active.removeAll()
        curl_multi_cleanup(multi)
    }

    /// The number of transfers in flight.
    public var activeCount: Int { active.count }

    /// Starts a transfer; its delegate hears of it from ``runOnce(timeoutMilliseconds:)``.
    /// - Throws: ``FerryError`` when libcurl refuses the request (bad option, no memory).
    @discardableResult
    public func start(_ request: TransferRequest, delegate: any TransferDelegate) throws(FerryError) -> Transfer {
        let transfer = try Transfer(request: request, delegate: delegate)
        let rc = curl_multi_add_handle(multi, transfer.handle)
        guard rc == CURLM_OK else {
            throw FerryError(code: .transportError, context: .transport,
                             message: "libcurl could not add a transfer: \(String(cString: curl_multi_strerror(rc)))")
        }
        active[transfer.handle] = transfer
        return transfer
    }

    /// Stops a transfer at once; its delegate hears nothing more.
    public func cancel(_ transfer: Transfer) {
        guard active.removeValue(forKey: transfer.handle) != nil else { return }
        transfer.delegate = nil
        curl_multi_remove_handle(multi, transfer.handle)
    }

    /// Waits up to `timeoutMilliseconds` for network activity or a ``wakeup()``,
    /// moves every transfer along, and reports the finished ones to their delegates.
    public func runOnce(timeoutMilliseconds: Int32) {
        var running: Int32 = 0
        if !active.isEmpty { _ = curl_multi_perform(multi, &running) }
        drainFinished()
        _ = curl_multi_poll(multi, nil, 0, max(0, timeoutMilliseconds), nil)
        if !active.isEmpty {
            _ = curl_multi_perform(multi, &running)
            drainFinished()
        }
    }

    /// Ends a ``runOnce(timeoutMilliseconds:)`` wait early. Safe from any thread.
    public func wakeup() {
        _ = curl_multi_wakeup(multi)
    }

    private func drainFinished() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            curl_multi_remove_handle(multi, easy)
            guard let transfer = active.removeValue(forKey: easy) else { continue }
            transfer.finish(code: code)
        }
    }
}
