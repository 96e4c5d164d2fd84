import Foundation

/// Names one console example of the docs: the file, the heading it sits under, and its
/// place among the console examples under that heading (1 for the first).
struct ExampleKey: Hashable, Sendable, CustomStringConvertible {
    let file: String
    let heading: String
    let ordinal: Int

    init(_ file: String, _ heading: String, _ ordinal: Int = 1) {
        self.file = file
        self.heading = heading
        self.ordinal = ordinal
    }

    var description: String { "\(file) § \(heading) #\(ordinal)" }
}

/// One command of a console example and the output the doc shows for it.
struct ExampleCommand: Sendable {
    /// The command line, without the `$ ` prompt.
    let line: String
    /// The lines the doc shows after it, up to the next prompt.
    let output: [String]
    /// The line of the doc the command is on (1-based).
    let docLine: Int
}

/// A fenced ```` ```console ```` block of a Markdown file.
struct ConsoleExample: Sendable {
    let key: ExampleKey
    /// The line of the doc the block starts on (1-based).
    let docLine: Int
    let commands: [ExampleCommand]

    /// The package's root directory, found from this source file's place in it.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The Markdown files whose console examples are run by the tests: the README and every
    /// file in `docs/`.
    static func documentedFiles() throws -> [String] {
        let docs = try FileManager.default.contentsOfDirectory(atPath: packageRoot + "/docs")
            .filter { $0.hasSuffix(".md") }.sorted().map { "docs/" + $0 }
        return ["README.md"] + docs
    }

    /// Every console example of every documented file.
    static func all() throws -> [ConsoleExample] {
        try documentedFiles().flatMap { file in
            try parse(String(contentsOfFile: packageRoot + "/" + file, encoding: .utf8), file: file)
        }
    }

    /// The console examples of one Markdown text. A line starting with `$ ` is a command; the
    /// lines after it, up to the next command or the end of the block, are its output.
    static func parse(_ text: String, file: String) -> [ConsoleExample] {
        var examples: [ConsoleExample] = []
        var heading = "(top)"
        var ordinals: [String: Int] = [:]
        var block: (start: Int, lines: [(Int, String)])?
        var fence: String?
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(rawLine)
            let number = index + 1
            if let open = fence {
                if line.hasPrefix("```") && line.trimmingCharacters(in: .whitespaces) == "```" {
                    if open == "console", let current = block {
                        ordinals[heading, default: 0] += 1
                        examples.append(ConsoleExample(key: ExampleKey(file, heading, ordinals[heading]!),
                                                       docLine: current.start, commands: commands(of: current.lines)))
                    }
                    fence = nil
                    block = nil
                } else if open == "console" {
                    block?.lines.append((number, line))
                }
                continue
            }
            if line.hasPrefix("```") {
                fence = String(line.dropFirst(3)).trimmingCharacters(in: .whitespaces)
                if fence == "console" { block = (number, []) }
            } else if line.hasPrefix("#") {
                heading = line.drop(while: { $0 == "#" }).trimmingCharacters(in: .whitespaces)
            }
        }
        return examples
    }

    private static func commands(of lines: [(Int, String)]) -> [ExampleCommand] {
        var commands: [ExampleCommand] = []
        var current: (line: String, number: Int, output: [String])?
        for (number, line) in lines {
            if line.hasPrefix("$ ") {
                if let done = current { commands.append(ExampleCommand(line: done.line, output: done.output, docLine: done.number)) }
                current = (String(line.dropFirst(2)), number, [])
            } else {
                current?.output.append(line)
            }
        }
        if let done = current { commands.append(ExampleCommand(line: done.line, output: done.output, docLine: done.number)) }
        return commands
    }
}

extension ConsoleExample {
    /// The text of the first fenced block in `language` under `heading` of `file` (a manifest
    /// the examples use, for instance).
    static func codeBlock(_ file: String, heading: String, language: String) throws -> String {
        let text = try String(contentsOfFile: packageRoot + "/" + file, encoding: .utf8)
        var current = ""
        var fence: String?
        var lines: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if let open = fence {
                if line.trimmingCharacters(in: .whitespaces) == "```" {
                    if open == language && current == heading { return lines.joined(separator: "\n") + "\n" }
                    fence = nil
                } else if open == language && current == heading {
                    lines.append(line)
                }
            } else if line.hasPrefix("```") {
                fence = String(line.dropFirst(3)).trimmingCharacters(in: .whitespaces)
            } else if line.hasPrefix("#") {
                current = line.drop(while: { $0 == "#" }).trimmingCharacters(in: .whitespaces)
            }
        }
        throw ShellError(message: "\(file) has no ```\(language) block under '\(heading)'")
    }
}
