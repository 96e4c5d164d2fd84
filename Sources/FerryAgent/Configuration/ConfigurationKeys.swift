import FerryEngine
import FerryPluginHost
import Logging
import Yams

/// One key of the configuration file: how to read it into an ``AgentConfiguration`` and how
/// to print its effective value. ``all`` is the single table that drives parsing, the list of
/// known keys in errors, and ``AgentConfiguration/describe()``.
struct ConfigurationKey: Sendable {
    typealias Reader = @Sendable (Node, String, ConfigurationReader, inout AgentConfiguration) throws(ConfigurationError) -> Void

    /// The dotted key: `transfers.max_connections`, or `plugins` for a top-level key.
    let path: String
    let read: Reader
    let show: @Sendable (AgentConfiguration) -> String

    /// `transfers` for `transfers.max_connections`; `nil` for a top-level key.
    var section: String? {
        guard let dot = path.firstIndex(of: ".") else { return nil }
        return String(path[..<dot])
    }

    /// `max_connections` for `transfers.max_connections`.
    var name: String {
        guard let dot = path.firstIndex(of: ".") else { return path }
        return String(path[path.index(after: dot)...])
    }
}

// MARK: - The table

extension ConfigurationKey {
    /// Every key, in file and ``AgentConfiguration/describe()`` order.
    static let all: [ConfigurationKey] = [
        ConfigurationKey(path: "paths.state_dir", read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration.stateDirectory = try reader.absolutePath(
                node, key: key, rule: "must be an absolute path (state dirs must be absolute)")
        }, show: { $0.stateDirectory }),
        ConfigurationKey(path: "paths.socket", read: { node, key, reader, configuration throws(ConfigurationError) in
            let path = try reader.absolutePath(node, key: key, rule: "must be an absolute path (clients find the socket by its full path)")
            if let problem = socketPathProblem(path) { throw reader.error(at: node, key: key, problem) }
            configuration.socketPath = path
        }, show: { $0.socketPath }),
        ConfigurationKey(path: "paths.socket_mode", read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration.socketMode = try socketMode(node, key: key, reader: reader)
        }, show: { ConfigurationFormat.octal($0.socketMode) }),
        ConfigurationKey(path: "paths.socket_group", read: { node, key, reader, configuration throws(ConfigurationError) in
            if ConfigurationReader.isNull(node) { configuration.socketGroup = nil; return }
            let group = try reader.string(node, key: key, expected: "a group name")
            guard group.count <= 32, let first = group.first, first.isASCII, first.isLetter || first.isNumber || first == "_",
                  group.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) })
            else {
                throw reader.error(at: node, key: key, "must be a group name (letters, digits, '_', '.', '-'), got '\(group)'")
            }
            configuration.socketGroup = group
        }, show: { $0.socketGroup ?? "null" }),
        ConfigurationKey(path: "paths.plugin_dirs", read: { node, key, reader, configuration throws(ConfigurationError) in
            var directories: [String] = []
            for (index, item) in try reader.sequence(node, key: key, expected: "a list of absolute directory paths").enumerated() {
                directories.append(try reader.absolutePath(
                    item, key: "\(key)[\(index)]", rule: "must be an absolute path (plugin directories must be absolute)"))
            }
            configuration.pluginDirectories = directories
        }, show: { ConfigurationFormat.list($0.engine.pluginDirectories.map(ConfigurationFormat.yamlString)) }),

        ConfigurationKey(path: "logging.level", read: { node, key, reader, configuration throws(ConfigurationError) in
            let text = try reader.scalarText(node, key: key, expected: LogLevelName.expected)
            configuration.logLevel = try LogLevelName.level(text) { reader.error(at: node, key: key, $0) }
        }, show: { $0.logLevel.rawValue }),

        .integer("transfers.max_connections", 1...1024, \.engine.maxConnections),
        .integer("transfers.max_connections_per_host", 1...256, \.engine.maxConnectionsPerHost),
        .integer("transfers.max_parallel_files_per_job", 1...1024, \.engine.maxParallelFilesPerJob),
        .integer("transfers.max_active_background_jobs", 1...1024, \.engine.maxActiveBackgroundJobs),
        .seconds("transfers.time_slice_sec", 0.1...86_400, \.engine.timeSliceSeconds),
        .wholeSeconds("transfers.connect_timeout_sec", 1...3_600, \.engine.connectTimeoutSeconds),
        .wholeSeconds("transfers.stall_timeout_sec", 1...86_400, \.engine.stallTimeoutSeconds),
        ConfigurationKey(path: "transfers.max_file_bytes", read: { node, key, reader, configuration throws(ConfigurationError) in
            let bytes = try reader.integer(node, key: key, in: 0...Int.max, unit: "bytes, 0 for no limit")
            configuration.engine.maxFileBytes = bytes == 0 ? nil : UInt64(bytes)
        }, show: { "\($0.engine.maxFileBytes ?? 0)" }),

        .seconds("checkpoints.interval_sec", 0.05...3_600, \.engine.checkpointIntervalSeconds),
        .integer("checkpoints.bytes", 65_536...(1 << 40), \.engine.checkpointBytes),

        .seconds("jobs.min_retry_delay_sec", 1...Double.greatestFiniteMagnitude, \.engine.defaultMinimumRetryDelay,
                 note: "1 second is Ferry's floor (BITS raises anything under 5 s to 5 s); Ferry refuses a smaller value rather than silently raising it"),
        .seconds("jobs.no_progress_timeout_sec", 0...Double.greatestFiniteMagnitude, \.engine.defaultNoProgressTimeout),
        .seconds("jobs.max_download_time_sec", 0...Double.greatestFiniteMagnitude, \.engine.maxDownloadTimeSeconds),
        .seconds("jobs.inactivity_timeout_sec", 0...Double.greatestFiniteMagnitude, \.engine.jobInactivityTimeoutSeconds),
        .integer("jobs.max_policy_resumes", 0...1_000_000, \.engine.maxPolicyResumes),
        .integer("plugin_host.crash_limit", 1...1_000, \.engine.pluginCrashLimit),
        ConfigurationKey(path: "jobs.modification_min_interval_ms", read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration.modificationMinimumInterval = Double(try reader.integer(node, key: key, in: 0...60_000, unit: "milliseconds")) / 1000
        }, show: { "\(Int(($0.modificationMinimumInterval * 1000).rounded()))" }),

        .integer("bandwidth.background_bytes_per_sec", 0...Int.max, \.engine.backgroundBytesPerSecond),
        ConfigurationKey(path: "bandwidth.schedule", read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration.engine.bandwidthSchedule = try schedule(node, key: key, reader: reader)
        }, show: { ConfigurationFormat.list($0.engine.bandwidthSchedule.map(ConfigurationFormat.window)) }),

        .integer("quotas.jobs_per_user", 0...Int.max, \.quotas.jobsPerUser),
        .integer("quotas.files_per_job", 0...Int.max, \.quotas.filesPerJob),

        .integer("api.max_request_bytes", 1_024...(1 << 30), \.maxRequestBytes),
        .integer("api.max_connections_per_user", 1...65_536, \.limits.connectionsPerUser),
        .integer("api.max_connections", 1...1_000_000, \.limits.connections),
        .seconds("api.request_header_timeout_sec", 0.5...3_600, \.limits.requestHeaderTimeout),
        .integer("api.max_event_streams_per_user", 1...65_536, \.limits.eventStreamsPerUser),
        .integer("api.max_event_streams", 1...1_000_000, \.limits.eventStreams),
        .integer("api.event_buffer_bytes", 65_536...(1 << 30), \.limits.eventBufferBytes),

        .seconds("notifications.command_timeout_sec", 1...86_400, \.limits.commandTimeout),
        .integer("notifications.max_commands_per_user", 1...65_536, \.limits.commandsPerUser),
        .integer("notifications.max_commands", 1...65_536, \.limits.commands),

        ConfigurationKey(path: "plugins", read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration.plugins = try plugins(node, key: key, reader: reader)
        }, show: { ConfigurationFormat.list($0.plugins.map(ConfigurationFormat.plugin)) }),
    ]

    /// The table by dotted key.
    static let byPath: [String: ConfigurationKey] = Dictionary(uniqueKeysWithValues: all.map { ($0.path, $0) })

    /// The sections, in file order: `paths`, `logging`, `transfers`, …
    static let sections: [String] = all.compactMap(\.section).reduce(into: []) { if !$0.contains($1) { $0.append($1) } }

    /// What the top level may hold: the sections, then the top-level keys (`plugins`).
    static let topLevelNames: [String] = all.map { $0.section ?? $0.path }.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
}

// MARK: - Shapes shared by many keys

extension ConfigurationKey {
    /// A decimal integer within `range`.
    static func integer<Value: BinaryInteger & Sendable>(
        _ path: String, _ range: ClosedRange<Int>, _ field: WritableKeyPath<AgentConfiguration, Value> & Sendable
    ) -> ConfigurationKey {
        ConfigurationKey(path: path, read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration[keyPath: field] = Value(try reader.integer(node, key: key, in: range))
        }, show: { "\($0[keyPath: field])" })
    }

    /// A number of seconds, integer or decimal, within `range`.
    static func seconds(
        _ path: String, _ range: ClosedRange<Double>, _ field: WritableKeyPath<AgentConfiguration, Double> & Sendable,
        note: String? = nil
    ) -> ConfigurationKey {
        ConfigurationKey(path: path, read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration[keyPath: field] = try reader.seconds(node, key: key, in: range, note: note)
        }, show: { ConfigurationFormat.number($0[keyPath: field]) })
    }

    /// A number of seconds for a tunable counted in whole seconds: a fraction is rounded up.
    static func wholeSeconds(
        _ path: String, _ range: ClosedRange<Double>, _ field: WritableKeyPath<AgentConfiguration, Int> & Sendable
    ) -> ConfigurationKey {
        ConfigurationKey(path: path, read: { node, key, reader, configuration throws(ConfigurationError) in
            configuration[keyPath: field] = Int(try reader.seconds(node, key: key, in: range).rounded(.up))
        }, show: { "\($0[keyPath: field])" })
    }
}

// MARK: - Keys with a shape of their own

extension ConfigurationKey {
    /// Why `path` cannot be a Unix socket address, or `nil` when it can.
    static func socketPathProblem(_ path: String) -> String? {
        let limit = 107  // sun_path holds 108 bytes, the last one a NUL
        return path.utf8.count > limit
            ? "is \(path.utf8.count) bytes long, but a Unix socket path holds at most \(limit)" : nil
    }

    /// An octal mode such as `"0666"` or `"0660"`, at most `0777`.
    static func socketMode(_ node: Node, key: String, reader: ConfigurationReader) throws(ConfigurationError) -> UInt16 {
        let expected = "an octal mode in quotes such as \"0666\" or \"0660\""
        let text = try reader.scalarText(node, key: key, expected: expected)
        let digits = text.hasPrefix("0o") ? String(text.dropFirst(2)) : text
        guard (3...4).contains(digits.count), digits.allSatisfy({ ("0"..."7").contains($0) }),
              let mode = UInt16(digits, radix: 8)
        else { throw reader.error(at: node, key: key, "must be \(expected) (digits 0 to 7), got '\(text)'") }
        guard mode <= 0o777 else {
            throw reader.error(at: node, key: key, "must be at most \"0777\": setuid, setgid and sticky bits mean nothing on a socket, got '\(text)'")
        }
        return mode
    }

    /// `bandwidth.schedule`: a list of `{ from: "HH:MM", to: "HH:MM", bytes_per_sec: N }`.
    static func schedule(_ node: Node, key: String, reader: ConfigurationReader) throws(ConfigurationError) -> [BandwidthWindow] {
        let shape = "{ from: \"08:00\", to: \"18:00\", bytes_per_sec: 1048576 }"
        var windows: [BandwidthWindow] = []
        for (index, item) in try reader.sequence(node, key: key, expected: "a list of windows such as \(shape)").enumerated() {
            let itemKey = "\(key)[\(index)]"
            guard let fields = try reader.mapping(item, key: itemKey, expected: "a window such as \(shape)") else {
                throw reader.error(at: item, key: itemKey, "must be a window such as \(shape), got no value")
            }
            var start: Int?, end: Int?, rate: Int64?
            for (fieldNode, value) in fields {
                let field = try reader.keyName(fieldNode, parent: itemKey)
                let dotted = "\(itemKey).\(field)"
                switch field {
                case "from": start = try minute(value, key: dotted, reader: reader, endOfDay: false)
                case "to": end = try minute(value, key: dotted, reader: reader, endOfDay: true)
                case "bytes_per_sec": rate = Int64(try reader.integer(value, key: dotted, in: 0...Int.max, unit: "bytes per second, 0 for uncapped"))
                default:
                    throw reader.unknownKey(field, at: fieldNode, dotted: dotted, in: itemKey, known: ["from", "to", "bytes_per_sec"])
                }
            }
            guard let start, let end, let rate else {
                let missing = [("from", start == nil), ("to", end == nil), ("bytes_per_sec", rate == nil)].filter(\.1).map(\.0)
                throw reader.error(at: item, key: itemKey, "a window needs from, to and bytes_per_sec; missing \(missing.joined(separator: ", "))")
            }
            guard start != end % 1440 else {
                throw reader.error(at: item, key: itemKey, "a window must not be empty: from and to are the same time")
            }
            windows.append(BandwidthWindow(startMinute: start, endMinute: end, bytesPerSecond: rate))
        }
        return windows
    }

    /// A time of day `H:MM` or `HH:MM`, as minutes after midnight; `24:00` only as an end.
    static func minute(_ node: Node, key: String, reader: ConfigurationReader, endOfDay: Bool) throws(ConfigurationError) -> Int {
        let latest = endOfDay ? "24:00" : "23:59"
        let expected = "a time of day \"HH:MM\" between 00:00 and \(latest)"
        let text = try reader.scalarText(node, key: key, expected: expected)
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...2).contains(parts[0].count), parts[1].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let hour = Int(parts[0]), let minute = Int(parts[1]),
              minute < 60, hour < 24 || (endOfDay && hour == 24 && minute == 0)
        else { throw reader.error(at: node, key: key, "must be \(expected), got '\(text)'") }
        return hour * 60 + minute
    }

    /// `plugins`: the list of plugins to load, in order.
    static func plugins(_ node: Node, key: String, reader: ConfigurationReader) throws(ConfigurationError) -> [PluginEntry] {
        let fieldNames = ["name", "path", "role", "applies_to", "settings", "isolation"]
        var entries: [PluginEntry] = []
        for (index, item) in try reader.sequence(node, key: key, expected: "a list of plugins (write [] to load none)").enumerated() {
            let itemKey = "\(key)[\(index)]"
            let shape = "a plugin such as { name: sha256 } or { path: /usr/lib/ferry/plugins/libferry-sha256.so }"
            guard let fields = try reader.mapping(item, key: itemKey, expected: shape) else {
                throw reader.error(at: item, key: itemKey, "must be \(shape), got no value")
            }
            var reference: String?, referenceCount = 0
            var role: PluginEntry.Role?
            var appliesTo = PluginSpec.Applicability.allJobs
            var settings: [(key: String, value: String)] = []
            var isolation = PluginSpec.Isolation.inProcess
            for (fieldNode, value) in fields {
                let field = try reader.keyName(fieldNode, parent: itemKey)
                let dotted = "\(itemKey).\(field)"
                switch field {
                case "name":
                    let name = try reader.string(value, key: dotted, expected: "a plugin name")
                    guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._+-".contains($0)) }), !name.hasPrefix(".") else {
                        throw reader.error(at: value, key: dotted, "must be a bare plugin name such as sha256 (letters, digits, '.', '_', '+', '-'; give a file with path:), got '\(name)'")
                    }
                    reference = name
                    referenceCount += 1
                case "path":
                    reference = try reader.absolutePath(value, key: dotted, rule: "must be an absolute path (plugin paths must be absolute; use name: for a plugin in the plugin directories)")
                    referenceCount += 1
                case "role":
                    let known = PluginEntry.Role.allCases.map(\.rawValue)
                    let text = try reader.scalarText(value, key: dotted, expected: "one of \(known.joined(separator: ", "))")
                    guard let parsed = PluginEntry.Role(rawValue: text) else {
                        throw reader.error(at: value, key: dotted, "unknown role '\(text)'; known roles: \(known.joined(separator: ", "))")
                    }
                    role = parsed
                case "applies_to":
                    appliesTo = try applicability(value, key: dotted, reader: reader)
                case "isolation":
                    let known = PluginSpec.Isolation.allCases.map(\.rawValue)
                    let text = try reader.scalarText(value, key: dotted, expected: "one of \(known.joined(separator: ", "))")
                    guard let parsed = PluginSpec.Isolation(rawValue: text) else {
                        throw reader.error(at: value, key: dotted, "unknown isolation '\(text)'; known: \(known.joined(separator: ", "))")
                    }
                    isolation = parsed
                case "settings":
                    guard let pairs = try reader.mapping(value, key: dotted, expected: "a mapping of setting names to values") else { continue }
                    settings = []
                    for (nameNode, settingValue) in pairs {
                        let name = try reader.keyName(nameNode, parent: dotted)
                        settings.append((name, try reader.settingValue(settingValue, key: "\(dotted).\(name)")))
                    }
                default:
                    throw reader.unknownKey(field, at: fieldNode, dotted: dotted, in: itemKey, known: fieldNames)
                }
            }
            guard referenceCount == 1, let reference else {
                throw reader.error(at: item, key: itemKey, referenceCount == 0
                    ? "needs a name (a plugin found as libferry-<name>.so in the plugin directories) or a path (a shared object)"
                    : "give either name or path, not both")
            }
            entries.append(PluginEntry(spec: PluginSpec(reference: reference, settings: settings, appliesTo: appliesTo, isolation: isolation), role: role))
        }
        return entries
    }

    /// `applies_to`: `all`, or `{ property: NAME, value: VALUE }` (value optional).
    static func applicability(_ node: Node, key: String, reader: ConfigurationReader) throws(ConfigurationError) -> PluginSpec.Applicability {
        let expected = "'all' or a mapping { property: NAME, value: VALUE } (value optional)"
        switch node {
        case .scalar(let scalar) where scalar.string == "all" && !ConfigurationReader.isNull(node):
            return .allJobs
        case .mapping(let fields):
            var property: String?, value: String?
            for (fieldNode, fieldValue) in fields {
                let field = try reader.keyName(fieldNode, parent: key)
                switch field {
                case "property": property = try reader.string(fieldValue, key: "\(key).property", expected: "a job property name")
                case "value": value = try reader.settingValue(fieldValue, key: "\(key).value")
                default: throw reader.unknownKey(field, at: fieldNode, dotted: "\(key).\(field)", in: key, known: ["property", "value"])
                }
            }
            guard let property else { throw reader.error(at: node, key: key, "needs a property (the job property to match)") }
            return .jobsWithProperty(key: property, value: value)
        default:
            throw reader.error(at: node, key: key, "must be \(expected), got \(ConfigurationReader.describe(node))")
        }
    }
}

// MARK: - Printing values

/// How ``AgentConfiguration/describe()`` writes values: as they would be written in the file.
enum ConfigurationFormat {
    /// `30`, `0.5`.
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// `"0666"`.
    static func octal(_ mode: UInt16) -> String {
        let digits = String(mode, radix: 8)
        return "\"" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits + "\""
    }

    /// `[a, b]`.
    static func list(_ items: [String]) -> String { "[" + items.joined(separator: ", ") + "]" }

    /// `"08:00"`.
    static func time(_ minute: Int) -> String {
        let hour = minute / 60, rest = minute % 60
        return "\"" + (hour < 10 ? "0" : "") + "\(hour):" + (rest < 10 ? "0" : "") + "\(rest)\""
    }

    /// `{from: "08:00", to: "18:00", bytes_per_sec: 1048576}`.
    static func window(_ window: BandwidthWindow) -> String {
        "{from: \(time(window.startMinute)), to: \(time(window.endMinute)), bytes_per_sec: \(window.bytesPerSecond)}"
    }

    /// `{name: sha256, role: validator, applies_to: all, settings: {require: "false"}}`.
    static func plugin(_ entry: PluginEntry) -> String {
        let spec = entry.spec
        var fields = [spec.reference.contains("/") ? "path: \(yamlString(spec.reference))" : "name: \(yamlString(spec.reference))"]
        if let role = entry.role { fields.append("role: \(role.rawValue)") }
        switch spec.appliesTo {
        case .allJobs:
            fields.append("applies_to: all")
        case .jobsWithProperty(let property, let value):
            fields.append("applies_to: {property: \(yamlString(property))" + (value.map { ", value: \(quoted($0))" } ?? "") + "}")
        }
        if spec.isolation != .inProcess { fields.append("isolation: \(spec.isolation.rawValue)") }
        fields.append("settings: {" + spec.settings.map { "\(yamlString($0.key)): \(quoted($0.value))" }.joined(separator: ", ") + "}")
        return "{" + fields.joined(separator: ", ") + "}"
    }

    /// A string plain when YAML would read it back as the same string, quoted otherwise.
    static func yamlString(_ text: String) -> String {
        let plain = !text.isEmpty && text.first != "-" && text.first != " " && text.last != " "
            && text.allSatisfy { $0.isLetter || $0.isNumber || "_./+-@ ".contains($0) }
            && ConfigurationReader.decimalNumber(text) == nil
            && !["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(text.lowercased())
        return plain ? text : quoted(text)
    }

    /// `"text"` with `\` and `"` escaped.
    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
