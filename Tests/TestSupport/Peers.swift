import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why a real peer could not be started. Tests throw it, so a missing peer fails the test — it never skips.
public struct PeerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Paths inside the repository, found from this file's location (Tests/TestSupport/Peers.swift).
public enum RepoPaths {
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// The project venv's interpreter, made by deploy/setup.sh.
    public static var venvPython: String { root.appendingPathComponent(".venv/bin/python").path }
    /// Python peer scripts committed with the tests.
    public static func peerScript(_ name: String) -> String {
        root.appendingPathComponent("Tests/peers/\(name)").path
    }
    /// A built product of this package (`kilntally`, `kilntallyd`), next to the test bundle.
    public static func builtProduct(_ name: String) throws -> String {
        // swift test runs the test binary from .build/<triple>/debug; the executables are beside it.
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent(name).path,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path,
            root.appendingPathComponent(".build/debug/\(name)").path,
        ]
        for c in candidates where FileManager.default.isExecutableFile(atPath: c) { return c }
        throw PeerError("built product '\(name)' not found (looked in \(candidates)); run swift build first")
    }
}

/// A temporary directory removed when the value goes away.
public final class TemporaryDirectory: Sendable {
    public let path: String
    public init(prefix: String = "kilntally-test") throws {
        var template = Array("\(NSTemporaryDirectory())/\(prefix).XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw PeerError("mkdtemp failed: errno \(errno)")
        }
        path = String(cString: p)
    }
    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Free loopback TCP ports: bind port 0, read the port the kernel chose, close. A peer started right after binds it;
/// the tiny race with other processes is handled by `startWithRetry`.
public enum FreePort {
    public static func allocate() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PeerError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
                guard bind(fd, p, len) == 0 else { return -1 }
                return getsockname(fd, p, &len)
            }
        }
        guard rc == 0 else { throw PeerError("bind/getsockname failed: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Whether something accepts TCP connections on 127.0.0.1:port.
    public static func isListening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// A real program started by a test: its output goes to a log file, it is stopped by PID (SIGTERM, then SIGKILL),
/// and it is always stopped when the value goes away, so nothing is left running.
///
/// Spawned with `posix_spawn` rather than Foundation's `Process`: `Process` hands its children a blocked SIGTERM,
/// so a peer would never see a graceful stop. Here the child starts with an empty signal mask, default signal
/// dispositions, and its own process group, so `stop()` also reaches whatever a script started.
public final class PeerProcess: Sendable {
    private struct State {
        var exitStatus: Int32?  // set once the child is reaped
        var stopped = false
    }

    public let name: String
    public let logPath: String
    public let pid: Int32
    private let state = Mutex(State())

    /// Starts `executable` with `arguments`; throws PeerError if it cannot be started.
    public init(
        name: String, executable: String, arguments: [String], environment: [String: String]? = nil,
        logDirectory: String, workingDirectory: String? = nil
    ) throws {
        self.name = name
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw PeerError("\(name): '\(executable)' is not an executable file (did deploy/setup.sh run?)")
        }
        logPath = (logDirectory as NSString).appendingPathComponent("\(name).log")
        var argv = [executable] + arguments
        var path = executable
        if let workingDirectory {
            // posix_spawn has no portable chdir: let a shell change directory and exec (same PID).
            path = "/bin/sh"
            argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", workingDirectory] + argv
        }
        let env = ProcessInfo.processInfo.environment.merging(environment ?? [:]) { $1 }.map { "\($0.key)=\($0.value)" }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var child: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(env) { cEnv in posix_spawn(&child, path, &actions, &attr, cArgv, cEnv) }
        }
        guard rc == 0 else { throw PeerError("\(name): posix_spawn \(executable) failed: \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// The peer's output so far (for failure messages).
    public func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Reaps the child if it has exited; returns its exit status (128 + signal if killed), nil while running.
    private func reap() -> Int32? {
        state.withLock { s in
            if let e = s.exitStatus { return e }
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            guard r == pid else { return nil }
            let signalled = status & 0x7F
            s.exitStatus = signalled == 0 ? (status >> 8) & 0xFF : 128 + signalled
            return s.exitStatus
        }
    }

    public var isRunning: Bool { reap() == nil }
    public var terminationStatus: Int32 { reap() ?? -1 }

    /// Waits until `condition` holds, the peer exits, or `timeout` passes. Peers announce readiness only by
    /// their effects (a listening port, a file, a log line), so this polls with a short interval.
    public func waitUntil(
        _ what: String, timeout: Duration = .seconds(15), _ condition: () -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return }
            if let status = reap() {
                if condition() { return }
                throw PeerError("\(name) exited (status \(status)) before \(what):\n\(log())")
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw PeerError("\(name): timed out after \(timeout) waiting for \(what):\n\(log())")
    }

    public func waitForPort(_ port: Int, timeout: Duration = .seconds(15)) async throws {
        try await waitUntil("port \(port) to listen", timeout: timeout) { FreePort.isListening(port) }
    }

    /// Waits for the process to exit by itself; returns its exit status.
    public func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = reap() { return status }
            if ContinuousClock.now >= deadline { throw PeerError("\(name) did not exit within \(timeout):\n\(log())") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends a signal to the peer (not its group).
    public func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// SIGTERM to the peer's process group, wait up to `grace`, then SIGKILL to the group; reaps the peer.
    public func stop(grace: Duration = .seconds(3)) {
        let first = state.withLock { s -> Bool in
            defer { s.stopped = true }
            return !s.stopped
        }
        guard first else { return }
        guard isRunning else {
            kill(-pid, SIGKILL)  // anything the peer left behind in its group
            return
        }
        kill(-pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while isRunning && ContinuousClock.now < deadline { usleep(5_000) }
        killHard()
    }

    /// SIGKILL to the peer's group at once (e.g. to make a broker publish a client's will); reaps the peer.
    public func killHard() {
        state.withLock { $0.stopped = true }
        kill(-pid, SIGKILL)
        while isRunning { usleep(2_000) }
    }

    deinit { stop(grace: .milliseconds(500)) }
}

/// Runs `body` with a NULL-terminated C array of the strings.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
