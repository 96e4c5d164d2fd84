import FerryControl
import FerryCore
import Foundation

/// What a progress display shows of a job, whichever side (engine or agent) reports it.
struct ProgressSnapshot: Sendable, Equatable {
    var state: String
    var bytesTransferred: UInt64
    /// `nil` while any size is unknown.
    var bytesTotal: UInt64?
    var filesTransferred: Int
    var filesTotal: Int
    /// In TRANSIENT_ERROR: seconds until the retry, and the error's code.
    var retry: (seconds: Int, code: String)?
    /// In ERROR or TRANSIENT_ERROR: the error policies have not answered yet.
    var deciding = false

    init(state: String, bytesTransferred: UInt64, bytesTotal: UInt64?, filesTransferred: Int, filesTotal: Int,
                retry: (seconds: Int, code: String)? = nil) {
        self.state = state
        self.bytesTransferred = bytesTransferred
        self.bytesTotal = bytesTotal
        self.filesTransferred = filesTransferred
        self.filesTotal = filesTotal
        self.retry = retry
    }

    static func == (lhs: ProgressSnapshot, rhs: ProgressSnapshot) -> Bool {
        lhs.state == rhs.state && lhs.bytesTransferred == rhs.bytesTransferred && lhs.bytesTotal == rhs.bytesTotal
            && lhs.filesTransferred == rhs.filesTransferred && lhs.filesTotal == rhs.filesTotal
            && lhs.retry?.seconds == rhs.retry?.seconds && lhs.retry?.code == rhs.retry?.code && lhs.deciding == rhs.deciding
    }
}

/// Progress on standard error: a bar that redraws itself on a terminal, plain lines elsewhere
/// (one per state change, and at least every 5 seconds). Shared by both ways of `ferry transfer`.
final class ProgressOutput: @unchecked Sendable {
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private var barShown = false
    private var lastPlainLine = Date.distantPast
    private var lastBytes: UInt64 = 0
    private var lastSample = Date()
    private var rate: Double = 0

    init() {}

    /// Draws one update.
    func show(_ p: ProgressSnapshot, elapsed: Double, stateChanged: Bool) {
        let now = Date()
        let dt = now.timeIntervalSince(lastSample)
        if dt >= 0.5 {
            let delta = Double(p.bytesTransferred &- min(lastBytes, p.bytesTransferred))
            rate = rate == 0 ? delta / dt : 0.6 * rate + 0.4 * delta / dt
            lastBytes = p.bytesTransferred
            lastSample = now
        }
        let detail = p.retry.map { "retrying in \($0.seconds) s after \($0.code)" } ?? p.state + (p.deciding ? " (error policies deciding)" : "")
        if isTerminal {
            let fraction = p.bytesTotal.map { $0 == 0 ? 1 : Double(p.bytesTransferred) / Double($0) }
            let width = 30
            let filled = fraction.map { Int(($0 * Double(width)).rounded(.down)) } ?? 0
            let bar = String(repeating: "#", count: min(width, filled)) + String(repeating: ".", count: max(0, width - filled))
            let percent = fraction.map { String(format: "%3d%%", Int($0 * 100)) } ?? " ?? "
            let total = p.bytesTotal.map { Format.bytes($0) } ?? "?"
            let line = "[\(bar)] \(percent) \(Format.bytes(p.bytesTransferred))/\(total) \(Format.bytes(UInt64(max(0, rate))))/s \(p.filesTransferred)/\(p.filesTotal) files \(detail)"
            write("\r\u{1B}[K" + line)
            barShown = true
        } else if stateChanged || now.timeIntervalSince(lastPlainLine) >= 5 {
            lastPlainLine = now
            let total = p.bytesTotal.map { String($0) } ?? "?"
            write("\(String(format: "%.1f", elapsed))s \(detail) \(p.bytesTransferred)/\(total) bytes \(p.filesTransferred)/\(p.filesTotal) files\n")
        }
    }

    /// Ends the bar's line, so that what follows starts on a fresh one.
    func finishLine() {
        if barShown { write("\n") }
        barShown = false
    }

    func line(_ text: String) { write(text + "\n") }

    func error(_ text: String) {
        finishLine()
        write(text + "\n")
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

extension ProgressSnapshot {
    /// What a job document says of the job, for the progress display.
    init(_ job: JobDocument) {
        // While the policies decide, the retry they may postpone is not announced yet.
        let retry = job.state == .transientError && !job.deciding ? job.error.map { error in
            (seconds: job.retryAt.map { max(0, Int($0.timeIntervalSinceNow.rounded(.up))) } ?? 0, code: error.code)
        } : nil
        self.init(state: job.state.rawValue, bytesTransferred: job.progress.bytesTransferred, bytesTotal: job.progress.bytesTotal,
                  filesTransferred: job.progress.filesTransferred, filesTotal: job.progress.filesTotal, retry: retry)
        deciding = job.deciding
    }
}
