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

    /// Refuses a file, or a directory holding it, that someone other than its owner may
    /// write, or that belongs to a user other than root or the agent's user.
    public static func checkTrust(_ path: String) throws(PluginLoadError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw PluginLoadError(path: path, reason: .notFound, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        // Follow a symbolic link, but judge both the link's target and where it sits.
        if (info.st_mode & S_IFMT) == S_IFLNK {
            guard stat(path, &info) == 0 else {
                throw PluginLoadError(path: path, reason: .notFound, message: "dangling symbolic link")
            }
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw PluginLoadError(path: path, reason: .notASharedObject, message: "not a regular file")
        }
        try checkOwnerAndMode(info, what: "the file", path: path)
        var directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if directory.isEmpty { directory = path.hasPrefix("/") ? "/" : "." }
        var dirInfo = stat()
        guard stat(directory, &dirInfo) == 0 else {
            throw PluginLoadError(path: path, reason: .notFound, message: "cannot stat its directory \(directory)")
        }
        // A sticky, world-writable directory (like /tmp) still lets others replace files they own only.
        try checkOwnerAndMode(dirInfo, what: "its directory \(directory)", path: path, allowSticky: true)
    }

    private static func checkOwnerAndMode(_ info: stat, what: String, path: String, allowSticky: Bool = false) throws(PluginLoadError) {
        let me = geteuid()
        guard info.st_uid == 0 || info.st_uid == me else {
            throw PluginLoadError(path: path, reason: .untrusted,
                                  message: "refused: \(what) belongs to uid \(info.st_uid), not to root or to the agent's user (uid \(me))")
        }
        let writableByOthers = info.st_mode & (S_IWGRP | S_IWOTH)
        let sticky = (info.st_mode & S_ISVTX) != 0
        if writableByOthers != 0 && !(allowSticky && sticky) {
            throw PluginLoadError(path: path, reason: .untrusted,
                                  message: "refused: \(what) is writable by \((info.st_mode & S_IWOTH) != 0 ? "everyone" : "its group") (mode \(String(info.st_mode & 0o7777, radix: 8))); make it writable by its owner only (chmod go-w)")
        }
    }

    /// Opens the shared object and returns its checked descriptor.
    ///
    /// Opened with `RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE`: a Swift plugin's
    /// runtime metadata must stay mapped for the life of the process, so
    /// plugins are never unloaded.
    static func open(_ path: String) throws(PluginLoadError) -> UnsafePointer<ferry_plugin_descriptor> {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
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
