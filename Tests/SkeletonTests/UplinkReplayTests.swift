import Foundation
import KilnTallyCore
import Logging
import MQTTKit
import RingStore
import TestSupport
import Testing
import Uplink

/// A backlog (an outage's worth of stored readings) is replayed oldest first at the capped rate, while readings
/// that arrive meanwhile reach the hub at once; the cursor passes everything only when the backlog is done.
@Suite("Uplink backlog replay", .serialized)
struct UplinkReplayTests {
    @Test("a 9,000-reading backlog at 3,000/s takes about 3 s, live readings sent meanwhile arrive before it ends, all arrive once acknowledged")
    func backlogWithLiveReadings() async throws {
        let dir = try TemporaryDirectory()
        var logger = Logger(label: "replay-test")
        logger.logLevel = .warning
        let store = try await RingStore(directory: dir.file("readings"), logger: logger)
        let commits = Task { await store.run() }
        let backlog = 9_000
        _ = try await store.append((1...UInt64(backlog)).map(sampleReading))
        let broker = try await MosquittoBroker.start(in: dir)
        defer { broker.stop() }
        let topic = "kilntally/plant-a/kiln1/readings"
        let hub = try await MosquittoSubscriber(in: dir, name: "hub", port: broker.port, topic: topic)
        defer { hub.stop() }
        try await hub.waitUntilSubscribed(broker: broker, topic: topic)

        var mqtt = MQTTConfiguration(clientID: "edge", host: "127.0.0.1", port: broker.port)
        mqtt.reconnect = .init(initial: .milliseconds(50), maximum: .milliseconds(300))
        let config = UplinkConfig(identity: NodeIdentity(site: "plant-a", node: "kiln1"), topicPrefix: "kilntally", mqtt: mqtt,
                                  readingsQoS: .atLeastOnce, batchSize: 100, batchInterval: .milliseconds(50), replayRate: 3_000)
        let uplink = Uplink(config: config, store: store, info: .init(version: "test", configHash: "0", startedAt: SystemClock().now()),
                            clock: SystemClock(), logger: logger)
        let started = Date()
        let run = Task { await uplink.run() }
        // Once the replay is under way (its first batch arrived), live readings while the backlog goes out: 10 of them, 150 ms apart, each stamped with its submission time.
        _ = try await hub.waitForMessages(count: 1, timeout: .seconds(10))
        var liveSeqs: [UInt64] = []
        for _ in 0..<10 {
            let r = Reading(device: "live", channel: "rate", time: SystemClock().now(), value: .double(12), unit: .tonnePerHour)
            if let seqs = store.submit([r]) { liveSeqs.append(seqs.lowerBound) }
            try await Task.sleep(for: .milliseconds(150))
        }
        let lastLive = try #require(liveSeqs.last)
        try await hub.process.waitUntil("the cursor passes the live readings", timeout: .seconds(20)) {
            (try? awaitCursor(store)) ?? 0 >= lastLive
        }
        run.cancel()
        await run.value
        commits.cancel()
        await store.close()

        // What the hub received, by sequence number, with arrival order.
        var seen: [UInt64: Int] = [:]
        var arrival = 0
        var lastBacklogArrival = 0
        var liveArrivals: [Int] = []
        for m in hub.messages() {
            guard let o = try JSONSerialization.jsonObject(with: Data(m.payload.utf8)) as? [String: Any],
                  let readings = o["readings"] as? [[String: Any]] else { continue }
            for r in readings {
                guard let seq = (r["seq"] as? NSNumber)?.uint64Value else { continue }
                arrival += 1
                seen[seq, default: 0] += 1
                if seq <= UInt64(backlog) { lastBacklogArrival = arrival } else if r["device"] as? String == "live" { liveArrivals.append(arrival) }
            }
        }
        #expect((1...UInt64(backlog)).allSatisfy { seen[$0] != nil }, "backlog readings missing")
        #expect(liveSeqs.allSatisfy { seen[$0] != nil }, "live readings missing")
        // Live readings went out during the replay, not after it (they become durable, and so publishable, at the
        // store's next sync, at most a second later).
        #expect(liveArrivals.count == liveSeqs.count && liveArrivals.allSatisfy { $0 < lastBacklogArrival },
                "live arrivals \(liveArrivals), last backlog arrival \(lastBacklogArrival)")
        // The cap held: 9,000 readings at 3,000/s cannot have taken much under 3 s.
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 2.7, "replay took \(elapsed) s")
    }

    func awaitCursor(_ store: RingStore) throws -> UInt64 {
        // The cursor file is plain text: "<magic> <version>\n<seq>\n".
        let text = try String(contentsOfFile: store.directory + "/cursors/" + Uplink.readingsCursor, encoding: .utf8)
        return UInt64(text.split(separator: "\n").last.map(String.init) ?? "") ?? 0
    }
}
