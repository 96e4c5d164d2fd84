@testable import FerryEngine
import FerryCore
import FerryPluginABI
import FerryPluginHost
import Testing

/// What one round of error policies amounts to, decided without a plugin, a job or a file.
@Suite("Policy round")
struct PolicyRoundTests {
    let error = FerryError(code: .insufficientRangeSupport, context: .remoteFile, message: "no ranges")
    let stamp = "2026-12-03T00:00:00Z"

    func decision(_ plugin: String, _ status: Int32, _ actions: [PluginAction] = []) -> PolicyDecision {
        PolicyDecision(plugin: plugin, actions: actions, status: status, message: status == FERRY_OK ? "" : "failed")
    }

    @Test("the ABI's statuses as typed answers", arguments: [
        (FERRY_OK, PolicyDecision.Answer.answered), (FERRY_RETRY_LATER, .retryLater),
        (FERRY_ERROR, .failed(FERRY_ERROR)), (FERRY_INVALID_STATE, .failed(FERRY_INVALID_STATE)),
    ])
    func answers(_ status: Int32, _ answer: PolicyDecision.Answer) {
        #expect(decision("p", status).answer == answer)
    }

    @Test("the policy that acted: its actions, in order, and the note")
    func acting() {
        let round = PolicyRound(error: error, decisions: [
            decision("quiet", FERRY_OK),
            decision("range-fallback", FERRY_OK, [.setPriority(.foreground), .resume]),
        ])
        #expect(round.resolve(resumesSoFar: 0, maxResumes: 3, stamp: stamp)
            == .act(plugin: "range-fallback", actions: [.setPriority(.foreground), .resume],
                    note: "\(stamp) INSUFFICIENT_RANGE_SUPPORT: range-fallback: set priority foreground, resume", resumes: true))
    }

    @Test("no policy acted: the error stands, naming every policy asked")
    func noneActed() {
        let round = PolicyRound(error: error, decisions: [decision("a", FERRY_OK), decision("b", FERRY_ERROR)])
        #expect(round.resolve(resumesSoFar: 0, maxResumes: 3, stamp: stamp)
            == .errorStands(note: "\(stamp) INSUFFICIENT_RANGE_SUPPORT: no policy acted (a, b); the error stands"))
        #expect(round.failures.map(\.plugin) == ["b"], "a failed policy is reported, not obeyed")
    }

    @Test("a policy that asks to be called again keeps the job deciding")
    func retryLater() {
        let round = PolicyRound(error: error, decisions: [decision("a", FERRY_OK), decision("slow", FERRY_RETRY_LATER)])
        #expect(round.resolve(resumesSoFar: 0, maxResumes: 3, stamp: stamp) == .askAgain(plugin: "slow"))
    }

    @Test("a resume past the bound: the error stands; other actions still may act", arguments: [2, 3, 4])
    func bound(_ resumes: Int) {
        let resuming = PolicyRound(error: error, decisions: [decision("loop", FERRY_OK, [.resume])])
        let outcome = resuming.resolve(resumesSoFar: resumes, maxResumes: 3, stamp: stamp)
        if resumes < 3 {
            #expect(outcome == .act(plugin: "loop", actions: [.resume], note: "\(stamp) INSUFFICIENT_RANGE_SUPPORT: loop: resume", resumes: true))
        } else {
            #expect(outcome == .errorStands(note: "\(stamp) INSUFFICIENT_RANGE_SUPPORT: loop wanted to resume, but policies already resumed this job \(resumes) times (the limit); the error stands",
                                            boundReachedBy: "loop"))
        }
        let suspending = PolicyRound(error: error, decisions: [decision("stop", FERRY_OK, [.suspend])])
        #expect(suspending.resolve(resumesSoFar: resumes, maxResumes: 3, stamp: stamp)
            == .act(plugin: "stop", actions: [.suspend], note: "\(stamp) INSUFFICIENT_RANGE_SUPPORT: stop: suspend", resumes: false))
    }

    @Test("an action naming a URL Ferry does not fetch is refused")
    func refusedURL() throws {
        #expect(throws: FerryError.self) { try PluginAction.setRemoteURL(file: 0, url: "ftp://mirror/a").jobEvent() }
        #expect(try PluginAction.setRemoteURL(file: 0, url: "https://mirror/a").jobEvent() == .setRemoteURL(file: 0, url: "https://mirror/a"))
    }
}
