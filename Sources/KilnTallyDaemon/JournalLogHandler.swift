import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Log lines on standard error. Under systemd (`$JOURNAL_STREAM` names stderr) each line starts with its syslog
/// priority (`<3>`) and has no timestamp — the journal adds its own and files the priority, so
/// `journalctl -p warning` works; elsewhere a line starts with an RFC 3339 timestamp and the level.
/// Metadata follows the message as `key=value`, sorted, so every device error names device, bus and call.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let journal: Bool

    public init(label: String, level: Logger.Level, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.label = label
        logLevel = level
        journal = Self.stderrIsJournal(environment)
    }

    /// `$JOURNAL_STREAM` is "device:inode" of the journal stream; it counts only if stderr is that stream.
    static func stderrIsJournal(_ environment: [String: String]) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":").compactMap { UInt64($0) }
        guard parts.count == 2 else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == parts[0] && UInt64(st.st_ino) == parts[1]
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    private static let writeLock = Mutex(())

    public func log(event: LogEvent) {
        write(level: event.level, message: event.message, metadata: event.metadata, error: event.error)
    }

    private func write(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, error: (any Error)?) {
        var all = metadata
        if let error { all["error"] = "\(error)" }
        if let extra { all.merge(extra) { _, new in new } }
        let fields = all.isEmpty ? "" : " " + all.keys.sorted().map { "\($0)=\(all[$0]!)" }.joined(separator: " ")
        // One record per line: a multi-line message (a config error list) keeps its lines together in the journal.
        let text = "\(message)".replacingOccurrences(of: "\n", with: journal ? "\n<\(Self.priority(level))>  " : "\n  ")
        let out: String
        if journal {
            out = "<\(Self.priority(level))>\(text)\(fields)\n"
        } else {
            out = "\(RFC3339Now.string()) \(level) \(label): \(text)\(fields)\n"
        }
        Self.writeLock.withLock { _ in
            var bytes = Array(out.utf8)
            _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        }
    }
}

enum RFC3339Now {
    static func string() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tm = tm()
        gmtime_r(&t, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1_000_000)
    }
}
