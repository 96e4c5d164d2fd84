import FerryControl
import Foundation
import Testing

@testable import FerryAgent

/// What the specification (docs/openapi.yaml) promises about methods and request bounds,
/// checked without an agent; `.ci/fuzz-api` checks the same against a live one.
@Suite("Control API: what the specification promises")
struct APIConformanceTests {
    @Test("a known path names the methods it answers; an unknown path none")
    func methodsOfAPath() {
        #expect(ErrorMiddleware.methods(forPath: "/v1/jobs") == [.get, .post])
        #expect(ErrorMiddleware.methods(forPath: "/v1/jobs/") == [.get, .post], "empty components are skipped, as the router does")
        #expect(ErrorMiddleware.methods(forPath: "/v1/jobs/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9") == [.get, .patch])
        #expect(ErrorMiddleware.methods(forPath: "/v1/jobs/anything/files") == [.post])
        #expect(ErrorMiddleware.methods(forPath: "/v1/jobs/x/files/3/url") == [.put])
        #expect(ErrorMiddleware.methods(forPath: "/v1/events/ack") == [.post], "a literal path is not taken for a parameter")
        #expect(ErrorMiddleware.methods(forPath: "/v1/events") == [.get])
        #expect(ErrorMiddleware.methods(forPath: "/v1/nowhere") == nil)
        #expect(ErrorMiddleware.methods(forPath: "/v2/jobs") == nil)
        #expect(ErrorMiddleware.methods(forPath: "/v1/jobs/x/y/z/w/v") == nil)
    }

    @Test("every documented endpoint is in the table the 405 answers come from")
    func everyEndpointIsListed() {
        let listed = Set(ErrorMiddleware.endpoints.flatMap { endpoint in endpoint.methods.map { "\($0.rawValue) \(endpoint.path)" } })
        #expect(listed.count == 17)
        for route in ["GET /v1/health", "POST /v1/jobs/:id/resume", "PUT /v1/jobs/:id/files/:index/url", "POST /v1/events/ack"] {
            #expect(listed.contains(route), "\(route)")
        }
    }

    @Test("a byte count past what a signed 64-bit size holds is refused, naming the field")
    func byteCountBound() throws {
        let largest = try ControlJSON.decoder.decode(JobSettings.self, from: Data(#"{"maxFileBytes": 9223372036854775807}"#.utf8))
        #expect(largest.maxFileBytes == UInt64(Int64.max))
        #expect(throws: DecodingError.self) {
            try ControlJSON.decoder.decode(JobSettings.self, from: Data(#"{"maxFileBytes": 9223372036854775808}"#.utf8))
        }
        do {
            _ = try ControlJSON.decoder.decode(JobSettings.self, from: Data(#"{"maxFileBytes": 18446744073709551615}"#.utf8))
            Issue.record("2^64-1 was accepted")
        } catch {
            #expect(describeDecodingError(error) == "maxFileBytes: expected a whole number of bytes from 0 to 9223372036854775807")
        }
    }
}

extension APIConformanceTests {
    @Test("a retry delay or no-progress timeout past 2^32-1 seconds is refused before it reaches a job")
    func secondsBound() throws {
        let largest = try ControlJSON.decoder.decode(JobSettings.self, from: Data(#"{"minRetryDelaySec": 4294967295, "noProgressTimeoutSec": 4294967295}"#.utf8))
        #expect(largest.minRetryDelaySec == 4_294_967_295)
        for field in ["minRetryDelaySec", "noProgressTimeoutSec"] {
            for value in ["4294967296", "1e300", "1.7976931348623157e308"] {
                do {
                    _ = try ControlJSON.decoder.decode(JobSettings.self, from: Data(#"{"\#(field)": \#(value)}"#.utf8))
                    Issue.record("\(field) \(value) was accepted")
                } catch {
                    #expect(describeDecodingError(error) == "\(field): expected a number of seconds from 0 to 4294967295")
                }
            }
        }
        // A negative value still reaches the engine, which names the setting in its refusal.
        #expect(try ControlJSON.decoder.decode(JobSettings.self, from: Data(#"{"minRetryDelaySec": -1}"#.utf8)).minRetryDelaySec == -1)
    }
}
