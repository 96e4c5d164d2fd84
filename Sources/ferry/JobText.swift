import FerryControl
import FerryCore
import Foundation

/// A job's human form: the `list` table, `info`'s report and the lines they share.
enum JobText {
    /// The `list` table: id, state, priority, bytes, files, name. With `verbose`, each row is
    /// followed by the owner, the times, the error and every file, indented.
    static func table(_ jobs: [JobDocument], verbose: Bool = false) -> String {
        var table = Table(header: ["ID", "STATE", "PRIORITY", "BYTES", "FILES", "NAME"])
        table.rows = jobs.map { job in
            [job.id, job.state.rawValue, job.priority.rawValue,
             Format.amount(job.progress.bytesTransferred, of: job.progress.bytesTotal),
             Format.files(job.progress), job.displayName]
        }
        let lines = table.lines()
        guard verbose else { return lines.joined(separator: "\n") }
        var out = [lines[0]]
        for (job, line) in zip(jobs, lines.dropFirst()) {
            out.append(line)
            out.append("    owner uid \(job.owner), created \(Format.date(job.created)), modified \(Format.date(job.modified))"
                + (job.transferCompleted.map { ", transferred \(Format.date($0))" } ?? ""))
            if let error = job.error { out.append("    error: " + Format.error(error)) }
            out += fileTable(job.files, withProperties: false).map { "    " + $0 }
        }
        return out.joined(separator: "\n")
    }

    /// `info`: everything about one job.
    static func details(_ job: JobDocument) -> String {
        var fields: [(String, String)] = [
            ("Job", job.id),
            ("Name", job.displayName),
            ("Description", job.description.isEmpty ? "(none)" : job.description),
            ("State", job.state.rawValue + (job.deciding ? " (error policies deciding)" : "")),
            ("Priority", job.priority.rawValue),
            ("Owner", "uid \(job.owner)"),
            ("Progress", "\(Format.amount(job.progress.bytesTransferred, of: job.progress.bytesTotal)), \(Format.files(job.progress)) files"),
            ("Created", Format.date(job.created)),
            ("Modified", Format.date(job.modified)),
        ]
        if let done = job.transferCompleted { fields.append(("Transferred", Format.date(done))) }
        if let retry = job.retryAt { fields.append(("Retry at", Format.date(retry))) }
        if let error = job.error { fields.append(("Error", errorSummary(error, in: job))) }
        var out = aligned(fields, indent: "")
        out.append("")
        out.append("Settings:")
        out += aligned([
            ("Min retry delay", Format.seconds(job.minRetryDelaySec)),
            ("No-progress timeout", Format.seconds(job.noProgressTimeoutSec)),
            ("Auto-complete", Format.yesNo(job.autoComplete)),
            ("Notify flags", NotifyFlagNames.describe(job.notifyFlags)),
            ("Notify command", job.notifyCommand.isEmpty ? "(none)" : Format.shellWords(job.notifyCommand)),
            ("Custom headers", job.customHeaders.isEmpty ? "(none)" : job.customHeaders.joined(separator: "\n")),
            ("Properties", Format.properties(job.properties)),
        ] + optionalSettings(job), indent: "  ")
        if !job.history.isEmpty {
            out.append("")
            out.append("Policy history:")
            out += job.history.map { "  " + $0 }
        }
        out.append("")
        out.append("Files (\(job.files.count)):")
        out += fileTable(job.files, withProperties: true).map { "  " + $0 }
        return out.joined(separator: "\n")
    }

    /// The settings shown only when set: dynamic content, the job's file size limit, TLS options.
    static func optionalSettings(_ job: JobDocument) -> [(String, String)] {
        var fields: [(String, String)] = []
        if job.dynamicContent { fields.append(("Dynamic content", "yes (no size or ranges needed; an interrupted file starts again)")) }
        if let limit = job.maxFileBytes { fields.append(("Max file size", Format.byteCount(limit))) }
        if let file = job.tlsCAFile { fields.append(("TLS CA file", file)) }
        if let pin = job.tlsPinnedPublicKey { fields.append(("TLS pinned key", pin)) }
        return fields
    }

    /// The files, one row each (index, state, bytes, `URL -> path`), without a header;
    /// `withProperties` adds a line under each file that has some.
    static func fileTable(_ files: [FileDocument], withProperties: Bool) -> [String] {
        var table = Table(header: ["#", "STATE", "BYTES", "URL -> PATH"])
        table.rows = files.map { file in
            ["\(file.index)", fileState(file), Format.amount(file.bytesTransferred, of: file.bytesTotal), "\(file.url) -> \(file.path)"]
        }
        let lines = table.lines()
        guard withProperties else { return Array(lines.dropFirst()) }
        var out: [String] = [lines[0]]
        for (file, line) in zip(files, lines.dropFirst()) {
            out.append(line)
            // The mirrors property has a line of its own.
            let properties = file.properties.filter { $0.key != JobFile.mirrorsProperty }
            if !properties.isEmpty { out.append("   properties: " + Format.properties(properties)) }
            if !file.mirrors.isEmpty { out.append("   mirrors: " + file.mirrors.joined(separator: " ")) }
        }
        return out
    }

    /// `committed` (renamed into place), `transferred`, `partial` or `pending`.
    static func fileState(_ file: FileDocument) -> String {
        if file.committed { return "committed" }
        if file.transferred { return "transferred" }
        return file.bytesTransferred > 0 ? "partial" : "pending"
    }

    /// The error, then the file it concerns when the job has it.
    static func errorSummary(_ error: ErrorDocument, in job: JobDocument) -> String {
        var text = Format.error(error)
        if let index = error.file, let file = job.files.first(where: { $0.index == index }) {
            text += "\n\(file.url) -> \(file.path)"
        }
        return text
    }

    /// `Label:   value` lines, values aligned; a multi-line value continues under its first line.
    static func aligned(_ fields: [(String, String)], indent: String) -> [String] {
        let width = (fields.map(\.0.count).max() ?? 0) + 2
        return fields.flatMap { label, value in
            value.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map { index, line in
                indent + (index == 0 ? (label + ":").padding(toLength: width, withPad: " ", startingAt: 0)
                                     : String(repeating: " ", count: width)) + line
            }
        }
    }
}
