import FerryCore

/// Who sent a request, as the kernel told it (`SO_PEERCRED`, `SO_PEERGROUPS`).
public struct Caller: Sendable, Equatable, CustomStringConvertible {
    public let uid: UInt32
    public let gid: UInt32
    public let pid: Int32
    /// The supplementary groups the calling process held when it connected (not the groups
    /// the account database lists: a process may have dropped some).
    public let groups: [UInt32]

    public init(uid: UInt32, gid: UInt32, pid: Int32, groups: [UInt32] = []) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.groups = groups
    }

    /// Root sees and manages every user's jobs, as an administrator does in BITS.
    public var isAdministrator: Bool { uid == 0 }

    /// The identity the caller's jobs act with.
    public var credentials: Credentials { Credentials(uid: uid, gid: gid, groups: groups) }

    public var description: String { "uid \(uid) (pid \(pid))" }

    /// The groups in an `SO_PEERGROUPS` answer read into a zeroed buffer larger than the
    /// answer. The kernel keeps a process's groups sorted and writes them first: the list
    /// ends at the last non-zero entry. A lone group 0 cannot be told from an empty buffer
    /// and is left out (it can only deny, never grant, access that way).
    static func groups(inPeerGroupsBuffer buffer: [UInt32]) -> [UInt32] {
        guard let last = buffer.lastIndex(where: { $0 != 0 }) else { return [] }
        return Array(buffer[...last])
    }
}
