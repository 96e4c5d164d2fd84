import FerryTransport
import Foundation
import Synchronization

/// The engine's thread as the other threads see it: a mailbox of work to run there, and a
/// way to tell whether the caller is on it.
///
/// Every component of the engine (scheduler state, durability batches, source health,
/// plugin calls, temporaries opened ahead) is touched only on that thread; each asserts it
/// in debug builds through ``assertCurrent(file:line:)``. Before the thread starts (recovery)
/// and after it ended, the thread that starts or stops the engine is the only one.
final class EngineThread: Sendable {
    private let commands = Mutex<[@Sendable () -> Void]>([])
    private let threadID = Mutex<pthread_t?>(nil)
    private let loop: TransferLoop

    init(waking loop: TransferLoop) {
        self.loop = loop
    }

    /// Queues `command` for the engine's thread and wakes it.
    func post(_ command: @escaping @Sendable () -> Void) {
        commands.withLock { $0.append(command) }
        loop.wakeup()
    }

    /// Everything posted so far, in order; the mailbox is empty afterwards.
    func takeCommands() -> [@Sendable () -> Void] {
        commands.withLock { queue in
            let taken = queue
            queue.removeAll()
            return taken
        }
    }

    /// The calling thread is the engine's from now on (`true`) or no more (`false`).
    func setCurrent(_ current: Bool) {
        threadID.withLock { $0 = current ? pthread_self() : nil }
    }

    /// Whether the caller runs on the engine's thread.
    var isCurrent: Bool {
        threadID.withLock { id in id.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// In debug builds: stops when called on another thread while the engine's thread runs.
    func assertCurrent(file: StaticString = #fileID, line: UInt = #line) {
        assert(threadID.withLock { id in id.map { pthread_equal($0, pthread_self()) != 0 } ?? true },
               "called off the engine's thread", file: file, line: line)
    }
}
