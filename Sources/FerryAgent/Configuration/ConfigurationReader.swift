import Foundation
import Yams

/// Reads typed values out of YAML nodes, turning every mistake into a ``ConfigurationError``
/// that names the file, the line and column, and the dotted key.
struct ConfigurationReader: Sendable {
    /// The file as it was named, for messages.
    let file: String
    /// The whole text, to locate duplicate keys.
    let text: String

    // MARK: - Errors

    /// An error at `node` (or at no particular place).
    func error(at node: Node?, key: String?, _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, line: node?.mark?.line, column: node?.mark?.column, key: key, message: message)
    }

    /// How a node looks to a person: `'lots'`, `a list`, `a mapping`, `no value`.
    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull(node) { return "no value" }
            let text = scalar.string.count > 60 ? scalar.string.prefix(57) + "..." : scalar.string
            let shown = "'\(text)'"
            if isQuoted(scalar), decimalNumber(scalar.string) != nil {
                return shown + " (a quoted string: write numbers without quotes)"
            }
            return shown
        }
    }

    /// The resolved YAML type of a node (`tag:yaml.org,2002:int`, …).
    static func tagName(_ node: Node) -> Tag.Name { Tag.Name(rawValue: node.tag.rawValue) }

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar = node else { return false }
        return Self.tagName(node) == .null
    }

    static func isQuoted(_ scalar: Node.Scalar) -> Bool {
        scalar.style != .plain && scalar.style != .any
    }

    // MARK: - Composing

    /// Parses the text into one node, or `nil` for an empty file (comments only).
    func compose() throws(ConfigurationError) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw translate(error)
        } catch {
            throw ConfigurationError(file: file, message: "not valid YAML: \(error)")
        }
    }

    private func translate(_ error: YamlError) -> ConfigurationError {
        func syntax(_ problem: String, _ context: YamlError.Context?, _ mark: Mark) -> ConfigurationError {
            var message = "not valid YAML: "
            if let context { message += "\(context.text) (line \(context.mark.line)), " }
            message += problem
            if line(mark.line).contains("\t") { message += "; YAML is indented with spaces, never tabs" }
            return ConfigurationError(file: file, line: mark.line, column: mark.column, message: message)
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return syntax(problem, context, mark)
        case .reader(let problem, let offset, _, _):
            let position = offset.map { lineAndColumn(ofCharacterOffset: $0) }
            return ConfigurationError(file: file, line: position?.line, column: position?.column,
                                      message: "not valid YAML text: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return duplicateKey(duplicates.first ?? "?", firstAt: context.mark)
        default:
            return ConfigurationError(file: file, message: "not valid YAML: \(error)")
        }
    }

    /// YAML keeps one of two equal keys without a word; a configuration must not.
    private func duplicateKey(_ name: String, firstAt first: Mark) -> ConfigurationError {
        let locator = YAMLKeyLocator(text: text)
        let path = locator.dottedPath(line: first.line, column: first.column, key: name)
        if let second = locator.repetition(of: name, path: path, after: (first.line, first.column)) {
            return ConfigurationError(file: file, line: second.line, column: second.column, key: path,
                                      message: "duplicate key: already set on line \(first.line); remove one of them")
        }
        return ConfigurationError(file: file, line: first.line, column: first.column, key: path,
                                  message: "duplicate key: '\(name)' is set more than once here; remove all but one")
    }

    private func line(_ number: Int) -> Substring {
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        return number >= 1 && number <= lines.count ? lines[number - 1] : ""
    }

    private func lineAndColumn(ofCharacterOffset offset: Int) -> (line: Int, column: Int) {
        var line = 1, column = 1
        for character in text.prefix(offset) {
            if character.isNewline { line += 1; column = 1 } else { column += 1 }
        }
        return (line, column)
    }

    // MARK: - Structure

    /// The pairs of a mapping; `nil` for a null value (`section:` with nothing under it).
    func mapping(_ node: Node, key: String?, expected: String) throws(ConfigurationError) -> Node.Mapping? {
        if Self.isNull(node) { return nil }
        guard case .mapping(let mapping) = node else {
            throw error(at: node, key: key, "must be \(expected), got \(Self.describe(node))")
        }
        return mapping
    }

    /// The items of a list.
    func sequence(_ node: Node, key: String, expected: String) throws(ConfigurationError) -> [Node] {
        guard case .sequence(let sequence) = node else {
            throw error(at: node, key: key, "must be \(expected), got \(Self.describe(node))")
        }
        return Array(sequence)
    }

    /// The text of a mapping key, which must be a plain scalar.
    func keyName(_ node: Node, parent: String?) throws(ConfigurationError) -> String {
        guard case .scalar(let scalar) = node, !Self.isNull(node) else {
            throw error(at: node, key: parent, "keys must be plain names, got \(Self.describe(node))")
        }
        return scalar.string
    }

    /// Refuses a key that is not in `known`, listing the known ones and the likeliest meant.
    func unknownKey(_ name: String, at node: Node, dotted: String, in section: String?, known: [String]) -> ConfigurationError {
        let suggestion = known.min { editDistance(name, $0) < editDistance(name, $1) }
            .flatMap { editDistance(name, $0) <= max(2, name.count / 4) ? $0 : nil }
        var message = "unknown key"
        if let suggestion { message += " (did you mean '\(suggestion)'?)" }
        let place = section.map { "in \($0)" } ?? "at the top level"
        message += "; known keys \(place): \(known.joined(separator: ", "))"
        return error(at: node, key: dotted, message)
    }

    // MARK: - Scalars

    /// The text of a scalar that is a string, a number or a boolean (never a list, a mapping or null).
    func scalarText(_ node: Node, key: String, expected: String) throws(ConfigurationError) -> String {
        guard case .scalar(let scalar) = node, !Self.isNull(node) else {
            throw error(at: node, key: key, "must be \(expected), got \(Self.describe(node))")
        }
        return scalar.string
    }

    /// A non-empty string.
    func string(_ node: Node, key: String, expected: String = "a string") throws(ConfigurationError) -> String {
        let text = try scalarText(node, key: key, expected: expected)
        guard !text.isEmpty else { throw error(at: node, key: key, "must be \(expected), got an empty string") }
        return text
    }

    /// A plugin setting: strings as they are, booleans as `true`/`false`, integers in decimal,
    /// other numbers as written.
    func settingValue(_ node: Node, key: String) throws(ConfigurationError) -> String {
        let text = try scalarText(node, key: key, expected: "a string, a number or a boolean")
        switch Self.tagName(node) {
        case .bool: return node.bool.map { $0 ? "true" : "false" } ?? text
        case .int: return node.int.map(String.init) ?? text
        default: return text
        }
    }

    /// An absolute path, without trailing slashes. `rule` explains why a relative one is refused.
    func absolutePath(_ node: Node, key: String, rule: String) throws(ConfigurationError) -> String {
        let text = try string(node, key: key, expected: "an absolute path")
        guard text.hasPrefix("/") else { throw error(at: node, key: key, "\(rule), got '\(text)'") }
        return Self.normalized(path: text)
    }

    /// `path` without trailing slashes (except `/` itself).
    static func normalized(path: String) -> String {
        var path = path
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        return path
    }

    /// A decimal integer within `range`. Quoted numbers, decimals, hexadecimal and octal are refused.
    func integer(_ node: Node, key: String, in range: ClosedRange<Int>, unit: String? = nil, note: String? = nil) throws(ConfigurationError) -> Int {
        let expected = "an integer \(Self.phrase(range))" + (unit.map { " (\($0))" } ?? "")
        func refuse() -> ConfigurationError {
            error(at: node, key: key, "must be \(expected), got \(Self.describe(node))" + (note.map { " (\($0))" } ?? ""))
        }
        guard case .scalar(let scalar) = node, !Self.isQuoted(scalar), Self.tagName(node) == .int,
              let value = Self.decimalInteger(scalar.string), range.contains(value)
        else { throw refuse() }
        return value
    }

    /// A number of seconds (an integer or a decimal) within `range`.
    func seconds(_ node: Node, key: String, in range: ClosedRange<Double>, note: String? = nil) throws(ConfigurationError) -> Double {
        func refuse() -> ConfigurationError {
            error(at: node, key: key, "must be a number of seconds \(Self.phrase(range)), got \(Self.describe(node))"
                  + (note.map { " (\($0))" } ?? ""))
        }
        guard case .scalar(let scalar) = node, !Self.isQuoted(scalar),
              Self.tagName(node) == .int || Self.tagName(node) == .float,
              let value = Self.decimalNumber(scalar.string), value.isFinite, range.contains(value)
        else { throw refuse() }
        return value
    }

    /// `[+-]digits` with optional `_` separators, no leading zeros; `nil` otherwise or on overflow.
    static func decimalInteger(_ text: String) -> Int? {
        var digits = Substring(text)
        var negative = false
        if let sign = digits.first, sign == "+" || sign == "-" { negative = sign == "-"; digits = digits.dropFirst() }
        guard let first = digits.first, first.isASCII, first.isNumber, !(first == "0" && digits.count > 1),
              digits.allSatisfy({ ($0.isASCII && $0.isNumber) || $0 == "_" }), digits.last != "_"
        else { return nil }
        return Int((negative ? "-" : "") + digits.replacingOccurrences(of: "_", with: ""))
    }

    /// An integer or a decimal such as `0.5`, `30`, `1_000`.
    static func decimalNumber(_ text: String) -> Double? {
        let compact = text.replacingOccurrences(of: "_", with: "")
        guard compact.allSatisfy({ ($0.isASCII && $0.isNumber) || $0 == "." || $0 == "+" || $0 == "-" || $0 == "e" || $0 == "E" })
        else { return nil }
        return Double(compact)
    }

    /// "between 1 and 1024", "of at least 0".
    static func phrase(_ range: ClosedRange<Int>) -> String {
        range.upperBound == Int.max ? "of at least \(range.lowerBound)" : "between \(range.lowerBound) and \(range.upperBound)"
    }

    static func phrase(_ range: ClosedRange<Double>) -> String {
        let low = ConfigurationFormat.number(range.lowerBound), high = ConfigurationFormat.number(range.upperBound)
        return range.upperBound == .greatestFiniteMagnitude ? "of at least \(low)" : "between \(low) and \(high)"
    }
}

/// The distance between two keys, to suggest the one a typo meant.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
