import Foundation

/// A real mosquitto broker on a free loopback port, configured by the test, stopped by PID.
public final class MosquittoBroker: Sendable {
    public let port: Int
    public let process: PeerProcess
    public let directory: String
    public let configPath: String

    /// Starts `/usr/sbin/mosquitto` listening on 127.0.0.1 with anonymous access, unless `extraConfig` says otherwise.
    /// `port` reuses a port (to restart a broker where clients expect it).
    public static func start(
        in dir: TemporaryDirectory, name: String = "mosquitto", port: Int? = nil,
        allowAnonymous: Bool = true, extraConfig: String = ""
    ) async throws -> MosquittoBroker {
        try await start(in: dir, name: name, port: port) { port in
            // Started as root, mosquitto drops to the `mosquitto` user and then cannot read the test's private
            // temporary directory (password files, certificates, persistence): `user root` keeps it as the test user.
            """
            listener \(port) 127.0.0.1
            allow_anonymous \(allowAnonymous)
            log_dest stderr
            log_type all
            persistence false
            \(getuid() == 0 ? "user root" : "")
            \(extraConfig)

            """
        }
    }

    /// Starts mosquitto with a whole configuration of the caller's, e.g. a deployment's file with its listener port
    /// and paths substituted: `config(port)` must make the broker listen on 127.0.0.1:`port` and should log to
    /// stderr (`log_dest stderr`, `log_type all`: helpers such as `MosquittoSubscriber.waitUntilSubscribed` read
    /// the broker's log).
    public static func start(
        in dir: TemporaryDirectory, name: String = "mosquitto", port: Int? = nil, config: (Int) throws -> String
    ) async throws -> MosquittoBroker {
        var lastError: Error?
        for _ in 0..<3 {
            let p = try port ?? FreePort.allocate()
            do {
                return try await MosquittoBroker(dir: dir, name: name, port: p, config: try config(p))
            } catch {
                lastError = error
                if port != nil { break }
            }
        }
        throw lastError ?? PeerError("mosquitto did not start")
    }

    private init(dir: TemporaryDirectory, name: String, port: Int, config: String) async throws {
        self.port = port
        directory = dir.path
        configPath = dir.file("\(name).conf")
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let exe else { throw PeerError("mosquitto is not installed (run deploy/setup.sh)") }
        process = try PeerProcess(name: name, executable: exe, arguments: ["-c", configPath], logDirectory: dir.path)
        do {
            try await process.waitForPort(port)
        } catch {
            process.stop()
            throw error
        }
    }

    public func stop() { process.stop() }
}

/// `mosquitto_sub` as the hub subscriber: prints `topic payload` lines (with -v) into its log, which tests read.
public final class MosquittoSubscriber: Sendable {
    public let process: PeerProcess

    public init(
        in dir: TemporaryDirectory, name: String = "mosquitto_sub", port: Int, topic: String, qos: Int = 1,
        extraArguments: [String] = []
    ) async throws {
        let exe = "/usr/bin/mosquitto_sub"
        // -v prints the topic; -F prints retained flag, topic and payload so tests can check retention.
        process = try PeerProcess(
            name: name, executable: exe,
            arguments: ["-h", "127.0.0.1", "-p", String(port), "-t", topic, "-q", String(qos), "-F", "%r %t %p",
                        "-i", "test-sub-\(UInt32.random(in: 0...UInt32.max))", "--quiet"] + extraArguments,
            logDirectory: dir.path)
        // mosquitto_sub has no readiness signal; the broker logs the SUBSCRIBE, which the caller can wait for
        // with `waitUntilSubscribed(broker:)`.
    }

    /// Waits until the broker has logged this subscriber's subscription, so no message is missed.
    public func waitUntilSubscribed(broker: MosquittoBroker, topic: String) async throws {
        try await process.waitUntil("broker to log the subscription to \(topic)") {
            broker.process.log().contains(" \(topic)") && broker.process.log().contains("SUBSCRIBE")
        }
    }

    /// Lines received so far, as (retained, topic, payload).
    public func messages() -> [(retained: Bool, topic: String, payload: String)] {
        process.log().split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "0" || parts[0] == "1" else { return nil }
            return (parts[0] == "1", String(parts[1]), String(parts[2]))
        }
    }

    public func waitForMessages(
        count: Int, timeout: Duration = .seconds(20), where predicate: @escaping ((retained: Bool, topic: String, payload: String)) -> Bool = { _ in true }
    ) async throws -> [(retained: Bool, topic: String, payload: String)] {
        try await process.waitUntil("\(count) messages", timeout: timeout) {
            messages().filter(predicate).count >= count
        }
        return messages().filter(predicate)
    }

    public func stop() { process.stop() }
}
