import Foundation
import KilnTallyCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify without libsystemd: datagrams to `$NOTIFY_SOCKET` (a path, or an abstract name starting with "@").
/// Without the variable (not started by systemd) every call does nothing.
public final class SystemdNotifier: Sendable {
    private let fd: Int32
    private let address: sockaddr_un?
    private let length: socklen_t
    /// `$WATCHDOG_USEC` as a duration, when systemd wants pings.
    public let watchdogInterval: Duration?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true {
            watchdogInterval = .microseconds(usec)
        } else {
            watchdogInterval = nil
        }
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.utf8.count < 108 else {
            (fd, address, length) = (-1, nil, 0)
            return
        }
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            if bytes.first == UInt8(ascii: "@") { raw[0] = 0 }  // abstract namespace
        }
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        address = a
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == UInt8(ascii: "@") ? 0 : 1))
    }

    public var isActive: Bool { fd >= 0 }

    /// Sends `state` (e.g. "READY=1\nSTATUS=…"). Errors are ignored: systemd going away must not stop the daemon.
    public func notify(_ state: String) {
        guard fd >= 0, var a = address else { return }
        let bytes = Array(state.utf8)
        _ = withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
    }

    /// `STATUS=` takes one line.
    public static func statusLine(_ s: String) -> String { "STATUS=" + s.replacingOccurrences(of: "\n", with: " ") }

    deinit { if fd >= 0 { close(fd) } }
}

/// The readiness barrier: ServiceGroup starts every service at once and has no readiness step, so each service
/// says when it is running; `READY=1` goes out when all of them have.
final class ReadinessBarrier: Sendable {
    private let state: Mutex<(waiting: Set<String>, continuations: [CheckedContinuation<Void, Never>])>

    init(_ names: Set<String>) { state = Mutex((names, [])) }

    func arrive(_ name: String) {
        let resume = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.waiting.remove(name)
            guard s.waiting.isEmpty else { return [] }
            defer { s.continuations = [] }
            return s.continuations
        }
        for c in resume { c.resume() }
    }

    func wait() async {
        await withCheckedContinuation { c in
            let ready = state.withLock { s -> Bool in
                if s.waiting.isEmpty { return true }
                s.continuations.append(c)
                return false
            }
            if ready { c.resume() }
        }
    }

    var waitingFor: Set<String> { state.withLock { $0.waiting } }
}
