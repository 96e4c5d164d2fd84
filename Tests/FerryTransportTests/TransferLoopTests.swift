import FerryCore
import FerryTestSupport
import FerryTransport
import Foundation
import Testing

/// The transport alone: libcurl's multi loop against the loopback fault server, with no
/// engine, store or file. What a transfer asks for is read off the server's record of it.
@Suite("Transfer loop", .serialized)
struct TransferLoopTests {
    /// Collects what one transfer delivers; can refuse the answer.
    final class Collector: TransferDelegate {
        var response: TransferResponse?
        var body: [UInt8] = []
        var completion: FerryError??
        var refuse: FerryError?

        func transfer(_ transfer: Transfer, didReceive response: TransferResponse) -> FerryError? {
            self.response = response
            return refuse
        }

        func transfer(_ transfer: Transfer, didReceiveBody bytes: UnsafeRawBufferPointer) -> FerryError? {
            body.append(contentsOf: bytes)
            return nil
        }

        func transfer(_ transfer: Transfer, didCompleteWith error: FerryError?) { completion = .some(error) }
    }

    /// Runs one request to its end on this thread.
    func run(_ request: TransferRequest, _ collector: Collector = Collector(), timeout: Double = 30) throws -> Collector {
        let loop = try TransferLoop()
        try loop.start(request, delegate: collector)
        let deadline = Date().addingTimeInterval(timeout)
        while collector.completion == nil, Date() < deadline { loop.runOnce(timeoutMilliseconds: 100) }
        return collector
    }

    @Test("a whole file: the body as served, no range asked for")
    func wholeFile() throws {
        let server = try FaultServer()
        defer { server.stop() }
        let data = testBytes(300_000, seed: 70)
        server.setFile("/a", data: data, etag: "\"v1\"")
        let got = try run(TransferRequest(url: server.baseURL + "/a"))
        #expect(got.completion == .some(nil))
        #expect(got.response?.status == 200)
        #expect(got.response?.header("ETag") == "\"v1\"")
        #expect(got.body == data)
        let request = try #require(server.requests(for: "/a").first)
        #expect(request.range == nil && request.ifRange == nil)
        #expect(request.headers["user-agent"]?.hasPrefix("Ferry/") == true)
        #expect(request.headers["accept-encoding"] == nil, "never a compressed encoding: the bytes are the server's")
    }

    @Test("a resume: Range from the offset, If-Range with what was known, the tail as a 206")
    func resume() throws {
        let server = try FaultServer()
        defer { server.stop() }
        let data = testBytes(100_000, seed: 71)
        server.setFile("/a", data: data, etag: "\"v1\"")
        let got = try run(TransferRequest(url: server.baseURL + "/a", offset: 60_000, ifRange: "\"v1\""))
        #expect(got.completion == .some(nil))
        #expect(got.response?.status == 206)
        #expect(got.body == Array(data[60_000...]))
        let request = try #require(server.requests(for: "/a").first)
        #expect(request.rangeStart == 60_000)
        #expect(request.ifRange == "\"v1\"")
    }

    @Test("custom headers go out as given")
    func customHeaders() throws {
        let server = try FaultServer()
        defer { server.stop() }
        server.setFile("/a", data: testBytes(10, seed: 72))
        _ = try run(TransferRequest(url: server.baseURL + "/a", headers: ["X-Ferry-Test: yes"]))
        #expect(server.requests(for: "/a").first?.headers["x-ferry-test"] == "yes")
    }

    @Test("an error status reaches the delegate with its headers; the delegate judges it")
    func errorStatus() throws {
        let server = try FaultServer()
        defer { server.stop() }
        server.setFile("/a", data: testBytes(10, seed: 73))
        server.addFault("/a", .status(503, retryAfter: "7"))
        let got = try run(TransferRequest(url: server.baseURL + "/a"))
        #expect(got.response?.status == 503)
        #expect(got.response?.header("Retry-After") == "7")
    }

    @Test("an answer the delegate refuses ends the transfer before any body byte")
    func refusedAnswer() throws {
        let server = try FaultServer()
        defer { server.stop() }
        server.setFile("/a", data: testBytes(200_000, seed: 74))
        let collector = Collector()
        collector.refuse = FerryError(code: .invalidArgument, context: .remoteFile, message: "not this one")
        let got = try run(TransferRequest(url: server.baseURL + "/a"), collector)
        #expect(got.body.isEmpty)
        #expect(got.completion??.message == "not this one")
    }

    @Test("a connection that drops mid-body is a transient error")
    func droppedConnection() throws {
        let server = try FaultServer()
        defer { server.stop() }
        server.setFile("/a", data: testBytes(200_000, seed: 75))
        server.addFault("/a", .dropAfter(bytes: 50_000))
        let got = try run(TransferRequest(url: server.baseURL + "/a"))
        let error = try #require(got.completion ?? nil, "the transfer failed")
        #expect(error.isTransient, "\(error)")
        #expect(got.body.count == 50_000)
    }

    @Test("a port nobody listens on: NETWORK_DISCONNECTED, transient")
    func refusedConnection() throws {
        let closed = try FaultServer()
        let port = closed.port
        closed.stop()
        let got = try run(TransferRequest(url: "http://127.0.0.1:\(port)/a", connectTimeoutSeconds: 5))
        let error = try #require(got.completion ?? nil)
        #expect(error.code == .networkDisconnected && error.isTransient, "\(error)")
        #expect(error.underlying == UnderlyingError(library: "curl", code: 7), "libcurl's CURLE_COULDNT_CONNECT is kept")
    }
}
