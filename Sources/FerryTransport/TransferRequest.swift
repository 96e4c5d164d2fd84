import FerryCore

/// What one transfer asks a server for.
public struct TransferRequest: Sendable, Equatable {
    /// `http`, `https` or `file` URL.
    public var url: String
    /// The first byte wanted; above zero the request asks for a range.
    public var offset: UInt64
    /// The validator for `If-Range` (a strong ETag or an HTTP date); sent only with a range.
    public var ifRange: String?
    /// Extra request headers, each `Name: value`.
    public var headers: [String]
    /// Seconds allowed to establish a connection.
    public var connectTimeoutSeconds: Int
    /// Seconds without a single byte after which the transfer counts as stalled.
    public var stallTimeoutSeconds: Int
    /// Caps this transfer's receive rate, in bytes per second; 0 leaves it uncapped.
    public var maxBytesPerSecond: Int64
    /// Whether an `https` URL may redirect to plain `http`.
    public var allowsInsecureRedirect: Bool
    /// PEM certificate authorities to trust (libcurl's CAINFO_BLOB, in place of its bundle),
    /// as bytes read by the engine as the job's owner: libcurl never opens a path for a job.
    /// libcurl's CA directory, the system's on Debian, stays trusted. Verification is always on.
    public var caData: String?
    /// A public key the server must present (libcurl's PINNEDPUBLICKEY, `sha256//…`).
    public var pinnedPublicKey: String?

    public init(
        url: String, offset: UInt64 = 0, ifRange: String? = nil, headers: [String] = [],
        connectTimeoutSeconds: Int = 30, stallTimeoutSeconds: Int = 60, maxBytesPerSecond: Int64 = 0,
        allowsInsecureRedirect: Bool = false
    ) {
        self.url = url
        self.offset = offset
        self.ifRange = ifRange
        self.headers = headers
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.stallTimeoutSeconds = stallTimeoutSeconds
        self.maxBytesPerSecond = maxBytesPerSecond
        self.allowsInsecureRedirect = allowsInsecureRedirect
    }

    /// True for `file:` URLs: the engine reads those itself, never libcurl.
    public var isLocalFile: Bool { url.lowercased().hasPrefix("file:") }
}

/// The final response of a transfer, after redirects and informational answers.
public struct TransferResponse: Sendable, Equatable {
    /// The HTTP status.
    public var status: Int
    /// Header fields with lowercased names; for a repeated name, the last value.
    public var headers: [String: String]

    public init(status: Int, headers: [String: String]) {
        self.status = status
        self.headers = headers
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    public var contentLength: UInt64? { header("content-length").flatMap { UInt64($0.trimmingSpaces) } }
    public var etag: String? { header("etag") }
    public var lastModified: String? { header("last-modified") }
    /// A strong ETag, usable in `If-Range`; weak ones (`W/"…"`) are not.
    public var strongETag: String? {
        guard let etag, !etag.hasPrefix("W/"), etag.hasPrefix("\"") else { return nil }
        return etag
    }

    /// The parsed `Content-Range: bytes first-last/total` header, if well formed.
    public var contentRange: ContentRange? { header("content-range").flatMap(ContentRange.init(header:)) }

    /// `Retry-After` in seconds: a delay, or an HTTP date turned into a delay from `now`.
    public func retryAfterSeconds(now: Double) -> Double? {
        guard let value = header("retry-after")?.trimmingSpaces else { return nil }
        if let seconds = Double(value), seconds >= 0 { return seconds }
        guard let date = HTTPDate.parse(value) else { return nil }
        return max(0, date - now)
    }
}

/// A `Content-Range` of a 206 answer.
public struct ContentRange: Sendable, Equatable {
    public var first: UInt64
    public var last: UInt64
    /// The whole file's size; `nil` for `*`.
    public var total: UInt64?

    public init(first: UInt64, last: UInt64, total: UInt64?) {
        self.first = first
        self.last = last
        self.total = total
    }

    /// Parses `bytes first-last/total` (total may be `*`).
    public init?(header: String) {
        let text = header.trimmingSpaces
        guard text.hasPrefix("bytes ") else { return nil }
        let spec = text.dropFirst("bytes ".count)
        let halves = spec.split(separator: "/", maxSplits: 1)
        guard halves.count == 2 else { return nil }
        let bounds = halves[0].split(separator: "-", maxSplits: 1)
        guard bounds.count == 2, let first = UInt64(bounds[0]), let last = UInt64(bounds[1]), first <= last else { return nil }
        self.first = first
        self.last = last
        if halves[1] == "*" {
            total = nil
        } else if let total = UInt64(halves[1]), total > last {
            self.total = total
        } else {
            return nil
        }
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}
