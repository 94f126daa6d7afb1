internal import CSysShims
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A wall-clock instant in UTC, in nanoseconds since the Unix epoch. Exact and totally ordered.
public struct UTCInstant: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var nanosecondsSinceEpoch: Int64
    public init(nanosecondsSinceEpoch: Int64) { self.nanosecondsSinceEpoch = nanosecondsSinceEpoch }
    public init(secondsSinceEpoch: Int64) { self.nanosecondsSinceEpoch = secondsSinceEpoch * 1_000_000_000 }
    public static func < (a: Self, b: Self) -> Bool { a.nanosecondsSinceEpoch < b.nanosecondsSinceEpoch }

    public func adding(_ d: Duration) -> UTCInstant {
        let (s, atto) = d.components
        return UTCInstant(nanosecondsSinceEpoch: nanosecondsSinceEpoch + s * 1_000_000_000 + atto / 1_000_000_000)
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-23T08:00:00.250Z`.
    public var rfc3339: String { RFC3339.format(self, offsetSeconds: 0) }
    public var description: String { rfc3339 }
}

/// Formats instants as RFC 3339 without Foundation (so the hot path stays allocation-light and locale-free).
public enum RFC3339 {
    public static func format(_ t: UTCInstant, offsetSeconds: Int) -> String {
        let ns = t.nanosecondsSinceEpoch + Int64(offsetSeconds) * 1_000_000_000
        var secs = ns / 1_000_000_000
        var frac = ns % 1_000_000_000
        if frac < 0 { frac += 1_000_000_000; secs -= 1 }
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let sod = Int(secs - days * 86400)
        let (y, m, d) = civilFromDays(days)
        func pad(_ v: Int, _ w: Int) -> String {
            let s = String(v)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        var out = "\(pad(Int(y), 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(sod / 3600, 2)):\(pad(sod / 60 % 60, 2)):\(pad(sod % 60, 2))"
        out += "." + pad(Int(frac / 1_000_000), 3)
        if offsetSeconds == 0 {
            out += "Z"
        } else {
            let sign = offsetSeconds < 0 ? "-" : "+"
            let a = abs(offsetSeconds)
            out += "\(sign)\(pad(a / 3600, 2)):\(pad(a / 60 % 60, 2))"
        }
        return out
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    public static func civilFromDays(_ z0: Int64) -> (Int64, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = Int(doy - (153 * mp + 2) / 5 + 1)
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

/// Where time comes from. The daemon uses `SystemClock`; tests inject a manual clock so time is an input.
public protocol WallClock: Sendable {
    /// The current wall-clock time in UTC.
    func now() -> UTCInstant
    /// Whether the wall clock is known to be synchronized (NTP/PTP).
    func isSynchronized() -> Bool
}

/// The system's real-time clock; synchronization state from the kernel (`adjtimex`), as chrony/timesyncd set it.
public struct SystemClock: WallClock {
    public init() {}
    public func now() -> UTCInstant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UTCInstant(nanosecondsSinceEpoch: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
    public func isSynchronized() -> Bool {
        kt_clock_synchronized() == 1
    }
}

/// A clock a test moves by hand.
public final class ManualClock: WallClock {
    private let state: Mutex<(now: UTCInstant, synced: Bool)>
    public init(start: UTCInstant, synchronized: Bool = true) {
        state = Mutex((start, synchronized))
    }
    public func now() -> UTCInstant { state.withLock { $0.now } }
    public func isSynchronized() -> Bool { state.withLock { $0.synced } }
    public func advance(by d: Duration) { state.withLock { $0.now = $0.now.adding(d) } }
    public func set(_ t: UTCInstant) { state.withLock { $0.now = t } }
    public func setSynchronized(_ s: Bool) { state.withLock { $0.synced = s } }
}
