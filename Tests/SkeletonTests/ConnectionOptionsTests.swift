import Foundation
import KilnTallyCore
import KilnTallyDaemon
import Simulator
import TestSupport
import Testing

/// `[mqtt]` credentials and `[mqtt.tls]` verification as the configuration gives them.
@Suite("MQTT connection options in the configuration")
struct ConnectionOptionsConfigTests {
    static func config(mqtt: String, tls: String? = nil) -> String {
        DaemonConfig.header(mqtt: mqtt + (tls.map { "\n[mqtt.tls]\nca_file = \"/etc/kilntally/hub-ca.pem\"\n\($0)" } ?? "")) + """
        [[bus]]
        name = "plc"
        kind = "tcp"
        host = "10.0.0.5"
        [[device]]
        name = "belt1"
        bus = "plc"
          [[device.channel]]
          name = "rate"
          table = "holding"
          address = 0
          type = "uint16"
          unit = "t/h"

        """
    }

    func errors(_ text: String) -> [ConfigDiagnostic] {
        do {
            _ = try KilnTallyConfiguration.load(text: text, file: "k.toml")
            return []
        } catch {
            return error.diagnostics
        }
    }

    @Test("password_file is taken as given; the password is read when the MQTT client is made, not at load")
    func passwordFileIsKept() throws {
        let c = try KilnTallyConfiguration.load(text: Self.config(mqtt: """
            username = "plant-a"
            password_file = "/etc/kilntally/not-there-at-load"
            """), file: "k.toml")
        #expect(c.uplink.mqtt.passwordFile == "/etc/kilntally/not-there-at-load")
        #expect(c.uplink.mqtt.password == nil)
    }

    @Test("password and password_file together, or either without username, are errors at the key", arguments: [
        ("username = \"u\"\npassword = \"p\"\npassword_file = \"/f\"", "mqtt.password_file", "not both"),
        ("password_file = \"/f\"", "mqtt.password_file", "needs a `username`"),
        ("password = \"p\"", "mqtt.password", "needs a `username`"),
    ])
    func credentialErrors(mqtt: String, key: String, message: String) {
        let found = errors(Self.config(mqtt: mqtt))
        #expect(found.count == 1)
        #expect(found.first?.path.map { "\($0)" } == key, "\(found)")
        #expect(found.first?.message.contains(message) == true, "\(found)")
    }

    @Test("a password of the wrong type is reported without its value")
    func secretValueNotShown() {
        let found = errors(Self.config(mqtt: "username = \"u\"\npassword = 98765432"))
        #expect(found.count == 1)
        #expect(found.first?.path.map { "\($0)" } == "mqtt.password")
        #expect(found.first?.message == "expected a string but found an integer (the value is not shown: it is a secret)")
        #expect(!found.description.contains("98765432"))
    }

    @Test("certificate verification is on unless insecure_skip_verify says otherwise, and then there is a start warning")
    func insecureSkipVerify() throws {
        let verified = try KilnTallyConfiguration.load(text: Self.config(mqtt: "", tls: ""), file: "k.toml")
        #expect(verified.uplink.mqtt.tls?.verifyPeer == true)
        #expect(verified.uplink.startWarnings.isEmpty)
        let insecure = try KilnTallyConfiguration.load(text: Self.config(mqtt: "", tls: "insecure_skip_verify = true"), file: "k.toml")
        #expect(insecure.uplink.mqtt.tls?.verifyPeer == false)
        #expect(insecure.uplink.startWarnings.count == 1)
        #expect(insecure.uplink.startWarnings.first?.contains("insecure_skip_verify is true") == true)
        // The old key is gone (a config that still has it is told, rather than silently verifying or not).
        let old = errors(Self.config(mqtt: "", tls: "verify_peer = false"))
        #expect(old.first?.path.map { "\($0)" } == "mqtt.tls.verify_peer")
        #expect(old.first?.message.hasPrefix("unknown key") == true)
    }

    @Test("a password over plain TCP is warned about at start")
    func passwordWithoutTLS() throws {
        let c = try KilnTallyConfiguration.load(text: Self.config(mqtt: "username = \"u\"\npassword_file = \"/f\""), file: "k.toml")
        #expect(c.uplink.startWarnings == ["[mqtt] has a password but no [mqtt.tls]: the password and all data cross the network unencrypted"])
    }
}

/// The daemon with credentials and TLS options against a real broker: secrets stay out of its output.
@Suite("MQTT credentials and TLS options of the daemon", .serialized)
struct ConnectionOptionsDaemonTests {
    func config(brokerPort: Int, simulatorPort: Int, mqtt: String, tls: String? = nil) -> String {
        DaemonConfig.header(mqttPort: brokerPort, keepAlive: "5s", reconnect: ("50ms", "200ms"),
                            mqtt: mqtt + (tls.map { "\n[mqtt.tls]\n\($0)" } ?? ""), batchInterval: "100ms")
            + BeltScaleSimulator.exampleDeviceConfig(port: simulatorPort, pollInterval: "100ms")
    }

    func startSimulator(in dir: TemporaryDirectory) async throws -> (PeerProcess, Int) {
        let port = try FreePort.allocate()
        let sim = try PeerProcess(name: "simulator", executable: try RepoPaths.builtProduct("kilntally"),
                                  arguments: ["simulate", "--listen", "127.0.0.1:\(port)"], logDirectory: dir.path)
        try await sim.waitForPort(port)
        return (sim, port)
    }

    func daemon(_ name: String, in dir: TemporaryDirectory, config: String, logLevel: String = "trace") throws -> PeerProcess {
        let path = dir.file("\(name).toml")
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        return try PeerProcess(name: name, executable: try RepoPaths.builtProduct("kilntallyd"),
                               arguments: ["--config", path, "--state-dir", dir.file("\(name)-state"), "--log-level", logLevel],
                               logDirectory: dir.path)
    }

    @Test("""
        a refused password, from password_file or inline, is in no log line (trace level, several refusals), nor in \
        config check's output; the accepted one is not in the log or the status message either
        """)
    func passwordsStayOutOfTheOutput() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort) = try await startSimulator(in: dir)
        defer { sim.stop() }
        let right = "Right-Pw-4kT9q", wrongInFile = "Wrong-File-Pw-8sV2m", wrongInline = "Wrong-Inline-Pw-3nB7x"
        let passwords = try await MosquittoPasswordFile.create(in: dir, user: "plant-a", password: right)
        let broker = try await MosquittoBroker.start(in: dir, allowAnonymous: false, extraConfig: "password_file \(passwords)")
        defer { broker.stop() }
        let hub = try await MosquittoSubscriber(in: dir, port: broker.port, topic: "kilntally/#",
                                                extraArguments: ["-u", "plant-a", "-P", right])
        defer { hub.stop() }
        try await hub.waitUntilSubscribed(broker: broker, topic: "kilntally/#")

        let wrongFile = dir.file("wrong.password")
        try (wrongInFile + "\n").write(toFile: wrongFile, atomically: true, encoding: .utf8)
        let rightFile = dir.file("right.password")
        try (right + "\n").write(toFile: rightFile, atomically: true, encoding: .utf8)
        let fromFile = try daemon("kilntallyd-file", in: dir, config: config(
            brokerPort: broker.port, simulatorPort: simPort, mqtt: "username = \"plant-a\"\npassword_file = \"\(wrongFile)\""))
        defer { fromFile.stop() }
        let inline = try daemon("kilntallyd-inline", in: dir, config: config(
            brokerPort: broker.port, simulatorPort: simPort, mqtt: "username = \"plant-a\"\nclient_id = \"inline\"\npassword = \"\(wrongInline)\""))
        defer { inline.stop() }
        let accepted = try daemon("kilntallyd-right", in: dir, config: config(
            brokerPort: broker.port, simulatorPort: simPort, mqtt: "username = \"plant-a\"\nclient_id = \"right\"\npassword_file = \"\(rightFile)\""))
        defer { accepted.stop() }

        for d in [fromFile, inline] {
            // Refused again and again (it keeps retrying), each time logged.
            try await d.waitUntil("three refusals", timeout: .seconds(15)) {
                d.log().components(separatedBy: "MQTT broker refused the connection").count - 1 >= 3
            }
            #expect(d.log().contains("not authorised"), "\(d.log())")
            #expect(d.log().contains("[mqtt] has a password but no [mqtt.tls]"))
        }
        _ = try await hub.waitForMessages(count: 1) { $0.topic == "kilntally/plant-a/kiln1/status" }
        _ = try await hub.waitForMessages(count: 1) { $0.topic == "kilntally/plant-a/kiln1/readings" }
        for d in [fromFile, inline, accepted] {
            d.signal(SIGTERM)
            #expect(try await d.waitForExit(timeout: .seconds(15)) == 0)
        }

        let checks = try await [("kilntallyd-file", wrongInFile), ("kilntallyd-inline", wrongInline), ("kilntallyd-right", right)]
            .asyncMap { name, _ in try await runTool(try RepoPaths.builtProduct("kilntally"), ["config", "check", "--config", dir.file("\(name).toml")],
                                                     in: dir, name: "config-check-\(name)") }
        let outputs = [fromFile.log(), inline.log(), accepted.log()] + checks
            + hub.messages().filter { $0.topic.hasSuffix("/status") }.map(\.payload)
        for secret in [right, wrongInFile, wrongInline] {
            for output in outputs { #expect(!output.contains(secret), "\(secret) in:\n\(output)") }
        }
        #expect(accepted.log().contains("connected to MQTT broker"))
    }

    @Test("a password file that cannot be read: the error names it, the daemon keeps polling and storing")
    func unreadablePasswordFile() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort) = try await startSimulator(in: dir)
        defer { sim.stop() }
        let missing = dir.file("no-such.password")
        let d = try daemon("kilntallyd", in: dir, config: config(
            brokerPort: try FreePort.allocate(), simulatorPort: simPort, mqtt: "username = \"plant-a\"\npassword_file = \"\(missing)\""),
            logLevel: "info")
        defer { d.stop() }
        try await d.waitUntil("an error naming the password file", timeout: .seconds(15)) {
            d.log().contains("MQTT client cannot be set up") && d.log().contains("password file '\(missing)' cannot be read: No such file or directory")
        }
        try await d.waitUntil("readings stored anyway") {
            let segments = dir.file("kilntallyd-state/readings/segments")
            let names = (try? FileManager.default.contentsOfDirectory(atPath: segments)) ?? []
            return names.reduce(0) { $0 + (((try? FileManager.default.attributesOfItem(atPath: segments + "/" + $1))?[.size] as? Int) ?? 0) } > 1000
        }
        #expect(d.isRunning)
    }

    /// The simulator, a TLS broker whose certificate the hub's CA signed, and another CA's file: what a plant has
    /// when its `ca_file` is the wrong one.
    func brokerWithAStrangersCA(in dir: TemporaryDirectory) async throws -> (PeerProcess, Int, MosquittoBroker, String) {
        let (sim, simPort) = try await startSimulator(in: dir)
        do {
            let hubCA = try await TestCertificateAuthority.make(in: dir, name: "hub")
            let stranger = try await TestCertificateAuthority.make(in: dir, name: "stranger")
            let broker = try await MosquittoBroker.start(in: dir, extraConfig: hubCA.listenerConfig)
            return (sim, simPort, broker, stranger.caFile)
        } catch {
            sim.stop()
            throw error
        }
    }

    @Test("insecure_skip_verify: connects to a broker whose CA it does not have, with a warning at every start")
    func insecureWarnsAtEveryStart() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort, broker, strangerCA) = try await brokerWithAStrangersCA(in: dir)
        defer { sim.stop(); broker.stop() }
        let text = config(brokerPort: broker.port, simulatorPort: simPort, mqtt: "",
                          tls: "ca_file = \"\(strangerCA)\"\ninsecure_skip_verify = true")
        for run in 1...2 {
            let d = try daemon("kilntallyd-\(run)", in: dir, config: text, logLevel: "info")
            defer { d.stop() }
            try await d.waitUntil("connected", timeout: .seconds(15)) { d.log().contains("connected to MQTT broker") }
            let warnings = d.log().split(separator: "\n").filter { $0.contains(" warning ") && $0.contains("insecure_skip_verify is true") }
            #expect(warnings.count == 1, "run \(run):\n\(d.log())")
            d.signal(SIGTERM)
            #expect(try await d.waitForExit(timeout: .seconds(15)) == 0)
        }
    }

    @Test("a broker certificate the plant's CA did not sign: the log says the TLS handshake failed (not that the broker refused) and why, and keeps retrying")
    func wrongCAIsATLSFailure() async throws {
        let dir = try TemporaryDirectory()
        let (sim, simPort, broker, strangerCA) = try await brokerWithAStrangersCA(in: dir)
        defer { sim.stop(); broker.stop() }
        let d = try daemon("kilntallyd", in: dir, config: config(brokerPort: broker.port, simulatorPort: simPort, mqtt: "",
                                                                   tls: "ca_file = \"\(strangerCA)\""), logLevel: "info")
        defer { d.stop() }
        try await d.waitUntil("two handshakes failed", timeout: .seconds(15)) {
            d.log().components(separatedBy: "TLS handshake with the MQTT broker failed").count - 1 >= 2
        }
        #expect(d.log().contains("certificate verify failed"), "\(d.log())")
        #expect(!d.log().contains("MQTT broker refused the connection"), "\(d.log())")
        #expect(!d.log().contains("connected to MQTT broker"))
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}
