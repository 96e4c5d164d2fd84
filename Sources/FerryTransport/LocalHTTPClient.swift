import CCurl
import CCurlShim
import FerryCore
import Foundation

/// HTTP/1.1 requests to a server on a Unix socket (the agent's control API), through libcurl.
///
/// Blocking: each call runs one request on the calling thread.
public struct LocalHTTPClient: Sendable {
    public let socketPath: String
    /// Seconds to wait for a whole answer (not used for streams).
    public var timeoutSeconds: Int

    public init(socketPath: String, timeoutSeconds: Int = 30) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    /// An answer: the status and the body.
    public struct Response: Sendable {
        public var status: Int
        public var body: Data
    }

    /// Sends one request and returns the whole answer.
    /// - Throws: ``FerryError`` with ``ErrorCode/networkDisconnected`` when the socket cannot be reached.
    public func send(_ method: String, _ path: String, body: Data? = nil) throws(FerryError) -> Response {
        let sink = BodySink(onChunk: nil)
        let status = try perform(method, path, body: body, sink: sink, stream: false)
        return Response(status: status, body: sink.data)
    }

    /// Sends a request whose answer is a stream of lines; calls `onLine` for each until it returns
    /// false or the server ends the stream.
    /// - Returns: the HTTP status of the answer.
    public func stream(_ path: String, onLine: @escaping (Data) -> Bool) throws(FerryError) -> Int {
        let sink = BodySink(onChunk: onLine)
        return try perform("GET", path, body: nil, sink: sink, stream: true)
    }

    private func perform(_ method: String, _ path: String, body: Data?, sink: BodySink, stream: Bool) throws(FerryError) -> Int {
        guard CurlGlobal.ensureInitialised(), let handle = curl_easy_init() else {
            throw FerryError(code: .transportError, context: .transport, message: "libcurl could not create a handle")
        }
        defer { curl_easy_cleanup(handle) }
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { if let headers { curl_slist_free_all(headers) } }
        let userdata = Unmanaged.passUnretained(sink).toOpaque()
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }
        try checkOption(ferry_curl_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, socketPath), "UNIX_SOCKET_PATH")
        try checkOption(ferry_curl_setopt_string(handle, CURLOPT_URL, "http://localhost" + path), "URL")
        try checkOption(ferry_curl_setopt_ptr(handle, CURLOPT_ERRORBUFFER, errorBuffer), "ERRORBUFFER")
        try checkOption(ferry_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1), "NOSIGNAL")
        try checkOption(ferry_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method), "CUSTOMREQUEST")
        try checkOption(ferry_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, 5), "CONNECTTIMEOUT")
        if !stream { try checkOption(ferry_curl_setopt_long(handle, CURLOPT_TIMEOUT, timeoutSeconds), "TIMEOUT") }
        headers = curl_slist_append(headers, "Accept: application/json")
        if let body {
            headers = curl_slist_append(headers, "Content-Type: application/json")
            sink.requestBody = body
            try checkOption(ferry_curl_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)), "POSTFIELDSIZE")
            try checkOption(sink.requestBody.withUnsafeBytes { raw in
                ferry_curl_setopt_ptr(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress))
            }, "COPYPOSTFIELDS")
        }
        if let headers { try checkOption(ferry_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headers), "HTTPHEADER") }
        try checkOption(ferry_curl_set_write_callback(handle, localBodyCallback, userdata), "WRITEFUNCTION")
        let code = curl_easy_perform(handle)
        var status = 0
        _ = ferry_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        if code != CURLE_OK && !(code == CURLE_WRITE_ERROR && sink.stoppedByCaller) {
            if status > 0 && stream { return status }
            var error = ferryError(forCurlCode: code, detail: String(cString: errorBuffer))
            if code == CURLE_COULDNT_CONNECT {
                error.message = "cannot reach the agent at \(socketPath): is ferryd running? (\(error.message))"
            }
            throw error
        }
        return status
    }
}

/// Collects an answer's body, or splits a stream into lines.
private final class BodySink {
    var data = Data()
    var requestBody = Data()
    let onChunk: ((Data) -> Bool)?
    var stoppedByCaller = false

    init(onChunk: ((Data) -> Bool)?) { self.onChunk = onChunk }

    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        data.append(contentsOf: bytes)
        guard let onChunk else { return true }
        while let newline = data.firstIndex(of: 0x0A) {
            let line = data[data.startIndex..<newline]
            data.removeSubrange(data.startIndex...newline)
            if !line.isEmpty && !onChunk(Data(line)) {
                stoppedByCaller = true
                return false
            }
        }
        return true
    }
}

private let localBodyCallback: ferry_curl_data_cb = { pointer, size, count, userdata in
    guard let userdata else { return 0 }
    let sink = Unmanaged<BodySink>.fromOpaque(userdata).takeUnretainedValue()
    let total = size * count
    guard total > 0, let pointer else { return total }
    return sink.receive(UnsafeRawBufferPointer(start: pointer, count: total)) ? total : 0
}
