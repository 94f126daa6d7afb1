import Foundation
import Simulator
import TestSupport
import Testing

/// The regional hub's broker as deploy/hub configures it (mosquitto.conf and acl from the repository, only the
/// listener port, file paths and logging changed for the test), with kilntallyd as the plant and mosquitto_sub as the
/// hub's ingester — all over TLS.
@Suite("Hub broker from deploy/hub", .serialized)
struct HubBrokerTests {
    static let plantPassword = "plant-a-pw-7Qe2xV9s"
    static let ingesterPassword = "ingester-pw-Lm4Zt8Kd"

    /// deploy/hub/mosquitto.conf with, for a test: the TLS listener on 127.0.0.1:`port` with `authority`'s
    /// certificates, persistence, password and ACL files in `dir`, logging to stderr (everything, since helpers read
    /// the broker's log), and `user root` when running as root. Every key substituted must be in the file, so the test
    /// fails rather than test another configuration if the file changes shape. `mutualTLS` uncomments the file's
    /// `require_certificate` and `use_identity_as_username` lines.
    static func hubConfig(port: Int, dir: TemporaryDirectory, authority: TestCertificateAuthority, passwordFile: String,
                          aclFile: String, mutualTLS: Bool = false) throws -> String {
        let original = try String(contentsOfFile: RepoPaths.root.appendingPathComponent("deploy/hub/mosquitto.conf").path,
                                  encoding: .utf8)
        let substitutions = [
            "listener": "listener \(port) 127.0.0.1",
            "persistence_location": "persistence_location \(dir.path)/",
            "password_file": "password_file \(passwordFile)",
            "acl_file": "acl_file \(aclFile)",
            "cafile": "cafile \(authority.caFile)",
            "certfile": "certfile \(authority.serverCertFile)",
            "keyfile": "keyfile \(authority.serverKeyFile)",
            "log_dest": "log_dest stderr",
        ]
        var seen: [String: Int] = [:]
        var lines: [String] = []
        for line in original.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            var line = line
            if mutualTLS, line == "#require_certificate true" || line == "#use_identity_as_username true" {
                line.removeFirst()
                seen[line, default: 0] += 1
            }
            let key = line.split(separator: " ").first.map(String.init) ?? ""
            if let replacement = substitutions[key] {
                line = replacement
                seen[key, default: 0] += 1
            }
            lines.append(line)
        }
        for key in substitutions.keys where seen[key] != 1 {
            throw PeerError("deploy/hub/mosquitto.conf: expected one `\(key)` line, found \(seen[key] ?? 0)")
        }
        if mutualTLS && (seen["require_certificate true"] != 1 || seen["use_identity_as_username true"] != 1) {
            throw PeerError("deploy/hub/mosquitto.conf: the commented mutual-TLS lines are missing")
        }
        lines.append("log_type all")
        if getuid() == 0 { lines.append("user root") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A hub broker from deploy/hub with users `plant-a` (a plant: user name = site id) and `hub.ingester`, and the
    /// repository's ACL file copied unchanged.
    struct Hub {
        let dir: TemporaryDirectory
        let authority: TestCertificateAuthority
        let broker: MosquittoBroker

        static func start(mutualTLS: Bool = false) async throws -> Hub {
            let dir = try TemporaryDirectory()
            let authority = try await TestCertificateAuthority.make(in: dir, name: "hub")
            let passwords = try await MosquittoPasswordFile.create(in: dir, user: "plant-a", password: plantPassword)
            _ = try await runTool("/usr/bin/mosquitto_passwd", ["-b", passwords, "hub.ingester", ingesterPassword],
                                  in: dir, name: "mosquitto_passwd-ingester")
            let acl = dir.file("acl")
            try FileManager.default.copyItem(atPath: RepoPaths.root.appendingPathComponent("deploy/hub/acl").path, toPath: acl)
            let broker = try await MosquittoBroker.start(in: dir, name: "hub-mosquitto") { port in
                try hubConfig(port: port, dir: dir, authority: authority, passwordFile: passwords, aclFile: acl,
                              mutualTLS: mutualTLS)
            }
            return Hub(dir: dir, authority: authority, broker: broker)
        }

        /// The hub's ingester: a persistent session (fixed client id, clean session off) with a QoS 1 subscription.
        /// `login`: mosquitto_sub's credential options (the default logs in as `hub.ingester` with its password).
        func ingester(clientID: String = "hub-ingester-1", login: [String]? = nil) async throws -> MosquittoSubscriber {
            let sub = try await MosquittoSubscriber(
                in: dir, name: "ingester-\(clientID)", port: broker.port, topic: "kilntally/#", qos: 1,
                extraArguments: ["--cafile", authority.caFile] + (login ?? ["-u", "hub.ingester", "-P", ingesterPassword])
                    + ["-c", "-i", clientID])
            try await sub.waitUntilSubscribed(broker: broker, topic: "kilntally/#")
            return sub
        }

        /// Logs in as plant-a with its password.
        static let plantLogin = ["-u", "plant-a", "-P", plantPassword]

        /// mosquitto_pub over TLS, QoS 1, with `login` (mosquitto_pub's credential options); `version` "mqttv311" or
        /// "mqttv5". Returns its debug output; throws if it exits non-zero.
        func publish(login: [String] = plantLogin, topic: String, message: String, version: String = "mqttv311") async throws -> String {
            try await runTool("/usr/bin/mosquitto_pub", [
                "-h", "127.0.0.1", "-p", String(broker.port), "--cafile", authority.caFile] + login + [
                "-V", version, "-q", "1", "-t", topic, "-m", message, "-d",
            ], in: dir, name: "mosquitto_pub-\(UInt32.random(in: 0...UInt32.max))")
        }

        func simulator(_ name: String) async throws -> (PeerProcess, Int) {
            let port = try FreePort.allocate()
            let sim = try PeerProcess(name: name, executable: try RepoPaths.builtProduct("kilntally"),
                                      arguments: ["simulate", "--listen", "127.0.0.1:\(port)"], logDirectory: dir.path)
            try await sim.waitForPort(port)
            return (sim, port)
        }

        /// kilntallyd over TLS, MQTT 5, as `site`/`node`, logging in as `user` with a password file.
        func daemon(_ name: String, site: String, node: String, user: String, password: String, simulatorPort: Int) throws -> PeerProcess {
            let passwordFile = dir.file("\(name).password")
            try (password + "\n").write(toFile: passwordFile, atomically: true, encoding: .utf8)
            return try daemon(name, site: site, node: node, simulatorPort: simulatorPort,
                              login: "username = \"\(user)\"\npassword_file = \"\(passwordFile)\"")
        }

        /// kilntallyd over TLS, MQTT 5, as `site`/`node`, with `login` lines in [mqtt] and `tls` lines in [mqtt.tls].
        func daemon(_ name: String, site: String, node: String, simulatorPort: Int, login: String = "", tls: String = "") throws -> PeerProcess {
            let config = dir.file("\(name).toml")
            let mqtt = """
                protocol = "5"
                \(login)

                [mqtt.tls]
                ca_file = "\(authority.caFile)"
                \(tls)
                """
            try (DaemonConfig.header(site: site, node: node, mqttPort: broker.port, keepAlive: "5s", reconnect: ("50ms", "300ms"),
                                     mqtt: mqtt, batchInterval: "100ms", batchSize: 50)
                 + BeltScaleSimulator.exampleDeviceConfig(port: simulatorPort, pollInterval: "100ms"))
                .write(toFile: config, atomically: true, encoding: .utf8)
            return try PeerProcess(name: name, executable: try RepoPaths.builtProduct("kilntallyd"),
                                   arguments: ["--config", config, "--state-dir", dir.file("\(name)-state"), "--log-level", "debug"],
                                   logDirectory: dir.path)
        }
    }

    @Test("""
        a plant publishes its own site to the hub ingester over TLS; with the same credentials, another site's \
        topics — a daemon's readings, status and will, and mosquitto_pub over MQTT 3.1.1 and 5 — never reach it
        """)
    func aclConfinesAPlantToItsSite() async throws {
        let hub = try await Hub.start()
        defer { hub.broker.stop() }
        let ingester = try await hub.ingester()
        defer { ingester.stop() }
        let (simA, portA) = try await hub.simulator("simulator-a")
        defer { simA.stop() }
        let (simB, portB) = try await hub.simulator("simulator-b")
        defer { simB.stop() }

        // plant-a as itself, and a second daemon that claims site plant-b with plant-a's credentials.
        let plantA = try hub.daemon("kilntallyd-a", site: "plant-a", node: "kiln1", user: "plant-a",
                                    password: Self.plantPassword, simulatorPort: portA)
        defer { plantA.stop() }
        let impostor = try hub.daemon("kilntallyd-b", site: "plant-b", node: "kiln9", user: "plant-a",
                                      password: Self.plantPassword, simulatorPort: portB)
        defer { impostor.stop() }

        // plant-a's readings and retained status arrive.
        let batches = try await ingester.waitForMessages(count: 2, timeout: .seconds(20)) {
            $0.topic == "kilntally/plant-a/kiln1/readings"
        }.compactMap { ReadingsMessage($0.payload) }
        #expect(batches.first?.firstSeq == 1)
        _ = try await ingester.waitForMessages(count: 1) {
            $0.topic == "kilntally/plant-a/kiln1/status" && json($0.payload)?["state"] as? String == "online"
        }

        // The impostor connects (its login is valid) but the broker refuses every publish under plant-b with an
        // MQTT 5 PUBACK "not authorized"; the daemon says so and keeps the readings (it retries, never skips).
        try await impostor.waitUntil("the refused readings to be logged", timeout: .seconds(15)) {
            let log = impostor.log()
            return log.contains("not accepted by the broker") && log.contains("PUBACK rejected the message: Not authorized (code 135)")
        }
        #expect(impostor.log().contains("readings 1..."), "the first batch is the one retried:\n\(impostor.log())")
        #expect(impostor.isRunning)

        // mosquitto_pub with plant-a's credentials: refused under plant-b over MQTT 5 (PUBACK 0x87); over MQTT 3.1.1
        // mosquitto acknowledges it as if delivered (3.1.1 cannot refuse a publish) and drops it.
        let v5 = try await hub.publish(topic: "kilntally/plant-b/kiln9/events", message: "foreign-v5", version: "mqttv5")
        #expect(v5.contains("RC:135") && v5.contains("Not authorized"), "\(v5)")
        let v311 = try await hub.publish(topic: "kilntally/plant-b/kiln9/events", message: "foreign-v311")
        #expect(v311.contains("received PUBACK (Mid: 1, RC:0)"), "3.1.1 gets a plain PUBACK:\n\(v311)")
        // The impostor dies without DISCONNECT: the broker would publish its will (plant-b/.../status offline).
        impostor.killHard()
        try await hub.broker.process.waitUntil("the broker to see the impostor's connection end") {
            let log = hub.broker.process.log()
            return log.contains("Client kilntally-plant-b-kiln9 closed its connection")
                || log.contains("Socket error on client kilntally-plant-b-kiln9")
        }

        // A marker from plant-a, published after all of the above: once it is at the ingester, anything under
        // plant-b would have been delivered before it (one broker, one subscriber session, publishes in order).
        _ = try await hub.publish(topic: "kilntally/plant-a/acl-check/marker", message: "own-site")
        _ = try await ingester.waitForMessages(count: 1) { $0.topic == "kilntally/plant-a/acl-check/marker" }

        let foreign = ingester.messages().filter { !$0.topic.hasPrefix("kilntally/plant-a/") }
        #expect(foreign.isEmpty, "messages outside plant-a reached the hub: \(foreign.map(\.topic))")
        #expect(hub.broker.logCount("Denied PUBLISH from kilntally-plant-b-kiln9") >= 2, "status and readings were denied")
        #expect(hub.broker.process.log().contains("'kilntally/plant-b/kiln9/status'"))
        #expect(plantA.isRunning)
        #expect(!plantA.log().contains("not accepted by the broker"), "\(plantA.log())")
    }

    @Test("the queue limits are numbers mosquitto 2.0 reads as written (a 32-bit int: larger ones wrap, negative = no limit)")
    func queueLimitsFitMosquittosInt() throws {
        let text = try String(contentsOfFile: RepoPaths.root.appendingPathComponent("deploy/hub/mosquitto.conf").path, encoding: .utf8)
        for key in ["max_queued_messages", "max_queued_bytes", "max_inflight_messages", "autosave_interval"] {
            let values = text.split(separator: "\n").filter { $0.hasPrefix(key + " ") }.compactMap { Int64($0.dropFirst(key.count + 1)) }
            #expect(values.count == 1, "\(key)")
            #expect(values.allSatisfy { $0 > 0 && $0 <= Int64(Int32.max) }, "\(key) = \(values)")
        }
    }

    @Test("""
        mutual TLS as the file's commented lines describe: the certificate's CN is the user name, so the same ACL \
        confines a plant's certificate to its site; a client without a certificate cannot connect
        """)
    func mutualTLSUsesTheCertificateAsTheSite() async throws {
        let hub = try await Hub.start(mutualTLS: true)
        defer { hub.broker.stop() }
        let ingesterCert = try await hub.authority.clientCertificate(commonName: "hub.ingester")
        let plantCert = try await hub.authority.clientCertificate(commonName: "plant-a")
        let ingester = try await hub.ingester(login: ["--cert", ingesterCert.certFile, "--key", ingesterCert.keyFile])
        defer { ingester.stop() }
        let (simA, portA) = try await hub.simulator("simulator-a")
        defer { simA.stop() }
        let (simB, portB) = try await hub.simulator("simulator-b")
        defer { simB.stop() }
        let certificate = "cert_file = \"\(plantCert.certFile)\"\nkey_file = \"\(plantCert.keyFile)\""
        let plantA = try hub.daemon("kilntallyd-a", site: "plant-a", node: "kiln1", simulatorPort: portA, tls: certificate)
        defer { plantA.stop() }
        let impostor = try hub.daemon("kilntallyd-b", site: "plant-b", node: "kiln9", simulatorPort: portB, tls: certificate)
        defer { impostor.stop() }

        _ = try await ingester.waitForMessages(count: 2, timeout: .seconds(20)) { $0.topic == "kilntally/plant-a/kiln1/readings" }
        try await impostor.waitUntil("the refused readings to be logged", timeout: .seconds(15)) {
            impostor.log().contains("not accepted by the broker") && impostor.log().contains("Not authorized (code 135)")
        }
        // A password alone is not enough on this listener.
        await #expect(throws: PeerError.self) {
            _ = try await hub.publish(topic: "kilntally/plant-a/acl-check/marker", message: "no-certificate")
        }
        _ = try await hub.publish(login: ["--cert", plantCert.certFile, "--key", plantCert.keyFile],
                                  topic: "kilntally/plant-a/acl-check/marker", message: "with-certificate")
        let markers = try await ingester.waitForMessages(count: 1) { $0.topic == "kilntally/plant-a/acl-check/marker" }
        #expect(markers.map(\.payload) == ["with-certificate"])
        let foreign = ingester.messages().filter { !$0.topic.hasPrefix("kilntally/plant-a/") }
        #expect(foreign.isEmpty, "messages outside plant-a reached the hub: \(foreign.map(\.topic))")
        #expect(hub.broker.process.log().contains("as kilntally-plant-a-kiln1 (p5, c1, k5, u'plant-a')"), "the CN is the user name")
    }
}
