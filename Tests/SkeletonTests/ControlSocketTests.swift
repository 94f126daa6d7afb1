import Foundation
import KilnTallyDaemon
import Logging
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The control socket answers every request with one JSON line, refuses what it cannot read, and keeps serving.
@Suite("Control socket")
struct ControlSocketTests {
    static func server(_ dir: TemporaryDirectory) throws -> ControlServer {
        var logger = Logger(label: "control-test")
        logger.logLevel = .critical
        return try ControlServer(path: dir.file("k.sock"), logger: logger) { op, request throws(ControlError) in
            switch op {
            case "echo": return try ControlServer.json(["n": "\(request["n"] ?? "none")"])
            case "fail": throw ControlError("as asked")
            default: throw ControlError("unknown op \(op)")
            }
        }
    }

    /// Runs a blocking client call on a thread of its own: the server answers from Swift's cooperative pool, which
    /// blocking calls in test tasks would otherwise starve (the CLI is another process and never does).
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            Thread { c.resume(with: Result { try body() }) }.start()
        }
    }

    static func request(_ r: [String: any Sendable], _ path: String) async throws -> [String: any Sendable] {
        try await offPool {
            let reply = try ControlClient.request(r, socket: path)
            var out: [String: any Sendable] = [:]
            for (k, v) in reply {
                switch v {
                case let b as Bool: out[k] = b
                case let s as String: out[k] = s
                case let o as [String: Any]: out[k] = o.mapValues { "\($0)" }
                default: out[k] = "\(v)"
                }
            }
            return out
        }
    }

    /// Sends raw bytes (optionally without closing the write side) and returns the reply line.
    static func raw(_ path: String, _ bytes: [UInt8]) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in for (i, b) in Array(path.utf8).enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else { throw PeerError("connect: \(errno)") }
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            reply += buffer[0..<n]
        }
        return String(decoding: reply, as: UTF8.self)
    }

    @Test("a request gets its result; a refusal, garbage, a wrong version, an unknown op and an oversized line get an error reply")
    func replies() async throws {
        let dir = try TemporaryDirectory()
        let server = try Self.server(dir)
        defer { server.stop() }
        let path = server.path
        let ok = try await Self.request(["op": "echo", "n": 7], path)
        #expect(ok["ok"] as? Bool == true && (ok["result"] as? [String: String])?["n"] == "7")
        let refused = try await Self.request(["op": "fail"], path)
        #expect(refused["ok"] as? Bool == false && refused["error"] as? String == "as asked")
        #expect(try await Self.offPool { try Self.raw(path, Array("not json\n".utf8)) }.contains(#""error":"not a JSON object on one line""#))
        #expect(try await Self.offPool { try Self.raw(path, Array(#"{"v":9,"op":"echo"}"#.utf8) + [0x0A]) }.contains("unsupported protocol version 9"))
        #expect(try await Self.offPool { try Self.raw(path, Array(#"{"v":1,"op":"nope"}"#.utf8) + [0x0A]) }.contains("unknown op nope"))
        #expect(try await Self.offPool { try Self.raw(path, [UInt8](repeating: 0x41, count: 200_000)) }.contains("request longer than"))
        // The socket is for the daemon's group: 0660.
        var st = stat()
        #expect(stat(server.path, &st) == 0 && st.st_mode & 0o777 == 0o660)
    }

    @Test("a client that never finishes its line times out without stalling the others; random bytes never stop it")
    func slowAndRandomClients() async throws {
        let dir = try TemporaryDirectory()
        let server = try Self.server(dir)
        defer { server.stop() }
        let path = server.path
        // Three silent clients hold connections open while another is served at once.
        let silent = (0..<3).map { _ in Task { try await Self.offPool { try Self.raw(path, Array(#"{"v":1,"op":"echo""#.utf8)) } } }
        try await Task.sleep(for: .milliseconds(100))
        let started = ContinuousClock.now
        let ok = try await Self.request(["op": "echo", "n": 1], path)
        #expect(ok["ok"] as? Bool == true)
        // Served before the silent ones time out (2 s): it did not wait behind them.
        #expect(ContinuousClock.now - started < ControlServer.readTimeout - .milliseconds(100), "a served client waited for silent ones")
        for t in silent { #expect(try await t.value.contains("timed out")) }
        try await Self.offPool {
            var rng = SystemRandomNumberGenerator()
            for _ in 0..<200 {
                let bytes = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } + [0x0A]
                _ = try Self.raw(path, bytes)
            }
        }
        #expect(try await Self.request(["op": "echo", "n": 2], path)["ok"] as? Bool == true)
    }

    @Test("a second daemon on the same socket is refused while the first runs; a stale socket file is replaced")
    func socketOwnership() async throws {
        let dir = try TemporaryDirectory()
        let first = try Self.server(dir)
        #expect(throws: ControlError.self) { _ = try Self.server(dir) }
        first.stop()
        // A leftover file (a killed daemon) is not in the way.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { raw in for (i, b) in Array(dir.file("k.sock").utf8).enumerated() { raw[i] = b } }
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)
        #expect(FileManager.default.fileExists(atPath: dir.file("k.sock")))
        let second = try Self.server(dir)
        defer { second.stop() }
        #expect(try await Self.request(["op": "echo"], second.path)["ok"] as? Bool == true)
    }
}
