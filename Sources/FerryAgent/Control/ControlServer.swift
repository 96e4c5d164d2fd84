import FerryControl
import FerryCore
import FerryEngine
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The control API: HTTP/1.1 and JSON on the agent's Unix socket, version 1 under `/v1`.
///
/// Every request is made by a known caller (SO_PEERCRED); what it may see and do
/// is decided per request by ``AgentService``. Every refusal is a JSON
/// `{"error": {"code", "context", "message"}}` with a fitting HTTP status.
struct ControlRoutes: Sendable {
    let service: AgentService
    let notifications: NotificationCenter
    let maxRequestBytes: Int
    let version: String
    let started = Date()

    func router() -> Router<AgentRequestContext> {
        let router = Router(context: AgentRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        let v1 = router.group("v1")

        v1.get("health") { _, context in
            let who = try caller(context)
            // Another user's jobs are not counted: a caller learns nothing of them here either.
            let jobs = who.isAdministrator ? service.engine.allJobs().count : (try service.jobs(for: who, allUsers: false)).count
            return try json(HealthDocument(version: version, uptimeSec: Date().timeIntervalSince(started),
                                           jobs: jobs, eventStreams: notifications.streamCount(for: who),
                                           plugins: service.engine.plugins.plugins.map { "\($0.name) \($0.version)" },
                                           disabledPlugins: service.engine.plugins.crashRecords.flatMap { records in
                                               let disabled = records.disabled
                                               return disabled.isEmpty ? nil : disabled.map { DisabledPluginDocument(plugin: $0.plugin, crashes: $0.crashes) }
                                           }))
        }
        v1.get("jobs") { request, context in
            let who = try caller(context)
            let query = request.uri.queryParameters
            // Every parameter is checked before anything is looked up, so a bad one is refused
            // whatever the listing holds.
            let all = try flag(query.get("allUsers"), named: "allUsers") ?? false
            let limit = try integer(query.get("limit"), named: "limit", in: 1...Paging.maxJobs) ?? Paging.defaultJobs
            let after = query.get("after")
            if let after, !Paging.isCursor(after) {
                throw FerryError(code: .invalidArgument, context: .queueManager,
                                 message: "after must be the next cursor of an earlier page, got '\(after)'")
            }
            // Files are left out of listings unless asked for, and then paged as for one job.
            let withFiles = try flag(query.get("files"), named: "files") ?? false
            let range = try fileRange(request)
            var jobs = try service.jobs(for: who, allUsers: all)
            if let after {
                guard let first = jobs.firstIndex(where: { Paging.job($0, follows: after) == true }) else {
                    return try json(JobList(jobs: []))
                }
                jobs = Array(jobs[first...])
            }
            let page = jobs.prefix(limit)
            return try json(JobList(jobs: page.map { JobDocument($0, includingFiles: withFiles, fileRange: range) },
                                    next: jobs.count > limit ? page.last.map(Paging.cursor(after:)) : nil))
        }
        // Each endpoint that answers a job reads how to show it first: a malformed files,
        // fileOffset or fileLimit refuses the request before anything is changed.
        v1.post("jobs") { request, context in
            let who = try caller(context)
            let view = try jobView(request)
            let body = try await decode(CreateJobRequest.self, request)
            return try json(view(try await service.create(body, for: who)), status: .created)
        }
        v1.get("jobs/:id") { request, context in
            let view = try jobView(request)
            return try json(view(try service.job(try context.parameters.require("id"), for: try caller(context))))
        }
        v1.patch("jobs/:id") { request, context in
            let who = try caller(context)
            let view = try jobView(request)
            let body = try await decode(JobSettings.self, request)
            return try json(view(try service.update(try context.parameters.require("id"), body, for: who)))
        }
        v1.post("jobs/:id/files") { request, context in
            let who = try caller(context)
            let view = try jobView(request)
            let body = try await decode(AddFilesRequest.self, request)
            return try json(view(try service.addFiles(try context.parameters.require("id"), body.files, for: who)))
        }
        for action in ["resume", "suspend", "cancel", "complete"] {
            v1.post("jobs/:id/\(action)") { request, context in
                let who = try caller(context)
                let view = try jobView(request)
                return try json(view(try service.perform(action, on: try context.parameters.require("id"), for: who)))
            }
        }
        v1.put("jobs/:id/files/:index/url") { request, context in
            let who = try caller(context)
            let view = try jobView(request)
            let index = try fileIndex(context)
            let body = try await decode(RemoteURLRequest.self, request)
            return try json(view(try service.setRemoteURL(try context.parameters.require("id"), file: index, url: body.url, for: who)))
        }
        v1.post("jobs/:id/files/:index/mirrors") { request, context in
            let who = try caller(context)
            let view = try jobView(request)
            let index = try fileIndex(context)
            let body = try await decode(AddMirrorsRequest.self, request)
            return try json(view(try service.addMirrors(try context.parameters.require("id"), file: index, urls: body.urls, for: who)))
        }
        v1.post("jobs/:id/replace-remote-prefix") { request, context in
            let who = try caller(context)
            let view = try jobView(request)
            let body = try await decode(ReplacePrefixRequest.self, request)
            return try json(view(try service.replaceRemotePrefix(try context.parameters.require("id"), old: body.old, new: body.new, for: who)))
        }
        v1.get("jobs/:id/error") { _, context in
            try json(ErrorDocument(try service.error(try context.parameters.require("id"), for: try caller(context))))
        }
        v1.get("sources") { _, context in
            try json(SourceList(sources: service.sources(for: try caller(context)).map(SourceDocument.init)))
        }
        v1.get("events") { request, context in
            let who = try caller(context)
            var job: JobID?
            let pending = try flag(request.uri.queryParameters.get("pending"), named: "pending") ?? false
            if let id = request.uri.queryParameters.get("job") { job = try service.job(id, for: who).id }
            let subscription = try notifications.subscribe(who, job: job, pending: pending)
            return Response(
                status: .ok,
                headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    for await line in subscription.lines {
                        try await writer.write(ByteBuffer(bytes: line))
                        subscription.written(line.count)
                    }
                    try await writer.finish(nil)
                })
        }
        v1.post("events/ack") { request, context in
            let who = try caller(context)
            guard let text = request.uri.queryParameters.get("upTo"), let upTo = Int64(text) else {
                throw FerryError(code: .invalidArgument, context: .notification, message: "give ?upTo=<sequence>")
            }
            return try json(["acknowledged": try notifications.acknowledge(who, upTo: upTo)])
        }
        return router
    }

    // MARK: - Helpers

    /// How the request wants its job shown: `?files=false` leaves the file list out, and
    /// `?fileOffset=&fileLimit=` choose the page of files (the first 1,000 by default).
    private func jobView(_ request: Request) throws -> @Sendable (Job) -> JobDocument {
        let withFiles = try flag(request.uri.queryParameters.get("files"), named: "files") ?? true
        let range = try fileRange(request)
        return { job in JobDocument(job, includingFiles: withFiles, fileRange: range) }
    }

    /// The page of files asked for: `fileOffset` (default 0) and `fileLimit` (default 1,000, at most 10,000).
    private func fileRange(_ request: Request) throws -> Range<Int> {
        let query = request.uri.queryParameters
        let offset = try integer(query.get("fileOffset"), named: "fileOffset", in: 0...Int(Int32.max)) ?? 0
        let limit = try integer(query.get("fileLimit"), named: "fileLimit", in: 1...Paging.maxFiles) ?? Paging.defaultFiles
        return offset..<(offset + limit)
    }

    private func flag(_ text: String?, named name: String) throws -> Bool? {
        switch text {
        case nil: return nil
        case "true", "1": return true
        case "false", "0": return false
        case let other?:
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "\(name) must be true or false, got '\(other)'")
        }
    }

    private func integer(_ text: String?, named name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw FerryError(code: .invalidArgument, context: .queueManager,
                             message: "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return value
    }

    private func caller(_ context: AgentRequestContext) throws -> Caller {
        guard let caller = context.caller else {
            throw FerryError(code: .accessDenied, context: .queueManager, message: "cannot tell who is calling (SO_PEERCRED)")
        }
        return caller
    }

    /// The `{index}` of a file path: a whole number ≥ 0.
    private func fileIndex(_ context: AgentRequestContext) throws -> Int {
        guard let index = Int(try context.parameters.require("index")), index >= 0 else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "the file index must be a whole number")
        }
        return index
    }

    private func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: maxRequestBytes) } catch {
            throw APIError(.contentTooLarge, FerryError(code: .invalidArgument, context: .queueManager,
                                                         message: "the request body is larger than \(maxRequestBytes) bytes"))
        }
        let data = Data(buffer.readableBytesView)
        guard !data.isEmpty else {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: "the request needs a JSON body")
        }
        do { return try ControlJSON.decoder.decode(T.self, from: data) } catch {
            throw FerryError(code: .invalidArgument, context: .queueManager, message: describeDecodingError(error))
        }
    }
}

/// A refused request: the HTTP status and the error it carries.
/// A refusal whose status is not the error table's (`413` for a body too large); every
/// other refusal is a ``FerryError``, answered with ``ErrorCode/httpStatus``.
struct APIError: Error {
    let status: HTTPResponse.Status
    let error: FerryError
    init(_ status: HTTPResponse.Status, _ error: FerryError) {
        self.status = status
        self.error = error
    }
}

/// A JSON response.
func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try ControlJSON.encoder.encode(value)
    return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

/// Turns every failure into the API's JSON error, so no request ends in an empty or HTML answer.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = AgentRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try errorResponse(error.status, error.error)
        } catch let error as FerryError {
            return try errorResponse(Self.status(for: error.code), error)
        } catch let error as HTTPError {
            if error.status == .notFound, let allowed = Self.methods(forPath: request.uri.path), !allowed.contains(request.method) {
                // A known path asked with a method it does not answer: 405, and which ones it does.
                let allow = allowed.map(\.rawValue).joined(separator: ", ")
                var response = try json(ErrorEnvelope(error: ErrorDocument(
                    code: "METHOD_NOT_ALLOWED", context: "api",
                    message: "\(request.method) is not allowed on \(request.uri.path); use \(allow)")), status: .methodNotAllowed)
                response.headers[.allow] = allow
                return response
            }
            let code = error.status == .notFound ? "NO_SUCH_ENDPOINT" : "HTTP_\(error.status.code)"
            let message = error.status == .notFound ? "no endpoint \(request.method) \(request.uri.path); see docs/api.md" : (error.body ?? error.status.reasonPhrase)
            return try json(ErrorEnvelope(error: ErrorDocument(code: code, context: "api", message: message)), status: error.status)
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return try json(ErrorEnvelope(error: ErrorDocument(code: "INTERNAL", context: "api", message: "\(error)")), status: .internalServerError)
        }
    }

    /// Every path of the API, `:name` for a parameter, and the methods it answers, as
    /// ``ControlRoutes/router()`` registers them.
    static let endpoints: [(path: String, methods: [HTTPRequest.Method])] = [
        ("/v1/health", [.get]),
        ("/v1/jobs", [.get, .post]),
        ("/v1/jobs/:id", [.get, .patch]),
        ("/v1/jobs/:id/files", [.post]),
        ("/v1/jobs/:id/resume", [.post]),
        ("/v1/jobs/:id/suspend", [.post]),
        ("/v1/jobs/:id/cancel", [.post]),
        ("/v1/jobs/:id/complete", [.post]),
        ("/v1/jobs/:id/files/:index/url", [.put]),
        ("/v1/jobs/:id/files/:index/mirrors", [.post]),
        ("/v1/jobs/:id/replace-remote-prefix", [.post]),
        ("/v1/jobs/:id/error", [.get]),
        ("/v1/sources", [.get]),
        ("/v1/events", [.get]),
        ("/v1/events/ack", [.post]),
    ]

    /// The methods `path` answers, or `nil` when no endpoint has that path. Components are
    /// compared as the router does: empty ones are skipped, a literal wins over a parameter.
    static func methods(forPath path: String) -> [HTTPRequest.Method]? {
        let asked = path.split(separator: "/")
        func matches(_ template: String, literalsOnly: Bool) -> Bool {
            let parts = template.split(separator: "/")
            return parts.count == asked.count && zip(parts, asked).allSatisfy { part, given in
                part == given || (!literalsOnly && part.hasPrefix(":"))
            }
        }
        // A path that a literal route names exactly (such as /v1/events/ack) is that route.
        if let exact = endpoints.first(where: { matches($0.path, literalsOnly: true) }) { return exact.methods }
        let candidates = endpoints.filter { matches($0.path, literalsOnly: false) }
        guard !candidates.isEmpty else { return nil }
        var methods: [HTTPRequest.Method] = []
        for method in candidates.flatMap(\.methods) where !methods.contains(method) { methods.append(method) }
        return methods
    }

    private func errorResponse(_ status: HTTPResponse.Status, _ error: FerryError) throws -> Response {
        try json(ErrorEnvelope(error: ErrorDocument(code: error.code.rawValue, context: error.context.rawValue, message: error.message)), status: status)
    }

    /// The answer's status for a refusal: the error table's (``ErrorCode/httpStatus``).
    static func status(for code: ErrorCode) -> HTTPResponse.Status {
        HTTPResponse.Status(code: code.httpStatus)
    }
}
