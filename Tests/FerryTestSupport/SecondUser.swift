import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A second local account for tests that play another user (`runuser`, `setpriv`); made
/// when missing. Only root can make it.
public enum SecondUser {
    public static let name = "ferrytest"

    /// Creates the account `name` when it does not exist yet.
    /// - Returns: its uid and primary gid.
    @discardableResult
    public static func ensure(_ name: String = name) throws -> (uid: uid_t, gid: gid_t) {
        if getpwnam(name) == nil {
            let made = try PluginBuilder.run("/usr/sbin/useradd", ["--no-create-home", "--shell", "/usr/sbin/nologin", name])
            guard made.status == 0, getpwnam(name) != nil else {
                throw POSIXError(.EPERM, userInfo: [NSLocalizedDescriptionKey: "cannot create the account \(name): \(made.output)"])
            }
        }
        let entry = getpwnam(name)!.pointee
        return (entry.pw_uid, entry.pw_gid)
    }

    /// A copy of the built `ferry` in `directory`, with the built plugins beside it as an
    /// installed `ferry` has them (a run in its own process loads them), which the second
    /// user can reach wherever the package was built.
    public static func ferryCopy(in directory: String) throws -> String {
        let program = directory + "/ferry"
        if !FileManager.default.fileExists(atPath: program) {
            let products = productsDirectory()
            let plugins = try FileManager.default.contentsOfDirectory(atPath: products)
                .filter { $0.hasPrefix("libferry-") && $0.hasSuffix(".so") }
            for name in ["ferry"] + plugins {
                try FileManager.default.copyItem(atPath: products + "/" + name, toPath: directory + "/" + name)
                chmod(directory + "/" + name, 0o755)
            }
        }
        return program
    }
}
