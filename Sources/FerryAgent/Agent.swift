import FerryEngine

/// The agent: an engine driven by a configuration file and a local control API.
public enum FerryAgentInfo {
    public static let version = "0.1.0"
}
