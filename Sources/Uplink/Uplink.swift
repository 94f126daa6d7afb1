import KilnTallyCore
import Logging
import MQTTKit
import RingStore

/// Publishes to the hub: the retained status (birth on every connect, will when the connection dies, `offline`
/// at clean shutdown) and the stored readings, store-and-forward from a durable cursor that advances only when the
/// broker acknowledged a batch (PUBACK). After an outage or a restart it resumes from that cursor.
public final class Uplink: Sendable {
    public static let readingsCursor = "uplink-readings"

    private let config: UplinkConfig
    private let store: RingStore
    private let info: Payloads.StatusInfo
    private let clock: any WallClock
    private let logger: Logger
    public let topics: TopicTree

    public init(config: UplinkConfig, store: RingStore, info: Payloads.StatusInfo, clock: any WallClock, logger: Logger) {
        self.config = config
        self.store = store
        self.info = info
        self.clock = clock
        var logger = logger
        logger[metadataKey: "broker"] = "\(config.mqtt.host):\(config.mqtt.port)"
        self.logger = logger
        topics = TopicTree(prefix: config.topicPrefix, identity: config.identity)
    }

    /// Runs until the task is cancelled, then publishes `offline` and disconnects cleanly.
    public func run() async {
        guard let client = await makeClient() else { return }
        do {
            try client.start()
        } catch {
            logger.error("MQTT: \(error)")
        }
        // Birth messages are published from the group too, so none can still be on its way when "offline" goes
        // out below (a late "online" would otherwise become the retained status of a stopped node).
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.publishReadings(client) }
            for await event in client.events {
                if Task.isCancelled { break }
                if case .connected = event {
                    group.addTask { await self.publishBirth(client) }
                }
                self.log(event)
            }
            group.cancelAll()
            await group.waitForAll()
        }
        let offline = MQTTMessage(topic: topics.status, payload: statusPayload(online: false, reason: "shutdown"),
                                  qos: .atLeastOnce, retain: true)
        // run() ends because its task was cancelled (graceful shutdown); the goodbye must not inherit that
        // cancellation, or waiting for the broker's PUBACK of "offline" would end at once.
        await Task { await client.shutdown(publishing: offline, timeout: .seconds(2)) }.value
        logger.info("uplink stopped")
    }

    /// Creates the client, retrying while its configuration cannot be applied (e.g. a TLS file not there yet):
    /// the daemon keeps polling and storing meanwhile.
    private func makeClient() async -> MQTTClient? {
        var mqtt = config.mqtt
        mqtt.will = MQTTMessage(topic: topics.status, payload: statusPayload(online: false, reason: "connection lost"),
                                qos: .atLeastOnce, retain: true)
        while !Task.isCancelled {
            do {
                return try MQTTClient(configuration: mqtt, logger: logger)
            } catch {
                logger.error("MQTT client cannot be set up, retrying in 10 s: \(error)")
                try? await Task.sleep(for: .seconds(10))
            }
        }
        return nil
    }

    private func statusPayload(online: Bool, reason: String? = nil) -> [UInt8] {
        Payloads.status(online: online, identity: config.identity, info: info,
                        time: online ? clock.now() : nil, clockSynchronized: online ? clock.isSynchronized() : nil,
                        reason: reason)
    }

    private func publishBirth(_ client: MQTTClient) async {
        let birth = MQTTMessage(topic: topics.status, payload: statusPayload(online: true), qos: .atLeastOnce, retain: true)
        do { try await client.publish(birth) } catch { logger.debug("birth not published: \(error)") }
    }

    private func log(_ event: MQTTConnectionEvent) {
        switch event {
        case .connected:
            logger.info("connected to MQTT broker")
        case .connectionRefused(let error):
            logger.error("MQTT broker refused the connection: \(error)")
        case .disconnected(let error):
            if let error { logger.warning("MQTT connection lost: \(error)") } else { logger.info("MQTT disconnected") }
        }
    }

    /// Store-and-forward: publish everything after the durable cursor, oldest first, in batches.
    private func publishReadings(_ client: MQTTClient) async {
        var acked: UInt64
        do {
            acked = try await store.cursor(Self.readingsCursor)
        } catch {
            logger.error("cannot read the uplink cursor, starting from the oldest stored reading: \(error)")
            acked = 0
        }
        let updates = await store.updates()
        for await last in updates {
            if Task.isCancelled { return }
            guard last > acked else { continue }
            // Let a batch gather, unless a full one is already waiting.
            if last - acked < UInt64(config.batchSize) {
                do { try await Task.sleep(for: config.batchInterval) } catch { return }
            }
            while !Task.isCancelled {
                let batch: [(seq: UInt64, reading: Reading)]
                do {
                    let result = try await store.read(after: acked, limit: config.batchSize, filter: nil)
                    if let gap = result.gap {
                        // Dropped by the store's byte bound (a long outage) or lost to damage: the hub will see the
                        // sequence numbers jump; say so here too. (Issue 6 publishes it on /events.)
                        logger.warning("readings \(gap.lowerBound)...\(gap.upperBound) are no longer in the store and will not be published")
                    }
                    batch = result.readings
                } catch {
                    logger.error("uplink cannot read the store: \(error)")
                    break
                }
                guard let lastSeq = batch.last?.seq else { break }
                let message = MQTTMessage(topic: topics.readings, payload: Payloads.readings(batch, identity: config.identity),
                                          qos: config.readingsQoS, retain: false)
                var retry = Duration.seconds(1)
                while true {
                    do {
                        try await client.publish(message)
                        break
                    } catch where error.isShutdown || error.isCancellation {
                        logger.debug("readings publish ended: \(error)")
                        return
                    } catch {
                        // E.g. an MQTT 5 broker refusing the topic: the batch stays unacknowledged (the cursor does
                        // not move) and is tried again, so nothing is skipped once the cause is fixed.
                        logger.error("readings \(batch.first!.seq)...\(lastSeq) not accepted by the broker, retrying in \(retry): \(error)")
                        do { try await Task.sleep(for: retry) } catch { return }
                        retry = min(retry * 2, .seconds(60))
                    }
                }
                acked = lastSeq
                do {
                    try await store.setCursor(Self.readingsCursor, to: acked)
                } catch {
                    logger.error("uplink cursor not saved (readings may be sent again after a restart): \(error)")
                }
                logger.debug("published readings", metadata: ["first_seq": "\(batch.first!.seq)", "last_seq": "\(lastSeq)"])
            }
        }
    }
}
