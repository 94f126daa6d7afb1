import Foundation
@testable import MQTTKit
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// MQTTKit against a real mosquitto broker (and mosquitto_sub as the hub) on a free loopback port.
@Suite("MQTTKit with a real mosquitto broker", .serialized)
struct BrokerTests {
    @Test("QoS 1 publish returns after the PUBACK, and the subscriber sees the message")
    func qos1PublishReachesSubscriber() async throws {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let subscriber = try await MosquittoSubscriber(in: dir, port: broker.port, topic: "kt/qos1/#")
        try await subscriber.waitUntilSubscribed(broker: broker, topic: "kt/qos1/#")
        let configuration = testConfiguration(port: broker.port)
        try await withClient(configuration) { client, events in
            try await client.waitUntilConnected(timeout: .seconds(10))
            #expect(client.isConnected)
            try await events.waitForConnected()
            try await client.publish(MQTTMessage(topic: "kt/qos1/a", string: "hello-qos1", qos: .atLeastOnce))
            // publish returned ⇒ the broker has the message (it sent the PUBACK after taking it).
            #expect(broker.process.log().contains("Sending PUBACK to \(configuration.clientID)"))
            let seen = try await subscriber.waitForMessages(count: 1) { $0.payload == "hello-qos1" }
            #expect(seen.first?.topic == "kt/qos1/a")
            try await client.publish(MQTTMessage(topic: "kt/qos1/b", string: "hello-qos0", qos: .atMostOnce))
            _ = try await subscriber.waitForMessages(count: 1) { $0.payload == "hello-qos0" }
            #expect(client.windowSnapshot.inFlight == 0)
        }
    }

    @Test("a QoS 1 publish stays pending while the broker cannot answer (SIGSTOP) and completes after SIGCONT")
    func publishWaitsForPuback() async throws {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let subscriber = try await MosquittoSubscriber(in: dir, port: broker.port, topic: "kt/stop/#")
        try await subscriber.waitUntilSubscribed(broker: broker, topic: "kt/stop/#")
        try await withClient(testConfiguration(port: broker.port)) { client, _ in
            try await client.waitUntilConnected(timeout: .seconds(10))
            broker.process.signal(SIGSTOP)
            let completion = Completion()
            let task = startPublish(client, MQTTMessage(topic: "kt/stop/a", string: "after-sigcont"), completion: completion)
            // The message is written to the socket at once; only the broker's PUBACK can complete the publish.
            #expect(try await expectStillPending(completion, for: .milliseconds(700)))
            #expect(client.windowSnapshot.inFlight == 1)
            broker.process.signal(SIGCONT)
            try await withTimeout(.seconds(10), "publish after SIGCONT") { try await task.value }
            #expect(completion.isDone)
            _ = try await subscriber.waitForMessages(count: 1) { $0.payload == "after-sigcont" }
        }
    }

    @Test("the in-flight window holds back publishes beyond maxInFlight until acknowledgements arrive")
    func inFlightWindow() async throws {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        var configuration = testConfiguration(port: broker.port)
        configuration.maxInFlight = 2
        try await withClient(configuration) { client, _ in
            try await client.waitUntilConnected(timeout: .seconds(10))
            broker.process.signal(SIGSTOP)
            let completions = (0..<5).map { _ in Completion() }
            let tasks = (0..<5).map { i in
                startPublish(client, MQTTMessage(topic: "kt/window/\(i)", string: "m\(i)"), completion: completions[i])
            }
            try await Task.sleep(for: .milliseconds(400)) // negative window: nothing can be acknowledged
            #expect(client.windowSnapshot.inFlight == 2)
            #expect(client.windowSnapshot.waiting == 3)
            #expect(completions.allSatisfy { !$0.isDone })
            broker.process.signal(SIGCONT)
            for task in tasks { try await withTimeout(.seconds(10), "windowed publish") { try await task.value } }
            #expect(client.windowSnapshot.inFlight == 0)
        }
    }

    @Test("the broker publishes the will when the client process is killed")
    func willOnKill() async throws {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let topic = "kilntally/site1/node1/status"
        let subscriber = try await MosquittoSubscriber(in: dir, port: broker.port, topic: topic)
        try await subscriber.waitUntilSubscribed(broker: broker, topic: topic)
        let willClient = try PeerProcess(
            name: "MQTTWillClient", executable: try RepoPaths.builtProduct("MQTTWillClient"),
            arguments: [String(broker.port), "kt-will-client", topic, #"{"state":"offline"}"#, #"{"state":"online"}"#],
            logDirectory: dir.path)
        defer { willClient.killHard() }
        try await willClient.waitUntil("the will client to print 'connected'") { willClient.log().contains("connected") }
        _ = try await subscriber.waitForMessages(count: 1) { $0.payload == #"{"state":"online"}"# }
        willClient.killHard()
        let wills = try await subscriber.waitForMessages(count: 1) { $0.payload == #"{"state":"offline"}"# }
        #expect(wills.first?.topic == topic)
        // The will was retained: a subscriber that comes later sees it, flagged retained.
        let late = try await MosquittoSubscriber(in: dir, name: "late_sub", port: broker.port, topic: topic)
        let retained = try await late.waitForMessages(count: 1) { $0.payload == #"{"state":"offline"}"# }
        #expect(retained.first?.retained == true)
    }

    @Test("clean shutdown publishes the final message and the broker does not send the will")
    func cleanShutdown() async throws {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let topic = "kilntally/site1/node2/status"
        let subscriber = try await MosquittoSubscriber(in: dir, port: broker.port, topic: "kilntally/site1/#")
        try await subscriber.waitUntilSubscribed(broker: broker, topic: "kilntally/site1/#")
        var configuration = testConfiguration(port: broker.port, clientID: "kt-clean-shutdown")
        configuration.will = MQTTMessage(topic: topic, string: "will-lost", retain: true)
        let client = try MQTTClient(configuration: configuration, logger: testLogger)
        let events = EventRecorder(client)
        try client.start()
        try await client.waitUntilConnected(timeout: .seconds(10))
        try await client.publish(MQTTMessage(topic: topic, string: "online", retain: true))
        await client.shutdown(publishing: MQTTMessage(topic: topic, string: "offline-clean", retain: true))
        #expect(!client.isConnected)
        _ = try await subscriber.waitForMessages(count: 1) { $0.payload == "offline-clean" }
        try await broker.waitForLog("Client kt-clean-shutdown disconnected.")
        // The broker handles clients in order: a message published after the disconnect arrives after any will would.
        try await mosquittoPublish(in: dir, port: broker.port, topic: "kilntally/site1/sentinel", message: "sentinel")
        let all = try await subscriber.waitForMessages(count: 1) { $0.payload == "sentinel" }
        #expect(!subscriber.messages().contains { $0.payload == "will-lost" }, "the will was sent: \(subscriber.messages())")
        #expect(all.count == 1)
        // The event stream says so and ends.
        try await events.waitUntilFinished()
        guard case .disconnected(let reason)? = events.events.last else {
            Issue.record("the last event is not a disconnection: \(events.events)")
            return
        }
        #expect(reason == nil)
        let error = await #expect(throws: MQTTError.self) { try await client.publish(MQTTMessage(topic: topic, string: "late")) }
        #expect(error?.isShutdown == true)
    }

    @Test("a wrong password is an authorization failure with a clear description", arguments: [MQTTProtocolVersion.v311, .v5])
    func wrongPassword(version: MQTTProtocolVersion) async throws {
        let dir = try TemporaryDirectory()
        let passwords = try await MosquittoPasswordFile.create(in: dir, user: "edge", password: "right-password")
        let broker = try await MosquittoBroker.start(in: dir, allowAnonymous: false, extraConfig: "password_file \(passwords)")
        defer { broker.kill() }
        var configuration = testConfiguration(port: broker.port)
        configuration.protocolVersion = version
        configuration.username = "edge"
        configuration.password = "wrong-password"
        try await withClient(configuration) { client, events in
            let error = await #expect(throws: MQTTError.self) { try await client.waitUntilConnected(timeout: .seconds(10)) }
            #expect(error?.isAuthorizationFailure == true)
            #expect(error?.call == "CONNACK")
            #expect(error?.description.contains("MQTT broker 127.0.0.1:\(broker.port): CONNACK refused the connection") == true, "\(String(describing: error))")
            switch version {
            case .v311: #expect(error?.description.contains("not authorised") == true, "\(String(describing: error))")
            case .v5: #expect([0x86, 0x87].contains(error?.code ?? 0), "\(String(describing: error))")
            }
            let seen = try await events.wait("a connectionRefused event") { !$0.refusals.isEmpty }
            #expect(!client.isConnected)
            // The refusal event carries the CONNACK's reason. (`lastError` is the latest attempt's: the client keeps
            // retrying, and a retry that the broker drops before its CONNACK reads "connection" — a race on a
            // loaded machine, not something to assert on.)
            #expect(seen.refusals.first?.call == "CONNACK")
        }
        // And the right password connects, so the refusal was about the password.
        configuration.password = "right-password"
        try await withClient(configuration) { client, _ in
            try await client.waitUntilConnected(timeout: .seconds(10))
        }
    }

    @Test("TLS: connects with a verified broker certificate; a different CA fails verification")
    func tls() async throws {
        let dir = try TemporaryDirectory()
        let authority = try await TestCertificateAuthority.make(in: dir, name: "hub")
        let stranger = try await TestCertificateAuthority.make(in: dir, name: "stranger")
        let broker = try await MosquittoBroker.start(in: dir, extraConfig: authority.listenerConfig)
        defer { broker.kill() }
        var configuration = testConfiguration(port: broker.port)
        configuration.tls = MQTTTLS(caFile: authority.caFile, verifyPeer: true)
        try await withClient(configuration) { client, _ in
            try await client.waitUntilConnected(timeout: .seconds(10))
            try await client.publish(MQTTMessage(topic: "kt/tls", string: "over-tls"))
        }
        #expect(broker.process.log().contains("Received PUBLISH from \(configuration.clientID)"))

        configuration = testConfiguration(port: broker.port)
        configuration.tls = MQTTTLS(caFile: stranger.caFile, verifyPeer: true)
        try await withClient(configuration) { client, events in
            let error = await #expect(throws: MQTTError.self) { try await client.waitUntilConnected(timeout: .seconds(10)) }
            #expect(error?.call == "TLS handshake", "\(String(describing: error))")
            #expect(error?.message.contains("certificate verify failed") == true, "\(String(describing: error))")
            #expect(!client.isConnected)
            try await events.wait("a connectionRefused event") { !$0.refusals.isEmpty }
            // It keeps trying (the broker's certificate may be fixed): a second handshake fails the same way.
            try await events.wait("a second TLS refusal") { $0.refusals.count >= 2 }
        }
    }

    @Test("after a broker restart on the same port the client reconnects by itself")
    func brokerRestart() async throws {
        let dir = try TemporaryDirectory()
        var broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let port = broker.port
        try await withClient(testConfiguration(port: port)) { client, events in
            try await events.waitForConnected(count: 1)
            #expect(client.isConnected)
            broker.stop()
            let afterStop = try await events.wait("disconnected") { !$0.disconnections.isEmpty }
            #expect(afterStop.disconnections.first??.call == "connection")
            #expect(!client.isConnected)
            broker = try await MosquittoBroker.start(in: dir, name: "mosquitto-restarted", port: port)
            try await events.waitForConnected(count: 2)
            #expect(client.isConnected)
            try await client.publish(MQTTMessage(topic: "kt/restart", string: "after-restart"))
            // Once more, to see the events and the flag hold up over repeated restarts.
            broker.kill() // a crash this time
            try await events.wait("second disconnect") { $0.disconnections.count >= 2 }
            broker = try await MosquittoBroker.start(in: dir, name: "mosquitto-restarted-2", port: port)
            try await events.waitForConnected(count: 3)
            #expect(client.isConnected)
            let kinds = events.events.compactMap { event -> String? in
                switch event {
                case .connected: "connected"
                case .disconnected: "disconnected"
                case .connectionRefused: "refused"
                case .attemptFailed: nil  // reconnect attempts while the broker was down, as many as the timing gives
                }
            }
            #expect(kinds == ["connected", "disconnected", "connected", "disconnected", "connected"])
        }
    }

    @Test("a publish made while the broker is down stays pending and completes after it is back")
    func publishWhileBrokerDown() async throws {
        let dir = try TemporaryDirectory()
        var broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let port = broker.port
        try await withClient(testConfiguration(port: port)) { client, events in
            try await events.waitForConnected()
            broker.kill()
            try await events.wait("disconnected") { !$0.disconnections.isEmpty }
            let completion = Completion()
            let task = startPublish(client, MQTTMessage(topic: "kt/down/status", string: "while-down", retain: true),
                                    completion: completion)
            #expect(try await expectStillPending(completion, for: .milliseconds(300)))
            // Nothing was handed to libmosquitto while disconnected: the publisher waits in the wrapper.
            #expect(client.windowSnapshot.inFlight == 0 && client.windowSnapshot.waiting == 1)
            broker = try await MosquittoBroker.start(in: dir, name: "mosquitto-back", port: port)
            try await withTimeout(.seconds(10), "publish after the broker came back") { try await task.value }
            #expect(completion.isDone)
            let subscriber = try await MosquittoSubscriber(in: dir, port: port, topic: "kt/down/#")
            let seen = try await subscriber.waitForMessages(count: 1) { $0.payload == "while-down" }
            #expect(seen.first?.retained == true)
        }
    }

    @Test("a QoS 1 message sent but not acknowledged before the connection drops is re-sent and completes once")
    func resendAfterDrop() async throws {
        let dir = try TemporaryDirectory()
        var broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let port = broker.port
        try await withClient(testConfiguration(port: port)) { client, events in
            try await events.waitForConnected()
            broker.process.signal(SIGSTOP)
            let completion = Completion()
            let task = startPublish(client, MQTTMessage(topic: "kt/resend/status", string: "resent", retain: true),
                                    completion: completion)
            #expect(try await expectStillPending(completion, for: .milliseconds(300)))
            #expect(client.windowSnapshot.inFlight == 1)
            // The broker dies without having read the message; a new one takes its place.
            broker.process.killHard()
            try await events.wait("disconnected") { !$0.disconnections.isEmpty }
            broker = try await MosquittoBroker.start(in: dir, name: "mosquitto-new", port: port)
            try await withTimeout(.seconds(10), "publish re-sent after reconnect") { try await task.value }
            #expect(client.windowSnapshot.inFlight == 0)
            // libmosquitto re-sent it itself: same message, DUP flag set.
            #expect(broker.process.log().contains("Received PUBLISH from \(client.configuration.clientID) (d1, q1, r1"),
                    "\(broker.process.log())")
            let subscriber = try await MosquittoSubscriber(in: dir, port: port, topic: "kt/resend/#")
            let seen = try await subscriber.waitForMessages(count: 1) { $0.payload == "resent" }
            #expect(seen.count == 1)
        }
    }

    static let perWorker = 150

    @Test("many concurrent QoS 0 and QoS 1 publishes across a broker crash all complete exactly once")
    func concurrentPublishesAcrossCrash() async throws {
        let dir = try TemporaryDirectory()
        var broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let port = broker.port
        var configuration = testConfiguration(port: port)
        configuration.maxInFlight = 8
        try await withClient(configuration) { client, events in
            try await events.waitForConnected()
            let completed = Counter()
            let publishers = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for worker in 0..<16 {
                        group.addTask {
                            for i in 0..<Self.perWorker {
                                let qos: MQTTQoS = (worker + i) % 3 == 0 ? .atMostOnce : .atLeastOnce
                                try await client.publish(MQTTMessage(topic: "kt/load/\(worker)", string: "\(i)", qos: qos))
                                completed.increment()
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            // Crash the broker while the publishers are busy (a tenth done; killing and reaping the broker takes a
            // while on a loaded machine, hence the large total), then bring it back.
            let total = 16 * Self.perWorker
            while completed.value < total / 10 { await Task.yield() }
            broker.kill()
            let atCrash = completed.value
            try await events.wait("disconnected") { !$0.disconnections.isEmpty }
            #expect(atCrash < total, "every publish was done before the crash; the test proves nothing")
            broker = try await MosquittoBroker.start(in: dir, name: "mosquitto-after-crash", port: port)
            try await withTimeout(.seconds(30), "all \(total) publishes") { try await publishers.value }
            #expect(completed.value == total)
            #expect(client.windowSnapshot.inFlight == 0 && client.windowSnapshot.waiting == 0)
        }
    }

    @Test("MQTT 5 connects and publishes")
    func mqtt5() async throws {
        let dir = try TemporaryDirectory()
        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.kill() }
        let subscriber = try await MosquittoSubscriber(in: dir, port: broker.port, topic: "kt/v5/#")
        try await subscriber.waitUntilSubscribed(broker: broker, topic: "kt/v5/#")
        var configuration = testConfiguration(port: broker.port)
        configuration.protocolVersion = .v5
        try await withClient(configuration) { client, _ in
            try await client.waitUntilConnected(timeout: .seconds(10))
            try await client.publish(MQTTMessage(topic: "kt/v5/a", string: "hello-v5"))
            try await client.publish(MQTTMessage(topic: "kt/v5/b", string: "hello-v5-qos0", qos: .atMostOnce))
        }
        #expect(broker.process.log().contains("as \(configuration.clientID) (p5"))
        _ = try await subscriber.waitForMessages(count: 2) { $0.payload.hasPrefix("hello-v5") }
    }
}
