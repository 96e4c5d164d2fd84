import FerryPluginHost
import Foundation
import Logging

// ferry-plugin-helper: runs one plugin for an agent that asked for `isolation: process`.
// Its standard input and output are one end of a socketpair; its standard error is the
// agent's. It loads the plugin with the agent's own loader (the same trust checks) and host
// table (the same ABI), answers each call, and ends when the agent closes the socket. A crash
// of the plugin ends only this process.
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .info
    return handler
}
guard isatty(STDIN_FILENO) == 0 else {
    FileHandle.standardError.write(Data("ferry-plugin-helper: started by ferryd for a plugin with 'isolation: process'; not meant to be run by hand\n".utf8))
    exit(64)
}
PluginHelperServer.serve(on: STDIN_FILENO, logger: Logger(label: "ferry-plugin-helper"))
