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
            _ = try caller(context)
            return try json(HealthDocument(version: version, uptimeSec: Date().timeIntervalSince(started),
                                           jobs: service.engine.allJobs().count,
                                           plugins: service.engine.plugins.plugins.map { "\($0.name) \($0.version)" },
                                           disabledPlugins: service.engine.plugins.crashRecords.flatMap { records in
                                               let disabled = records.disabled
                                               return disabled.isEmpty ? nil : disabled.map { DisabledPluginDocument(plugin: $0.plugin, crashes: $0.crashes) }
                                           }))
        }
        v1.get("jobs") { request, context in
            let who = try caller(context)
            let all = request.uri.queryParameters.get("allUsers").map { $0 == "true" || $0 == "1" } ?? false
            return try json(JobList(jobs: try service.jobs(for: who, allUsers: all).map { JobDocument($0) }))
        }
        v1.post("jobs") { request, context in
            let who = try caller(context)
            let body = try await decode(CreateJobRequest.self, request)
            return try json(try document(try service.create(body, for: who), request), status: .created)
        }
        v1.get("jobs/:id") { request, context in
            try json(try document(try service.job(try context.parameters.require("id"), for: try caller(context)), request))
        }
        v1.patch("jobs/:id") { request, context in
            let who = try caller(context)
            let body = try await decode(JobSettings.self, request)
            return try json(try document(try service.update(try context.parameters.require("id"), body, for: who), request))
        }
        v1.post("jobs/:id/files") { request, context in
            let who = try caller(context)
            let body = try await decode(AddFilesRequest.self, request)
            return try json(try document(try service.addFiles(try context.parameters.require("id"), body.files, for: who), request))
        }
        for action in ["resume", "suspend", "cancel", "complete"] {
            v1.post("jobs/:id/\(action)") { request, context in
                try json(try document(try service.perform(action, on: try context.parameters.require("id"), for: try caller(context)), request))
            }
        }
        v1.put("jobs/:id/files/:index/url") { request, context in
            let who = try caller(context)
            let index = try fileIndex(context)
            let body = try await decode(RemoteURLRequest.self, request)
            return try json(try document(try service.setRemoteURL(try context.parameters.require("id"), file: index, url: body.url, for: who), request))
        }
        v1.post("jobs/:id/files/:index/mirrors") { request, context in
            let who = try caller(context)
            let index = try fileIndex(context)
            let body = try await decode(AddMirrorsRequest.self, request)
            return try json(try document(try service.addMirrors(try context.parameters.require("id"), file: index, urls: body.urls, for: who), request))
        }
        v1.post("jobs/:id/replace-remote-prefix") { request, context in
            let who = try caller(context)
            let body = try await decode(ReplacePrefixRequest.self, request)
            return try json(try document(try service.replaceRemotePrefix(try context.parameters.require("id"), old: body.old, new: body.new, for: who), request))
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
            if let id = request.uri.queryParameters.get("job") { job = try service.job(id, for: who).id }
            let pending = request.uri.queryParameters.get("pending").map { $0 == "true" || $0 == "1" } ?? false
            let stream = notifications.subscribe(who, job: job, pending: pending)
            return Response(
                status: .ok,
                headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    for await event in stream {
                        var line = try ControlJSON.encoder.encode(event)
                        line.append(0x0A)
                        try await writer.write(ByteBuffer(bytes: line))
                    }
                    try await writer.finish(nil)
                })
        }
        v1.post("events/ack") { request, context in
            let who = try caller(context)
            guard let text = request.uri.queryParameters.get("upTo"), let upTo = Int64(text) else {
                throw APIError(.badRequest, FerryError(code: .invalidArgument, context: .notification, message: "give ?upTo=<sequence>"))
            }
            return try json(["acknowledged": try notifications.acknowledge(who, upTo: upTo)])
        }
        return router
    }

    // MARK: - Helpers

    /// The job as the API answers it; `?files=false` leaves the file list out.
    private func document(_ job: Job, _ request: Request) throws -> JobDocument {
        switch request.uri.queryParameters.get("files") {
        case nil, "true": return JobDocument(job)
        case "false": return JobDocument(job, includingFiles: false)
        case let other?:
            throw APIError(.badRequest, FerryError(code: .invalidArgument, context: .queueManager,
                                                   message: "files must be true or false, got '\(other)'"))
        }
    }

    private func caller(_ context: AgentRequestContext) throws -> Caller {
        guard let caller = context.caller else {
            throw APIError(.forbidden, FerryError(code: .accessDenied, context: .queueManager, message: "cannot tell who is calling (SO_PEERCRED)"))
        }
        return caller
    }

    /// The `{index}` of a file path: a whole number ≥ 0.
    private func fileIndex(_ context: AgentRequestContext) throws -> Int {
        guard let index = Int(try context.parameters.require("index")), index >= 0 else {
            throw APIError(.badRequest, FerryError(code: .invalidArgument, context: .queueManager, message: "the file index must be a whole number"))
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
            throw APIError(.badRequest, FerryError(code: .invalidArgument, context: .queueManager, message: "the request needs a JSON body"))
        }
        do { return try ControlJSON.decoder.decode(T.self, from: data) } catch {
            throw APIError(.badRequest, FerryError(code: .invalidArgument, context: .queueManager, message: describeDecodingError(error)))
        }
    }
}

/// A refused request: the HTTP status and the error it carries.
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
            let code = error.status == .notFound ? "NO_SUCH_ENDPOINT" : "HTTP_\(error.status.code)"
            let message = error.status == .notFound ? "no endpoint \(request.method) \(request.uri.path); see docs/api.md" : (error.body ?? error.status.reasonPhrase)
            return try json(ErrorEnvelope(error: ErrorDocument(code: code, context: "api", message: message)), status: error.status)
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return try json(ErrorEnvelope(error: ErrorDocument(code: "INTERNAL", context: "api", message: "\(error)")), status: .internalServerError)
        }
    }

    private func errorResponse(_ status: HTTPResponse.Status, _ error: FerryError) throws -> Response {
        try json(ErrorEnvelope(error: ErrorDocument(code: error.code.rawValue, context: error.context.rawValue, message: error.message)), status: status)
    }

    static func status(for code: ErrorCode) -> HTTPResponse.Status {
        switch code {
        case .notFound: .notFound
        case .invalidState, .empty: .conflict
        case .accessDenied, .quotaExceeded: .forbidden
        case .invalidArgument, .unsupportedURL, .destinationMissing: .badRequest
        default: .internalServerError
        }
    }
}
