import FerryTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `ferry transfer` as a user runs it: the real binary, a loopback server, real files.
@Suite(.serialized)
final class TransferCommandTests {
    let directory: TemporaryDirectory
    let server: FaultServer
    let downloads: String
    var stateDirectory: String { directory.file("state") }

    init() throws {
        directory = try TemporaryDirectory("ferry-cli")
        downloads = try directory.subdirectory("downloads")
        server = try FaultServer()
    }

    deinit {
        server.stop()
        directory.remove()
    }

    private func ferry(_ arguments: [String], timeout: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
        try ChildProcess.run("ferry", arguments + ["--state-dir", stateDirectory], workingDirectory: downloads, timeout: timeout)
    }

    /// The bytes the transfer's store holds as durable for its only file, read with the
    /// command-line shell; nil while there is no store or it cannot be read.
    private func durableBytes() -> Int? {
        let transfers = stateDirectory + "/transfers"
        guard let store = directoryEntries(transfers).first(where: { $0.hasSuffix(".db") }),
              let answer = try? PluginBuilder.run("/usr/bin/sqlite3", [transfers + "/" + store, "SELECT bytes_durable FROM files"]) else { return nil }
        return Int(answer.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private func hiddenTemporaries() -> [String] {
        directoryEntries(downloads).filter { $0.hasPrefix(".") && $0.hasSuffix(".part") }
    }

    @Test func transfersPairsToTheirDestinations() throws {
        let a = testBytes(1_500_000, seed: 21)
        let b = Array("second file\n".utf8)
        server.setFile("/a.bin", data: a)
        server.setFile("/b.txt", data: b)
        let result = try ferry(["transfer", server.baseURL + "/a.bin", "a.bin", server.baseURL + "/b.txt", downloads + "/b.txt"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fileHolds(downloads + "/a.bin", a))
        #expect(fileHolds(downloads + "/b.txt", b))
        #expect(result.stderr.contains("Transferred 2 files"), "\(result.stderr)")
        #expect(hiddenTemporaries() == [])
    }

    @Test func aFatalErrorExitsOneNamingTheCodeTheFileAndTheReason() throws {
        let result = try ferry(["transfer", server.baseURL + "/nope.bin", "nope.bin"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("HTTP_ERROR_404 (remoteFile)"), "\(result.stderr)")
        #expect(result.stderr.contains(server.baseURL + "/nope.bin"), "\(result.stderr)")
        #expect(result.stderr.contains(downloads + "/nope.bin"), "\(result.stderr)")
        #expect(!exists(downloads + "/nope.bin"))
        #expect(hiddenTemporaries() == [], "a failed transfer is cancelled: its temporaries are gone")
    }

    @Test func manifestTransfersEveryFileWithItsProperties() throws {
        var entries: [String] = []
        var expected: [String: [UInt8]] = [:]
        for index in 0..<5 {
            let data = testBytes(10_000 + index * 777, seed: UInt64(30 + index))
            server.setFile("/pool/\(index).deb", data: data)
            expected["\(index).deb"] = data
            entries.append(#"{"url": "\#(server.baseURL)/pool/\#(index).deb", "destination": "\#(index).deb", "size": \#(data.count), "properties": {"origin": "main"}}"#)
        }
        let manifest = directory.file("manifest.json")
        try #"{"version": 1, "displayName": "pool", "files": [\#(entries.joined(separator: ","))]}"#
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        let result = try ferry(["transfer", "--manifest", manifest])
        #expect(result.status == 0, "\(result.stderr)")
        for (name, data) in expected { #expect(fileHolds(downloads + "/" + name, data), "\(name)") }
    }

    @Test(arguments: [
        (#"{"version": 1, "files": [{"url": "http://h/a", "destination": "a"}, {"url": "http://h/b"}]}"#, "files[1].destination: missing"),
        (#"{"version": 2, "files": []}"#, "version: version 2 is not supported"),
        (#"{"files": []}"#, "version: missing"),
        (#"{"version": 1, "files": [{"url": "http://h/a", "destination": "a", "sha256": "xyz"}]}"#, "files[0].sha256: must be 64 hexadecimal digits"),
        (#"{"version": 1, "files": [{"url": "http://h/a", "destination": "a", "size": -1}]}"#, "files[0].size"),
        (#"{"version": 1, "files": [{"url": "http://h/a", "destination": "a", "colour": "red"}]}"#, "files[0].colour: unknown field"),
        (#"{"version": 1, "files": [{"url": "http://h/a", "destination": "a"}, {"url": "http://h/b", "destination": "a"}]}"#, "files[1].destination"),
        (#"{"version": 1, "files": "#, "not valid JSON"),
    ])
    func malformedManifestsNameTheEntryAndTheField(_ text: String, _ expected: String) throws {
        let manifest = directory.file("bad.json")
        try text.write(toFile: manifest, atomically: true, encoding: .utf8)
        let result = try ferry(["transfer", "--manifest", manifest])
        #expect(result.status == 65, "\(result.stderr)")
        #expect(result.stderr.contains(manifest), "names the file: \(result.stderr)")
        #expect(result.stderr.contains(expected), "should say '\(expected)': \(result.stderr)")
    }

    @Test func badArgumentsAreRefusedBeforeAnythingStarts() throws {
        let relative = try ferry(["transfer", "ftp://example.invalid/a", "a"])
        #expect(relative.status == 65, "\(relative.stderr)")
        #expect(relative.stderr.contains("unsupported URL scheme 'ftp'"), "\(relative.stderr)")
        let missingDirectory = try ferry(["transfer", server.baseURL + "/a", "/nonexistent-dir-for-ferry/a"])
        #expect(missingDirectory.status == 65, "\(missingDirectory.stderr)")
        #expect(missingDirectory.stderr.contains("/nonexistent-dir-for-ferry does not exist"), "\(missingDirectory.stderr)")
        let odd = try ferry(["transfer", server.baseURL + "/a"])
        #expect(odd.status != 0)
        #expect(odd.stderr.contains("every URL needs a destination"), "\(odd.stderr)")
    }

    /// The scenario pipelines care about most: the process is killed with SIGKILL in the
    /// middle of a download, and rerunning the same command continues from the checkpoint.
    @Test func killNineMidTransferThenRerunResumesFromTheCheckpoint() throws {
        let data = testBytes(8 << 20, seed: 40)
        let heldAt = 3 << 20
        server.setFile("/big.bin", data: data)
        // The body stops part way until the test lets it go on: the kill lands mid-file.
        server.hold("/big.bin", afterBytes: heldAt)
        let arguments = ["transfer", server.baseURL + "/big.bin", "big.bin", "--state-dir", stateDirectory]
        let first = try ChildProcess("ferry", arguments, workingDirectory: downloads)
        let temporaryGrew = waitUntil(timeout: 60) {
            guard let name = hiddenTemporaries().first else { return false }
            return (contentsOf(downloads + "/" + name)?.count ?? 0) == heldAt
        }
        #expect(temporaryGrew, "the first run wrote into a hidden temporary")
        // Default checkpoints come every 2 s: wait for the one of every byte that arrived.
        #expect(waitUntil(timeout: 60) { durableBytes() == heldAt }, "checkpointed: \(durableBytes() ?? -1)")
        first.signal(SIGKILL)
        first.wait()
        let temporary = try #require(hiddenTemporaries().first)
        let bytesAtKill = try #require(contentsOf(downloads + "/" + temporary)).count
        #expect(!exists(downloads + "/big.bin"), "nothing torn is ever visible under the final name")

        server.release("/big.bin")
        server.resetRequests()
        let rerun = try ChildProcess.run("ferry", arguments, workingDirectory: downloads)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("Continuing job"), "\(rerun.stderr)")
        let resumed = try #require(server.requests(for: "/big.bin").first?.rangeStart, "the rerun asked for a range")
        #expect(resumed == Int64(heldAt), "the rerun kept every checkpointed byte")
        #expect(resumed <= Int64(bytesAtKill), "never beyond what was on disk")
        #expect(fileHolds(downloads + "/big.bin", data))
        #expect(hiddenTemporaries() == [])
    }

    @Test func interruptSavesProgressAndExits130() throws {
        let data = testBytes(4 << 20, seed: 41)
        server.setFile("/int.bin", data: data)
        // Bytes keep coming until the interrupt, which lands before the held end of the body.
        server.setRate("/int.bin", bytesPerSecond: 1 << 20)
        server.hold("/int.bin", afterBytes: 3 << 20)
        let arguments = ["transfer", server.baseURL + "/int.bin", "int.bin", "--state-dir", stateDirectory]
        let first = try ChildProcess("ferry", arguments, workingDirectory: downloads)
        #expect(waitUntil(timeout: 60) {
            hiddenTemporaries().first.map { (contentsOf(downloads + "/" + $0)?.count ?? 0) >= 1 << 20 } ?? false
        })
        first.signal(SIGINT)
        #expect(first.wait(timeout: 30) == 130, "\(first.standardError)")
        #expect(first.standardError.contains("run the same command again"), "\(first.standardError)")
        let kept = try #require(hiddenTemporaries().first.flatMap { contentsOf(downloads + "/" + $0)?.count })

        server.setRate("/int.bin", bytesPerSecond: nil)
        server.release("/int.bin")
        server.resetRequests()
        let rerun = try ChildProcess.run("ferry", arguments, workingDirectory: downloads)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(server.requests(for: "/int.bin").first?.rangeStart == Int64(kept), "a clean stop keeps every byte")
        #expect(fileHolds(downloads + "/int.bin", data))
    }
}

/// `ferry transfer` validates with the built-in plugins and no configuration at all.
@Suite(.serialized)
final class TransferValidationTests {
    let directory: TemporaryDirectory
    let server: FaultServer

    init() throws {
        directory = try TemporaryDirectory("ferry-cli-validate")
        server = try FaultServer()
    }

    deinit {
        server.stop()
        directory.remove()
    }

    private func manifest(_ entries: [(path: String, sha256: String, size: Int)]) throws -> String {
        let files = entries.map { #"{"url": "\#(server.baseURL)\#($0.path)", "destination": "\#(directory.path)\#($0.path)", "sha256": "\#($0.sha256)", "size": \#($0.size)}"# }
        let path = directory.file("manifest.json")
        try #"{"version": 1, "files": [\#(files.joined(separator: ","))]}"#.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// SHA-256 by coreutils, independently of Ferry's own code.
    private func digest(_ data: [UInt8]) throws -> String {
        let file = directory.file("digest-input")
        FileManager.default.createFile(atPath: file, contents: Data(data))
        defer { unlink(file) }
        return String(try PluginBuilder.run("/usr/bin/sha256sum", [file]).output.prefix(64))
    }

    @Test func aManifestWithHashesAndSizesValidatesWithNoConfiguration() throws {
        let a = testBytes(200_000, seed: 70), b = testBytes(3_000, seed: 71)
        server.setFile("/a.bin", data: a)
        server.setFile("/b.bin", data: b)
        let path = try manifest([("/a.bin", try digest(a), a.count), ("/b.bin", try digest(b), b.count)])
        let result = try ChildProcess.run("ferry", ["transfer", "--manifest", path, "--state-dir", directory.file("state")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fileHolds(directory.file("a.bin"), a))
        #expect(fileHolds(directory.file("b.bin"), b))
    }

    @Test func aFileFailingValidationExitsOneNamingTheFileAndTheReason() throws {
        let good = testBytes(50_000, seed: 72)
        server.setFile("/good.bin", data: good)
        server.setFile("/evil.bin", data: Array("<html>mirror error</html>".utf8))
        let path = try manifest([("/good.bin", try digest(good), good.count), ("/evil.bin", try digest(good), good.count)])
        let result = try ChildProcess.run("ferry", ["transfer", "--manifest", path, "--state-dir", directory.file("state")])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("VALIDATION_FAILED (validation)"), "\(result.stderr)")
        #expect(result.stderr.contains("file 1: \(server.baseURL)/evil.bin"), "\(result.stderr)")
        #expect(result.stderr.contains("mismatch"), "\(result.stderr)")
        #expect(!exists(directory.file("evil.bin")))
        #expect(!exists(directory.file("good.bin")), "the job is atomic: nothing is committed when one file fails")
    }
}
