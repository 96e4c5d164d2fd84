import CSQLite
import FerryCore

/// An error from SQLite, with the result code, SQLite's message and the statement.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    /// The extended SQLite result code (`SQLITE_*`).
    public let resultCode: Int32
    public let message: String
    public let sql: String?

    public var description: String {
        if let sql { return "store error \(resultCode): \(message) (in \(sql))" }
        return "store error \(resultCode): \(message)"
    }
}

/// The destructor value that makes SQLite copy bound text (C's `SQLITE_TRANSIENT`, a macro Swift cannot import).
private let transientDestructor = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection. Not thread-safe by itself: ``JobStore`` serializes access.
///
/// Every SQLite call goes through ``check(_:_:)``, which turns result codes
/// into thrown ``StoreError``s in one place.
final class SQLiteConnection {
    private let handle: OpaquePointer
    /// Prepared statements by SQL text: the store runs the same few statements thousands of
    /// times, and parsing them each time cost more than running them.
    private var statements: [String: OpaquePointer] = [:]

    /// Opens (or creates) the database at `path`.
    /// The corresponding C function is `sqlite3_open_v2`.
    init(path: String) throws(StoreError) {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open \(path)"
            if let db { sqlite3_close_v2(db) }
            throw StoreError(resultCode: rc, message: "\(message): \(path)", sql: nil)
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, 5_000)
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    func check(_ rc: Int32, _ sql: String?) throws(StoreError) {
        guard rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE else {
            throw StoreError(resultCode: rc, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
        }
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(StoreError) {
        try check(sqlite3_exec(handle, sql, nil, nil, nil), sql)
    }

    /// Runs a statement with bound values and returns every row.
    @discardableResult
    func query(_ sql: String, _ values: [SQLValue] = []) throws(StoreError) -> [[SQLValue]] {
        let stmt: OpaquePointer
        if let cached = statements[sql] {
            stmt = cached
        } else {
            var prepared: OpaquePointer?
            try check(sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil), sql)
            guard let prepared else { return [] }
            statements[sql] = prepared
            stmt = prepared
        }
        defer {
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
        }
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(stmt, index)
            case .integer(let v): rc = sqlite3_bind_int64(stmt, index, v)
            case .real(let v): rc = sqlite3_bind_double(stmt, index, v)
            case .text(let v): rc = sqlite3_bind_text(stmt, index, v, -1, transientDestructor)
            }
            try check(rc, sql)
        }
        var rows: [[SQLValue]] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            try check(rc, sql)
            let count = sqlite3_column_count(stmt)
            var row: [SQLValue] = []
            row.reserveCapacity(Int(count))
            for column in 0..<count {
                switch sqlite3_column_type(stmt, column) {
                case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(stmt, column)))
                case SQLITE_FLOAT: row.append(.real(sqlite3_column_double(stmt, column)))
                case SQLITE_NULL: row.append(.null)
                default:
                    if let text = sqlite3_column_text(stmt, column) {
                        row.append(.text(String(cString: text)))
                    } else {
                        row.append(.null)
                    }
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if it throws.
    func transaction<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

/// A value bound to or read from a statement.
enum SQLValue: Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)

    var int: Int64? { if case .integer(let v) = self { v } else { nil } }
    var double: Double? {
        switch self {
        case .real(let v): v
        case .integer(let v): Double(v)
        default: nil
        }
    }
    var string: String? { if case .text(let v) = self { v } else { nil } }

    static func optional(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }
    static func optional(_ value: UInt64?) -> SQLValue { value.map { .integer(Int64($0)) } ?? .null }
}

extension StoreError {
    /// SQLite's code, as kept with the error it becomes.
    public var underlying: UnderlyingError { UnderlyingError(library: "sqlite", code: resultCode) }
}

extension FerryError {
    /// A failure of the job store: `LOCAL_FILE_ERROR` saying what could not be done, with
    /// SQLite's code kept when the store gave one.
    /// - Parameters:
    ///   - what: what could not be done, such as `cannot store job 3`.
    ///   - error: what the store threw.
    public static func store(_ what: String, _ error: any Error) -> FerryError {
        FerryError(code: .localFileError, context: .queueManager, underlying: (error as? StoreError)?.underlying, message: "\(what): \(error)")
    }
}
