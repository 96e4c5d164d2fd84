import FerryCore
import Foundation

/// A coding key for reading whatever keys an object has.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
}

extension Decoder {
    /// Refuses keys the request type does not know: JSONDecoder would silently ignore them,
    /// and a misspelt field must not be dropped without a word.
    func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_: Keys.Type) throws {
        let container = try container(keyedBy: AnyCodingKey.self)
        let allowed = Set(Keys.allCases.map(\.stringValue))
        let unknown = container.allKeys.map(\.stringValue).filter { !allowed.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: codingPath,
                debugDescription: "unknown field\(unknown.count == 1 ? "" : "s") \(unknown.joined(separator: ", ")) (known: \(allowed.sorted().joined(separator: ", ")))"))
        }
    }
}

extension KeyedDecodingContainer {
    /// A byte count, from 0 to `Int64.max` (what the store and every file size can hold).
    /// JSONDecoder refuses a negative or fractional number for `UInt64` as "not valid JSON",
    /// without the field's name; the refusal names the field here instead.
    func decodeByteCountIfPresent(forKey key: Key) throws -> UInt64? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        let value: UInt64
        do { value = try decode(UInt64.self, forKey: key) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: "expected a whole number of bytes ≥ 0"))
        }
        guard value <= UInt64(Int64.max) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: "expected a whole number of bytes from 0 to \(Int64.max)"))
        }
        return value
    }
}

extension KeyedDecodingContainer {
    /// A duration in seconds, at most ``JobSettings/maxSeconds``: a larger one could not be
    /// turned into a timer or a whole number of seconds when the job waits. A negative one is
    /// left to the engine, which refuses it with its own message.
    func decodeSecondsIfPresent(forKey key: Key) throws -> Double? {
        guard let seconds = try decodeIfPresent(Double.self, forKey: key) else { return nil }
        guard !(seconds > JobSettings.maxSeconds) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key],
                                                    debugDescription: "expected a number of seconds from 0 to \(Int(JobSettings.maxSeconds))"))
        }
        return seconds
    }
}

/// A request document that refuses the fields it does not know: JSONDecoder would silently
/// ignore them, and a misspelt field must not be dropped without a word.
///
/// A document lists its fields in ``CodingKeys`` and reads them in ``init(fields:)``; the
/// refusal of any other key, and its message, are the same for every document.
public protocol StrictlyDecodable: Decodable {
    /// The document's fields: the only keys its JSON object may hold.
    associatedtype CodingKeys: CodingKey & CaseIterable

    /// Reads the document once its object is known to hold no key but its fields.
    /// - Parameter fields: the document's object.
    /// - Throws: `DecodingError` naming the field at fault.
    init(fields: KeyedDecodingContainer<CodingKeys>) throws
}

extension StrictlyDecodable {
    /// Refuses keys that are not ``CodingKeys``, then reads the fields with ``init(fields:)``.
    /// - Throws: `DecodingError`; for unknown keys, `dataCorrupted` naming them and the known ones.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        try self.init(fields: decoder.container(keyedBy: CodingKeys.self))
    }
}

extension NewFileDocument: StrictlyDecodable {
    public enum CodingKeys: String, CodingKey, CaseIterable { case url, path, properties, mirrors }
    public init(fields: KeyedDecodingContainer<CodingKeys>) throws {
        url = try fields.decode(String.self, forKey: .url)
        path = try fields.decode(String.self, forKey: .path)
        properties = try fields.decodeIfPresent([String: String].self, forKey: .properties)
        mirrors = try fields.decodeIfPresent([String].self, forKey: .mirrors)
    }
}

extension CreateJobRequest: StrictlyDecodable {
    public enum CodingKeys: String, CodingKey, CaseIterable { case displayName, description, priority, files, settings }
    public init(fields: KeyedDecodingContainer<CodingKeys>) throws {
        displayName = try fields.decode(String.self, forKey: .displayName)
        description = try fields.decodeIfPresent(String.self, forKey: .description)
        priority = try fields.decodeIfPresent(JobPriority.self, forKey: .priority)
        files = try fields.decodeIfPresent([NewFileDocument].self, forKey: .files)
        settings = try fields.decodeIfPresent(JobSettings.self, forKey: .settings)
    }
}

extension AddFilesRequest: StrictlyDecodable {
    public enum CodingKeys: String, CodingKey, CaseIterable { case files }
    public init(fields: KeyedDecodingContainer<CodingKeys>) throws { files = try fields.decode([NewFileDocument].self, forKey: .files) }
}

extension JobSettings: StrictlyDecodable {
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case displayName, description, priority, minRetryDelaySec, noProgressTimeoutSec, customHeaders
        case notifyFlags, notifyCommand, properties, dynamicContent, maxFileBytes, tlsCAFile, tlsPinnedPublicKey
        case autoComplete
    }
    public init(fields: KeyedDecodingContainer<CodingKeys>) throws {
        displayName = try fields.decodeIfPresent(String.self, forKey: .displayName)
        description = try fields.decodeIfPresent(String.self, forKey: .description)
        priority = try fields.decodeIfPresent(JobPriority.self, forKey: .priority)
        minRetryDelaySec = try fields.decodeSecondsIfPresent(forKey: .minRetryDelaySec)
        noProgressTimeoutSec = try fields.decodeSecondsIfPresent(forKey: .noProgressTimeoutSec)
        customHeaders = try fields.decodeIfPresent([String].self, forKey: .customHeaders)
        notifyFlags = try fields.decodeIfPresent(UInt32.self, forKey: .notifyFlags)
        notifyCommand = try fields.decodeIfPresent([String].self, forKey: .notifyCommand)
        properties = try fields.decodeIfPresent([String: String].self, forKey: .properties)
        dynamicContent = try fields.decodeIfPresent(Bool.self, forKey: .dynamicContent)
        maxFileBytes = try fields.decodeByteCountIfPresent(forKey: .maxFileBytes)
        tlsCAFile = try fields.decodeIfPresent(String.self, forKey: .tlsCAFile)
        tlsPinnedPublicKey = try fields.decodeIfPresent(String.self, forKey: .tlsPinnedPublicKey)
        autoComplete = try fields.decodeIfPresent(Bool.self, forKey: .autoComplete)
    }
}

extension AddMirrorsRequest: StrictlyDecodable {
    public enum CodingKeys: String, CodingKey, CaseIterable { case urls }
    public init(fields: KeyedDecodingContainer<CodingKeys>) throws { urls = try fields.decode([String].self, forKey: .urls) }
}

extension RemoteURLRequest: StrictlyDecodable {
    public enum CodingKeys: String, CodingKey, CaseIterable { case url }
    public init(fields: KeyedDecodingContainer<CodingKeys>) throws { url = try fields.decode(String.self, forKey: .url) }
}

extension ReplacePrefixRequest: StrictlyDecodable {
    public enum CodingKeys: String, CodingKey, CaseIterable { case old, new }
    public init(fields: KeyedDecodingContainer<CodingKeys>) throws {
        old = try fields.decode(String.self, forKey: .old)
        new = try fields.decode(String.self, forKey: .new)
    }
}

/// Turns a decoding failure into a sentence naming the field at fault.
public func describeDecodingError(_ error: any Error) -> String {
    func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }
    guard let decoding = error as? DecodingError else { return "\(error)" }
    switch decoding {
    case .keyNotFound(let key, let context):
        let at = path(context.codingPath + [key])
        return "missing field \(at)"
    case .typeMismatch(let type, let context):
        return "\(path(context.codingPath).isEmpty ? "the body" : path(context.codingPath)): expected \(readable(type))"
    case .valueNotFound(let type, let context):
        return "\(path(context.codingPath)): expected \(readable(type)), got null"
    case .dataCorrupted(let context):
        let where_ = path(context.codingPath)
        let reason = context.underlyingError.map { _ in "not valid JSON" } ?? context.debugDescription
        return where_.isEmpty ? reason : "\(where_): \(reason)"
    @unknown default:
        return "\(decoding)"
    }
}

private func readable(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Double.Type, is Int.Type, is UInt32.Type, is UInt64.Type: "a number"
    case is Bool.Type: "true or false"
    case is [String].Type: "an array of strings"
    case is [String: String].Type: "an object of strings"
    case is JobPriority.Type: "one of foreground, high, normal, low"
    default: type == [String: Any].self ? "an object" : type == [Any].self ? "an array" : "\(type)"
    }
}
