import Dispatch
import Foundation

/// Catches SIGINT and SIGTERM instead of dying of them: remembers that one arrived,
/// wakes whoever waits, and runs an optional action.
final class InterruptLatch: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "ferry.interrupts")
    private let condition = NSCondition()
    private var arrived = false

    /// Starts catching the signals.
    /// - Parameters:
    ///   - signals: the signals to catch (default SIGINT and SIGTERM).
    ///   - action: run on a private queue when one arrives, after the latch is set.
    init(signals: [Int32] = [SIGINT, SIGTERM], action: (@Sendable () -> Void)? = nil) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.condition.lock()
                self.arrived = true
                self.condition.broadcast()
                self.condition.unlock()
                action?()
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Whether a signal has arrived.
    var fired: Bool {
        condition.lock()
        defer { condition.unlock() }
        return arrived
    }

    /// Sleeps up to `seconds`, waking early when a signal arrives.
    /// - Returns: whether a signal has arrived.
    func wait(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !arrived && condition.wait(until: deadline) {}
        return arrived
    }
}
