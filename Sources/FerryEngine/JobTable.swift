import FerryCore

/// The engine's jobs by id, with what the loop reads on every turn kept up to date as jobs
/// change: the jobs waiting in `TRANSIENT_ERROR` (their retry and no-progress timers), the
/// active ones (the scheduler's), and how many jobs each owner holds (quotas). Walking every
/// job on every turn made each request cost as much as the number of jobs held.
struct JobTable: Sequence {
    private var byID: [JobID: Job] = [:]
    /// Jobs in `TRANSIENT_ERROR`.
    private(set) var waiting: Set<JobID> = []
    /// Jobs whose state is active (``JobState/isActive``).
    private(set) var active: Set<JobID> = []
    private var owned: [UInt32: Int] = [:]

    init() {}

    init(_ jobs: [JobID: Job]) {
        for (id, job) in jobs { self[id] = job }
    }

    subscript(id: JobID) -> Job? {
        get { byID[id] }
        set {
            let old = newValue == nil ? byID.removeValue(forKey: id) : byID.updateValue(newValue!, forKey: id)
            index(id, old: old, new: newValue)
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: JobID) -> Job? {
        let old = byID.removeValue(forKey: id)
        index(id, old: old, new: nil)
        return old
    }

    /// The jobs `owner` holds.
    func count(ownedBy owner: UInt32) -> Int { owned[owner] ?? 0 }

    var values: Dictionary<JobID, Job>.Values { byID.values }
    var count: Int { byID.count }
    var isEmpty: Bool { byID.isEmpty }

    func makeIterator() -> Dictionary<JobID, Job>.Iterator { byID.makeIterator() }

    private mutating func index(_ id: JobID, old: Job?, new: Job?) {
        if let old { owned[old.owner] = owned[old.owner] == 1 ? nil : owned[old.owner].map { $0 - 1 } }
        if let new { owned[new.owner, default: 0] += 1 }
        if new?.state == .transientError { waiting.insert(id) } else { waiting.remove(id) }
        if new?.state.isActive ?? false { active.insert(id) } else { active.remove(id) }
    }
}
