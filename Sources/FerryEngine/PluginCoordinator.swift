import Dispatch
import FerryCore
import FerryPluginHost
import Foundation

/// Calls the plugins for the engine, off its thread: validators on finished files, error
/// policies on errors. Calls about one job run in order on that job's serial queue (a
/// plugin sees one job's callbacks one at a time); answers come back on the engine's thread.
final class PluginCoordinator {
    let plugins: PluginHost
    private let thread: EngineThread
    private var queues: [JobID: DispatchQueue] = [:]

    init(plugins: PluginHost, thread: EngineThread) {
        self.plugins = plugins
        self.thread = thread
    }

    /// Whether any validator applies to the job (a job with validators completes only once
    /// every file is proven).
    func hasValidators(for job: Job) -> Bool { !plugins.validators(for: job).isEmpty }

    /// Runs the validators on file `index`; `then` gets the outcome on the engine's thread.
    func validate(file index: Int, of id: JobID, view: PluginJobView, then: @escaping (ValidationOutcome) -> Void) {
        let plugins = self.plugins
        let thread = self.thread
        let answer = UncheckedSendable(then)
        queue(for: id).async {
            let outcome = plugins.validate(file: index, view: view)
            thread.post { answer.value(outcome) }
        }
    }

    /// Asks `policies` about `error`; `then` gets their answers on the engine's thread.
    func askPolicies(_ policies: [LoadedPlugin], about error: FerryError, of id: JobID, view: PluginJobView,
                     then: @escaping (PolicyRound) -> Void) {
        let plugins = self.plugins
        let thread = self.thread
        let answer = UncheckedSendable(then)
        queue(for: id).async {
            let decisions = plugins.handleError(view: view, error: error, policies: policies)
            thread.post { answer.value(PolicyRound(error: error, decisions: decisions)) }
        }
    }

    /// Runs `work` on the engine's thread after `seconds`, behind the job's plugin calls.
    func later(_ seconds: Double, for id: JobID, _ work: @escaping () -> Void) {
        let thread = self.thread
        let job = UncheckedSendable(work)
        queue(for: id).asyncAfter(deadline: .now() + seconds) { thread.post { job.value() } }
    }

    /// The job ended: its queue goes once its calls are done.
    func forget(_ id: JobID) {
        thread.assertCurrent()
        queues[id] = nil
    }

    /// Waits for every call under way, then lets the plugins go (engine's shutdown).
    func shutdown() {
        for queue in queues.values { queue.sync {} }
        plugins.shutdown()
    }

    private func queue(for id: JobID) -> DispatchQueue {
        thread.assertCurrent()
        if let queue = queues[id] { return queue }
        let queue = DispatchQueue(label: "ferry.validate.\(id)", target: .global())
        queues[id] = queue
        return queue
    }
}
