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

    /// Every console example of every documented file, read once per test run.
    static func all() throws -> [ConsoleExample] { try cached.get() }

    private static let cached = Result { () throws -> [ConsoleExample] in
        try documentedFiles().flatMap { file in
            try parse(String(contentsOfFile: packageRoot + "/" + file, encoding: .utf8), file: file)
        }
    }

    /// The console examples of one Markdown text. A line starting with `$ ` is a command; the
    /// lines after it, up to the next command or the end of the block, are its output.
    static func parse(_ text: String, file: String) -> [ConsoleExample] {
        var ordinals: [String: Int] = [:]
        return FencedBlock.all(in: text).filter { $0.language == "console" }.map { block in
            ordinals[block.heading, default: 0] += 1
            return ConsoleExample(key: ExampleKey(file, block.heading, ordinals[block.heading]!), docLine: block.line,
                                  commands: commands(of: block.lines))
        }
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
        guard let block = FencedBlock.all(in: text).first(where: { $0.heading == heading && $0.language == language }) else {
            throw ShellError(message: "\(file) has no ```\(language) block under '\(heading)'")
        }
        return block.lines.map(\.1).joined(separator: "\n") + "\n"
    }
}

/// A fenced block of a Markdown text: its language (`console`, `json`, or empty), the
/// heading it sits under, the line its fence opens on, and its lines with their numbers.
struct FencedBlock {
    let language: String
    let heading: String
    let line: Int
    let lines: [(Int, String)]

    static func all(in text: String) -> [FencedBlock] {
        var blocks: [FencedBlock] = []
        var heading = "(top)"
        var open: (language: String, line: Int, lines: [(Int, String)])?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            if let current = open {
                if line.trimmingCharacters(in: .whitespaces) == "```" {
                    blocks.append(FencedBlock(language: current.language, heading: heading, line: current.line, lines: current.lines))
                    open = nil
                } else {
                    open?.lines.append((index + 1, line))
                }
            } else if line.hasPrefix("```") {
                open = (String(line.dropFirst(3)).trimmingCharacters(in: .whitespaces), index + 1, [])
            } else if line.hasPrefix("#") {
                heading = line.drop(while: { $0 == "#" }).trimmingCharacters(in: .whitespaces)
            }
        }
        return blocks
    }
}
