import Foundation
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
public final class PeerProcess: @unchecked Sendable {
    // @unchecked: `process` is only mutated in init; `Process` itself is thread-safe for terminate/isRunning/pid,
    // and `stopped` is guarded by `lock`.
    public let name: String
    public let logPath: String
    private let process: Process
    private let lock = NSLock()
    private var stopped = false

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

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
        FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw PeerError("\(name): cannot open \(logPath)") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw PeerError("\(name): cannot start \(executable): \(error)") }
    }

    /// The peer's output so far (for failure messages).
    public func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until `condition` holds, the peer exits, or `timeout` passes. Peers announce readiness only by
    /// their effects (a listening port, a file), so this polls with a short interval.
    public func waitUntil(
        _ what: String, timeout: Duration = .seconds(15), _ condition: () -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return }
            if !process.isRunning {
                throw PeerError("\(name) exited (status \(process.terminationStatus)) before \(what):\n\(log())")
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
        while process.isRunning {
            if ContinuousClock.now >= deadline { throw PeerError("\(name) did not exit within \(timeout):\n\(log())") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    public var terminationStatus: Int32 { process.terminationStatus }

    /// Sends a signal to the peer by PID.
    public func signal(_ sig: Int32) {
        if process.isRunning { kill(process.processIdentifier, sig) }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps the process.
    public func stop(grace: Duration = .seconds(3)) {
        let shouldStop = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard shouldStop, process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// SIGKILL at once (e.g. to make a broker publish a client's will).
    public func killHard() {
        lock.withLock { stopped = true }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop(grace: .milliseconds(500)) }
}
