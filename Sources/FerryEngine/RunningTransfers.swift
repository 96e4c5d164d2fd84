import FerryCore
import Foundation

/// The file transfers under way, by job and file, and how many of them are finishing (every
/// byte arrived; waiting for the final flush and the validators, without holding a
/// connection slot, so the next file starts at once).
struct RunningTransfers {
    private var byJob: [JobID: [Int: FileTransfer]] = [:]
    /// Transfers not released yet that are finishing.
    private(set) var finishing = 0
    /// Per job: no file below this index needs starting (a job of n files is not scanned
    /// from its start each time one of them finishes).
    private var firstStartable: [JobID: Int] = [:]

    /// Finished files waiting for their flush and validators; past this, no new file starts
    /// (each holds an open temporary).
    static let maxFinishing = 512

    /// Every transfer not released yet.
    var count: Int { byJob.values.reduce(0) { $0 + $1.count } }
    /// Transfers moving bytes (holding a connection slot).
    var moving: Int { count - finishing }
    /// The jobs with transfers.
    var jobs: [JobID] { Array(byJob.keys) }
    /// Calls `body` with every transfer, without collecting them (the loop does this on
    /// every turn).
    func forEach(_ body: (FileTransfer) -> Void) {
        for transfers in byJob.values {
            for transfer in transfers.values { body(transfer) }
        }
    }

    /// The transfer of a file, if it runs.
    subscript(_ id: JobID, file index: Int) -> FileTransfer? { byJob[id]?[index] }

    /// Whether this very transfer is still the one of its file.
    func isCurrent(_ transfer: FileTransfer) -> Bool { byJob[transfer.jobID]?[transfer.fileIndex] === transfer }

    /// A job's transfers, and how many of them are finishing.
    func of(_ id: JobID) -> (count: Int, finishing: Int) {
        guard let transfers = byJob[id] else { return (0, 0) }
        return (transfers.count, transfers.values.reduce(0) { $0 + ($1.isFinishing ? 1 : 0) })
    }

    /// Background transfers, for sharing the background bandwidth cap.
    func count(where isIncluded: (JobID) -> Bool) -> Int {
        byJob.reduce(0) { $0 + (isIncluded($1.key) ? $1.value.count : 0) }
    }

    mutating func add(_ transfer: FileTransfer) {
        byJob[transfer.jobID, default: [:]][transfer.fileIndex] = transfer
    }

    /// Every byte of the file arrived: it no longer holds a connection slot.
    mutating func markFinishing(_ transfer: FileTransfer) {
        guard !transfer.isFinishing else { return }
        transfer.isFinishing = true
        finishing += 1
    }

    /// The transfer is done with (failed, finished, restarting); its file may need starting again.
    mutating func release(_ transfer: FileTransfer) {
        let id = transfer.jobID
        if let hint = firstStartable[id], transfer.fileIndex < hint { firstStartable[id] = transfer.fileIndex }
        guard isCurrent(transfer) else { return }
        byJob[id]?[transfer.fileIndex] = nil
        if byJob[id]?.isEmpty ?? false { byJob[id] = nil }
        if transfer.isFinishing { finishing -= 1 }
    }

    /// Removes every transfer of a job and returns them (to be stopped).
    mutating func removeAll(of id: JobID) -> [FileTransfer] {
        firstStartable[id] = nil
        guard let transfers = byJob.removeValue(forKey: id) else { return [] }
        for transfer in transfers.values where transfer.isFinishing { finishing -= 1 }
        return Array(transfers.values)
    }

    /// The first file of a job that may need starting.
    func firstStartable(of id: JobID) -> Int { firstStartable[id] ?? 0 }

    mutating func setFirstStartable(_ index: Int, of id: JobID) { firstStartable[id] = index }

    /// The job is gone.
    mutating func forget(_ id: JobID) { firstStartable[id] = nil }
}
