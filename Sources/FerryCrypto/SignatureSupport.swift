#if canImport(Glibc)
import Glibc
#endif

// File access and base64 for signature checking. Plain POSIX, no Foundation.

/// The size of the chunks files are streamed in.
let streamingChunkSize = 1 << 20

/// Opens a regular file for reading and calls `body` with its descriptor and its size; the
/// descriptor is closed when `body` returns.
/// - Throws: ``CryptoError`` naming the path when the file cannot be opened or is not a regular
///   file, or what `body` throws.
func withRegularFile<Result>(atPath path: String,
                             _ body: (_ descriptor: Int32, _ size: Int) throws(CryptoError) -> Result) throws(CryptoError) -> Result {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw CryptoError(message: "cannot open \(path): \(errorText(errno))") }
    defer { close(descriptor) }
    var info = stat()
    guard fstat(descriptor, &info) == 0 else { throw CryptoError(message: "cannot stat \(path): \(errorText(errno))") }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw CryptoError(message: "\(path) is not a regular file") }
    return try body(descriptor, Int(info.st_size))
}

/// The whole content of a small file (a key, a signature).
/// - Throws: ``CryptoError`` naming the path when the file cannot be read or is larger than `limit`.
public func contentsOfSmallFile(atPath path: String, limit: Int) throws(CryptoError) -> [UInt8] {
    try withRegularFile(atPath: path) { (descriptor, size) throws(CryptoError) in
        guard size <= limit else {
            throw CryptoError(message: "\(path) is \(size) bytes, more than the \(limit) bytes allowed here")
        }
        return try readToEnd(descriptor, path: path, limit: limit)
    }
}

/// Reads `descriptor` to its end.
/// - Throws: ``CryptoError`` naming `path` when a read fails or the file grows beyond `limit`.
private func readToEnd(_ descriptor: Int32, path: String, limit: Int) throws(CryptoError) -> [UInt8] {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if got < 0 {
            if errno == EINTR { continue }
            throw CryptoError(message: "cannot read \(path): \(errorText(errno))")
        }
        if got == 0 { break }
        bytes.append(contentsOf: buffer[0..<got])
        if bytes.count > limit { throw CryptoError(message: "\(path) grew beyond the \(limit) bytes allowed here") }
    }
    return bytes
}

/// Calls `body` with consecutive chunks (up to 1 MiB) of a file, until its end.
func forEachChunk(ofFileAtPath path: String,
                  _ body: (UnsafeRawBufferPointer) throws(CryptoError) -> Void) throws(CryptoError) {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw CryptoError(message: "cannot open \(path): \(errorText(errno))") }
    defer { close(descriptor) }
    _ = posix_fadvise(descriptor, 0, 0, POSIX_FADV_SEQUENTIAL)
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: streamingChunkSize, alignment: 64)
    defer { buffer.deallocate() }
    while true {
        let got = read(descriptor, buffer, streamingChunkSize)
        if got < 0 {
            if errno == EINTR { continue }
            throw CryptoError(message: "cannot read \(path): \(errorText(errno))")
        }
        if got == 0 { return }
        try body(UnsafeRawBufferPointer(start: buffer, count: got))
    }
}

/// Maps a whole file read-only and calls `body` with its bytes (an empty buffer for an empty file).
///
/// Costs address space equal to the file's size; pages come from the page cache as they
/// are touched. The file must not shrink while mapped.
func withMappedFile<Result>(atPath path: String,
                            _ body: (UnsafeRawBufferPointer) throws(CryptoError) -> Result) throws(CryptoError) -> Result {
    try withRegularFile(atPath: path) { (descriptor, size) throws(CryptoError) in
        if size == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0),
              mapping != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw CryptoError(message: "cannot map \(path) (\(size) bytes) into memory: \(errorText(errno))")
        }
        defer { munmap(mapping, size) }
        _ = madvise(mapping, size, MADV_SEQUENTIAL)
        return try body(UnsafeRawBufferPointer(start: mapping, count: size))
    }
}

/// `array.withUnsafeBytes`, keeping the typed error (the standard library's variant rethrows `any Error`).
func withBytes<Result>(of array: [UInt8],
                       _ body: (UnsafeRawBufferPointer) throws(CryptoError) -> Result) throws(CryptoError) -> Result {
    let outcome: Swift.Result<Result, CryptoError> = array.withUnsafeBytes { raw in
        do throws(CryptoError) {
            return .success(try body(raw))
        } catch {
            return .failure(error)
        }
    }
    return try outcome.get()
}

/// The last component of a path: "keys/release.pem" → "release.pem".
func lastPathComponent(_ path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return String(trimmed) }
    let name = trimmed[trimmed.index(after: slash)...]
    return name.isEmpty ? String(trimmed) : String(name)
}

/// How many times `needle` occurs in `haystack`, without overlaps.
func occurrences(of needle: [UInt8], in haystack: [UInt8]) -> Int {
    guard !needle.isEmpty, haystack.count >= needle.count else { return 0 }
    var count = 0
    var index = 0
    while index <= haystack.count - needle.count {
        if haystack[index..<(index + needle.count)].elementsEqual(needle) {
            count += 1
            index += needle.count
        } else {
            index += 1
        }
    }
    return count
}

func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

// MARK: - Base64

/// Decodes standard base64 (RFC 4648 §4, `+` and `/`); `nil` when malformed.
///
/// ASCII whitespace (spaces, tabs, line breaks) is ignored, so wrapped text decodes;
/// the `=` padding may be left out. Any other character, padding anywhere but at the
/// end, or a length that cannot be base64 gives `nil`.
public func bytes(fromBase64 text: String) -> [UInt8]? {
    var values: [UInt8] = []
    values.reserveCapacity(text.utf8.count)
    var padding = 0
    for character in text.utf8 {
        switch character {
        case 0x20, 0x09, 0x0A, 0x0D: continue
        case UInt8(ascii: "="):
            padding += 1
            continue
        default:
            break
        }
        guard padding == 0 else { return nil }  // data after padding
        let value: UInt8
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): value = 62
        case UInt8(ascii: "/"): value = 63
        default: return nil
        }
        values.append(value)
    }
    let remainder = values.count % 4
    guard remainder != 1 else { return nil }
    if padding > 0 {
        guard remainder != 0, padding == 4 - remainder else { return nil }
    }
    var out: [UInt8] = []
    out.reserveCapacity(values.count * 3 / 4)
    var index = 0
    while index + 4 <= values.count {
        let a = values[index], b = values[index + 1], c = values[index + 2], d = values[index + 3]
        out.append(a << 2 | b >> 4)
        out.append(b << 4 | c >> 2)
        out.append(c << 6 | d)
        index += 4
    }
    switch remainder {
    case 2:
        out.append(values[index] << 2 | values[index + 1] >> 4)
    case 3:
        out.append(values[index] << 2 | values[index + 1] >> 4)
        out.append(values[index + 1] << 4 | values[index + 2] >> 2)
    default:
        break
    }
    return out
}

/// Encodes bytes as standard base64 with padding.
public func base64String(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index < bytes.count {
        let a = bytes[index]
        let b = index + 1 < bytes.count ? bytes[index + 1] : 0
        let c = index + 2 < bytes.count ? bytes[index + 2] : 0
        out.append(alphabet[Int(a >> 2)])
        out.append(alphabet[Int((a & 0x03) << 4 | b >> 4)])
        out.append(index + 1 < bytes.count ? alphabet[Int((b & 0x0F) << 2 | c >> 6)] : UInt8(ascii: "="))
        out.append(index + 2 < bytes.count ? alphabet[Int(c & 0x3F)] : UInt8(ascii: "="))
        index += 3
    }
    return String(decoding: out, as: UTF8.self)
}
