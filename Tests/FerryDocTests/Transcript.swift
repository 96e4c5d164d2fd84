import Foundation

/// Compares what a doc shows with what a command printed, line by line.
///
/// Most of a doc's output must appear exactly. What differs from run to run is matched by
/// kind instead: job ids (a doc id is bound to the first real id seen in its place, and must
/// stay bound to it for the rest of the example), timestamps, elapsed times, rates and
/// `Content-Length`. Of a run of plain progress lines (`0.1s TRANSFERRING …`), the first and
/// the last must appear; the lines between them depend on timing and are illustrations.
struct Transcript {
    /// A doc's job id → the id of the same job in this run.
    private(set) var bindings: [String: String] = [:]
    /// Eight-digit id prefixes (as in temporaries' names) seen before their full id.
    private var prefixBindings: [String: String] = [:]
    /// More patterns that vary in this example only, each matched by itself.
    var volatile: [String] = []

    private enum Kind { case job, jobPrefix, any }

    /// A doc id that stands for any job and binds nothing.
    static let anyJob = "00000000-0000-4000-8000-000000000000"

    private static let uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

    private static let rules: [(pattern: String, kind: Kind)] = [
        (uuid, .job),
        ("(?<=ferry-)[0-9a-f]{8}(?=-)", .jobPrefix),
        (#"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"#, .any),
        (#"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"#, .any),
        (#"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"#, .any),
        (#"^\d+\.\ds(?= )"#, .any),
        (#"(?<= in )\d+\.\d+(?= s)"#, .any),
        (#"(?<="uptimeSec":)\s?[0-9.eE+-]+"#, .any),
        (#"(?<="bytesPerSecond":)\s?[0-9.eE+-]+"#, .any),
        (#"\d+(?:\.\d+)? (?:[KMG]i)?B/s"#, .any),
        (#"(?<=Content-Length: )\d+"#, .any),
        (#"(?<=after )\d+(?= ms)"#, .any),
        (#"(?<=retrying in )\d+(?= s)"#, .any),
    ]

    /// Binds a doc's job id to a real one (a job the example's setup made).
    mutating func bind(_ docID: String, to realID: String) {
        bindings[docID] = realID
    }

    /// `text` with every bound doc id replaced by its real id.
    func substituted(_ text: String) -> String {
        var result = text
        for (doc, real) in bindings {
            result = result.replacingOccurrences(of: doc, with: real)
            result = result.replacingOccurrences(of: "ferry-" + doc.prefix(8) + "-", with: "ferry-" + real.prefix(8) + "-")
        }
        return result
    }

    /// The doc ids in `text` that nothing has bound yet.
    func unboundIDs(in text: String) -> [String] {
        let regex = try! NSRegularExpression(pattern: Self.uuid)
        let range = NSRange(text.startIndex..., in: text)
        return regex.matches(in: text, range: range).map { String(text[Range($0.range, in: text)!]) }
            .filter { bindings[$0] == nil && !bindings.values.contains($0) }
    }

    /// Whether a line is a plain progress line or a progress bar.
    static func isProgress(_ line: String) -> Bool {
        line.range(of: #"^\d+\.\ds [A-Za-z]"#, options: .regularExpression) != nil
            || line.range(of: #"^\[[#.]+\] "#, options: .regularExpression) != nil
    }

    /// Matches a command's whole output.
    /// - Returns: nil when it matches, else what differs.
    mutating func match(expected: [String], actual allLines: [String]) -> String? {
        // A blank line that ends the output (after a help screen) is not shown by the docs.
        var actual = allLines
        while actual.last?.isEmpty == true && expected.last?.isEmpty != true { actual.removeLast() }
        var items: [[String]] = []
        for line in expected {
            if Self.isProgress(line), let last = items.last, let previous = last.last, Self.isProgress(previous) {
                items[items.count - 1].append(line)
            } else {
                items.append([line])
            }
        }
        var index = 0
        for item in items {
            if item.count == 1 && !Self.isProgress(item[0]) {
                guard index < actual.count else { return "the output ended; the doc shows next:\n  \(item[0])" }
                if let problem = matchLine(item[0], actual[index]) { return problem }
                index += 1
                continue
            }
            let start = index
            while index < actual.count && Self.isProgress(actual[index]) { index += 1 }
            let run = Array(actual[start..<index])
            guard let last = run.last else {
                return "expected progress lines such as\n  \(item[0])\ngot\n  \(start < actual.count ? actual[start] : "(the end)")"
            }
            if let problem = matchLine(item[item.count - 1], last) { return problem }
        }
        if index < actual.count {
            return "more output than the doc shows, from:\n  " + actual[index...].joined(separator: "\n  ")
        }
        return nil
    }

    /// Matches one line; binds the job ids it meets.
    mutating func matchLine(_ expected: String, _ actual: String) -> String? {
        let nsExpected = expected as NSString
        var spans: [(range: NSRange, pattern: String, kind: Kind)] = []
        let rules = Self.rules + volatile.map { ($0, Kind.any) }
        for rule in rules {
            let regex = try! NSRegularExpression(pattern: rule.pattern)
            for found in regex.matches(in: expected, range: NSRange(location: 0, length: nsExpected.length)) where found.range.length > 0 {
                if spans.contains(where: { NSIntersectionRange($0.range, found.range).length > 0 }) { continue }
                spans.append((found.range, rule.pattern, rule.kind))
            }
        }
        spans.sort { $0.range.location < $1.range.location }
        var pattern = "^"
        var cursor = 0
        // Columns are aligned to their widest cell, which may differ in this run: two or more
        // spaces in the doc match any run of spaces.
        func literal(_ text: String) -> String {
            NSRegularExpression.escapedPattern(for: text).replacingOccurrences(of: "  +", with: " +", options: .regularExpression)
        }
        for span in spans {
            pattern += literal(nsExpected.substring(with: NSRange(location: cursor, length: span.range.location - cursor)))
            let bare = span.pattern.replacingOccurrences(of: #"^\^"#, with: "", options: .regularExpression)
            pattern += "(" + Self.withoutLookarounds(bare) + ")"
            cursor = span.range.location + span.range.length
        }
        pattern += literal(nsExpected.substring(from: cursor)) + "$"
        let mismatch = "expected\n  \(expected)\ngot\n  \(actual)"
        guard let regex = try? NSRegularExpression(pattern: pattern),
              let found = regex.firstMatch(in: actual, range: NSRange(actual.startIndex..., in: actual)) else { return mismatch }
        for (number, span) in spans.enumerated() {
            let doc = nsExpected.substring(with: span.range)
            let real = (actual as NSString).substring(with: found.range(at: number + 1))
            switch span.kind {
            case .any:
                continue
            case .job:
                if doc == real || doc == Self.anyJob { continue }   // an id the command line already named
                if let bound = bindings[doc] {
                    if bound != real { return "\(mismatch)\n(the doc's \(doc) is \(bound) in this run)" }
                } else if let other = bindings.first(where: { $0.value == real }) {
                    return "\(mismatch)\n(\(real) is the doc's \(other.key) in this run, not \(doc))"
                } else {
                    if let prefix = prefixBindings[String(doc.prefix(8))], !real.hasPrefix(prefix) {
                        return "\(mismatch)\n(the doc's \(doc.prefix(8)) is \(prefix) in this run)"
                    }
                    bindings[doc] = real
                }
            case .jobPrefix:
                if doc == real { continue }
                if let full = bindings.first(where: { $0.key.hasPrefix(doc) }) {
                    if !full.value.hasPrefix(real) { return "\(mismatch)\n(the doc's \(doc) is \(full.value.prefix(8)) in this run)" }
                } else if let bound = prefixBindings[doc], bound != real {
                    return "\(mismatch)\n(the doc's \(doc) is \(bound) in this run)"
                } else {
                    prefixBindings[doc] = real
                }
            }
        }
        return nil
    }

    /// A rule's pattern as a group inside a larger pattern: its lookarounds only locate it in
    /// the doc's line (the literal text around it is matched by the larger pattern).
    private static func withoutLookarounds(_ pattern: String) -> String {
        pattern.replacingOccurrences(of: #"\(\?<?[=!][^)]*\)"#, with: "", options: .regularExpression)
    }
}
