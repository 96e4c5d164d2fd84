import FerryCore
import Foundation

/// One flushed length of one file, for ``JobStore/recordCheckpoints(_:)``.
public struct Checkpoint: Sendable, Equatable {
    public var job: JobID
    public var file: Int
    public var bytes: UInt64
    public var bytesTotal: UInt64?
    public var etag: String?
    public var lastModified: String?
    public var transferred: Bool

    public init(job: JobID, file: Int, bytes: UInt64, bytesTotal: UInt64?, etag: String?, lastModified: String?, transferred: Bool) {
        self.job = job
        self.file = file
        self.bytes = bytes
        self.bytesTotal = bytesTotal
        self.etag = etag
        self.lastModified = lastModified
        self.transferred = transferred
    }
}

/// A notification kept for a receiver that has not acknowledged it.
public struct StoredEvent: Sendable, Equatable {
    /// 0 until stored.
    public var sequence: Int64
    public var owner: UInt32
    public var job: JobID
    public var kind: String
    public var file: Int?
    public var time: Date
    /// The job as it was, JSON.
    public var payload: String

    public init(sequence: Int64 = 0, owner: UInt32, job: JobID, kind: String, file: Int?, time: Date, payload: String) {
        self.sequence = sequence
        self.owner = owner
        self.job = job
        self.kind = kind
        self.file = file
        self.time = time
        self.payload = payload
    }
}
