import FerryControl
import FerryCore
import Foundation

/// Text for sizes, times and settings, shared by every command's human output.
enum Format {
    /// `512 B`, `7.3 MiB`: binary units, one decimal above bytes.
    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// `512 bytes`, `10485760 bytes (10.0 MiB)`: an exact size, with a rounder one beside large values.
    static func byteCount(_ count: UInt64) -> String {
        count < 1024 ? "\(count) bytes" : "\(count) bytes (\(bytes(count)))"
    }

    /// `1.5 MiB/s`; `-` while unknown (0).
    static func rate(_ bytesPerSecond: Double) -> String {
        guard bytesPerSecond.isFinite, bytesPerSecond >= 1 else { return "-" }
        return bytes(UInt64(bytesPerSecond)) + "/s"
    }

    /// `7.3 MiB/21.9 MiB (33%)`; the total is `?` while a size is unknown.
    static func amount(_ done: UInt64, of total: UInt64?) -> String {
        guard let total else { return "\(bytes(done))/?" }
        return "\(bytes(done))/\(bytes(total)) (\(percent(done, of: total))%)"
    }

    /// The whole percentage done, 100 for an empty total.
    static func percent(_ done: UInt64, of total: UInt64) -> Int {
        total == 0 ? 100 : Int(min(100, Double(done) / Double(total) * 100))
    }

    /// `1/2`: files transferred out of all.
    static func files(_ progress: ProgressDocument) -> String { "\(progress.filesTransferred)/\(progress.filesTotal)" }

    /// A time in the local time zone: `2025-06-01 10:00:05`.
    static func date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = .current
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: date)
    }

    /// `600 s`, `1209600 s (14 d)`: seconds, with a rounder unit beside large values.
    static func seconds(_ value: Double) -> String {
        let text = value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        let larger: [(Double, String)] = [(86_400, "d"), (3_600, "h"), (60, "min")]
        for (size, unit) in larger where value >= size {
            let count = value / size
            let rounded = count.rounded() == count ? String(Int64(count)) : String(format: "%.1f", count)
            return "\(text) s (\(rounded) \(unit))"
        }
        return "\(text) s"
    }

    static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }

    /// Words as a shell would need them typed: quoted when they hold spaces or quotes.
    static func shellWords(_ words: [String]) -> String {
        words.map { word in
            let plain = !word.isEmpty && word.allSatisfy { $0.isLetter || $0.isNumber || "/._-=:,+@%".contains($0) }
            return plain ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// `k=v, k2=v2` in key order, or `(none)`.
    static func properties(_ properties: [String: String]) -> String {
        properties.isEmpty ? "(none)" : properties.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
    }

    /// `HTTP_ERROR_404 (remoteFile): the server answered…`, with the file and the HTTP status when known.
    static func error(_ error: ErrorDocument) -> String {
        var text = "\(error.code) (\(error.context))"
        if let file = error.file { text += " file \(file)" }
        return text + ": \(error.message)"
    }
}

/// Columns padded to their widest cell; the last column is not padded.
struct Table {
    var header: [String]
    var rows: [[String]] = []

    /// One line per row, the header first.
    func lines() -> [String] {
        let all = [header] + rows
        let count = header.count
        var widths = [Int](repeating: 0, count: count)
        for row in all {
            for (index, cell) in row.prefix(count).enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        return all.map { row in
            row.prefix(count).enumerated().map { index, cell in
                index == count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
    }
}

/// Machine output: the API's own documents.
enum JSONOutput {
    /// Pretty-printed with sorted keys, dates in ISO 8601: for `--json` on read commands.
    static func pretty<Value: Encodable>(_ value: Value) -> String {
        encode(value, formatting: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// One line with sorted keys: for streams (JSON Lines).
    static func line<Value: Encodable>(_ value: Value) -> String {
        encode(value, formatting: [.sortedKeys, .withoutEscapingSlashes])
    }

    private static func encode<Value: Encodable>(_ value: Value, formatting: JSONEncoder.OutputFormatting) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = formatting
        encoder.dateEncodingStrategy = .iso8601
        // The documents hold strings, numbers and dates only: encoding them cannot fail.
        guard let data = try? encoder.encode(value) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A job's notification flags by name, as `setnotifyflags` takes them and `info` shows them.
enum NotifyFlagNames {
    /// Each name and its bit (BITS' `BG_NOTIFY_*` values).
    static let all: [(name: String, bit: UInt32)] = [
        ("transferred", NotifyFlags.jobTransferred.rawValue),
        ("error", NotifyFlags.jobError.rawValue),
        ("disable", NotifyFlags.disable.rawValue),
        ("modification", NotifyFlags.jobModification.rawValue),
        ("file", NotifyFlags.fileTransferred.rawValue),
    ]

    /// `0x1 transferred, 0x2 error, ...`, for messages.
    static var known: String { all.map { "0x\(String($0.bit, radix: 16)) \($0.name)" }.joined(separator: ", ") }

    /// Reads `0x3`, `3` or `transferred,error`.
    /// - Throws: `FlagsError` naming an unknown name or bits.
    static func parse(_ text: String) throws(FlagsError) -> UInt32 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let number: UInt32?
        if trimmed.lowercased().hasPrefix("0x") {
            number = UInt32(trimmed.dropFirst(2), radix: 16)
        } else if let first = trimmed.first, first.isNumber {
            number = UInt32(trimmed)
        } else {
            number = nil
        }
        if let number {
            let unknown = number & ~NotifyFlags.known.rawValue
            guard unknown == 0 else { throw FlagsError("unknown flag bits 0x\(String(unknown, radix: 16)) (known: \(known))") }
            return number
        }
        if let first = trimmed.first, first.isNumber { throw FlagsError("not a number: '\(text)'") }
        var flags: UInt32 = 0
        for name in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let key = name.trimmingCharacters(in: .whitespaces).lowercased()
            guard let bit = all.first(where: { $0.name == key })?.bit else {
                throw FlagsError("unknown flag '\(key)' (known: \(known))")
            }
            flags |= bit
        }
        return flags
    }

    /// `0x3 (transferred, error)`, `0x0 (none)`.
    static func describe(_ flags: UInt32) -> String {
        let names = all.filter { flags & $0.bit != 0 }.map(\.name)
        return "0x\(String(flags, radix: 16)) (\(names.isEmpty ? "none" : names.joined(separator: ", ")))"
    }

    /// A refused flags argument.
    struct FlagsError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
