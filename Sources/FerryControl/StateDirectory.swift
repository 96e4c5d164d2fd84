import Foundation

/// Where Ferry keeps its state when no path is given.
public enum StateDirectory {
    /// `$XDG_STATE_HOME/ferry` (or `~/.local/state/ferry`) for a user; `/var/lib/ferry` for root.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if getuid() == 0 { return "/var/lib/ferry" }
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/ferry" }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + "/.local/state/ferry"
    }

    /// A sentence for an error from ``ensure(_:)``.
    public static func explain(_ error: any Error) -> String {
        let nsError = error as NSError
        if let text = nsError.userInfo[NSLocalizedDescriptionKey] as? String, !text.contains("NSCocoaErrorDomain") { return text }
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return nsError.localizedDescription
    }

    /// Creates `path` and its parents with mode 0700 when missing.
    /// - Throws: an error naming the path when it cannot be created or is not a directory.
    public static func ensure(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw CocoaError(.fileWriteFileExists, userInfo: [NSFilePathErrorKey: path, NSLocalizedDescriptionKey: "\(path) exists and is not a directory"])
            }
            return
        }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
}
