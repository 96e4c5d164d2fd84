import FerryCore
import Foundation

/// BITS' `Complete`: temporaries renamed to their final names, then each directory touched
/// flushed, as the job's owner.
///
/// Both names are relative to the directory descriptor the temporary was created through
/// (opened once as the owner): a directory swapped for a link meanwhile cannot redirect the
/// rename, and rename replaces a symbolic link planted at the destination (it never follows
/// it). The kernel refuses a directory the owner may not write.
enum FileCommit {
    /// What a commit did: the files renamed, in order, and the failure that stopped it.
    struct Outcome {
        var renamed: [Int] = []
        var failure: FerryError?
    }

    /// Renames files `indices` of `job` into place, stopping at the first failure.
    static func rename(_ indices: [Int], of job: Job, in destinations: DestinationDirectories) -> Outcome {
        var outcome = Outcome()
        var found: [(Int, DirectoryHandle)] = []
        for index in indices {
            do { found.append((index, try destinations.directory(of: job, file: index))) } catch {
                var missing = error
                missing.fileIndex = index
                outcome.failure = missing
                break
            }
        }
        var touched: [ObjectIdentifier: DirectoryHandle] = [:]
        try? OwnerIdentity.run(as: job) { () throws(FerryError) in
            for (index, directory) in found {
                let temporary = job.temporaryName(ofFile: index)
                let destination = job.files[index].localPath
                if !directory.rename(temporary, to: Job.split(destination).name) {
                    outcome.failure = FerryError(code: .localFileError, context: .localFile, fileIndex: index,
                                                 message: "cannot rename \(job.temporaryPath(ofFile: index)) to \(destination): \(errnoText())")
                    break
                }
                outcome.renamed.append(index)
                touched[ObjectIdentifier(directory)] = directory
            }
            for directory in touched.values { directory.sync() }
        }
        return outcome
    }
}
