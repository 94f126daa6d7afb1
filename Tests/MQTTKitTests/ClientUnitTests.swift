import Foundation
@testable import MQTTKit
import Testing
import TestSupport

/// Deterministic generator for the backoff table.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("MQTTKit without a broker")
struct ClientUnitTests {
    @Test("backoff doubles from initial, is capped at maximum, and stays within ±jitter", arguments: [
        // attempt, nominal delay in ms (initial 500 ms, maximum 30 s)
        (0, 500.0), (1, 1000.0), (2, 2000.0), (5, 16000.0), (6, 30000.0), (40, 30000.0), (10_000, 30000.0),
    ])
    func backoffTable(attempt: Int, nominalMilliseconds: Double) {
        let backoff = MQTTBackoff()
        var generator = SplitMix64(state: UInt64(attempt))
        var seen = Set<Int64>()
        for _ in 0..<200 {
            let d = backoff.delay(attempt: attempt, using: &generator)
            let ms = d.seconds * 1000
            #expect(ms >= nominalMilliseconds * 0.8 - 0.001)
            #expect(ms <= min(nominalMilliseconds * 1.2, 30000) + 0.001)
            seen.insert(Int64(ms.rounded()))
        }
        // Real jitter: 200 draws are not all the same delay.
        #expect(seen.count > 50)
    }

    @Test("backoff without jitter is exact")
    func backoffWithoutJitter() {
        let backoff = MQTTBackoff(initial: .milliseconds(50), maximum: .milliseconds(500), jitter: 0)
        #expect(backoff.delay(attempt: 0) == .milliseconds(50))
        #expect(backoff.delay(attempt: 3) == .milliseconds(400))
        #expect(backoff.delay(attempt: 4) == .milliseconds(500))
    }

    @Test("a missing TLS CA file fails init, naming the file")
    func missingCAFile() throws {
        var c = testConfiguration(port: 8883)
        let missing = "/nonexistent/kilntally-test/ca.pem"
        c.tls = MQTTTLS(caFile: missing)
        let error = #expect(throws: MQTTError.self) { try MQTTClient(configuration: c, logger: testLogger) }
        #expect(error?.call == "mosquitto_tls_set")
        #expect(error?.description.contains(missing) == true)
        #expect(error?.description.contains("No such file or directory") == true)
    }

    @Test("a missing client key file fails init, naming the file")
    func missingKeyFile() throws {
        let dir = try TemporaryDirectory()
        let ca = dir.file("ca.pem")
        _ = FileManager.default.createFile(atPath: ca, contents: Data("not really a CA".utf8))
        var c = testConfiguration(port: 8883)
        c.tls = MQTTTLS(caFile: ca, certFile: ca, keyFile: dir.file("client.key"))
        let error = #expect(throws: MQTTError.self) { try MQTTClient(configuration: c, logger: testLogger) }
        #expect(error?.description.contains(dir.file("client.key")) == true)
    }

    @Test("configurations libmosquitto would refuse fail init with a clear message", arguments: [
        "keepAlive", "port", "maxInFlight", "password without user", "password file without user",
        "password and password file", "cert without key", "will wildcard",
    ])
    func invalidConfiguration(field: String) {
        var c = testConfiguration(port: 1883)
        switch field {
        case "keepAlive": c.keepAlive = .seconds(1)
        case "port": c.port = 0
        case "maxInFlight": c.maxInFlight = 0
        case "password without user": c.password = "secret"
        case "password file without user": c.passwordFile = "/etc/hostname"
        case "password and password file":
            c.username = "edge"
            c.password = "secret"
            c.passwordFile = "/etc/hostname"
        case "cert without key": c.tls = MQTTTLS(caFile: "/etc/hostname", certFile: "/etc/hostname")
        default: c.will = MQTTMessage(topic: "kilntally/#", string: "x")
        }
        let error = #expect(throws: MQTTError.self) { try MQTTClient(configuration: c, logger: testLogger) }
        #expect(error?.description.hasPrefix("MQTT broker 127.0.0.1:") == true)
    }

    @Test("a password file's first line, without its line end, is the password", arguments: [
        ("s3cret\n", "s3cret"), ("s3cret", "s3cret"), ("s3cret\r\n", "s3cret"), ("s3cret\nnot this\n", "s3cret"),
        (" spaces kept \n", " spaces kept "), ("pässwörd\n", "pässwörd"),
    ])
    func passwordFileFirstLine(contents: String, password: String) throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("password")
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try MosquittoHandle.readPasswordFile(path, broker: "b:1") == password)
        var c = testConfiguration(port: 1883)
        c.username = "edge"
        c.passwordFile = path
        _ = try MQTTClient(configuration: c, logger: testLogger)
    }

    @Test("a password file that cannot be used fails init, naming the file but never showing what is in it", arguments: [
        "missing", "empty", "empty first line", "not UTF-8",
    ])
    func unusablePasswordFile(problem: String) throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("password")
        let secret = "Zq8-second-line-secret"
        switch problem {
        case "missing": break
        case "empty": try "".write(toFile: path, atomically: true, encoding: .utf8)
        case "empty first line": try "\n\(secret)\n".write(toFile: path, atomically: true, encoding: .utf8)
        default: try Data([0xFF, 0xFE] + Array(secret.utf8)).write(to: URL(fileURLWithPath: path))
        }
        var c = testConfiguration(port: 1883)
        c.username = "edge"
        c.passwordFile = path
        let error = #expect(throws: MQTTError.self) { try MQTTClient(configuration: c, logger: testLogger) }
        #expect(error?.call == "password file")
        #expect(error?.description.contains("password file '\(path)'") == true, "\(String(describing: error))")
        #expect(error?.description.contains(secret) == false)
        if problem == "missing" { #expect(error?.description.contains("No such file or directory") == true) }
    }

    @Test("a configuration's description, debug description and dump never show the password")
    func configurationRedactsPassword() {
        var c = testConfiguration(port: 1883)
        c.username = "edge"
        c.password = "Hx7-the-password"
        var dumped = ""
        dump(c, to: &dumped)
        for text in ["\(c)", String(describing: c), String(reflecting: c), dumped] {
            #expect(!text.contains("Hx7-the-password"), "\(text)")
            #expect(text.contains("<redacted>") && text.contains("edge"), "\(text)")
        }
    }

    @Test("the error description names broker, step, text and code")
    func errorDescription() {
        let error = MQTTError.connack(5, protocolVersion: .v311, broker: "127.0.0.1:1883")
        #expect(error.description == "MQTT broker 127.0.0.1:1883: CONNACK refused the connection: Connection Refused: not authorised. (code 5)")
        #expect(error.isAuthorizationFailure)
        #expect(MQTTError.connack(0x86, protocolVersion: .v5, broker: "b:1").isAuthorizationFailure)
        #expect(!MQTTError.connack(3, protocolVersion: .v311, broker: "b:1").isAuthorizationFailure)
    }

    @Test("a publish waiting for a connection ends on cancellation")
    func publishCancelled() async throws {
        try await withClient(testConfiguration(port: try FreePort.allocate()), start: false) { client, _ in
            let task = Task { try await client.publish(MQTTMessage(topic: "kt/x", string: "x")) }
            task.cancel()
            let error = await #expect(throws: MQTTError.self) { try await task.value }
            #expect(error?.isCancellation == true)
            #expect(client.windowSnapshot.inFlight == 0 && client.windowSnapshot.waiting == 0)
        }
    }

    @Test("shutdown fails publishes still waiting, with isShutdown, and later ones at once")
    func shutdownFailsPending() async throws {
        // Nothing listens on this port: the client keeps retrying in the background.
        let client = try MQTTClient(configuration: testConfiguration(port: try FreePort.allocate()), logger: testLogger)
        try client.start()
        let task = Task { try await client.publish(MQTTMessage(topic: "kt/x", string: "x")) }
        // Wait until the publish is queued (it can only wait: there is no broker).
        while client.windowSnapshot.waiting == 0 { await Task.yield() }
        await client.shutdown()
        let error = await #expect(throws: MQTTError.self) { try await task.value }
        #expect(error?.isShutdown == true)
        let later = await #expect(throws: MQTTError.self) { try await client.publish(MQTTMessage(topic: "kt/x", string: "y")) }
        #expect(later?.isShutdown == true)
        await client.shutdown() // idempotent
        #expect(throws: MQTTError.self) { try client.start() }
    }

    @Test("waitUntilConnected times out across transient failures, naming the last one")
    func waitTimesOut() async throws {
        try await withClient(testConfiguration(port: try FreePort.allocate())) { client, _ in
            let error = await #expect(throws: MQTTError.self) { try await client.waitUntilConnected(timeout: .milliseconds(400)) }
            #expect(error?.isTimeout == true)
            #expect(error?.description.contains("Connection refused") == true)
            #expect(!client.isConnected)
        }
    }

    @Test("each failed attempt to reach a broker is an event naming why, while the client keeps retrying")
    func attemptFailuresAreEvents() async throws {
        try await withClient(testConfiguration(port: try FreePort.allocate())) { client, events in
            let seen = try await events.wait("two failed attempts") { $0.attemptFailures.count >= 2 }
            #expect(seen.attemptFailures.allSatisfy { $0.description.contains("Connection refused") }, "\(seen.attemptFailures)")
            #expect(seen.refusals.isEmpty && seen.connectedCount == 0)
            #expect(!client.isConnected)
        }
    }
}
