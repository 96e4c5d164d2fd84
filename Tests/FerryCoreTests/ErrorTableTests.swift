import FerryCore
import Foundation
import Testing

/// One table says what an error code means outside: the control API's status, `ferry`'s exit
/// status, and whether the failure is retried by itself.
@Suite("Error table")
struct ErrorTableTests {
    @Test("each code's mapping", arguments: [
        (ErrorCode.notFound, 404, ExitStatus.notFound, false),
        (.invalidState, 409, ExitStatus.jobFailed, false),
        (.empty, 409, ExitStatus.jobFailed, false),
        (.accessDenied, 403, ExitStatus.permission, false),
        (.quotaExceeded, 403, ExitStatus.permission, false),
        (.invalidArgument, 400, ExitStatus.badInput, false),
        (.unsupportedURL, 400, ExitStatus.badInput, false),
        (.destinationMissing, 400, ExitStatus.badInput, false),
        (.notARegularFile, 400, ExitStatus.badInput, false),
        (.busy, 503, ExitStatus.busy, true),
        (.networkDisconnected, 500, ExitStatus.jobFailed, true),
        (.timeout, 500, ExitStatus.jobFailed, true),
        (.truncatedBody, 500, ExitStatus.jobFailed, true),
        (.diskFull, 500, ExitStatus.jobFailed, true),
        (.validationFailed, 500, ExitStatus.jobFailed, false),
        (.localFileError, 500, ExitStatus.jobFailed, false),
        (.tlsError, 500, ExitStatus.jobFailed, false),
        (.httpError(404), 500, ExitStatus.jobFailed, false),
        (.httpError(503), 500, ExitStatus.jobFailed, true),
        (.httpError(408), 500, ExitStatus.jobFailed, true),
        (.httpError(429), 500, ExitStatus.jobFailed, true),
    ])
    func mapping(_ code: ErrorCode, _ http: Int, _ exit: Int32, _ transient: Bool) {
        #expect(code.httpStatus == http)
        #expect(code.exitStatus == exit)
        #expect(code.isTransient == transient)
    }

    @Test("an error takes its code's nature unless the place that raises it says otherwise")
    func transientDefault() {
        #expect(FerryError(code: .timeout, context: .transport, message: "slow").isTransient)
        #expect(!FerryError(code: .timeout, context: .transport, isTransient: false, message: "gave up").isTransient)
        #expect(!FerryError(code: .httpError(404), context: .remoteFile, message: "gone").isTransient)
    }

    @Test("the library's own code stays with the error, and in its JSON")
    func underlying() throws {
        let error = FerryError(code: .networkDisconnected, context: .transport, underlying: UnderlyingError(library: "curl", code: 7), message: "refused")
        #expect(error.underlying == UnderlyingError(library: "curl", code: 7))
        let decoded = try JSONDecoder().decode(FerryError.self, from: JSONEncoder().encode(error))
        #expect(decoded == error)
    }
}
