import FerryCore
import FerryEngine
import Foundation

/// What `ferry transfer` is asked to do.
public struct TransferPlan: Sendable, Equatable {
    public var displayName: String?
    public var priority: JobPriority
    public var files: [NewFile]
    public var minimumRetryDelay: Double
    public var noProgressTimeout: Double
    /// An absolute path to a PEM file of certificate authorities trusted besides the system's
    /// for the job's `https` URLs (the job's `tlsCAFile`); `nil` keeps the system's alone.
    public var caFile: String?

    public init(displayName: String?, priority: JobPriority, files: [NewFile], minimumRetryDelay: Double, noProgressTimeout: Double,
                caFile: String? = nil) {
        self.displayName = displayName
        self.priority = priority
        self.files = files
        self.minimumRetryDelay = minimumRetryDelay
        self.noProgressTimeout = noProgressTimeout
        self.caFile = caFile
    }

    /// The job settings this run applies whether it creates the job or continues one: the
    /// timers and, when given, the CA file.
    var settingEvents: [JobEvent] {
        var events: [JobEvent] = [.setMinimumRetryDelay(minimumRetryDelay), .setNoProgressTimeout(noProgressTimeout)]
        if let caFile { events.append(.setTLSOptions(caFile: caFile, pinnedPublicKey: nil)) }
        return events
    }

    /// A name for the store of this exact set of files, so that a rerun finds its job
    /// and two different transfers never share (or lock) one store.
    public var storeKey: String {
        // FNV-1a over every URL and destination, in order.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for file in files {
            for byte in file.remoteURL.utf8 + [0] + file.localPath.utf8 + [0] {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        return String(hash, radix: 16)
    }
}

