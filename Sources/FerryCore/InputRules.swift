import Foundation

/// The rules a caller's input must follow before anything is looked up: URLs, local paths,
/// mirror lists and custom headers. Pure functions; the checks that need the file system
/// (as the job's owner) are the engine's.
public enum InputRules {
    /// Checks that `url` is one Ferry fetches: `http` or `https` with a host, or `file` with
    /// an absolute path on this machine.
    /// - Parameter kind: how messages name the URL (`"mirror"`); `nil` for a file's own URL.
    /// - Throws: ``ErrorCode/unsupportedURL`` naming the URL and what is wrong with it.
    public static func checkRemoteURL(_ url: String, kind: String? = nil) throws(FerryError) {
        let named = kind.map { "\($0) " } ?? ""
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased() else {
            throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "not a URL: \(named)\(url)")
        }
        switch scheme {
        case "http", "https":
            guard let host = parsed.host, !host.isEmpty else {
                throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "the \(named)URL has no host: \(url)")
            }
        case "file":
            guard parsed.path.hasPrefix("/") else {
                throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "a file \(named)URL needs an absolute path: \(url)")
            }
            guard (parsed.host ?? "").isEmpty || parsed.host?.lowercased() == "localhost" else {
                throw FerryError(code: .unsupportedURL, context: .remoteFile, message: "a file \(named)URL names this machine only (file:///path), not '\(parsed.host!)': \(url)")
            }
        default:
            throw FerryError(code: .unsupportedURL, context: .remoteFile,
                             message: "unsupported URL scheme '\(scheme)' in \(named)\(url); use http, https or file")
        }
    }

    /// A mirror URL is one word (the `mirrors` property separates them with spaces) and a
    /// URL Ferry fetches.
    /// - Throws: ``ErrorCode/invalidArgument`` for an empty URL or one with spaces;
    ///   ``ErrorCode/unsupportedURL`` as ``checkRemoteURL(_:kind:)``.
    public static func checkMirrorURL(_ url: String) throws(FerryError) {
        guard !url.isEmpty, !url.contains(where: \.isWhitespace) else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "a mirror URL may not be empty or contain spaces: '\(url)'")
        }
        try checkRemoteURL(url, kind: "mirror")
    }

    /// A destination names a file by an absolute path, without `..`.
    /// - Throws: ``ErrorCode/invalidArgument`` naming the path.
    public static func checkLocalPath(_ path: String) throws(FerryError) {
        guard path.hasPrefix("/") else {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "the local path must be absolute: \(path)")
        }
        guard !path.hasSuffix("/"), !path.split(separator: "/").contains("..") else {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "the local path must name a file, without '..': \(path)")
        }
    }

    /// BITS' rules for custom headers: `Name: value` lines, 16 KiB in all, no line breaks inside.
    /// - Throws: ``ErrorCode/invalidArgument`` naming the first bad line, or the total.
    public static func checkHeaders(_ headers: [String]) throws(FerryError) {
        var total = 0
        for header in headers {
            total += header.utf8.count + 2
            guard let colon = header.firstIndex(of: ":"), colon != header.startIndex,
                  !header.contains("\r"), !header.contains("\n"),
                  header[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw FerryError(code: .invalidArgument, context: .queueManager, message: "not a header line 'Name: value': \(header.prefix(80))")
            }
        }
        guard total <= 16_384 else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "custom headers take \(total) bytes; at most 16384 are allowed")
        }
    }

    /// A job's display name: 1 to 256 characters.
    public static func checkDisplayName(_ name: String) throws(FerryError) {
        guard !name.isEmpty, name.count <= 256 else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "displayName must have 1 to 256 characters")
        }
    }
}
