import FerryCore
import Foundation
import Testing

@Suite("Job progress")
struct JobProgressTests {
    @Test("an empty job has a known total of zero")
    func emptyJob() throws {
        let job = try Job.sample(files: 0)
        #expect(Counts(job.progress) == Counts(bytesTotal: 0, bytesTransferred: 0, filesTotal: 0, filesTransferred: 0))
    }

    @Test("the total is unknown while any file's size is unknown")
    func unknownTotal() throws {
        let job = try Job.sample(in: .transferring)  // file 0: 40 of 100 bytes, file 1: size unknown
        #expect(Counts(job.progress) == Counts(bytesTotal: nil, bytesTransferred: 40, filesTotal: 2, filesTransferred: 0))
    }

    @Test("the total and the transferred bytes are sums once every size is known")
    func summedTotal() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(
            .responseReceived(file: 1, bytesTotal: 50, etag: nil, lastModified: nil, restartFromZero: false), at: later)
        _ = try job.apply(.bytesWritten(file: 1, bytes: 20), at: later)
        #expect(Counts(job.progress) == Counts(bytesTotal: 150, bytesTransferred: 60, filesTotal: 2, filesTransferred: 0))
    }

    @Test("filesTransferred counts the transferred files")
    func filesTransferred() throws {
        var job = try Job.sample(in: .transferring)
        _ = try job.apply(.bytesWritten(file: 0, bytes: 100), at: later)
        _ = try job.apply(.fileTransferred(file: 0), at: later)
        #expect(job.progress.filesTransferred == 1)
        #expect(job.progress.filesTotal == 2)
    }
}

@Suite("States, priorities and error codes")
struct EnumerationTests {
    @Test("priorities order foreground > high > normal > low")
    func priorityOrder() {
        #expect(JobPriority.foreground > .high)
        #expect(JobPriority.high > .normal)
        #expect(JobPriority.normal > .low)
        #expect(JobPriority.allCases.sorted(by: >) == [.foreground, .high, .normal, .low])
        #expect(JobPriority.allCases.filter(\.isBackground) == [.high, .normal, .low])
    }

    @Test("only ACKNOWLEDGED and CANCELLED are final")
    func finalStates() {
        #expect(Set(JobState.allCases.filter(\.isFinal)) == [.acknowledged, .cancelled])
    }

    @Test("only QUEUED, CONNECTING and TRANSFERRING are active")
    func activeStates() {
        #expect(Set(JobState.allCases.filter(\.isActive)) == [.queued, .connecting, .transferring])
    }

    @Test("state names are BITS' spellings")
    func stateNames() {
        #expect(JobState.transientError.rawValue == "TRANSIENT_ERROR")
        #expect(JobState.acknowledged.rawValue == "ACKNOWLEDGED")
    }

    @Test("HTTP error codes are spelled HTTP_ERROR_<status>")
    func httpErrorCode() {
        #expect(ErrorCode.httpError(404).rawValue == "HTTP_ERROR_404")
        #expect(ErrorCode.httpError(404) == ErrorCode(rawValue: "HTTP_ERROR_404"))
        #expect(ErrorCode.httpError(404) != ErrorCode.httpError(410))
    }

    @Test("a refused call names the state and the operation")
    func invalidStateError() {
        let error = FerryError.invalidState(.cancelled, "resume")
        #expect(error.code == .invalidState)
        #expect(error.context == .queueManager)
        #expect(!error.isTransient)
        #expect(error.message.contains("CANCELLED"))
        #expect(error.message.contains("resume"))
    }
}

@Suite("Temporary paths")
struct TemporaryPathTests {
    let id = try! #require(JobID("0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"))

    func job(destinations: [String]) throws -> Job {
        var job = Job(id: id, displayName: "paths", owner: 0, createdAt: origin)
        _ = try job.apply(.addFiles(destinations.map { JobFile(remoteURL: "https://example.com/x", localPath: $0) }), at: origin)
        return job
    }

    @Test("the temporary is a hidden file in the destination's directory, tagged with the job and the index")
    func temporaryPath() throws {
        let job = try job(destinations: ["/srv/downloads/a.iso", "/srv/downloads/report.pdf"])
        let path = job.temporaryPath(ofFile: 1)

        let slash = try #require(path.lastIndex(of: "/"))
        let directory = path[..<slash]
        let name = path[path.index(after: slash)...]
        #expect(directory == "/srv/downloads")
        #expect(name.hasPrefix("."))
        #expect(name.contains("report.pdf"))
        #expect(name.contains("0a1b2c3d"))
        #expect(name.contains("-1"))
        #expect(path != "/srv/downloads/report.pdf")
    }

    @Test("temporaries differ between files and between jobs")
    func temporaryPathsAreDistinct() throws {
        let job = try job(destinations: ["/srv/downloads/a.bin", "/srv/downloads/b.bin"])
        var other = Job(displayName: "other", owner: 0, createdAt: origin)
        _ = try other.apply(.addFiles([JobFile(remoteURL: "https://example.com/x", localPath: "/srv/downloads/a.bin")]), at: origin)

        #expect(job.temporaryPath(ofFile: 0) != job.temporaryPath(ofFile: 1))
        #expect(job.temporaryPath(ofFile: 0) != other.temporaryPath(ofFile: 0))
    }

    @Test("two files of one job cannot share a destination")
    func duplicateDestinationsAreRefused() throws {
        var job = try job(destinations: ["/srv/downloads/a.bin"])
        let before = job
        #expect(throws: FerryError.self) {
            _ = try job.apply(.addFiles([JobFile(remoteURL: "https://example.com/y", localPath: "/srv/downloads/a.bin")]), at: origin)
        }
        #expect(job == before)
    }
}

@Suite("Job identifiers")
struct JobIDTests {
    @Test("a job id parses its own description")
    func descriptionRoundTrip() throws {
        let id = JobID()
        #expect(JobID(id.description) == id)
        #expect(id.description == id.description.lowercased())
    }

    @Test("a job id parses with braces and in upper case")
    func bracesAndCase() throws {
        let id = JobID()
        #expect(JobID("{\(id.description)}") == id)
        #expect(JobID("{\(id.description.uppercased())}") == id)
    }

    @Test("text that is not a UUID is not a job id", arguments: ["", "{}", "not-a-uuid", "0A1B2C3D-4E5F-6071-8293"])
    func invalidText(text: String) {
        #expect(JobID(text) == nil)
    }

    @Test("a job id encodes as its description and decodes back")
    func jsonRoundTrip() throws {
        let id = JobID()
        let data = try JSONEncoder().encode(id)
        #expect(String(decoding: data, as: UTF8.self) == "\"\(id.description)\"")
        #expect(try JSONDecoder().decode(JobID.self, from: data) == id)
    }

    @Test("a job id decodes from JSON with braces")
    func jsonWithBraces() throws {
        let id = JobID()
        let data = Data("\"{\(id.description)}\"".utf8)
        #expect(try JSONDecoder().decode(JobID.self, from: data) == id)
    }

    @Test("JSON that is not a job id fails to decode")
    func jsonInvalid() {
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(JobID.self, from: Data("\"nope\"".utf8))
        }
    }
}
