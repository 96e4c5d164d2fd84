import CCurl
import CCurlShim
import FerryCore
#if canImport(Glibc)
import Glibc
#endif

/// Receives what one transfer produces. All calls come on the loop's thread.
public protocol TransferDelegate: AnyObject {
    /// The final response's headers are complete; no body byte was delivered yet.
    /// - Returns: `nil` to accept the body, or the error that aborts the transfer.
    func transfer(_ transfer: Transfer, didReceive response: TransferResponse) -> FerryError?
    /// The next body bytes, in order.
    /// - Returns: `nil` to go on, or the error that aborts the transfer.
    func transfer(_ transfer: Transfer, didReceiveBody bytes: UnsafeRawBufferPointer) -> FerryError?
    /// The transfer ended: `nil` when every byte arrived, else why it stopped.
    func transfer(_ transfer: Transfer, didCompleteWith error: FerryError?)
}

/// One request in flight: a libcurl easy handle and what it has received.
public final class Transfer {
    public let request: TransferRequest
    let handle: UnsafeMutableRawPointer
    weak var delegate: (any TransferDelegate)?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer: UnsafeMutablePointer<CChar>

    // Response parsing: the header block being read, and whether the final one was delivered.
    private var pendingStatus = 0
    private var pendingHeaders: [String: String] = [:]
    private(set) var response: TransferResponse?
    /// Set when the delegate (or a protocol check) aborted the transfer.
    var abortError: FerryError?
    /// Body bytes received by this request.
    public private(set) var bytesReceived: UInt64 = 0

    init(request: TransferRequest, delegate: any TransferDelegate) throws(FerryError) {
        guard CurlGlobal.ensureInitialised(), let handle = curl_easy_init() else {
            throw FerryError(code: .transportError, context: .transport, message: "libcurl could not create a handle")
        }
        self.request = request
        self.handle = handle
        self.delegate = delegate
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        do {
            try configure()
        } catch {
            curl_easy_cleanup(handle)
            errorBuffer.deallocate()
            throw error
        }
    }

    deinit {
        curl_easy_cleanup(handle)
        if let headerList { curl_slist_free_all(headerList) }
        errorBuffer.deallocate()
    }

    private func configure() throws(FerryError) {
        let h = handle
        let me = Unmanaged.passUnretained(self).toOpaque()
        try checkOption(ferry_curl_setopt_string(h, CURLOPT_URL, request.url), "URL")
        try checkOption(ferry_curl_setopt_ptr(h, CURLOPT_ERRORBUFFER, errorBuffer), "ERRORBUFFER")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1), "NOSIGNAL")
        // Never file: libcurl would open a path with the agent's identity. Ferry reads local
        // sources itself, from a descriptor opened as the job's owner.
        try checkOption(ferry_curl_setopt_string(h, CURLOPT_PROTOCOLS_STR, "http,https"), "PROTOCOLS_STR")
        let redirects = request.allowsInsecureRedirect || !request.url.lowercased().hasPrefix("https:") ? "http,https" : "https"
        try checkOption(ferry_curl_setopt_string(h, CURLOPT_REDIR_PROTOCOLS_STR, redirects), "REDIR_PROTOCOLS_STR")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 1), "FOLLOWLOCATION")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_MAXREDIRS, 10), "MAXREDIRS")
        try checkOption(ferry_curl_setopt_string(h, CURLOPT_USERAGENT, "Ferry/0.1"), "USERAGENT")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT, request.connectTimeoutSeconds), "CONNECTTIMEOUT")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1), "LOW_SPEED_LIMIT")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, request.stallTimeoutSeconds), "LOW_SPEED_TIME")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1), "TCP_KEEPALIVE")
        // https: wait for a connection being opened to the same server rather than open
        // another, so that over HTTP/2 the files of a job share one connection as streams.
        // Whether a TLS connection multiplexes is known once its handshake ends (ALPN); over
        // plain http it would be known only from the first answer, and a slow answer would
        // hold every other file back, so plain http does not wait.
        if request.url.lowercased().hasPrefix("https:") {
            try checkOption(ferry_curl_setopt_long(h, CURLOPT_PIPEWAIT, 1), "PIPEWAIT")
        }
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_BUFFERSIZE, 512 * 1024), "BUFFERSIZE")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1), "SSL_VERIFYPEER")
        try checkOption(ferry_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2), "SSL_VERIFYHOST")
        if let caData = request.caData {
            let bytes = Array(caData.utf8)
            try checkOption(bytes.withUnsafeBytes { ferry_curl_setopt_blob(h, CURLOPT_CAINFO_BLOB, $0.baseAddress!, $0.count) }, "CAINFO_BLOB")
            // CAINFO replaces libcurl's bundle; its CA directory (the system's, one file per CA)
            // keeps the system's authorities trusted beside the job's own.
            if let directory = ferry_curl_default_capath() {
                try checkOption(ferry_curl_setopt_string(h, CURLOPT_CAPATH, directory), "CAPATH")
            }
        }
        if let pin = request.pinnedPublicKey { try checkOption(ferry_curl_setopt_string(h, CURLOPT_PINNEDPUBLICKEY, pin), "PINNEDPUBLICKEY") }
        if request.maxBytesPerSecond > 0 {
            try checkOption(ferry_curl_setopt_off_t(h, CURLOPT_MAX_RECV_SPEED_LARGE, curl_off_t(request.maxBytesPerSecond)), "MAX_RECV_SPEED_LARGE")
        }
        var headers = request.headers
        if request.offset > 0 {
            // RANGE rather than RESUME_FROM: curl then hands every answer to us unchanged,
            // so a 200 (If-Range mismatch, or no range support) can be told apart and handled.
            try checkOption(ferry_curl_setopt_string(h, CURLOPT_RANGE, "\(request.offset)-"), "RANGE")
            if let ifRange = request.ifRange { headers.append("If-Range: \(ifRange)") }
        }
        // No Accept-Encoding: bytes on disk must be the bytes the server holds.
        for header in headers { headerList = curl_slist_append(headerList, header) }
        if let headerList { try checkOption(ferry_curl_setopt_slist(h, CURLOPT_HTTPHEADER, headerList), "HTTPHEADER") }
        try checkOption(ferry_curl_set_write_callback(h, transferWriteCallback, me), "WRITEFUNCTION")
        try checkOption(ferry_curl_set_header_callback(h, transferHeaderCallback, me), "HEADERFUNCTION")
    }

    /// The text libcurl left in the error buffer, if any.
    var errorDetail: String { String(cString: errorBuffer) }

    // MARK: - Callbacks (called by libcurl on the loop thread)

    fileprivate func receiveHeaderLine(_ raw: UnsafeRawBufferPointer) -> Bool {
        var line = raw[...]
        while let last = line.last, last == 0x0D || last == 0x0A { line = line.dropLast() }
        if line.isEmpty {
            return finishHeaderBlock()
        }
        let text = String(decoding: line, as: UTF8.self)
        if text.hasPrefix("HTTP/") {
            let parts = text.split(separator: " ", maxSplits: 2)
            pendingStatus = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            pendingHeaders = [:]
        } else if let colon = text.firstIndex(of: ":") {
            let name = text[..<colon].lowercased()
            pendingHeaders[name] = text[text.index(after: colon)...].trimmingSpaces
        }
        return true
    }

    /// A header block ended. Interim answers (1xx) and redirects that curl follows are skipped;
    /// the final one goes to the delegate.
    private func finishHeaderBlock() -> Bool {
        if (100..<200).contains(pendingStatus) { return true }
        if (300..<400).contains(pendingStatus), let location = pendingHeaders["location"] {
            // libcurl would refuse it too (REDIR_PROTOCOLS), but with a vague error: say what happened.
            if !request.allowsInsecureRedirect, request.url.lowercased().hasPrefix("https:"), location.lowercased().hasPrefix("http:") {
                abortError = FerryError(code: .insecureRedirect, context: .remoteFile, httpStatus: pendingStatus,
                                        message: "\(request.url) redirected (\(pendingStatus)) to \(location): a redirect from https to plain http is refused")
                return false
            }
            return true
        }
        return deliver(TransferResponse(status: pendingStatus, headers: pendingHeaders))
    }

    private func deliver(_ response: TransferResponse) -> Bool {
        guard self.response == nil else { return true }
        self.response = response
        if let error = delegate?.transfer(self, didReceive: response) {
            abortError = error
            return false
        }
        return true
    }

    fileprivate func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // http and https (the only protocols allowed) always answer with headers first.
        guard response != nil else {
            abortError = FerryError(code: .transportError, context: .transport, message: "\(request.url) sent a body before any answer")
            return false
        }
        bytesReceived += UInt64(bytes.count)
        if let error = delegate?.transfer(self, didReceiveBody: bytes) {
            abortError = error
            return false
        }
        return true
    }

    /// Called once by the loop when libcurl reports the transfer done.
    func finish(code: CURLcode) {
        let error: FerryError?
        if let abortError {
            error = abortError
        } else if code == CURLE_OK {
            error = response == nil
                ? FerryError(code: .transportError, context: .transport, message: "\(request.url) ended without an answer")
                : nil
        } else {
            var mapped = ferryError(forCurlCode: code, detail: errorDetail)
            if let status = response?.status, status > 0 { mapped.httpStatus = status }
            error = mapped
        }
        delegate?.transfer(self, didCompleteWith: error)
    }
}

private let transferWriteCallback: ferry_curl_data_cb = { pointer, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    let total = size * count
    guard total > 0, let pointer else { return total }
    return transfer.receiveBody(UnsafeRawBufferPointer(start: pointer, count: total)) ? total : 0
}

private let transferHeaderCallback: ferry_curl_data_cb = { pointer, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    let total = size * count
    guard total > 0, let pointer else { return total }
    return transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: pointer, count: total)) ? total : 0
}
