import FerryControl
import FerryCore
import FerryTestSupport
import Foundation
import Testing

/// Mirrors, dynamic content and TLS options through the control API of the real ferryd.
@Suite(.serialized)
final class MirrorsAndTransferOptionsTests {
    let h: AgentHarness

    init() throws {
        h = try AgentHarness()
        try h.start()
    }

    deinit { h.tearDown() }

    /// The refusal a raw request got, with its status; fails when the answer is not an error envelope.
    private func refusal(_ method: String, _ path: String, _ body: String?, sourceLocation: SourceLocation = #_sourceLocation) throws -> (status: Int, error: ErrorDocument) {
        let answer = try h.curl(method, path, body: body)
        let envelope = try #require(try? ControlJSON.decoder.decode(ErrorEnvelope.self, from: Data(answer.body.utf8)), "\(method) \(path): not an error: \(answer.body)", sourceLocation: sourceLocation)
        return (answer.status, envelope.error)
    }

    // MARK: - Mirrors

    @Test func filesCarryTheirMirrorsFromCreationAndAddition() throws {
        let job = try h.client.createJob(CreateJobRequest(displayName: "mirrored", files: [
            NewFileDocument(url: "https://a.example/pool/a.deb", path: h.destination("a.deb"),
                            properties: ["size": "10", "mirrors": "https://b.example/pool/a.deb"],
                            mirrors: ["http://c.example:8080/pool/a.deb", "https://b.example/pool/a.deb", "https://a.example/pool/a.deb"]),
            NewFileDocument(url: "https://a.example/pool/b.deb", path: h.destination("b.deb")),
        ]))
        let expected = ["https://b.example/pool/a.deb", "http://c.example:8080/pool/a.deb"]
        #expect(job.files[0].mirrors == expected, "given mirrors follow the property's, without repeats or the file's own URL")
        #expect(job.files[0].properties["mirrors"] == expected.joined(separator: " "), "stored in the mirrors property, joined by spaces")
        #expect(job.files[0].properties["size"] == "10", "the other properties are kept")
        #expect(job.files[1].mirrors == [])
        #expect(job.files[1].properties["mirrors"] == nil)

        // A file: mirror must be readable by the job's owner, as a file: URL must.
        let local = h.destination("c-copy.deb")
        FileManager.default.createFile(atPath: local, contents: Data("c".utf8))
        let added = try h.client.addFiles(job.id, [NewFileDocument(url: "https://a.example/pool/c.deb", path: h.destination("c.deb"),
                                                                   mirrors: ["file://" + local])])
        #expect(added.files[2].mirrors == ["file://" + local])

        // As read back, over the wire by hand.
        let read = try h.curl("GET", "/v1/jobs/\(job.id)")
        #expect(read.status == 200, "\(read.body)")
        let document = try ControlJSON.decoder.decode(JobDocument.self, from: Data(read.body.utf8))
        #expect(document.files.map(\.mirrors) == [expected, [], ["file://" + local]])
        #expect(read.body.contains(#""mirrors":[]"#), "a file without mirrors has an empty list: \(read.body)")

        // A progress poll leaves the files out, but still counts them.
        let summary = try h.curl("GET", "/v1/jobs/\(job.id)?files=false")
        #expect(summary.status == 200, "\(summary.body)")
        let light = try ControlJSON.decoder.decode(JobDocument.self, from: Data(summary.body.utf8))
        #expect(light.files.isEmpty)
        #expect(light.progress.filesTotal == 3)
        #expect(try refusal("GET", "/v1/jobs/\(job.id)?files=maybe", nil).status == 400)
    }

    @Test func mirrorsAddedToAFileAreAppendedOnce() throws {
        let job = try h.client.createJob(CreateJobRequest(displayName: "more", files: [
            NewFileDocument(url: "https://a.example/x", path: h.destination("x"), mirrors: ["https://b.example/x"]),
        ]))
        let first = try h.client.addMirrors(job.id, file: 0, urls: ["https://c.example/x", "https://b.example/x", "https://a.example/x"])
        #expect(first.files[0].mirrors == ["https://b.example/x", "https://c.example/x"])
        let byHand = try h.curl("POST", "/v1/jobs/\(job.id)/files/0/mirrors", body: #"{"urls": ["http://d.example:81/x"]}"#)
        #expect(byHand.status == 200, "\(byHand.body)")
        #expect(try h.client.job(job.id).files[0].mirrors == ["https://b.example/x", "https://c.example/x", "http://d.example:81/x"])
    }

    @Test func badMirrorsAreRefusedNamingThem() throws {
        let job = try h.client.createJob(CreateJobRequest(displayName: "target", files: [NewFileDocument(url: "https://a.example/x", path: h.destination("x"))]))
        let mirrors = "/v1/jobs/\(job.id)/files/0/mirrors"
        let cases: [(String, String, String?, Int, String, String)] = [
            ("POST", mirrors, #"{"urls": ["https://b.example/a b"]}"#, 400, "INVALID_ARGUMENT", "a mirror URL may not be empty or contain spaces: 'https://b.example/a b'"),
            ("POST", mirrors, #"{"urls": ["https://b.example/ok", ""]}"#, 400, "INVALID_ARGUMENT", "a mirror URL may not be empty or contain spaces: ''"),
            ("POST", mirrors, #"{"urls": ["ftp://b.example/x"]}"#, 400, "UNSUPPORTED_URL", "unsupported URL scheme 'ftp' in mirror ftp://b.example/x"),
            ("POST", mirrors, #"{"urls": []}"#, 400, "INVALID_ARGUMENT", "no mirror URLs given"),
            ("POST", mirrors, #"{"urls": ["https://b.example/x"], "url": "https://c.example/x"}"#, 400, "INVALID_ARGUMENT", "unknown field url (known: urls)"),
            ("POST", mirrors, "{}", 400, "INVALID_ARGUMENT", "missing field urls"),
            ("POST", mirrors, #"{"urls": "https://b.example/x"}"#, 400, "INVALID_ARGUMENT", "urls: expected an array"),
            ("POST", "/v1/jobs/\(job.id)/files/3/mirrors", #"{"urls": ["https://b.example/x"]}"#, 400, "INVALID_ARGUMENT", "the job has no file 3"),
            ("POST", "/v1/jobs/\(job.id)/files/x/mirrors", #"{"urls": ["https://b.example/x"]}"#, 400, "INVALID_ARGUMENT", "whole number"),
            ("POST", "/v1/jobs/00000000-0000-0000-0000-000000000000/files/0/mirrors", #"{"urls": ["https://b.example/x"]}"#, 404, "NOT_FOUND", "no job"),
            ("POST", "/v1/jobs/\(job.id)/files", #"{"files": [{"url": "https://a.example/y", "path": "\#(h.destination("y"))", "mirror": ["https://b.example/y"]}]}"#,
             400, "INVALID_ARGUMENT", "unknown field mirror (known: mirrors, path, properties, url)"),
            ("POST", "/v1/jobs/\(job.id)/files", #"{"files": [{"url": "https://a.example/y", "path": "\#(h.destination("y"))"}, {"url": "https://a.example/z", "path": "\#(h.destination("z"))", "mirrors": ["gopher://b.example/z"]}]}"#,
             400, "UNSUPPORTED_URL", "file 1: unsupported URL scheme 'gopher' in mirror gopher://b.example/z"),
            ("POST", "/v1/jobs/\(job.id)/files", #"{"files": [{"url": "https://a.example/y", "path": "\#(h.destination("y"))", "properties": {"mirrors": "https://b.example/y mailto:x@example.org"}}]}"#,
             400, "UNSUPPORTED_URL", "unsupported URL scheme 'mailto' in mirror mailto:x@example.org"),
        ]
        for (method, path, body, status, code, fragment) in cases {
            let (answered, error) = try refusal(method, path, body)
            #expect(answered == status, "\(path) \(body ?? ""): \(error)")
            #expect(error.code == code, "\(path) \(body ?? ""): \(error)")
            #expect(error.message.contains(fragment), "\(path) \(body ?? "") should say '\(fragment)': \(error.message)")
        }
        let after = try h.client.job(job.id)
        #expect(after.files.count == 1, "no refused file was added")
        #expect(after.files[0].mirrors == [], "no refused mirror was added")
    }

    @Test(arguments: ["https://b.example/a b", "gopher://b.example/x", "https:///no-host"])
    func aJobWithABadMirrorIsNotCreated(_ mirror: String) throws {
        let body = #"{"displayName": "x", "files": [{"url": "https://a.example/x", "path": "\#(h.destination("x"))", "mirrors": ["\#(mirror)"]}]}"#
        let (status, error) = try refusal("POST", "/v1/jobs", body)
        #expect(status == 400, "\(mirror): \(error)")
        #expect(error.message.contains(mirror), "the message names \(mirror): \(error.message)")
        #expect(try h.client.listJobs() == [], "no job is left behind")
    }

    // MARK: - Dynamic content

    @Test func dynamicContentAndItsLimitRoundTripAndClear() throws {
        let job = try h.client.createJob(CreateJobRequest(displayName: "dynamic", settings: JobSettings(dynamicContent: true, maxFileBytes: 1_048_576)))
        #expect(job.dynamicContent)
        #expect(job.maxFileBytes == 1_048_576)

        var now = try h.client.update(job.id, JobSettings(maxFileBytes: 4096))
        #expect(now.dynamicContent, "a limit alone keeps dynamic content on")
        #expect(now.maxFileBytes == 4096)
        now = try h.client.update(job.id, JobSettings(dynamicContent: false))
        #expect(!now.dynamicContent)
        #expect(now.maxFileBytes == 4096, "dynamic content alone keeps the limit")

        let cleared = try h.curl("PATCH", "/v1/jobs/\(job.id)", body: #"{"maxFileBytes": 0}"#)
        #expect(cleared.status == 200, "\(cleared.body)")
        #expect(!cleared.body.contains("maxFileBytes"), "0 removes the job's limit, and an absent value is left out: \(cleared.body)")
        #expect(cleared.body.contains(#""dynamicContent":false"#), "\(cleared.body)")
        #expect(try h.client.job(job.id).maxFileBytes == nil)

        for bad in ["-1", "1.5", #""1 MiB""#] {
            let (status, error) = try refusal("PATCH", "/v1/jobs/\(job.id)", #"{"maxFileBytes": \#(bad)}"#)
            #expect(status == 400, "\(bad): \(error)")
            #expect(error.message == "maxFileBytes: expected a whole number of bytes ≥ 0", "\(bad)")
        }
        #expect(try refusal("PATCH", "/v1/jobs/\(job.id)", #"{"dynamicContnet": true}"#).error.message == "unknown field dynamicContnet (known: autoComplete, customHeaders, description, displayName, dynamicContent, maxFileBytes, minRetryDelaySec, noProgressTimeoutSec, notifyCommand, notifyFlags, priority, properties, tlsCAFile, tlsPinnedPublicKey)")
    }

    // MARK: - TLS options

    @Test func tlsOptionsRoundTripClearOneByOneAndSurviveARestart() throws {
        let caFile = h.directory.file("extra-ca.pem")
        try "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".write(toFile: caFile, atomically: true, encoding: .utf8)
        chmod(caFile, 0o644)
        let pin = "sha256//AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        let job = try h.client.createJob(CreateJobRequest(displayName: "tls", settings: JobSettings(tlsCAFile: caFile, tlsPinnedPublicKey: pin)))
        #expect(job.tlsCAFile == caFile)
        #expect(job.tlsPinnedPublicKey == pin)

        h.stop()
        try h.start()
        let back = try h.client.job(job.id)
        #expect(back.tlsCAFile == caFile, "kept across a restart")
        #expect(back.tlsPinnedPublicKey == pin)

        var now = try h.client.update(job.id, JobSettings(tlsCAFile: ""))
        #expect(now.tlsCAFile == nil, "\"\" removes the CA file")
        #expect(now.tlsPinnedPublicKey == pin, "the pin alone is kept")
        now = try h.client.update(job.id, JobSettings(tlsCAFile: caFile))
        #expect(now.tlsPinnedPublicKey == pin, "a CA file alone keeps the pin")
        now = try h.client.update(job.id, JobSettings(tlsPinnedPublicKey: ""))
        #expect(now.tlsPinnedPublicKey == nil, "\"\" removes the pin")
        #expect(now.tlsCAFile == caFile, "a pin alone keeps the CA file")
        let cleared = try h.curl("PATCH", "/v1/jobs/\(job.id)", body: #"{"tlsCAFile": ""}"#)
        #expect(cleared.status == 200, "\(cleared.body)")
        #expect(!(cleared.body.contains("tlsCAFile") || cleared.body.contains("tlsPinnedPublicKey")), "\(cleared.body)")
    }

    @Test func unusableTLSOptionsAreRefused() throws {
        let job = try h.client.createJob(CreateJobRequest(displayName: "tls"))
        let patch = "/v1/jobs/\(job.id)"
        let cases: [(String, String)] = [
            (#"{"tlsCAFile": "certs/ca.pem"}"#, "tlsCAFile must be an absolute path, got 'certs/ca.pem'"),
            (#"{"tlsCAFile": "\#(h.directory.file("no-such-ca.pem"))"}"#, "cannot read the CA file \(h.directory.file("no-such-ca.pem"))"),
            (#"{"tlsPinnedPublicKey": "md5//abc"}"#, "a public key pin is 'sha256//'"),
        ]
        for (body, fragment) in cases {
            let (status, error) = try refusal("PATCH", patch, body)
            #expect(status == 400, "\(body): \(error)")
            #expect(error.code == "INVALID_ARGUMENT", "\(body): \(error)")
            #expect(error.message.contains(fragment), "\(body) should say '\(fragment)': \(error.message)")
        }
        let untouched = try h.client.job(job.id)
        #expect(untouched.tlsCAFile == nil)
        #expect(untouched.tlsPinnedPublicKey == nil)
        // A job whose settings are refused at creation is not left behind.
        #expect(try refusal("POST", "/v1/jobs", #"{"displayName": "x", "settings": {"tlsCAFile": "ca.pem"}}"#).status == 400)
        #expect(try h.client.listJobs().map(\.id) == [job.id])
    }
}
