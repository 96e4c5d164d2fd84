/// Finds where a key sits in block-style YAML text, for the one error the YAML parser reports
/// without a tree: a duplicate key. It reads indentation the way a person does, so it names
/// `plugins[1].settings.require` from a line and a column.
struct YAMLKeyLocator {
    /// Something that opens a level on a line: a list item's dash or a `key:`.
    private enum Token {
        case dash(column: Int)
        case key(String, column: Int)

        var column: Int {
            switch self {
            case .dash(let column), .key(_, let column): column
            }
        }
    }

    private let lines: [[Token]]

    init(text: String) {
        lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(Self.tokens)
    }

    /// The dotted path of `key`, found at `line` and `column` (both from 1).
    func dottedPath(line: Int, column: Int, key: String) -> String {
        var parts = [key]
        var column = column
        var afterDash = false
        var row = line - 1
        var sameLine = true
        while row >= 0, column > 1 || afterDash {
            let tokens = row < lines.count ? lines[row] : []
            for token in tokens.reversed() where sameLine ? token.column < column : true {
                switch token {
                case .key(let name, let keyColumn) where keyColumn < column || (afterDash && keyColumn == column && !sameLine):
                    parts.insert(name, at: 0)
                    column = keyColumn
                    afterDash = false
                case .dash(let dashColumn) where dashColumn < column:
                    parts.insert("[\(itemIndex(row: row, dashColumn: dashColumn))]", at: 0)
                    column = dashColumn
                    afterDash = true
                default:
                    continue
                }
            }
            row -= 1
            sameLine = false
        }
        return parts.enumerated().map { index, part in index == 0 || part.hasPrefix("[") ? part : "." + part }.joined()
    }

    /// Where `key` appears again, under the same path, after `first`.
    func repetition(of key: String, path: String, after first: (line: Int, column: Int)) -> (line: Int, column: Int)? {
        for row in min(first.line, lines.count)..<lines.count {
            for case .key(let name, let column) in lines[row] where name == key {
                if dottedPath(line: row + 1, column: column, key: key) == path { return (row + 1, column) }
            }
        }
        return nil
    }

    /// How many items of the same list come before the one whose dash is at `row`, `dashColumn`.
    private func itemIndex(row: Int, dashColumn: Int) -> Int {
        var index = 0
        var above = row - 1
        while above >= 0 {
            guard let first = lines[above].first else { above -= 1; continue }
            if first.column < dashColumn { break }
            if first.column == dashColumn {
                guard case .dash = first else { break }
                index += 1
            }
            above -= 1
        }
        return index
    }

    /// The dashes and the leading key of one line; nothing for blank lines and comments.
    private static func tokens(of line: Substring) -> [Token] {
        let characters = Array(line)
        var tokens: [Token] = []
        var index = 0
        while index < characters.count, characters[index] == " " { index += 1 }
        while index < characters.count, characters[index] == "-",
              index + 1 == characters.count || characters[index + 1] == " " {
            tokens.append(.dash(column: index + 1))
            index += 1
            while index < characters.count, characters[index] == " " { index += 1 }
        }
        guard index < characters.count, !"#{[".contains(characters[index]) else { return tokens }
        let start = index
        var name = ""
        if characters[index] == "\"" || characters[index] == "'" {
            let quote = characters[index]
            index += 1
            while index < characters.count, characters[index] != quote { name.append(characters[index]); index += 1 }
            index += 1
        } else {
            while index < characters.count, characters[index] != ":" { name.append(characters[index]); index += 1 }
            name = String(name.reversed().drop(while: { $0 == " " }).reversed())
        }
        guard index < characters.count, characters[index] == ":",
              index + 1 == characters.count || characters[index + 1] == " " else { return tokens }
        tokens.append(.key(name, column: start + 1))
        return tokens
    }
}
