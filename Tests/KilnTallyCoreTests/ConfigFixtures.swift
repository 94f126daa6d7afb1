import KilnTallyCore

/// A schema shaped like the real one (site, mqtt, store, buses, devices with channels), registered the way modules do.
enum Fixture {
    static let channelTypes = ["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]

    static let schema: ConfigSchema = {
        var s = ConfigSchema()
        s.register(contentsOf: coreSections())
        s.register(contentsOf: acquisitionSections())
        return s
    }()

    static let loader = ConfigLoader(schema: schema)

    static func coreSections() -> [ConfigKey] {
        [
            ConfigKey(
                "site",
                .table(ConfigTable([
                    ConfigKey("name", .string, required: true, doc: "The plant's name, used as `{site}` in topics."),
                    ConfigKey("node", .string, default: "edge1", doc: "This edge node's name, used as `{node}`."),
                ])),
                required: true, doc: "Where this node runs."),
            ConfigKey(
                "mqtt",
                .table(ConfigTable([
                    ConfigKey("host", .string, required: true, doc: "Broker host name or address."),
                    ConfigKey("port", .integer(min: 1, max: 65535), default: 1883, doc: "Broker TCP port."),
                    ConfigKey("keepalive", .duration, default: "30s", doc: "MQTT keep-alive interval."),
                    ConfigKey("qos", .integer(min: 0, max: 2), default: 1, doc: "QoS of reading batches."),
                    ConfigKey(
                        "tls",
                        .table(ConfigTable([
                            ConfigKey("ca_file", .string, doc: "CA bundle that signs the broker's certificate."),
                            ConfigKey("verify", .bool, default: true, doc: "Whether to verify the broker's name."),
                        ])),
                        doc: "TLS settings; absent means plain TCP."),
                ])),
                doc: "The MQTT uplink."),
            ConfigKey(
                "store",
                .table(ConfigTable([
                    ConfigKey("max_bytes", .byteSize, default: "512MiB", doc: "Bound of the reading store."),
                    ConfigKey(
                        "segment_bytes", .byteSizeRange(min: 4096, max: 1 << 30), default: "64KiB",
                        doc: "Size of one segment file."),
                    ConfigKey(
                        "flush_interval", .durationRange(min: .zero, max: .seconds(60)), default: "250ms",
                        doc: "How often buffered readings are flushed; 0s flushes every reading."),
                    ConfigKey("retention_years", .float(min: 5), default: 5, doc: "How long the ledger is kept."),
                ])),
                default: [:], doc: "The local stores."),
        ]
    }

    static func acquisitionSections() -> [ConfigKey] {
        [
            ConfigKey(
                "bus",
                .arrayOfTables(ConfigTable([
                    ConfigKey("name", .string, required: true, doc: "Name devices refer to."),
                    ConfigKey("kind", .oneOf(["tcp", "rtu"]), required: true, doc: "Modbus TCP or RTU."),
                    ConfigKey("host", .string, doc: "TCP host."),
                    ConfigKey("port", .integer(min: 1, max: 65535), default: 502, doc: "TCP port."),
                    ConfigKey("baud_rate", .integer(min: 1200, max: 115_200), default: 9600, doc: "RTU speed."),
                    ConfigKey("timeout", .duration, default: "1s", doc: "Response timeout."),
                ])),
                doc: "Modbus buses."),
            ConfigKey(
                "device",
                .arrayOfTables(ConfigTable([
                    ConfigKey("id", .string, required: true, doc: "Device id."),
                    ConfigKey("bus", .string, required: true, doc: "Name of the bus the device is on."),
                    ConfigKey("unit_id", .integer(min: 1, max: 247), default: 1, doc: "Modbus unit id."),
                    ConfigKey("poll_interval", .duration, default: "1s", doc: "How often it is polled."),
                    ConfigKey("tags", .array(.string), default: [], doc: "Free-form labels."),
                    ConfigKey(
                        "modbus",
                        .table(ConfigTable([
                            ConfigKey(
                                "word_order", .oneOf(["big", "little"]), default: "big",
                                doc: "Order of 16-bit words in 32-bit values."),
                            ConfigKey(
                                "max_registers", .integer(min: 1, max: 125), default: 125,
                                doc: "Largest read request."),
                        ])),
                        default: [:], doc: "Modbus details."),
                    ConfigKey(
                        "channel",
                        .arrayOfTables(ConfigTable([
                            ConfigKey("name", .string, required: true, doc: "Channel id."),
                            ConfigKey("type", .oneOf(channelTypes), required: true, doc: "Register data type."),
                            ConfigKey("address", .integer(min: 0, max: 65535), required: true, doc: "First register."),
                            ConfigKey(
                                "unit", .oneOf(Unit.allCases.map(\.rawValue)), default: "none",
                                doc: "Engineering unit."),
                            ConfigKey("scale", .float(), default: 1.0, doc: "Factor applied to the raw value."),
                            ConfigKey(
                                "limits",
                                .table(ConfigTable([
                                    ConfigKey("min", .float(), doc: "Lowest plausible value."),
                                    ConfigKey("max", .float(), doc: "Highest plausible value."),
                                ])),
                                doc: "Plausibility limits."),
                        ])),
                        doc: "What is read from the device."),
                ])),
                doc: "Modbus devices."),
        ]
    }

    /// A valid file's beginning, to which a test appends the part it is about (so line numbers start at 4).
    /// Top-level keys appended after it stay top-level.
    static let header = "site = { name = \"north\" }\n\n\n"

    /// Loads text that must fail; returns its diagnostics (in report order).
    static func errors(_ text: String, file: String = "/etc/kilntally/kilntally.toml") -> [ConfigDiagnostic] {
        do {
            _ = try loader.load(text: text, file: file)
            return []
        } catch {
            return error.diagnostics
        }
    }
}
