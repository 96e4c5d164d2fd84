/// The state of a job, as BITS' `BG_JOB_STATE`.
///
/// New jobs start ``suspended``; ``JobEvent/resume`` queues them. ``acknowledged``
/// and ``cancelled`` are final: a job never leaves them and every call on it
/// fails with ``ErrorCode/invalidState``.
public enum JobState: String, Codable, Sendable, CaseIterable {
    case suspended = "SUSPENDED"
    case queued = "QUEUED"
    case connecting = "CONNECTING"
    case transferring = "TRANSFERRING"
    case transferred = "TRANSFERRED"
    case transientError = "TRANSIENT_ERROR"
    case error = "ERROR"
    case acknowledged = "ACKNOWLEDGED"
    case cancelled = "CANCELLED"

    /// `ACKNOWLEDGED` or `CANCELLED`: nothing changes a final job.
    public var isFinal: Bool { self == .acknowledged || self == .cancelled }

    /// The states in which the queue manager owns the job and may be moving bytes.
    public var isActive: Bool { self == .queued || self == .connecting || self == .transferring }
}

/// A job's priority, as BITS' `BG_JOB_PRIORITY`.
///
/// Foreground jobs all run at once; the three background levels share what is
/// left, the higher level first, round-robin within a level.
public enum JobPriority: String, Codable, Sendable, CaseIterable, Comparable {
    case foreground
    case high
    case normal
    case low

    /// Smaller ranks run first.
    public var rank: Int {
        switch self {
        case .foreground: 0
        case .high: 1
        case .normal: 2
        case .low: 3
        }
    }

    public var isBackground: Bool { self != .foreground }

    public static func < (lhs: JobPriority, rhs: JobPriority) -> Bool { lhs.rank > rhs.rank }
}
