import Foundation
import KilnTallyCore
import Logging
import MQTTKit
import RingStore
import TestSupport
import Uplink

/// Issue 6's benchmark: replay throughput from a full store to a loopback mosquitto at QoS 1 (goal ≥ 100,000
/// readings/s in batches), compared with the broker's own throughput for the same message sizes measured in the same
/// run (`mosquitto_pub -l -q 1` publishing the same number of messages of the same size), and the latency of live
/// readings produced during the replay as a hub subscriber (paho) sees it (goal ≤ 2 s).
enum ReplayBenchmark {
    static func run(readings n: Int, batchSize: Int, replayRate: Int) async throws {
        let dir = try TemporaryDirectory(prefix: "kilntally-replay")
        var logger = Logger(label: "replay-benchmark")
        logger.logLevel = .warning
        let store = try await RingStore(directory: dir.file("readings"), options: .init(maxBytes: 8 << 30), logger: logger)
        let commits = Task { await store.run() }
        var i: UInt64 = 0
        while i < UInt64(n) {
            let chunk = (i..<min(UInt64(n), i + 10_000)).map { sampleReading($0 + 1) }
            _ = try await store.append(chunk)
            i += UInt64(chunk.count)
        }
        let broker = try await MosquittoBroker.start(in: dir, extraConfig: "max_queued_messages 0\nmax_inflight_messages 0")
        defer { broker.stop() }
        let topicBase = "kilntally/plant-a/kiln1"
        let hub = try PeerProcess(name: "hub", executable: RepoPaths.venvPython,
                                  arguments: [RepoPaths.peerScript("latency_sub.py"), "--port", "\(broker.port)",
                                              "--topic", topicBase + "/readings", "--live", "live", "--out", dir.file("hub.json")],
                                  logDirectory: dir.path)
        try await hub.waitUntil("the hub subscribed") { hub.log().contains("subscribed") }

        var mqtt = MQTTConfiguration(clientID: "bench-edge", host: "127.0.0.1", port: broker.port)
        mqtt.maxInFlight = 32
        let config = UplinkConfig(identity: NodeIdentity(site: "plant-a", node: "kiln1"), topicPrefix: "kilntally", mqtt: mqtt,
                                  readingsQoS: .atLeastOnce, batchSize: batchSize, batchInterval: .milliseconds(100),
                                  replayRate: replayRate)
        let uplink = Uplink(config: config, store: store, info: .init(version: "bench", configHash: "0", startedAt: SystemClock().now()),
                            clock: SystemClock(), logger: logger)
        let started = ContinuousClock.now
        let uplinkTask = Task { await uplink.run() }
        // Live readings during the replay: one every 100 ms, stamped with the wall clock.
        let live = Task {
            while !Task.isCancelled {
                store.submit([Reading(device: "live", channel: "rate", time: SystemClock().now(), value: .double(12), unit: .tonnePerHour)])
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        while try await store.cursor(Uplink.readingsCursor) < UInt64(n) {
            try await Task.sleep(for: .milliseconds(20))
        }
        let replaySeconds = (ContinuousClock.now - started).seconds
        try await Task.sleep(for: .seconds(2))
        live.cancel()
        uplinkTask.cancel()
        await uplinkTask.value
        hub.signal(SIGTERM)
        _ = try await hub.waitForExit()
        commits.cancel()
        await store.close()
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("hub.json")))) as? [String: Any] ?? [:]

        // Reference: the broker taking the same messages from mosquitto_pub (QoS 1, its default in-flight window).
        let sample = (1...UInt64(batchSize)).map { (seq: $0, reading: sampleReading($0)) }
        let payload = String(decoding: Payloads.readings(sample, identity: config.identity), as: UTF8.self)
        let messages = (n + batchSize - 1) / batchSize
        let lines = dir.file("lines.txt")
        try String(repeating: payload + "\n", count: messages).write(toFile: lines, atomically: false, encoding: .utf8)
        let refStart = ContinuousClock.now
        let pub = try PeerProcess(name: "mosquitto_pub", executable: "/bin/sh",
                                  arguments: ["-c", "/usr/bin/mosquitto_pub -h 127.0.0.1 -p \(broker.port) -q 1 -t \(topicBase)/reference -l < \(lines)"],
                                  logDirectory: dir.path)
        let rc = try await pub.waitForExit(timeout: .seconds(600))
        let refSeconds = (ContinuousClock.now - refStart).seconds
        guard rc == 0 else { throw PeerError("mosquitto_pub failed: \(pub.log())") }

        let ours = Double(n) / replaySeconds
        let reference = Double(messages * batchSize) / refSeconds
        print(String(format: "replay: %d readings in %.2f s = %.0f readings/s (batches of %d, %d bytes each; cap %@) — goal ≥ 100,000",
                     n, replaySeconds, ours, batchSize, payload.utf8.count, replayRate == 0 ? "none" : "\(replayRate)/s"))
        print(String(format: "broker reference: mosquitto_pub -q 1, %d messages of the same size in %.2f s = %.0f readings/s; ratio %.2f",
                     messages, refSeconds, reference, ours / reference))
        let maxLatency = summary["max_latency_s"] as? Double
        print(String(format: "live readings during the replay: %d seen by the hub, latency max %.3f s, mean %.3f s — goal ≤ 2 s",
                     summary["live"] as? Int ?? 0, maxLatency ?? .nan, summary["mean_latency_s"] as? Double ?? .nan))
        print("hub subscriber saw \(summary["readings"] as? Int ?? 0) readings in \(summary["messages"] as? Int ?? 0) messages")
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
