import CCrypto
#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSL error, with the library's own text.
public struct CryptoError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public var description: String { message }

    /// Captures (and clears) OpenSSL's error queue after a failed `operation`.
    static func openSSL(_ operation: String) -> CryptoError {
        var texts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            texts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return CryptoError(message: texts.isEmpty ? "\(operation) failed" : "\(operation): \(texts.joined(separator: "; "))")
    }

    public init(message: String) { self.message = message }
}

/// The digest algorithms Ferry computes.
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case sha256
    case sha512

    public var byteCount: Int { self == .sha256 ? 32 : 64 }

    var evp: OpaquePointer? { self == .sha256 ? EVP_sha256() : EVP_sha512() }
}

/// A streaming message digest through OpenSSL EVP.
///
/// Not thread-safe: one owner feeds it. The corresponding C functions are
/// `EVP_DigestInit_ex`, `EVP_DigestUpdate` and `EVP_DigestFinal_ex`.
public final class StreamingDigest: @unchecked Sendable {
    public let algorithm: DigestAlgorithm
    private let context: OpaquePointer

    public init(_ algorithm: DigestAlgorithm) throws(CryptoError) {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError.openSSL("EVP_MD_CTX_new") }
        guard EVP_DigestInit_ex(context, algorithm.evp, nil) == 1 else {
            EVP_MD_CTX_free(context)
            throw CryptoError.openSSL("EVP_DigestInit_ex")
        }
        self.algorithm = algorithm
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        // EVP_DigestUpdate fails only on a misused context, which this class never produces.
        _ = EVP_DigestUpdate(context, base, bytes.count)
    }

    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest of everything fed so far. The digest cannot be fed afterwards.
    public func finish() -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = EVP_DigestFinal_ex(context, &output, &length)
        return Array(output.prefix(Int(length)))
    }

    /// Feeds the first `length` bytes of the file at `descriptor` (read with `pread`, from offset 0).
    public func update(fromDescriptor descriptor: Int32, length: UInt64) throws(CryptoError) {
        let bufferSize = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 64)
        defer { buffer.deallocate() }
        var offset: UInt64 = 0
        while offset < length {
            let want = Int(min(UInt64(bufferSize), length - offset))
            let got = pread(descriptor, buffer, want, off_t(offset))
            if got < 0 {
                if errno == EINTR { continue }
                throw CryptoError(message: "cannot read for hashing: \(String(cString: strerror(errno)))")
            }
            if got == 0 { throw CryptoError(message: "the file ended at \(offset) of \(length) bytes while hashing") }
            update(UnsafeRawBufferPointer(start: buffer, count: got))
            offset += UInt64(got)
        }
    }

    /// The digest of a whole file.
    public static func ofFile(atPath path: String, _ algorithm: DigestAlgorithm) throws(CryptoError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw CryptoError(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw CryptoError(message: "cannot stat \(path)") }
        _ = posix_fadvise(descriptor, 0, 0, POSIX_FADV_SEQUENTIAL)
        let digest = try StreamingDigest(algorithm)
        try digest.update(fromDescriptor: descriptor, length: UInt64(info.st_size))
        return digest.finish()
    }
}

/// Lowercase hexadecimal.
public func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Parses hexadecimal (either case); `nil` when malformed.
public func bytes(fromHex text: String) -> [UInt8]? {
    let scalars = Array(text.utf8)
    guard scalars.count % 2 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
    var out = [UInt8]()
    out.reserveCapacity(scalars.count / 2)
    var index = 0
    while index < scalars.count {
        guard let high = value(scalars[index]), let low = value(scalars[index + 1]) else { return nil }
        out.append(high << 4 | low)
        index += 2
    }
    return out
}
