import KilnTallyCore

/// JSON payloads of the uplink. Every payload names its `schema`; timestamps are RFC 3339.
public enum Payloads {
    public static let readingsSchema = "kilntally.readings/1"
    public static let statusSchema = "kilntally.status/1"

    /// A batch of stored readings with the store sequence range it covers (hub subscribers de-duplicate on it).
    public static func readings(_ batch: [(seq: UInt64, reading: Reading)], identity: NodeIdentity) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: 128 + batch.count * 160)
        w.beginObject()
        w.field("schema", readingsSchema)
        w.field("site", identity.site)
        w.field("node", identity.node)
        w.field("first_seq", batch.first?.seq ?? 0)
        w.field("last_seq", batch.last?.seq ?? 0)
        w.key("readings")
        w.beginArray()
        for (seq, r) in batch {
            w.beginObject()
            w.field("seq", seq)
            w.readingFields(r)
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    public struct StatusInfo: Sendable {
        public var version: String
        public var configHash: String
        public var startedAt: UTCInstant
        public init(version: String, configHash: String, startedAt: UTCInstant) {
            self.version = version
            self.configHash = configHash
            self.startedAt = startedAt
        }
    }

    /// The retained `status` message: `online` as the birth, `offline` as the will and at clean shutdown.
    public static func status(online: Bool, identity: NodeIdentity, info: StatusInfo, time: UTCInstant?,
                              clockSynchronized: Bool?, reason: String? = nil) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("schema", statusSchema)
        w.field("state", online ? "online" : "offline")
        w.field("site", identity.site)
        w.field("node", identity.node)
        w.field("version", info.version)
        w.field("config_hash", info.configHash)
        w.field("started_at", info.startedAt.rfc3339)
        if let time { w.field("time", time.rfc3339) }
        if let clockSynchronized { w.field("clock_synchronized", clockSynchronized) }
        if let reason { w.field("reason", reason) }
        w.endObject()
        return w.bytes
    }
}
