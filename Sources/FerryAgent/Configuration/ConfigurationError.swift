/// Why a configuration could not be used: the file, the line and column, the dotted key
/// and what is wrong with it.
///
/// Its ``description`` reads like a compiler diagnostic, for example
/// `ferryd.yaml:12:3: transfers.max_connections: must be an integer between 1 and 1024, got 'lots'`.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration file as it was named (or `command line` for a bad option).
    public var file: String
    /// The line of the offending value, counted from 1, when it is known.
    public var line: Int?
    /// The column of the offending value, counted from 1 in Unicode scalars, when it is known.
    public var column: Int?
    /// The dotted key, such as `transfers.max_connections` or `plugins[1].role`, when one applies.
    public var key: String?
    /// What is wrong, and what would be right.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - file: the configuration file as it was named.
    ///   - line: the line of the offending value, from 1.
    ///   - column: the column of the offending value, from 1.
    ///   - key: the dotted key.
    ///   - message: what is wrong.
    public init(file: String, line: Int? = nil, column: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    /// `file:line:column: key: message`, leaving out the parts that are unknown.
    public var description: String {
        var location = file
        if let line {
            location += ":\(line)"
            if let column { location += ":\(column)" }
        }
        if let key { return "\(location): \(key): \(message)" }
        return "\(location): \(message)"
    }
}

/// Where a configuration value came from, for `ferryd --check-config`.
public enum ValueSource: Sendable, Equatable, CustomStringConvertible {
    /// The value built into the agent.
    case builtInDefault
    /// A line of a configuration file.
    case file(path: String, line: Int)
    /// An option given to `ferryd`.
    case commandLine
    /// A default derived from an environment variable, such as `XDG_RUNTIME_DIR`.
    case environment(String)

    /// `default`, `ferryd.yaml:7`, `command line` or `$XDG_RUNTIME_DIR`.
    public var description: String {
        switch self {
        case .builtInDefault: "default"
        case .file(let path, let line): "\(path):\(line)"
        case .commandLine: "command line"
        case .environment(let name): "$\(name)"
        }
    }
}
