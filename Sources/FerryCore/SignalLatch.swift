import Dispatch
import Foundation

/// Catches signals instead of letting them act as they would: remembers that one arrived,
/// wakes whoever waits for it, and runs an optional action.
///
/// `ferry` catches SIGINT and SIGTERM with it (a transfer is saved, a watch ends), `ferryd`
/// SIGHUP (the configuration is read again).
public final class SignalLatch: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "ferry.signals")
    private let condition = NSCondition()
    private var arrived = false

    /// Starts catching the signals: each is ignored from now on, and reported to the latch instead.
    /// - Parameters:
    ///   - signals: the signals to catch (default SIGINT and SIGTERM).
    ///   - action: run on a private queue each time one arrives, after the latch is set; one
    ///     run at a time.
    public init(signals: [Int32] = [SIGINT, SIGTERM], action: (@Sendable () -> Void)? = nil) {
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
    public var fired: Bool {
        condition.lock()
        defer { condition.unlock() }
        return arrived
    }

    /// Sleeps up to `seconds`, waking early when a signal arrives.
    /// - Returns: whether a signal has arrived.
    public func wait(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !arrived && condition.wait(until: deadline) {}
        return arrived
    }

    /// Stops running the action. The signals stay ignored.
    public func cancel() {
        for source in sources { source.cancel() }
    }
}
