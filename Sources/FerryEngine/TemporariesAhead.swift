import Dispatch
import FerryCore
import Foundation

/// Temporaries of files about to start, created off the engine's thread: creating a file
/// can cost hundreds of microseconds on a busy file system, which the transfer thread of a
/// job of many small files would otherwise spend once per file.
///
/// A temporary being created is never created beside it: its file waits
/// (``isOpening(_:file:)``). State is touched on the engine's thread only.
final class TemporariesAhead {
    private var opened: [JobID: [Int: TemporaryFile]] = [:]
    private var opening: [JobID: Set<Int>] = [:]
    private let opener = DispatchQueue(label: "ferry.engine.opener")
    private let thread: EngineThread
    private let destinations: DestinationDirectories

    /// The engine's jobs (engine's thread).
    var job: (JobID) -> Job? = { _ in nil }
    /// Whether a file of a job is moving now (engine's thread).
    var isRunning: (JobID, Int) -> Bool = { _, _ in false }
    /// Temporaries arrived: the files waiting for them may start.
    var arrived: () -> Void = {}

    init(thread: EngineThread, destinations: DestinationDirectories) {
        self.thread = thread
        self.destinations = destinations
    }

    /// Whether the temporary of a file is being created now.
    func isOpening(_ id: JobID, file index: Int) -> Bool {
        opening[id]?.contains(index) ?? false
    }

    /// The temporary created ahead for a file, taken out of this store.
    func take(_ id: JobID, file index: Int) -> TemporaryFile? {
        thread.assertCurrent()
        return opened[id]?.removeValue(forKey: index)
    }

    /// The job stopped or ended: its temporaries created ahead are let go (closed; a
    /// cancelled job's files are removed with its other temporaries).
    func forget(_ id: JobID) {
        thread.assertCurrent()
        opened[id] = nil
    }

    /// Creates, ahead, the temporaries of the next files of `job` from `start` that have
    /// no bytes yet, up to `wanted` ready or under way.
    func open(for job: Job, from start: Int, wanted: Int) {
        thread.assertCurrent()
        var ready = (opened[job.id]?.count ?? 0) + (opening[job.id]?.count ?? 0)
        var index = start
        var batch: [(Int, DirectoryHandle, String)] = []
        while ready < wanted, index < job.files.count, index < start + 4 * wanted {
            defer { index += 1 }
            let file = job.files[index]
            guard !file.isTransferred, file.bytesTransferred == 0, !isRunning(job.id, index),
                  opened[job.id]?[index] == nil, !isOpening(job.id, file: index) else { continue }
            guard let directory = try? destinations.directory(of: job, file: index) else { continue }
            batch.append((index, directory, job.temporaryName(ofFile: index)))
            opening[job.id, default: []].insert(index)
            ready += 1
        }
        guard !batch.isEmpty else { return }
        let id = job.id
        let owner = OwnerIdentity.credentials(of: job)
        let names = UncheckedSendable(batch)
        let thread = self.thread
        let store = UncheckedSendable(self)
        opener.async {
            var created: [(Int, TemporaryFile?)] = []
            for (index, directory, name) in names.value {
                let file = try? OwnerIdentity.run(as: owner) { () throws(FerryError) in
                    try TemporaryFile(in: directory, name: name, length: 0, bytesTotal: nil, etag: nil, lastModified: nil)
                }
                created.append((index, file))
            }
            let result = UncheckedSendable(created)
            thread.post { store.value.receive(result.value, for: id, owner: owner) }
        }
    }

    private func receive(_ created: [(Int, TemporaryFile?)], for id: JobID, owner: Credentials) {
        thread.assertCurrent()
        let current = job(id)
        for (index, file) in created {
            opening[id]?.remove(index)
            guard let file else { continue }
            guard let current, current.state.isActive else {
                // Cancelled or finished meanwhile: the temporary must not outlive its job.
                if current == nil { try? OwnerIdentity.run(as: owner) { () throws(FerryError) in file.directory.remove(file.name) } }
                continue
            }
            guard current.files.indices.contains(index), current.files[index].bytesTransferred == 0, !isRunning(id, index) else { continue }
            opened[id, default: [:]][index] = file
        }
        if opening[id]?.isEmpty ?? false { opening[id] = nil }
        arrived()
    }
}
