import Foundation

/// What the agent remembers of one source (a mirror): an origin such as
/// `https://mirror.example.org:443`, shared by every job and kept across restarts.
///
/// The engine records an outcome each time a file from the origin finishes or fails;
/// error policies read it through the plugin ABI, and the engine starts a new file
/// from the healthiest of its candidate URLs.
public struct SourceHealth: Codable, Equatable, Sendable {
    /// `scheme://host:port`, lowercased, the port always written.
    public let origin: String
    /// Files that failed from this origin, ever.
    public var failures: UInt64 = 0
    /// Failures since the last success; ordering looks at this first.
    public var consecutiveFailures: UInt32 = 0
    /// Files that arrived whole (and, where validators apply, valid) from this origin.
    public var successes: UInt64 = 0
    public var lastFailure: Date?
    public var lastSuccess: Date?
    /// A moving average of the throughput of its finished files, in bytes per second; 0 while unknown.
    public var bytesPerSecond: Double = 0

    public init(origin: String) { self.origin = origin }

    /// The origin of an `http`/`https` URL (`file:` URLs have none: local files have no health).
    public static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host?.lowercased(), !host.isEmpty else { return nil }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        return "\(scheme)://\(host):\(port)"
    }

    /// A file from this origin failed.
    public mutating func recordFailure(at time: Date) {
        failures += 1
        consecutiveFailures = consecutiveFailures == .max ? .max : consecutiveFailures + 1
        lastFailure = time
    }

    /// A file from this origin arrived whole; `bytes` took `seconds`.
    public mutating func recordSuccess(at time: Date, bytes: UInt64, seconds: Double) {
        successes += 1
        consecutiveFailures = 0
        lastSuccess = time
        // Tiny files say more about latency than throughput: only measure from 64 KiB.
        guard bytes >= 64 << 10, seconds > 0 else { return }
        let measured = Double(bytes) / seconds
        bytesPerSecond = bytesPerSecond == 0 ? measured : 0.7 * bytesPerSecond + 0.3 * measured
    }

    /// Orders candidates: fewest failures since the last success first, then the fastest
    /// measured, then the order given (`position`).
    public static func preferred(_ a: (health: SourceHealth?, position: Int), _ b: (health: SourceHealth?, position: Int)) -> Bool {
        let failuresA = a.health?.consecutiveFailures ?? 0
        let failuresB = b.health?.consecutiveFailures ?? 0
        if failuresA != failuresB { return failuresA < failuresB }
        let speedA = a.health?.bytesPerSecond ?? 0
        let speedB = b.health?.bytesPerSecond ?? 0
        if speedA > 0, speedB > 0, max(speedA, speedB) > 1.5 * min(speedA, speedB) { return speedA > speedB }
        return a.position < b.position
    }
}
