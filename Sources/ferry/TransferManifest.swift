import FerryCore
import FerryEngine
import Foundation

/// A list of files to fetch in one job, as pipelines hand them over.
///
/// Version 1 is a JSON object:
/// ```json
/// {
///   "version": 1,
///   "displayName": "nightly packages",
///   "priority": "normal",
///   "files": [
///     { "url": "https://mirror/pool/a.deb", "destination": "/srv/pkgs/a.deb",
///       "sha256": "9f86d0…", "size": 123456, "properties": { "origin": "main" } }
///   ]
/// }
/// ```
/// `sha256` and `size` are stored as the file properties of the same name.
/// A relative `destination` is resolved against the directory given to ``parse(_:source:baseDirectory:)``.
public struct TransferManifest: Sendable, Equatable {
    public static let currentVersion = 1

    public var displayName: String?
    public var priority: JobPriority?
    public var files: [NewFile]

    /// Parses and checks a manifest.
    /// - Parameters:
    ///   - data: the manifest's bytes.
    ///   - source: the name used in error messages (usually the file's path).
    ///   - baseDirectory: the absolute directory relative destinations are resolved against.
    /// - Throws: ``ManifestError`` naming the entry and the field that is wrong.
    public static func parse(_ data: Data, source: String, baseDirectory: String) throws(ManifestError) -> TransferManifest {
        // Decoded into plain Swift values rather than Foundation objects: a manifest of
        // 10,000 files then costs a few MiB while it is read, not tens.
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ManifestError(source: source, field: nil, message: "not valid JSON: \(jsonReason(error, data))")
        }
        guard case .object(let object) = root else {
            throw ManifestError(source: source, field: nil, message: "the manifest must be a JSON object")
        }
        let known: Set<String> = ["version", "displayName", "priority", "files"]
        if let unknown = object.keys.filter({ !known.contains($0) }).sorted().first {
            throw ManifestError(source: source, field: unknown, message: "unknown field (known: \(known.sorted().joined(separator: ", ")))")
        }
        guard let version = object["version"] else {
            throw ManifestError(source: source, field: "version", message: "missing; this Ferry reads version \(currentVersion)")
        }
        guard let number = integer(version) else {
            throw ManifestError(source: source, field: "version", message: "must be an integer")
        }
        guard number == currentVersion else {
            throw ManifestError(source: source, field: "version", message: "version \(number) is not supported; this Ferry reads version \(currentVersion)")
        }
        var manifest = TransferManifest(displayName: nil, priority: nil, files: [])
        if let name = object["displayName"] {
            guard case .string(let text) = name else {
                throw ManifestError(source: source, field: "displayName", message: "must be a string")
            }
            manifest.displayName = text
        }
        if let priority = object["priority"] {
            guard case .string(let text) = priority, let value = JobPriority(rawValue: text) else {
                throw ManifestError(source: source, field: "priority",
                                    message: "must be one of \(JobPriority.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            manifest.priority = value
        }
        guard case .array(let files)? = object["files"] else {
            throw ManifestError(source: source, field: "files", message: object["files"] == nil ? "missing" : "must be an array")
        }
        guard !files.isEmpty else {
            throw ManifestError(source: source, field: "files", message: "lists no file")
        }
        var destinations: [String: Int] = [:]
        for (index, entry) in files.enumerated() {
            let file = try parseFile(entry, index: index, source: source, baseDirectory: baseDirectory)
            if let first = destinations[file.localPath] {
                throw ManifestError(source: source, field: "files[\(index)].destination",
                                    message: "\(file.localPath) is already the destination of files[\(first)]")
            }
            destinations[file.localPath] = index
            manifest.files.append(file)
        }
        return manifest
    }

    private static func parseFile(_ entry: JSONValue, index: Int, source: String, baseDirectory: String) throws(ManifestError) -> NewFile {
        let here = "files[\(index)]"
        guard case .object(let object) = entry else {
            throw ManifestError(source: source, field: here, message: "must be an object with url and destination")
        }
        let known: Set<String> = ["url", "destination", "sha256", "size", "properties"]
        if let unknown = object.keys.filter({ !known.contains($0) }).sorted().first {
            throw ManifestError(source: source, field: "\(here).\(unknown)", message: "unknown field (known: \(known.sorted().joined(separator: ", ")))")
        }
        guard case .string(let url)? = object["url"], !url.isEmpty else {
            throw ManifestError(source: source, field: "\(here).url", message: object["url"] == nil ? "missing" : "must be a non-empty string")
        }
        guard case .string(let destination)? = object["destination"], !destination.isEmpty else {
            throw ManifestError(source: source, field: "\(here).destination",
                                message: object["destination"] == nil ? "missing" : "must be a non-empty string")
        }
        var properties: [String: String] = [:]
        if let raw = object["properties"] {
            guard case .object(let map) = raw else {
                throw ManifestError(source: source, field: "\(here).properties", message: "must be an object of strings")
            }
            for (key, value) in map {
                guard case .string(let text) = value else {
                    throw ManifestError(source: source, field: "\(here).properties.\(key)", message: "must be a string")
                }
                properties[key] = text
            }
        }
        if let raw = object["sha256"] {
            guard case .string(let hex) = raw, hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                throw ManifestError(source: source, field: "\(here).sha256", message: "must be 64 hexadecimal digits")
            }
            properties["sha256"] = hex.lowercased()
        }
        if let raw = object["size"] {
            guard let size = integer(raw), size >= 0 else {
                throw ManifestError(source: source, field: "\(here).size", message: "must be a whole number of bytes ≥ 0")
            }
            properties["size"] = String(size)
        }
        let path = destination.hasPrefix("/") ? destination : baseDirectory + "/" + destination
        return NewFile(remoteURL: url, localPath: normalize(path), properties: properties)
    }

    /// Makes an absolute path canonical by its text alone: removes `.` components and
    /// repeated slashes and resolves `..` against the component before it (without
    /// following symbolic links, as a shell's `cd -L` would).
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// A JSON integer (not a boolean, not a fraction) as `Int`.
    private static func integer(_ value: JSONValue) -> Int? {
        switch value {
        case .integer(let number): return number
        case .number(let double): return double.rounded() == double && abs(double) < 9e15 ? Int(double) : nil
        default: return nil
        }
    }

    /// Why `data` is not JSON. JSONDecoder does not say where; on this error path only,
    /// JSONSerialization is asked, since it does.
    private static func jsonReason(_ error: any Error, _ data: Data) -> String {
        do { _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            let nsError = error as NSError
            return (nsError.userInfo["NSDebugDescription"] as? String) ?? nsError.localizedDescription
        }
        if case DecodingError.dataCorrupted(let context) = error { return context.debugDescription }
        return "\(error)"
    }
}

/// Any JSON value, decoded into Swift values.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let text = try? container.decode(String.self) { self = .string(text) }
        else if let flag = try? container.decode(Bool.self) { self = .bool(flag) }
        else if let whole = try? container.decode(Int.self) { self = .integer(whole) }
        else if let double = try? container.decode(Double.self) { self = .number(double) }
        else if let list = try? container.decode([JSONValue].self) { self = .array(list) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }
}

/// A manifest that cannot be used, with the field at fault.
public struct ManifestError: Error, CustomStringConvertible, Sendable, Equatable {
    public var source: String
    /// The path of the field, like `files[3].destination`; `nil` for the whole document.
    public var field: String?
    public var message: String

    public init(source: String, field: String?, message: String) {
        self.source = source
        self.field = field
        self.message = message
    }

    public var description: String {
        if let field { return "\(source): \(field): \(message)" }
        return "\(source): \(message)"
    }
}
