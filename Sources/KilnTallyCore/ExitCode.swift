/// Exit codes shared by the daemon and the CLI (sysexits.h where one fits).
public enum KilnTallyExit: Int32, Sendable {
    case ok = 0
    /// A check found damage or a mismatch.
    case checkFailed = 1
    case usage = 64
    /// The daemon is not reachable over its status socket.
    case daemonUnreachable = 69
    case configError = 78
}

/// Default paths from the conventions in ARCHITECTURE.md.
public enum DefaultPaths {
    public static let config = "/etc/kilntally/kilntally.toml"
    public static let stateDirectory = "/var/lib/kilntally"
    public static let socket = "/run/kilntally/kilntally.sock"
}
