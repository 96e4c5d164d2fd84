import CCurl
import CCurlShim
import FerryCore

/// libcurl's process-wide initialisation, done once before any handle exists.
enum CurlGlobal {
    private static let initialised: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
    }()

    static func ensureInitialised() -> Bool { initialised }
}

/// Turns a failed `curl_easy_setopt` into a thrown error; the one funnel for setopt results.
func checkOption(_ rc: CURLcode, _ option: String) throws(FerryError) {
    guard rc == CURLE_OK else {
        throw FerryError(code: .transportError, context: .transport,
                         message: "libcurl refused option \(option): \(String(cString: curl_easy_strerror(rc)))")
    }
}

/// Maps a libcurl result to Ferry's error codes, deciding what is transient.
///
/// - Parameters:
///   - code: the `CURLcode` of the finished transfer.
///   - detail: the text of the handle's error buffer, if any.
func ferryError(forCurlCode code: CURLcode, detail: String) -> FerryError {
    let text = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
    var error = classify(code, message: "\(text) (curl error \(code.rawValue))")
    error.underlying = UnderlyingError(library: "curl", code: Int32(code.rawValue))
    return error
}

private func classify(_ code: CURLcode, message: String) -> FerryError {
    switch code {
    case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY,
         CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM:
        return FerryError(code: .networkDisconnected, context: .transport, message: message)
    case CURLE_PARTIAL_FILE:
        return FerryError(code: .truncatedBody, context: .transport, message: message)
    case CURLE_OPERATION_TIMEDOUT:
        return FerryError(code: .timeout, context: .transport, message: message)
    case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
         CURLE_SSL_CACERT_BADFILE, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
         CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE:
        return FerryError(code: .tlsError, context: .transport, message: message)
    case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT:
        return FerryError(code: .unsupportedURL, context: .remoteFile, message: message)
    case CURLE_FILE_COULDNT_READ_FILE, CURLE_REMOTE_FILE_NOT_FOUND:
        return FerryError(code: .httpError(404), context: .remoteFile, isTransient: false, message: message)
    case CURLE_RANGE_ERROR, CURLE_BAD_DOWNLOAD_RESUME:
        return FerryError(code: .insufficientRangeSupport, context: .remoteFile, message: message)
    case CURLE_TOO_MANY_REDIRECTS:
        return FerryError(code: .transportError, context: .remoteFile, message: message)
    case CURLE_FILESIZE_EXCEEDED:
        return FerryError(code: .fileTooLarge, context: .remoteFile, message: message)
    default:
        // Anything else libcurl reports is taken as passing: tried again after the delay.
        return FerryError(code: .transportError, context: .transport, isTransient: true, message: message)
    }
}
