import FerryPluginABI
#if canImport(Glibc)
import Glibc
#endif

/// Finds, checks and opens plugin shared objects.
public enum PluginLoader {
    /// The size of the descriptor as ABI version 1 defined it: a plugin built against a
    /// later, longer header is still accepted; fields past this size are read only
    /// after checking its `struct_size`.
    static let descriptorV1Size = UInt32(
        MemoryLayout<ferry_plugin_descriptor>.offset(of: \ferry_plugin_descriptor.job_modification)! + MemoryLayout<UnsafeRawPointer>.size)

    /// Resolves a plugin reference: a path is used as it is; a bare name is
    /// looked up as `libferry-<name>.so` in each directory, in order.
    public static func resolve(_ reference: String, in directories: [String]) throws(PluginLoadError) -> String {
        if reference.contains("/") {
            guard access(reference, F_OK) == 0 else {
                throw PluginLoadError(path: reference, reason: .notFound, message: "no such file")
            }
            return reference
        }
        let fileName = "libferry-\(reference).so"
        for directory in directories {
            let candidate = directory + "/" + fileName
            if access(candidate, F_OK) == 0 { return candidate }
        }
        throw PluginLoadError(path: fileName, reason: .notFound,
                              message: "not found in \(directories.isEmpty ? "any plugin directory" : directories.joined(separator: ", "))")
    }

    /// A plugin file that passed ``checkTrust(_:)``: its real path, and a descriptor open on
    /// the very file that was judged.
    public struct TrustedFile: ~Copyable {
        /// The path with every symbolic link resolved.
        public let realPath: String
        let descriptor: Int32
        deinit { close(descriptor) }
    }

    /// Judges the real file behind `path`: every symbolic link is resolved first, then the
    /// file and every directory from it up to `/` must belong to root or to the agent's
    /// user and be writable by no one else. A directory owned by root with the sticky bit
    /// (such as `/tmp`) may be writable by everyone, as sshd's `StrictModes` allows: others
    /// can then replace only what they own.
    /// - Returns: the real path, and the file opened (without following a link) and checked
    ///   to be the one judged: ``open(_:)`` loads it through that descriptor.
    /// - Throws: ``PluginLoadError`` naming the file or directory at fault.
    public static func checkTrust(_ path: String) throws(PluginLoadError) -> TrustedFile {
        guard let resolved = realpath(path, nil) else {
            throw PluginLoadError(path: path, reason: .notFound, message: "cannot resolve: \(String(cString: strerror(errno)))")
        }
        let real = String(cString: resolved)
        free(resolved)
        var info = stat()
        guard lstat(real, &info) == 0 else {
            throw PluginLoadError(path: path, reason: .notFound, message: "cannot stat \(real): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw PluginLoadError(path: path, reason: .notASharedObject, message: "\(real) is not a regular file")
        }
        let named = real == path ? "the file" : "the file \(real)"
        try checkOwnerAndMode(info, what: named, path: path)
        var directory = real
        while directory != "/" {
            directory = String(directory[..<(directory.lastIndex(of: "/") ?? directory.startIndex)])
            if directory.isEmpty { directory = "/" }
            var dirInfo = stat()
            guard lstat(directory, &dirInfo) == 0, (dirInfo.st_mode & S_IFMT) == S_IFDIR else {
                throw PluginLoadError(path: path, reason: .notFound, message: "cannot stat its directory \(directory)")
            }
            try checkOwnerAndMode(dirInfo, what: "its directory \(directory)", path: path, allowSticky: true)
        }
        let fd = Glibc.open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        var opened = stat()
        guard fd >= 0 else {
            throw PluginLoadError(path: path, reason: .notFound, message: "cannot open \(real): \(String(cString: strerror(errno)))")
        }
        guard fstat(fd, &opened) == 0, opened.st_dev == info.st_dev, opened.st_ino == info.st_ino else {
            close(fd)
            throw PluginLoadError(path: path, reason: .untrusted, message: "refused: \(real) changed while it was checked")
        }
        return TrustedFile(realPath: real, descriptor: fd)
    }

    private static func checkOwnerAndMode(_ info: stat, what: String, path: String, allowSticky: Bool = false) throws(PluginLoadError) {
        let me = geteuid()
        guard info.st_uid == 0 || info.st_uid == me else {
            throw PluginLoadError(path: path, reason: .untrusted,
                                  message: "refused: \(what) belongs to uid \(info.st_uid), not to root or to the agent's user (uid \(me))")
        }
        let writableByOthers = info.st_mode & (S_IWGRP | S_IWOTH)
        let sticky = (info.st_mode & S_ISVTX) != 0
        if writableByOthers != 0 && !(allowSticky && sticky && info.st_uid == 0) {
            throw PluginLoadError(path: path, reason: .untrusted,
                                  message: "refused: \(what) is writable by \((info.st_mode & S_IWOTH) != 0 ? "everyone" : "its group") (mode \(String(info.st_mode & 0o7777, radix: 8))); make it writable by its owner only (chmod go-w)")
        }
    }

    /// Opens the shared object and returns its checked descriptor.
    ///
    /// Opened with `RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE`: a Swift plugin's
    /// runtime metadata must stay mapped for the life of the process, so
    /// plugins are never unloaded.
    /// The file is loaded through the descriptor ``checkTrust(_:)`` judged
    /// (`/proc/self/fd/N`): a link swapped in after the check cannot change what is loaded.
    /// That descriptor (a duplicate of it) stays open for the life of the process, as the
    /// plugin does: the dynamic loader knows a library by its name, and a descriptor number
    /// used again would name another plugin.
    static func open(_ trusted: borrowing TrustedFile) throws(PluginLoadError) -> UnsafePointer<ferry_plugin_descriptor> {
        let path = trusted.realPath
        let kept = fcntl(trusted.descriptor, F_DUPFD_CLOEXEC, 3)
        guard kept >= 0 else {
            throw PluginLoadError(path: path, reason: .notFound, message: "cannot keep it open: \(String(cString: strerror(errno)))")
        }
        guard let handle = dlopen("/proc/self/fd/\(kept)", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            close(kept)
            let detail = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            throw PluginLoadError(path: path, reason: .notASharedObject, message: "cannot load: \(detail)")
        }
        guard let symbol = dlsym(handle, FERRY_PLUGIN_ENTRY_SYMBOL) else {
            dlclose(handle)
            throw PluginLoadError(path: path, reason: .missingSymbol,
                                  message: "does not export \(FERRY_PLUGIN_ENTRY_SYMBOL) (is it a Ferry plugin, built for ABI version \(FERRY_PLUGIN_ABI_VERSION)?)")
        }
        let entry = unsafeBitCast(symbol, to: ferry_plugin_entry_fn.self)
        guard let descriptor = entry() else {
            throw PluginLoadError(path: path, reason: .badDescriptor, message: "\(FERRY_PLUGIN_ENTRY_SYMBOL)() returned NULL")
        }
        let d = descriptor.pointee
        guard d.abi_version == UInt32(FERRY_PLUGIN_ABI_VERSION) else {
            throw PluginLoadError(path: path, reason: .wrongABI,
                                  message: "built for plugin ABI version \(d.abi_version); this Ferry speaks version \(FERRY_PLUGIN_ABI_VERSION)")
        }
        let minimum = descriptorV1Size
        guard d.struct_size >= minimum else {
            throw PluginLoadError(path: path, reason: .wrongABI,
                                  message: "its descriptor is \(d.struct_size) bytes, smaller than version \(FERRY_PLUGIN_ABI_VERSION)'s \(minimum)")
        }
        guard let name = d.name, String(cString: name).isEmpty == false else {
            throw PluginLoadError(path: path, reason: .badDescriptor, message: "its descriptor has no name")
        }
        guard d.version != nil else {
            throw PluginLoadError(path: path, reason: .badDescriptor, message: "its descriptor has no version")
        }
        let knownRoles = UInt32(FERRY_ROLE_VALIDATOR | FERRY_ROLE_ERROR_POLICY)
        guard d.roles != 0, d.roles & ~knownRoles == 0 else {
            throw PluginLoadError(path: path, reason: .badDescriptor, message: "its descriptor declares unknown roles 0x\(String(d.roles, radix: 16))")
        }
        guard d.create != nil else {
            throw PluginLoadError(path: path, reason: .badDescriptor, message: "its descriptor has no create function")
        }
        if d.roles & UInt32(FERRY_ROLE_VALIDATOR) != 0, d.file_transferred == nil {
            throw PluginLoadError(path: path, reason: .badDescriptor, message: "a validator must implement file_transferred")
        }
        if d.roles & UInt32(FERRY_ROLE_ERROR_POLICY) != 0, d.job_error == nil {
            throw PluginLoadError(path: path, reason: .badDescriptor, message: "an error policy must implement job_error")
        }
        return descriptor
    }
}
