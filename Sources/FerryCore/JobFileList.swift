/// The files of a job: an array of ``JobFile`` stored in chunks, with running totals.
///
/// A job is a value, copied whenever someone else still holds it while it changes (an
/// observer, a plugin callback in flight, a store write). With a plain array every such
/// change would copy every file, so a job of n files would cost n² over its life. Here a
/// change copies only the chunk of the file it touches, and the totals that progress and
/// scheduling read are kept up to date on every change instead of summed again.
public struct JobFileList: RandomAccessCollection, MutableCollection, Equatable, Sendable, ExpressibleByArrayLiteral, Codable {
    private static let chunkShift = 6
    private static let chunkMask = (1 << chunkShift) - 1

    private var chunks: [[JobFile]] = []
    public private(set) var count = 0
    /// Files whose bytes are all here (``JobFile/isTransferred``).
    public private(set) var transferredCount = 0
    /// The sum of ``JobFile/bytesTransferred``.
    public private(set) var bytesTransferred: UInt64 = 0
    /// The sum of the known sizes, and how many files have none.
    public private(set) var bytesTotalKnown: UInt64 = 0
    public private(set) var unknownSizeCount = 0

    public init() {}

    public init<Files: Sequence>(_ files: Files) where Files.Element == JobFile {
        append(contentsOf: files)
    }

    public init(arrayLiteral files: JobFile...) { self.init(files) }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> JobFile {
        get {
            precondition(position >= 0 && position < count, "file index \(position) out of range")
            return chunks[position >> Self.chunkShift][position & Self.chunkMask]
        }
        _modify {
            precondition(position >= 0 && position < count, "file index \(position) out of range")
            let chunk = position >> Self.chunkShift
            let slot = position & Self.chunkMask
            subtract(chunks[chunk][slot])
            defer { add(chunks[chunk][slot]) }
            yield &chunks[chunk][slot]
        }
    }

    public mutating func append(_ file: JobFile) {
        // A new chunk grows as files come (not reserved whole): most jobs hold a file or a
        // few, and a full chunk reserved for each would be kilobytes a job.
        if count & Self.chunkMask == 0 { chunks.append([]) }
        chunks[chunks.count - 1].append(file)
        count += 1
        add(file)
    }

    public mutating func append<Files: Sequence>(contentsOf files: Files) where Files.Element == JobFile {
        for file in files { append(file) }
    }

    /// The files whose records differ from `older`'s, found without comparing the chunks
    /// that still share storage with it.
    public func changedIndices(since older: JobFileList) -> [Int] {
        var changed: [Int] = []
        for chunk in chunks.indices {
            let base = chunk << Self.chunkShift
            guard chunk < older.chunks.count else {
                changed.append(contentsOf: base..<(base + chunks[chunk].count))
                continue
            }
            let mine = chunks[chunk]
            let theirs = older.chunks[chunk]
            let shared = mine.withUnsafeBufferPointer { a in theirs.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress && a.count == b.count } }
            if shared { continue }
            for slot in mine.indices where slot >= theirs.count || mine[slot] != theirs[slot] { changed.append(base + slot) }
        }
        return changed
    }

    public static func == (lhs: JobFileList, rhs: JobFileList) -> Bool {
        lhs.count == rhs.count && lhs.chunks == rhs.chunks
    }

    private mutating func add(_ file: JobFile) {
        if file.isTransferred { transferredCount += 1 }
        bytesTransferred &+= file.bytesTransferred
        if let size = file.bytesTotal { bytesTotalKnown &+= size } else { unknownSizeCount += 1 }
    }

    private mutating func subtract(_ file: JobFile) {
        if file.isTransferred { transferredCount -= 1 }
        bytesTransferred &-= file.bytesTransferred
        if let size = file.bytesTotal { bytesTotalKnown &-= size } else { unknownSizeCount -= 1 }
    }

    public init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        while !container.isAtEnd { append(try container.decode(JobFile.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        for file in self { try container.encode(file) }
    }
}
