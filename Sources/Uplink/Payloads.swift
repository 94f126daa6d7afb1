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

extension Payloads {
    public static let eventSchema = "kilntally.event/1"

    /// The ledger record type events are stored under (tickets and reports are "ticket" and "report").
    public static let eventRecordType = "event"

    /// What is stored in the ledger for an event: a JSON object without its id, which the ledger's sequence number
    /// gives when it is stored (see `event(stored:seq:identity:)`).
    public static func eventBody(_ e: Event, identity: NodeIdentity) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("site", identity.site)
        w.field("node", identity.node)
        w.field("kind", e.kind.rawValue)
        w.field("severity", e.severity.rawValue)
        w.field("time", e.time.rfc3339)
        w.key("device")
        if let d = e.device { w.value(d.rawValue) } else { w.null() }
        w.field("message", e.message)
        w.key("attributes")
        w.beginObject()
        for k in e.attributes.keys.sorted() { w.field(k, e.attributes[k]!) }
        w.endObject()
        w.endObject()
        return w.bytes
    }

    /// The `events` payload of a stored event: its schema, id and ledger sequence number, then the stored fields.
    /// The id is stable (`{site}/{node}/event-{seq}`), so a hub drops the duplicates at-least-once delivery makes.
    public static func event(stored body: [UInt8], seq: UInt64, identity: NodeIdentity) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: body.count + 96)
        w.beginObject()
        w.field("schema", eventSchema)
        w.field("id", eventID(seq: seq, identity: identity))
        w.field("seq", seq)
        var out = w.bytes
        // The stored body is an object written by `eventBody`: its members follow.
        if body.count > 2, body.first == UInt8(ascii: "{") {
            out.append(UInt8(ascii: ","))
            out += body.dropFirst()
        } else {
            out.append(UInt8(ascii: "}"))
        }
        return out
    }

    public static func eventID(seq: UInt64, identity: NodeIdentity) -> String { "\(identity.site)/\(identity.node)/event-\(seq)" }
}
