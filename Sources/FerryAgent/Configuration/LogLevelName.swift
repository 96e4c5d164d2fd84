import Logging

/// The names `logging.level` and `ferryd --log-level` take: swift-log's levels, in any case.
enum LogLevelName {
    /// `one of trace, debug, info, notice, warning, error, critical`.
    static let expected = "one of " + Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")

    /// Reads a level's name.
    /// - Parameters:
    ///   - text: the name as given.
    ///   - refuse: makes the error for a name that is no level from its message, which says what
    ///     was expected and what was given; the caller adds where the name came from.
    /// - Throws: what `refuse` makes.
    static func level(_ text: String, refuse: (String) -> ConfigurationError) throws(ConfigurationError) -> Logger.Level {
        guard let level = Logger.Level(rawValue: text.lowercased()) else { throw refuse("must be \(expected), got '\(text)'") }
        return level
    }
}
