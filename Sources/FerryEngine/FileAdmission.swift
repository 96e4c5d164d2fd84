import FerryCore
import Foundation

/// The checks a caller's input gets that need the file system, made as the job's owner:
/// every answer tells the caller only what the kernel would have told it (a directory it
/// may not search is "permission denied", whether or not something is there). They run on
/// the caller's thread, never the engine's. The rules that need no look-up are
/// ``InputRules``.
enum FileAdmission {
    /// The most bytes a job's CA file may have.
    static let maxCAFileBytes = 1 << 20

    /// Checks files to add to `job`, in order.
    /// - Throws: the first refusal, prefixed with `file N:` when several files were given.
    static func admit(_ files: [NewFile], to job: Job) throws(FerryError) -> [JobFile] {
        var checked: [JobFile] = []
        checked.reserveCapacity(files.count)
        // A package set puts thousands of files in a few directories: check each once.
        var verifiedDirectories: [String: DirectoryHandle] = [:]
        for (offset, file) in files.enumerated() {
            do throws(FerryError) {
                checked.append(try admit(file, to: job, verifiedDirectories: &verifiedDirectories))
            } catch {
                var failure = error
                if files.count > 1 { failure.message = "file \(offset): " + failure.message }
                throw failure
            }
        }
        return checked
    }

    /// Checks a file to add to `job`; `verifiedDirectories` remembers the destination
    /// directories already found usable by its owner in this call.
    static func admit(_ file: NewFile, to job: Job, verifiedDirectories: inout [String: DirectoryHandle]) throws(FerryError) -> JobFile {
        try InputRules.checkRemoteURL(file.remoteURL)
        try checkLocalSource(file.remoteURL, for: job)
        try InputRules.checkLocalPath(file.localPath)
        // Mirrors are checked as the URL itself is (a file: mirror must be readable by the owner).
        for mirror in JobFile.mirrors(in: file.properties[JobFile.mirrorsProperty] ?? "") {
            try InputRules.checkRemoteURL(mirror, kind: "mirror")
            try checkLocalSource(mirror, for: job)
        }
        let (directory, name) = Job.split(file.localPath)
        let known = verifiedDirectories[directory]
        let handle = try OwnerIdentity.run(as: job) { () throws(FerryError) -> DirectoryHandle in
            if let known { return known }
            let handle = try DirectoryHandle(opening: directory)
            guard handle.allowsCreatingFiles() else {
                throw FerryError(code: .accessDenied, context: .localFile,
                                 message: "uid \(job.owner) may not create files in \(directory)")
            }
            return handle
        }
        if let existing = handle.status(of: name), (existing.st_mode & S_IFMT) == S_IFDIR {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "the destination \(file.localPath) is a directory")
        }
        // A few directories are kept open for the files that follow; a request naming many
        // directories opens each again rather than hold a descriptor per directory.
        if known == nil, verifiedDirectories.count < 64 { verifiedDirectories[directory] = handle }
        return JobFile(remoteURL: file.remoteURL, localPath: file.localPath, properties: file.properties)
    }

    /// An early answer for a `file:` source: the job's owner must be able to open it, and it
    /// must be a regular file. (The transfer opens it again, as the owner, and reads only
    /// what that open gives: this check grants nothing.)
    static func checkLocalSource(_ url: String, for job: Job) throws(FerryError) {
        guard url.lowercased().hasPrefix("file:"), let path = URL(string: url)?.path else { return }
        let (fd, _) = try OwnedFile.open(path, as: job, what: "the source", context: .remoteFile)
        close(fd)
    }

    /// Reads a CA file as `job`'s owner and checks that it holds PEM certificates.
    static func readCAFile(_ path: String, for job: Job) throws(FerryError) -> String {
        let bytes: [UInt8]
        do { bytes = try OwnedFile.read(path, as: job, what: "the CA file", limit: maxCAFileBytes) } catch {
            guard error.code == .accessDenied else { throw error }
            // An option the caller gave that cannot be used: a bad argument, as the API documents.
            throw FerryError(code: .invalidArgument, context: .localFile, message: "cannot read the CA file \(path) as uid \(job.owner): " + (error.message.components(separatedBy: ": ").last ?? ""))
        }
        guard let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN CERTIFICATE-----") else {
            throw FerryError(code: .invalidArgument, context: .localFile, message: "the CA file \(path) holds no PEM certificate")
        }
        return text
    }
}
