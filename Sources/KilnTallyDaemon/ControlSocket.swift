import Dispatch
import Foundation
import KilnTallyCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's local control socket (the online CLI commands talk to it): a Unix stream socket, mode 0660, one
/// request per connection — a JSON object on one line, at most `maximumRequest` bytes — answered by one JSON line:
///
///     → {"v":1,"op":"uplink.resend","from_seq":1200}
///     ← {"v":1,"ok":true,"result":{...}}      or      {"v":1,"ok":false,"error":"..."}
///
/// Accepting and reading run on threads of their own (blocking calls never run on the cooperative pool); each
/// connection gets `readTimeout` to send its request; at most `maximumClients` are served at once (others get a
/// "busy" reply). A malformed, oversized or slow request gets an error reply or is dropped; it never stops the
/// daemon or the other clients.
public final class ControlServer: Sendable {
    public static let protocolVersion = 1
    public static let maximumRequest = 64 * 1024
    public static let maximumClients = 8
    public static let readTimeout: Duration = .seconds(2)

    /// Handles one request (its `op` and the whole object); returns the `result` (a JSON value, serialized: the
    /// handler builds it where its values live) or throws a message.
    public typealias Handler = @Sendable (_ op: String, _ request: [String: any Sendable]) async throws(ControlError) -> [UInt8]

    public let path: String
    private let listener: Int32
    private let handler: Handler
    private let logger: Logger
    private let state = Mutex<(running: Bool, clients: Int)>((true, 0))
    private let acceptDone = DispatchSemaphore(value: 0)

    /// Binds `path` (a stale socket file from an earlier run is replaced; a live one — another daemon — is an error)
    /// and starts accepting.
    public init(path: String, logger: Logger, handler: @escaping Handler) throws(ControlError) {
        self.path = path
        self.handler = handler
        self.logger = logger
        if FileManager.default.fileExists(atPath: path) {
            if (try? ControlClient.connect(path)).map({ close($0); return true }) == true {
                throw ControlError("\(path) is in use: another kilntallyd is running")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError("socket(AF_UNIX): \(String(cString: strerror(errno)))") }
        var address = try ControlClient.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, 0o660) == 0, listen(fd, 16) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw ControlError("cannot listen on \(path): \(message)")
        }
        listener = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "kt-control"
        thread.start()
    }

    /// Stops accepting (connections being served finish) and removes the socket file.
    public func stop() {
        let wasRunning = state.withLock { s in
            defer { s.running = false }
            return s.running
        }
        guard wasRunning else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        acceptDone.wait()
        close(listener)
        unlink(path)
    }

    deinit { stop() }

    private func acceptLoop() {
        defer { acceptDone.signal() }
        while state.withLock({ $0.running }) {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if state.withLock({ $0.running }) { logger.error("control socket: accept: \(String(cString: strerror(errno)))") }
                // EINVAL after shutdown(); anything else: do not spin.
                if state.withLock({ $0.running }) { usleep(100_000) }
                continue
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let admitted = state.withLock { s -> Bool in
                guard s.clients < Self.maximumClients else { return false }
                s.clients += 1
                return true
            }
            guard admitted else {
                Self.reply(client, Self.failure("busy: \(Self.maximumClients) requests are being served; try again"))
                close(client)
                continue
            }
            let thread = Thread { [self] in
                serve(client)
                close(client)
                state.withLock { $0.clients -= 1 }
            }
            thread.name = "kt-control-client"
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        var timeout = timeval(tv_sec: Int(Self.readTimeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.contains(0x0A) {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                Self.reply(fd, Self.failure(errno == EAGAIN ? "timed out waiting for a request line" : "read: \(String(cString: strerror(errno)))"))
                return
            }
            if n == 0 { break }
            request += buffer[0..<n]
            if request.count > Self.maximumRequest {
                Self.reply(fd, Self.failure("request longer than \(Self.maximumRequest) bytes"))
                return
            }
        }
        let line = request.split(separator: 0x0A, omittingEmptySubsequences: false).first ?? []
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
            Self.reply(fd, Self.failure("not a JSON object on one line"))
            return
        }
        guard (object["v"] as? Int) == Self.protocolVersion else {
            Self.reply(fd, Self.failure("unsupported protocol version \(object["v"].map { "\($0)" } ?? "(none)"); this daemon speaks \(Self.protocolVersion)"))
            return
        }
        guard let op = object["op"] as? String else {
            Self.reply(fd, Self.failure("no \"op\""))
            return
        }
        let sendable = Self.sendable(object)
        let outcome = Mutex<Result<[UInt8], ControlError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let handler = self.handler
        Task {
            let result: Result<[UInt8], ControlError>
            do throws(ControlError) {
                result = .success(try await handler(op, sendable))
            } catch {
                result = .failure(error)
            }
            outcome.withLock { $0 = result }
            done.signal()
        }
        // This is a thread of its own: waiting here blocks nobody else.
        done.wait()
        switch outcome.withLock({ $0 }) {
        case .success(let result)?:
            let line = Array(#"{"ok":true,"result":"#.utf8) + result + Array(#","v":\#(Self.protocolVersion)}"#.utf8) + [0x0A]
            _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        case .failure(let error)?:
            Self.reply(fd, Self.failure(error.message))
        case nil:
            Self.reply(fd, Self.failure("no reply"))
        }
    }

    /// Serializes a handler's result (strings, numbers, booleans, arrays, dictionaries, NSNull).
    public static func json(_ value: Any) throws(ControlError) -> [UInt8] {
        do {
            return Array(try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]))
        } catch {
            throw ControlError("the reply cannot be encoded: \(error)")
        }
    }

    static func failure(_ message: String) -> [String: any Sendable] {
        ["v": protocolVersion, "ok": false, "error": message]
    }

    private static func reply(_ fd: Int32, _ object: [String: Any]) {
        guard var bytes = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        bytes.append(0x0A)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// JSON values are strings, numbers, booleans, null, arrays and objects of them: all Sendable in substance.
    private static func sendable(_ object: [String: Any]) -> [String: any Sendable] {
        object.mapValues { value -> any Sendable in
            switch value {
            case let s as String: s
            case let n as NSNumber: n.doubleValue == n.doubleValue.rounded() && abs(n.doubleValue) < 9e15 ? n.int64Value : n.doubleValue
            case let o as [String: Any]: sendable(o)
            case let a as [Any]: a.map { "\($0)" }
            default: "\(value)"
            }
        }
    }
}

/// A request the daemon refused, with the sentence the CLI prints.
public struct ControlError: Error, CustomStringConvertible {
    public var message: String
    /// Set when connecting to the daemon's socket failed: the errno of `connect`.
    public var connectErrno: Int32?
    public init(_ message: String, connectErrno: Int32? = nil) {
        self.message = message
        self.connectErrno = connectErrno
    }
    public var description: String { message }

    /// No daemon listens at the socket: there is no socket file (`ENOENT`), or nothing accepts on it (`ECONNREFUSED`: a
    /// file left by a daemon that was killed). Any other failure (`EACCES`: not in the socket's group) says nothing
    /// about whether a daemon runs.
    public var noDaemon: Bool { connectErrno == ENOENT || connectErrno == ECONNREFUSED }
}

/// The CLI side: one request, one reply.
public enum ControlClient {
    static func address(_ path: String) throws(ControlError) -> sockaddr_un {
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: a.sun_path)
        guard bytes.count < capacity else { throw ControlError("socket path \(path) is longer than \(capacity - 1) bytes") }
        withUnsafeMutableBytes(of: &a.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return a
    }

    static func connect(_ path: String) throws(ControlError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError("socket(AF_UNIX): \(String(cString: strerror(errno)))") }
        var a = try address(path)
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw ControlError("cannot reach the daemon at \(path): \(String(cString: strerror(e)))", connectErrno: e)
        }
        return fd
    }

    /// Sends `request` (its `v` is added) and returns the reply object. Throws when the daemon cannot be reached or
    /// does not answer within `timeout`; a refusal comes back as a reply with `ok` false.
    public static func request(_ request: [String: Any], socket path: String, timeout: Duration = .seconds(30)) throws(ControlError) -> [String: Any] {
        let fd = try connect(path)
        defer { close(fd) }
        var timeval = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeval, socklen_t(MemoryLayout<timeval>.size))
        var object = request
        object["v"] = ControlServer.protocolVersion
        guard var bytes = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            throw ControlError("the request cannot be encoded as JSON")
        }
        bytes.append(0x0A)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !reply.contains(0x0A) {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ControlError("no reply from the daemon at \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            reply += buffer[0..<n]
        }
        guard let o = (try? JSONSerialization.jsonObject(with: Data(reply))) as? [String: Any] else {
            throw ControlError("the daemon at \(path) sent no JSON reply")
        }
        return o
    }
}
