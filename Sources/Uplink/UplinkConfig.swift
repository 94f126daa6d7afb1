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
                ConfigKey("username", .string, doc: "User name, if the broker requires one (on a kilntally hub: the site id, docs/HUB.md)."),
                ConfigKey("password_file", .string, doc: "File (an absolute path) whose first line (without the line end) is the password for `username`, read when the daemon starts its MQTT client (if it cannot be read, the error names the file and the daemon retries every 10 s, polling and storing meanwhile). Keep it readable only by the daemon (mode 0600). Preferred to `password`."),
                ConfigKey("password", .string, secret: true, doc: "Password for `username`, written in the configuration itself. Discouraged: the configuration file is often readable by more people than the daemon, and its text (password included) is hashed into the `config_hash` published in the status; use `password_file`. Not with `password_file`."),
                ConfigKey("topic_prefix", .string, default: .string("kilntally"), doc: "First level of every topic; [A-Za-z0-9_-]."),
                ConfigKey("readings_qos", .integer(min: 0, max: 1), default: .integer(1), doc: "QoS of `readings` messages (tickets, reports, events and status are always QoS 1). With 0 the uplink cursor advances when a batch is written to the socket, so readings in flight when the connection drops are not re-sent."),
                ConfigKey("max_in_flight", .integer(min: 1, max: 65535), default: .integer(32), doc: "QoS 1 messages sent but not yet acknowledged, at most."),
                ConfigKey("reconnect_min", .duration, default: .string("500ms"), doc: "First reconnect delay after the connection is lost; doubles up to `reconnect_max`, with jitter."),
                ConfigKey("reconnect_max", .duration, default: .string("30s"), doc: "Longest reconnect delay."),
                ConfigKey("tls", .table(ConfigTable([
                    ConfigKey("ca_file", .string, required: true, doc: "PEM file of the CA that signed the broker's certificate."),
                    ConfigKey("cert_file", .string, doc: "PEM client certificate, for brokers that require one."),
                    ConfigKey("key_file", .string, doc: "PEM private key of `cert_file`."),
                    ConfigKey("insecure_skip_verify", .bool, default: .bool(false), doc: "Accept any certificate from the broker: neither its chain nor its host name is checked, so anyone on the path can pose as the hub. Only for a lab; the daemon logs a warning at every start while it is true."),
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
        c.passwordFile = mqtt.string("password_file")
        if c.password != nil && c.passwordFile != nil {
            mqtt.error("password_file", "give either `password` or `password_file`, not both")
        }
        if (c.password != nil || c.passwordFile != nil) && c.username == nil {
            mqtt.error(c.password != nil ? "password" : "password_file", "a password needs a `username`")
        }
        c.maxInFlight = Int(mqtt.int("max_in_flight") ?? 32)
        c.reconnect.initial = mqtt.duration("reconnect_min") ?? .milliseconds(500)
        c.reconnect.maximum = mqtt.duration("reconnect_max") ?? .seconds(30)
        if c.reconnect.maximum < c.reconnect.initial { mqtt.error("reconnect_max", "must not be shorter than reconnect_min") }
        if let tls = mqtt.table("tls") {
            c.tls = MQTTTLS(caFile: tls.string("ca_file") ?? "", certFile: tls.string("cert_file"),
                            keyFile: tls.string("key_file"), verifyPeer: !(tls.bool("insecure_skip_verify") ?? false))
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

extension UplinkConfig {
    /// Warnings the daemon logs at every start: settings that weaken the link to the hub.
    public var startWarnings: [String] {
        var out: [String] = []
        if let tls = mqtt.tls, !tls.verifyPeer {
            out.append("[mqtt.tls] insecure_skip_verify is true: the broker's certificate is not verified, so anyone on the network path can pose as the hub and read the plant's data and MQTT password")
        }
        if mqtt.tls == nil && (mqtt.password != nil || mqtt.passwordFile != nil) {
            out.append("[mqtt] has a password but no [mqtt.tls]: the password and all data cross the network unencrypted")
        }
        return out
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
