import KilnTallyCore
import MQTTKit

/// Who this edge node is: the `{site}` and `{node}` levels of every topic.
public struct NodeIdentity: Sendable, Hashable {
    public var site: String
    public var node: String
    public init(site: String, node: String) {
        self.site = site
        self.node = node
    }
}

public struct UplinkConfig: Sendable {
    public var identity: NodeIdentity
    public var topicPrefix: String
    public var mqtt: MQTTConfiguration
    public var readingsQoS: MQTTQoS
    public var batchSize: Int
    public var batchInterval: Duration
    /// Readings per second at most while a backlog is replayed (0: no cap).
    public var replayRate: Int = 10_000

    public init(identity: NodeIdentity, topicPrefix: String, mqtt: MQTTConfiguration, readingsQoS: MQTTQoS, batchSize: Int,
                batchInterval: Duration, replayRate: Int = 10_000) {
        self.identity = identity
        self.topicPrefix = topicPrefix
        self.mqtt = mqtt
        self.readingsQoS = readingsQoS
        self.batchSize = batchSize
        self.batchInterval = batchInterval
        self.replayRate = replayRate
    }
}

extension UplinkConfig {
    /// The `[node]`, `[mqtt]` and `[uplink]` sections this module registers with the core config loader.
    public static var configSections: [ConfigKey] {
        [
            ConfigKey("node", .table(ConfigTable([
                ConfigKey("site", .string, required: true, doc: "Plant (site) id: the `{site}` topic level; [A-Za-z0-9_-]."),
                ConfigKey("name", .string, required: true, doc: "This edge node's id within the site: the `{node}` topic level; [A-Za-z0-9_-]."),
            ])), required: true, doc: "Identity of this edge node."),
            ConfigKey("mqtt", .table(ConfigTable([
                ConfigKey("host", .string, required: true, doc: "Broker host name or address."),
                ConfigKey("port", .integer(min: 1, max: 65535), default: .integer(1883), doc: "Broker port (8883 is usual with TLS)."),
                ConfigKey("client_id", .string, doc: "MQTT client id; `kilntally-{site}-{node}` when absent."),
                ConfigKey("keep_alive", .durationRange(min: .seconds(5), max: .seconds(65535)), default: .string("30s"), doc: "MQTT keep-alive interval, 5 s to 65535 s (libmosquitto's limits); the broker publishes the will after 1.5× this without traffic."),
                ConfigKey("protocol", .oneOf(["3.1.1", "5"]), default: .string("3.1.1"), doc: "MQTT protocol version."),
                ConfigKey("username", .string, doc: "User name, if the broker requires one."),
                ConfigKey("password", .string, doc: "Password for `username`."),
                ConfigKey("topic_prefix", .string, default: .string("kilntally"), doc: "First level of every topic; [A-Za-z0-9_-]."),
                ConfigKey("readings_qos", .integer(min: 0, max: 1), default: .integer(1), doc: "QoS of `readings` messages (tickets, reports, events and status are always QoS 1). With 0 the uplink cursor advances when a batch is written to the socket, so readings in flight when the connection drops are not re-sent."),
                ConfigKey("max_in_flight", .integer(min: 1, max: 65535), default: .integer(32), doc: "QoS 1 messages sent but not yet acknowledged, at most."),
                ConfigKey("reconnect_min", .duration, default: .string("500ms"), doc: "First reconnect delay after the connection is lost; doubles up to `reconnect_max`, with jitter."),
                ConfigKey("reconnect_max", .duration, default: .string("30s"), doc: "Longest reconnect delay."),
                ConfigKey("tls", .table(ConfigTable([
                    ConfigKey("ca_file", .string, required: true, doc: "PEM file of the CA that signed the broker's certificate."),
                    ConfigKey("cert_file", .string, doc: "PEM client certificate, for brokers that require one."),
                    ConfigKey("key_file", .string, doc: "PEM private key of `cert_file`."),
                    ConfigKey("verify_peer", .bool, default: .bool(true), doc: "Verify the broker's certificate chain and host name. Turn off only for a lab."),
                ])), doc: "TLS to the broker; plain TCP when absent."),
            ])), required: true, doc: "The MQTT broker of the regional hub."),
            ConfigKey("uplink", .table(ConfigTable([
                ConfigKey("batch_size", .integer(min: 1, max: 10000), default: .integer(200), doc: "Readings per `readings` message, at most."),
                ConfigKey("batch_interval", .duration, default: .string("1s"), doc: "How long readings gather before a `readings` message goes out."),
                ConfigKey("replay_rate", .integer(min: 0, max: 10_000_000), default: .integer(10_000), doc: "After an outage or a restart, the backlog of readings is replayed oldest first at most this many readings per second (0: no cap), protecting the hub; readings that arrive meanwhile go out at once."),
            ])), doc: "How readings are batched for the hub."),
        ]
    }

    public static func decode(_ root: ConfigReader) -> UplinkConfig? {
        guard let node = root.table("node"), let mqtt = root.table("mqtt") else { return nil }
        let site = node.string("site") ?? ""
        let name = node.string("name") ?? ""
        for (key, value) in [("site", site), ("name", name)] where !isPlainName(value) {
            node.error(key, "must be non-empty and use only A-Z a-z 0-9 _ - (it is an MQTT topic level)")
        }
        let prefix = mqtt.string("topic_prefix") ?? "kilntally"
        if !isPlainName(prefix) { mqtt.error("topic_prefix", "must be non-empty and use only A-Z a-z 0-9 _ -") }
        var c = MQTTConfiguration(clientID: mqtt.string("client_id") ?? "kilntally-\(site)-\(name)",
                                  host: mqtt.string("host") ?? "", port: Int(mqtt.int("port") ?? 1883))
        c.keepAlive = mqtt.duration("keep_alive") ?? .seconds(30)
        c.protocolVersion = mqtt.string("protocol") == "5" ? .v5 : .v311
        c.username = mqtt.string("username")
        c.password = mqtt.string("password")
        if c.password != nil && c.username == nil { mqtt.error("password", "a password needs a `username`") }
        c.maxInFlight = Int(mqtt.int("max_in_flight") ?? 32)
        c.reconnect.initial = mqtt.duration("reconnect_min") ?? .milliseconds(500)
        c.reconnect.maximum = mqtt.duration("reconnect_max") ?? .seconds(30)
        if c.reconnect.maximum < c.reconnect.initial { mqtt.error("reconnect_max", "must not be shorter than reconnect_min") }
        if let tls = mqtt.table("tls") {
            c.tls = MQTTTLS(caFile: tls.string("ca_file") ?? "", certFile: tls.string("cert_file"),
                            keyFile: tls.string("key_file"), verifyPeer: tls.bool("verify_peer") ?? true)
            if (tls.string("cert_file") == nil) != (tls.string("key_file") == nil) {
                tls.error(nil, "cert_file and key_file go together")
            }
        }
        let uplink = root.table("uplink")
        return UplinkConfig(
            identity: NodeIdentity(site: site, node: name), topicPrefix: prefix, mqtt: c,
            readingsQoS: mqtt.int("readings_qos") == 0 ? .atMostOnce : .atLeastOnce,
            batchSize: Int(uplink?.int("batch_size") ?? 200),
            batchInterval: uplink?.duration("batch_interval") ?? .seconds(1),
            replayRate: Int(uplink?.int("replay_rate") ?? 10_000))
    }
}

/// The topic tree of ARCHITECTURE.md's MQTT contract.
public struct TopicTree: Sendable, Hashable {
    public var base: String
    public init(prefix: String, identity: NodeIdentity) { base = "\(prefix)/\(identity.site)/\(identity.node)" }
    public var status: String { base + "/status" }
    public var readings: String { base + "/readings" }
    public var tickets: String { base + "/tickets" }
    public var events: String { base + "/events" }
    public var shiftsLast: String { base + "/shifts/last" }
    public var shiftsCurrent: String { base + "/shifts/current" }
    public func shift(date: String, name: String) -> String { base + "/shifts/\(date)/\(name)" }
}
