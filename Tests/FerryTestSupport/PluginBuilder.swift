import Foundation

/// Compiles C plugins for tests with the system C compiler and the public header alone,
/// as a third party would.
public enum PluginBuilder {
    /// The package's root directory, found from this source file's path.
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    public static var headerDirectory: String { packageRoot + "/Sources/FerryPluginABI/include" }

    /// Builds `source` (relative to the package root) into `directory/lib<name>.so`.
    /// - Returns: the path of the shared object.
    /// - Parameter header: the directory of the `ferry_plugin.h` to build against (the current
    ///   one by default; `Tests/Fixtures/abi/<version>` holds the header as each minor version
    ///   shipped it).
    public static func build(_ source: String, name: String, in directory: String, defines: [String] = [],
                             header: String? = nil) throws -> String {
        let output = "\(directory)/lib\(name).so"
        let result = try run("/usr/bin/cc", ["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-I", header ?? headerDirectory]
                                + defines.map { "-D" + $0 } + ["-o", output, packageRoot + "/" + source])
        guard result.status == 0 else {
            throw NSError(domain: "PluginBuilder", code: Int(result.status), userInfo: [NSLocalizedDescriptionKey: "cc failed: \(result.output)"])
        }
        return output
    }

    /// Runs a program and returns its status and combined output.
    public static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try runWithSignalsUnblocked(process)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
