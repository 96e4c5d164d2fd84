@testable import FerryAgent
import FerryControl
import FerryCore
import FerryEngine
import FerryTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// The control API's routes, run in this process against a real engine: what each caller
/// may see and do, and how refusals are answered. (The socket, its credentials and its
/// bounds are ferryd's, tested with the process in the other suites.)
@Suite("Control API routes, in process", .serialized)
struct ControlRouteTests {
    static let owner = Caller(uid: 4242, gid: 4242, pid: 1)
    static let stranger = Caller(uid: 4343, gid: 4343, pid: 2)

    /// An engine on a store of its own, no plugins, and the routes over it.
    final class World: @unchecked Sendable {
        let directory: TemporaryDirectory
        let engine: Engine
        let application: Application<RouterResponder<AgentRequestContext>>

        init() throws {
            directory = try TemporaryDirectory("ferry-routes")
            var configuration = EngineConfiguration(storePath: directory.file("jobs.db"))
            configuration.plugins = []
            var logger = Logger(label: "ferry.routes.test")
            logger.logLevel = .warning
            engine = try Engine(configuration: configuration, logger: logger)
            try engine.start()
            let service = AgentService(engine: engine, settings: .init(jobsPerUser: 0, filesPerJob: 0))
            let notifications = NotificationCenter(engine: engine, logger: logger, modificationInterval: 0)
            let routes = ControlRoutes(service: service, notifications: notifications, maxRequestBytes: 1 << 20, version: "test")
            application = Application(router: routes.router(), logger: logger)
        }

        deinit {
            engine.shutdown()
            directory.remove()
        }

        /// Runs `body` with a client whose requests come from `caller` (nil: one whose
        /// credentials could not be read).
        func test(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
            try await application.test(.router) { client in try await body(client) }
        }
    }

    static let decoder = ControlJSON.decoder

    static func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    static func execute(_ client: any TestClientProtocol, as caller: Caller?, _ uri: String, _ method: HTTPRequest.Method = .get,
                        body: String? = nil) async throws -> (status: Int, text: String) {
        try await Caller.$current.withValue(caller) {
            try await client.execute(uri: uri, method: method, body: body.map(json)) { response in
                (Int(response.status.code), String(buffer: response.body))
            }
        }
    }

    static func errorCode(_ text: String) -> String? {
        (try? JSONDecoder().decode(ErrorEnvelope.self, from: Data(text.utf8)))?.error.code
    }

    @Test("a job is its owner's: another caller sees nothing of it, with the answer of a job that does not exist")
    func ownersOnly() async throws {
        let world = try World()
        try await world.test { client in
            let made = try await Self.execute(client, as: Self.owner, "/v1/jobs", .post, body: #"{"displayName": "mine"}"#)
            #expect(made.status == 201, "\(made.text)")
            let id = try Self.decoder.decode(JobDocument.self, from: Data(made.text.utf8)).id
            #expect(try await Self.execute(client, as: Self.owner, "/v1/jobs/\(id)").status == 200)
            let foreign = try await Self.execute(client, as: Self.stranger, "/v1/jobs/\(id)")
            let nobody = UUID().uuidString.lowercased()
            let missing = try await Self.execute(client, as: Self.stranger, "/v1/jobs/\(nobody)")
            #expect(foreign.status == 404 && Self.errorCode(foreign.text) == "NOT_FOUND")
            #expect(foreign.text.replacingOccurrences(of: id, with: "ID") == missing.text.replacingOccurrences(of: nobody, with: "ID"),
                    "the same answer as for a job that does not exist: \(foreign.text) / \(missing.text)")
            let listing = try await Self.execute(client, as: Self.stranger, "/v1/jobs")
            #expect(try Self.decoder.decode(JobList.self, from: Data(listing.text.utf8)).jobs.isEmpty)
            let everyone = try await Self.execute(client, as: Self.stranger, "/v1/jobs?allUsers=true")
            #expect(everyone.status == 403 && Self.errorCode(everyone.text) == "ACCESS_DENIED")
        }
    }

    @Test("a caller whose credentials could not be read is refused everything")
    func unknownCaller() async throws {
        let world = try World()
        try await world.test { client in
            for (uri, method) in [("/v1/health", HTTPRequest.Method.get), ("/v1/jobs", .get), ("/v1/jobs", .post)] {
                let answer = try await Self.execute(client, as: nil, uri, method, body: method == .post ? #"{"displayName": "x"}"# : nil)
                #expect(answer.status == 403 && Self.errorCode(answer.text) == "ACCESS_DENIED", "\(method) \(uri): \(answer.text)")
            }
        }
        #expect(world.engine.allJobs().isEmpty)
    }

    @Test("refusals carry the error table's status, and a refused create leaves no job", arguments: [
        (#"{"displayName": "bad", "files": [{"url": "ftp://mirror/a", "path": "/tmp/a"}]}"#, 400, "UNSUPPORTED_URL"),
        (#"{"displayName": "bad", "files": [{"url": "http://mirror/a", "path": "relative/a"}]}"#, 400, "INVALID_ARGUMENT"),
        (#"{"displayName": "bad", "settings": {"customHeaders": ["no colon"]}}"#, 400, "INVALID_ARGUMENT"),
        (#"{"displayName": ""}"#, 400, "INVALID_ARGUMENT"),
    ])
    func refusedCreate(_ body: String, _ status: Int, _ code: String) async throws {
        let world = try World()
        try await world.test { client in
            let answer = try await Self.execute(client, as: Self.owner, "/v1/jobs", .post, body: body)
            #expect(answer.status == status && Self.errorCode(answer.text) == code, "\(answer.text)")
        }
        #expect(world.engine.allJobs().isEmpty, "nothing half made is left")
    }

    @Test("a settings change is all or nothing")
    func patchIsAtomic() async throws {
        let world = try World()
        try await world.test { client in
            let made = try await Self.execute(client, as: Self.owner, "/v1/jobs", .post, body: #"{"displayName": "before"}"#)
            let id = try Self.decoder.decode(JobDocument.self, from: Data(made.text.utf8)).id
            let refused = try await Self.execute(client, as: Self.owner, "/v1/jobs/\(id)", .patch,
                                                 body: #"{"displayName": "after", "customHeaders": ["no colon"]}"#)
            #expect(refused.status == 400, "\(refused.text)")
            let now = try await Self.execute(client, as: Self.owner, "/v1/jobs/\(id)")
            #expect(try Self.decoder.decode(JobDocument.self, from: Data(now.text.utf8)).displayName == "before")
        }
    }
}
