/// Where `ferryd` listens when neither its configuration nor its command line names a socket,
/// which is where `ferry` looks for it too. The first that applies:
/// - `/run/ferry/ferryd.sock` for root;
/// - `$XDG_RUNTIME_DIR/ferry/ferryd.sock` when that variable is an absolute path;
/// - `ferryd.sock` in the agent's state directory.
public enum DefaultSocket: Sendable, Equatable {
    /// root's socket, `/run/ferry/ferryd.sock`.
    case root
    /// `ferry/ferryd.sock` in this runtime directory (`$XDG_RUNTIME_DIR`, without trailing slashes).
    case runtimeDirectory(String)
    /// `ferryd.sock` in this state directory.
    case stateDirectory(String)

    /// The default socket of an agent run by root or by a user.
    /// - Parameters:
    ///   - isRoot: whether the agent runs as root.
    ///   - environment: the agent's environment, for `XDG_RUNTIME_DIR` (a relative value is ignored).
    ///   - stateDirectory: the agent's state directory.
    public init(isRoot: Bool, environment: [String: String], stateDirectory: String) {
        if isRoot {
            self = .root
        } else if var runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") {
            while runtime.count > 1, runtime.hasSuffix("/") { runtime.removeLast() }
            self = .runtimeDirectory(runtime)
        } else {
            self = .stateDirectory(stateDirectory)
        }
    }

    /// The socket's path.
    public var path: String {
        switch self {
        case .root: "/run/ferry/ferryd.sock"
        case .runtimeDirectory(let directory): directory + "/ferry/ferryd.sock"
        case .stateDirectory(let directory): directory.hasSuffix("/") ? directory + "ferryd.sock" : directory + "/ferryd.sock"
        }
    }
}
