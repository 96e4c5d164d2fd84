import FerryCore
import FerryPluginHost
import Foundation

/// What the engine does with the answers of one round of error policies about a job's
/// error. A pure decision: the engine carries it out.
enum PolicyResolution: Equatable {
    /// A policy asked to be called again (BITS calls a callback again until it answers):
    /// the job stays deciding and the policies are asked again after ``PolicyRound/askAgainAfter``.
    case askAgain(plugin: String)
    /// No policy acted, or the acting one (`boundReachedBy`) may not resume the job again:
    /// the error stands, with this note in the job's history.
    case errorStands(note: String, boundReachedBy: String? = nil)
    /// The acting policy's actions, in order, with the note for the job's history.
    case act(plugin: String, actions: [PluginAction], note: String, resumes: Bool)
}

/// The answers of the job's error policies to one error, and what they amount to.
struct PolicyRound {
    /// How long a policy that asked to be called again waits (seconds).
    static let askAgainAfter = 5.0

    let error: FerryError
    let decisions: [PolicyDecision]

    /// The policies that failed or could not be called (logged; they did not act).
    var failures: [PolicyDecision] {
        decisions.filter { if case .failed = $0.answer { true } else { false } }
    }

    /// Decides what the round amounts to.
    /// - Parameters:
    ///   - resumesSoFar: how many times policies already resumed the job.
    ///   - maxResumes: the bound on automatic resumes (`jobs.max_policy_resumes`).
    ///   - stamp: the time written in the job's history.
    func resolve(resumesSoFar: Int, maxResumes: Int, stamp: String) -> PolicyResolution {
        // The last that acted wins (the host stops at the first, so there is one at most).
        guard let acting = decisions.last(where: \.acted) else {
            if let waiting = decisions.first(where: { $0.answer == .retryLater }) { return .askAgain(plugin: waiting.plugin) }
            let names = decisions.map(\.plugin).joined(separator: ", ")
            return .errorStands(note: "\(stamp) \(error.code): no policy acted (\(names)); the error stands")
        }
        let resumes = acting.actions.contains(.resume)
        if resumes, resumesSoFar >= maxResumes {
            return .errorStands(note: "\(stamp) \(error.code): \(acting.plugin) wanted to resume, but policies already resumed this job \(resumesSoFar) times (the limit); the error stands",
                                boundReachedBy: acting.plugin)
        }
        let summary = acting.actions.map(\.description).joined(separator: ", ")
        return .act(plugin: acting.plugin, actions: acting.actions, note: "\(stamp) \(error.code): \(acting.plugin): \(summary)", resumes: resumes)
    }
}

extension PluginAction {
    /// The job event that carries out this action.
    /// - Throws: ``ErrorCode/unsupportedURL`` for a URL Ferry does not fetch.
    func jobEvent() throws(FerryError) -> JobEvent {
        switch self {
        case .setPriority(let priority): return .setPriority(priority)
        case .suspend: return .suspend
        case .setRemoteURL(let file, let url):
            try InputRules.checkRemoteURL(url)
            return .setRemoteURL(file: file, url: url)
        case .resume: return .resume
        case .setRetryDelay(let seconds): return .setRetryDelay(seconds)
        }
    }
}
