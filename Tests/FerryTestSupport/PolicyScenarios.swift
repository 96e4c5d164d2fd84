import Foundation

/// The README's and docs' scenarios in which an error policy or a validator decides, set up
/// on a ``FaultServer`` so that the same scenario can be run through `ferry transfer` in its
/// own process and through a real `ferryd`.
///
/// Each scenario serves its files, queues its faults and returns the `ferry` arguments
/// (after `transfer`) that a user would type, from a download directory.
public struct PolicyScenario {
    /// The arguments after `ferry transfer`, destinations relative to the download directory.
    public let arguments: [String]
    /// The destination's name in the download directory.
    public let destination: String
    /// What must end up under ``destination`` (nil: nothing may appear there).
    public let expected: [UInt8]?

    /// A background job whose server drops the first answer half-way and ignores `Range`
    /// afterwards: `TRUNCATED_BODY`, then `INSUFFICIENT_RANGE_SUPPORT` on the resume, which the
    /// range-fallback policy turns into a foreground whole-file fetch.
    public static func rangeFallback(_ server: FaultServer, size: Int = 6 << 20) -> PolicyScenario {
        let data = testBytes(size, seed: 901)
        server.setFile("/fallback.bin", data: data)
        server.addFault("/fallback.bin", .dropAfter(bytes: size / 2), times: 1)
        server.addFault("/fallback.bin", .ignoreRanges, times: nil)
        return PolicyScenario(arguments: ["--priority", "normal", "--min-retry-delay", "1", server.baseURL + "/fallback.bin", "fallback.bin"],
                              destination: "fallback.bin", expected: data)
    }

    /// Mirror A serves bytes whose SHA-256 is wrong, mirror B the right ones: `VALIDATION_FAILED`
    /// on A, then mirror-failover points the file at B.
    public static func mirrorAfterCorruptCopy(_ server: FaultServer) throws -> PolicyScenario {
        let good = testBytes(300_000, seed: 902)
        var corrupt = good
        corrupt[150_000] ^= 0xFF
        server.setFile("/a/corrupt.bin", data: corrupt)
        server.setFile("/b/corrupt.bin", data: good)
        return PolicyScenario(arguments: ["--property", "sha256=\(try sha256Hex(good))", "--property", "mirrors=\(server.baseURL)/b/corrupt.bin",
                                          server.baseURL + "/a/corrupt.bin", "corrupt.bin"],
                              destination: "corrupt.bin", expected: good)
    }

    /// Mirror A answers 404, mirror B serves the file: mirror-failover points the file at B.
    public static func mirrorAfter404(_ server: FaultServer) -> PolicyScenario {
        let good = testBytes(200_000, seed: 903)
        server.setFile("/b/missing.bin", data: good)
        return PolicyScenario(arguments: ["--property", "mirrors=\(server.baseURL)/b/missing.bin", server.baseURL + "/a/missing.bin", "missing.bin"],
                              destination: "missing.bin", expected: good)
    }

    /// The server answers 503 with `Retry-After: 2` once: the retry waits at least 2 s, though the
    /// minimum retry delay is 1 s.
    public static func retryAfter(_ server: FaultServer) -> PolicyScenario {
        let data = testBytes(100_000, seed: 904)
        server.setFile("/busy.bin", data: data)
        server.addFault("/busy.bin", .status(503, retryAfter: "2"), times: 1)
        return PolicyScenario(arguments: ["--min-retry-delay", "1", server.baseURL + "/busy.bin", "busy.bin"],
                              destination: "busy.bin", expected: data)
    }

    /// The only copy fails its SHA-256: the job fails with `VALIDATION_FAILED`, and neither the
    /// destination (which holds an older file) nor any temporary shows anything of it.
    public static func validationFailure(_ server: FaultServer) throws -> PolicyScenario {
        let expected = testBytes(80_000, seed: 905)
        server.setFile("/evil.bin", data: Array("<html>mirror error page</html>".utf8))
        return PolicyScenario(arguments: ["--property", "sha256=\(try sha256Hex(expected))", server.baseURL + "/evil.bin", "evil.bin"],
                              destination: "evil.bin", expected: nil)
    }
}

/// The SHA-256 of `data` in hexadecimal, by coreutils, independently of Ferry's own code.
public func sha256Hex(_ data: [UInt8]) throws -> String {
    let file = NSTemporaryDirectory() + "/ferry-digest-\(UUID().uuidString)"
    FileManager.default.createFile(atPath: file, contents: Data(data))
    defer { unlink(file) }
    return String(try PluginBuilder.run("/usr/bin/sha256sum", [file]).output.prefix(64))
}
