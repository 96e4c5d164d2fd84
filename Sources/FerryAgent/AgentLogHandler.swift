import Foundation
import Logging

/// Log lines on standard error, in the form journald understands.
///
/// Under systemd (`JOURNAL_STREAM` set) each line starts with its syslog priority
/// (`<3>` for errors, …) and carries no timestamp, since the journal adds one;
/// elsewhere lines start with an ISO 8601 time and the level.
public struct AgentLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let journal: Bool

    public init(label: String, level: Logger.Level, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.label = label
        self.logLevel = level
        self.journal = environment["JOURNAL_STREAM"] != nil
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let rendered = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\(quoted("\($0.value)"))" }.joined(separator: " ")
        let text = "\(label): \(event.message)\(rendered.isEmpty ? "" : " " + rendered)"
        let line = journal
            ? "<\(Self.priority(event.level))>\(text)\n"
            : "\(Date().formatted(.iso8601)) \(event.level) \(text)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    private func quoted(_ value: String) -> String {
        value.contains(" ") || value.isEmpty ? "\"\(value.replacingOccurrences(of: "\"", with: "\\\""))\"" : value
    }

    /// syslog priorities as sd-daemon(3) reads them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
