import FerryCore
import FerryTransport
import Foundation

/// A refused or failed control request: the HTTP status and the agent's error.
public struct ControlError: Error, Sendable, CustomStringConvertible {
    /// The HTTP status; 0 when the agent could not be reached.
    public var status: Int
    public var error: ErrorDocument

    public var description: String { error.description }
}

/// Talks to `ferryd` over its Unix socket. Every method is one request.
public struct ControlClient: Sendable {
    public let http: LocalHTTPClient

    public init(socketPath: String) {
        http = LocalHTTPClient(socketPath: socketPath)
    }

    public func health() throws(ControlError) -> HealthDocument { try call("GET", "/v1/health") }

    /// Every unfinished job of the caller (every user's with `allUsers`, root only), page by
    /// page; with `includingFiles`, each with its whole file list.
    public func listJobs(allUsers: Bool = false, includingFiles: Bool = true) throws(ControlError) -> [JobDocument] {
        var jobs: [JobDocument] = []
        var after: String?
        repeat {
            var query = ["limit=\(Paging.maxJobs)", "files=\(includingFiles)"]
            if allUsers { query.append("allUsers=true") }
            if let after { query.append("after=\(escape(after))") }
            let page: JobList = try call("GET", "/v1/jobs?" + query.joined(separator: "&"))
            for var job in page.jobs {
                if includingFiles, job.files.count < job.progress.filesTotal { job = try self.job(job.id) }
                jobs.append(job)
            }
            after = page.next
        } while after != nil
        return jobs
    }

    /// - Parameter includingFiles: `false` answers the job without its file list.
    public func createJob(_ request: CreateJobRequest, includingFiles: Bool = true) throws(ControlError) -> JobDocument {
        try call("POST", "/v1/jobs" + (includingFiles ? "" : "?files=false"), body: request)
    }

    /// The job with its whole file list, fetched a page of files at a time.
    public func job(_ id: String) throws(ControlError) -> JobDocument {
        var job: JobDocument = try call("GET", "/v1/jobs/\(escape(id))?fileLimit=\(Paging.maxFiles)")
        while job.files.count < job.progress.filesTotal {
            let page: JobDocument = try call("GET", "/v1/jobs/\(escape(id))?fileOffset=\(job.files.count)&fileLimit=\(Paging.maxFiles)")
            guard !page.files.isEmpty else { break }
            job.files += page.files
        }
        return job
    }

    /// One file of a job, by index (`nil` when the job has no such file).
    public func file(_ id: String, index: Int) throws(ControlError) -> FileDocument? {
        let page: JobDocument = try call("GET", "/v1/jobs/\(escape(id))?fileOffset=\(index)&fileLimit=1")
        return page.files.first { $0.index == index }
    }

    /// The job without its file list (`?files=false`): what a progress display polls, at a
    /// cost that does not grow with the number of files.
    public func jobSummary(_ id: String) throws(ControlError) -> JobDocument { try call("GET", "/v1/jobs/\(escape(id))?files=false") }

    public func addFiles(_ id: String, _ files: [NewFileDocument]) throws(ControlError) -> JobDocument {
        try call("POST", "/v1/jobs/\(escape(id))/files", body: AddFilesRequest(files: files))
    }

    /// `resume`, `suspend`, `cancel` or `complete`.
    public func perform(_ action: String, on id: String, includingFiles: Bool = true) throws(ControlError) -> JobDocument {
        try call("POST", "/v1/jobs/\(escape(id))/\(action)" + (includingFiles ? "" : "?files=false"))
    }

    public func update(_ id: String, _ settings: JobSettings) throws(ControlError) -> JobDocument {
        try call("PATCH", "/v1/jobs/\(escape(id))", body: settings)
    }

    public func setRemoteURL(_ id: String, file: Int, url: String) throws(ControlError) -> JobDocument {
        try call("PUT", "/v1/jobs/\(escape(id))/files/\(file)/url", body: RemoteURLRequest(url: url))
    }

    /// Adds alternative URLs for one file of the job (`POST /v1/jobs/{id}/files/{index}/mirrors`).
    public func addMirrors(_ id: String, file: Int, urls: [String]) throws(ControlError) -> JobDocument {
        try call("POST", "/v1/jobs/\(escape(id))/files/\(file)/mirrors", body: AddMirrorsRequest(urls: urls))
    }

    /// The health of the sources the caller may see (`GET /v1/sources`): every one for root,
    /// else those named by the URLs and mirrors of the caller's jobs.
    public func sources() throws(ControlError) -> [SourceDocument] {
        let list: SourceList = try call("GET", "/v1/sources")
        return list.sources
    }

    public func replaceRemotePrefix(_ id: String, old: String, new: String) throws(ControlError) -> JobDocument {
        try call("POST", "/v1/jobs/\(escape(id))/replace-remote-prefix", body: ReplacePrefixRequest(old: old, new: new))
    }

    public func error(_ id: String) throws(ControlError) -> ErrorDocument { try call("GET", "/v1/jobs/\(escape(id))/error") }

    /// Follows the event stream: pending events first (when asked), then live ones, until `onEvent` returns false.
    public func events(job: String? = nil, pending: Bool = true, onEvent: @escaping (EventDocument) -> Bool) throws(ControlError) {
        var query: [String] = []
        if let job { query.append("job=\(escape(job))") }
        if pending { query.append("pending=true") }
        let path = "/v1/events" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        let status: Int
        var closing: StreamNotice?
        do {
            status = try http.stream(path) { line in
                guard let event = try? ControlJSON.decoder.decode(EventDocument.self, from: line) else {
                    if let notice = try? ControlJSON.decoder.decode(StreamNotice.self, from: line), notice.kind == StreamNotice.closedKind {
                        closing = notice
                    }
                    return true
                }
                return onEvent(event)
            }
        } catch {
            throw ControlError(status: 0, error: ErrorDocument(error))
        }
        if let closing {
            throw ControlError(status: status, error: ErrorDocument(code: "STREAM_CLOSED", context: "notification", message: closing.reason))
        }
        guard (200..<300).contains(status) else {
            throw ControlError(status: status, error: ErrorDocument(code: "HTTP_\(status)", context: "api", message: "the agent refused the event stream"))
        }
    }

    /// Acknowledges every pending event up to `sequence` for the caller.
    public func acknowledgeEvents(upTo sequence: Int64) throws(ControlError) {
        let _: AcknowledgeResponse = try call("POST", "/v1/events/ack?upTo=\(sequence)")
    }

    private struct AcknowledgeResponse: Codable { var acknowledged: Int }

    // MARK: - Plumbing

    private func call<Answer: Decodable>(_ method: String, _ path: String) throws(ControlError) -> Answer {
        try exchange(method, path, body: nil)
    }

    private func call<Answer: Decodable, Body: Encodable>(_ method: String, _ path: String, body: Body) throws(ControlError) -> Answer {
        let data: Data
        do { data = try ControlJSON.encoder.encode(body) } catch {
            throw ControlError(status: 0, error: ErrorDocument(code: "INVALID_ARGUMENT", context: "api", message: "cannot encode the request: \(error)"))
        }
        return try exchange(method, path, body: data)
    }

    private func exchange<Answer: Decodable>(_ method: String, _ path: String, body: Data?) throws(ControlError) -> Answer {
        let response: LocalHTTPClient.Response
        do { response = try http.send(method, path, body: body) } catch {
            throw ControlError(status: 0, error: ErrorDocument(error))
        }
        guard (200..<300).contains(response.status) else {
            let document = (try? ControlJSON.decoder.decode(ErrorEnvelope.self, from: response.body))?.error
                ?? ErrorDocument(code: "HTTP_\(response.status)", context: "api",
                                 message: String(decoding: response.body.prefix(300), as: UTF8.self))
            throw ControlError(status: response.status, error: document)
        }
        do { return try ControlJSON.decoder.decode(Answer.self, from: response.body) } catch {
            throw ControlError(status: response.status, error: ErrorDocument(code: "BAD_RESPONSE", context: "api",
                                                                               message: "the agent's answer could not be read: \(describeDecodingError(error))"))
        }
    }

    private func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?&="))) ?? text
    }
}
