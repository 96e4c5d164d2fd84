/// Who sent a request, as the kernel told it (SO_PEERCRED).
public struct Caller: Sendable, Equatable, CustomStringConvertible {
    public let uid: UInt32
    public let gid: UInt32
    public let pid: Int32

    public init(uid: UInt32, gid: UInt32, pid: Int32) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }

    /// Root sees and manages every user's jobs, as an administrator does in BITS.
    public var isAdministrator: Bool { uid == 0 }

    public var description: String { "uid \(uid) (pid \(pid))" }
}
