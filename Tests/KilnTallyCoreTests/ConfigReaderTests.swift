import Testing
@testable import KilnTallyCore

/// A realistic file: comments, blank lines, indentation, quoted and dotted keys, multi-line arrays and strings
/// whose contents look like headers and key-value lines.
let realisticConfig = #"""
    # kilntally.toml - plant north, edge node 1
    [site]
    name = "north"          # used in topics
    node = 'edge-1'

    [mqtt]
    host = "broker.plant.example"
    port = 8883
    keepalive = "45s"
      [mqtt.tls]
      ca_file = "/etc/kilntally/ca.pem"

    [store]
    max_bytes = "1GiB"
    flush_interval = "0s"

    [[bus]]
    name = "line1"
    kind = "tcp"
    host = "10.0.0.5"

    [[bus]]
    name = "rs485"
    kind = "rtu"
    baud_rate = 19200
    timeout = "1h30m"    # long, but valid

    [[device]]
    id = "wb-north"
    bus = "line1"
    unit_id = 3
    tags = [
      "weighbridge",
      "[[device]]",      # a string that looks like a header
      """
      multi "line" \"""
    key = "value"
    [[device.channel]]
      """,
    ]
    poll_interval = "250ms"

    [[device.channel]]
    name = "gross"
    type = "int32"
    address = 0
    unit = "kg"

    [[device.channel]]
    name = "status"
    type = "uint16"
    address = 2
    limits = { min = 0, max = 65535 }

    [device.modbus]
    word_order = "little"

    [[device]]
    id = "belt1"
    bus = "rs485"
    "unit_id" = 7
    channel = [
      { name = "rate", type = "float32", address = 0, unit = "t/h" },
      { name = "total", type = "float64", address = 2, unit = "t", scale = 0.001 },
    ]

    [[device]]
    id = "belt2"
    bus = "rs485"
    modbus.max_registers = 60
    tags = ['''
    literal [[x]]
    key = 1
    ''', "a#b"]

    [[device.channel]]
    name = "speed"
    type = "float32"
    address = 10
    unit = "m/s"
    """#

/// The 1-based line of the `occurrence`-th line of `text` that is exactly `content`.
func lineNumber(of content: String, occurrence: Int = 1, in text: String = realisticConfig) -> Int {
    var seen = 0
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where line == content {
        seen += 1
        if seen == occurrence { return n + 1 }
    }
    preconditionFailure("no line \(content) (\(occurrence)) in the text")
}

@Suite("Config readers")
struct ConfigReaderTests {
    let document: ConfigDocument
    let diagnostics: ConfigDiagnostics
    let root: ConfigReader

    init() throws {
        document = try Fixture.loader.load(text: realisticConfig, file: "plant.toml")
        diagnostics = ConfigDiagnostics(document: document)
        root = ConfigReader(document: document, diagnostics: diagnostics)
    }

    @Test func valuesAndDefaults() throws {
        let site = try #require(root.table("site"))
        #expect(site.string("name") == "north")
        #expect(site.string("node") == "edge-1")

        let mqtt = try #require(root.table("mqtt"))
        #expect(mqtt.path.description == "mqtt")
        #expect(mqtt.int("port") == 8883)
        #expect(mqtt.int("qos") == 1)  // default
        #expect(mqtt.has("port"))
        #expect(!mqtt.has("qos"))
        #expect(mqtt.duration("keepalive") == .seconds(45))
        #expect(mqtt.string("keepalive") == "45s")
        let tls = try #require(mqtt.table("tls"))
        #expect(tls.string("ca_file") == "/etc/kilntally/ca.pem")
        #expect(tls.bool("verify") == true)  // default

        let store = try #require(root.table("store"))
        #expect(store.byteSize("max_bytes") == 1_073_741_824)
        #expect(store.byteSize("segment_bytes") == 65536)  // default "64KiB"
        #expect(store.duration("flush_interval") == .zero)
        #expect(store.double("retention_years") == 5)  // default, an integer accepted as a float

        let buses = root.tables("bus")
        #expect(buses.map(\.path.description) == ["bus[0]", "bus[1]"])
        #expect(buses[0].int("port") == 502)
        #expect(buses[0].int("baud_rate") == 9600)
        #expect(buses[1].int("baud_rate") == 19200)
        #expect(buses[1].duration("timeout") == .seconds(5400))
        #expect(buses[1].string("host") == nil)  // optional, no default

        let devices = root.tables("device")
        #expect(devices.map { $0.string("id") } == ["wb-north", "belt1", "belt2"])
        #expect(devices.map { $0.int("unit_id") } == [3, 7, 1])
        #expect(devices.map { $0.duration("poll_interval") } == [.milliseconds(250), .seconds(1), .seconds(1)])
        #expect(devices[0].strings("tags")?.count == 3)
        #expect(devices[1].strings("tags") == [])
        #expect(devices[2].strings("tags")?.last == "a#b")
        // An absent table with a default reads as empty, so its keys' defaults apply.
        #expect(devices.map { $0.table("modbus")?.string("word_order") } == ["little", "big", "big"])
        #expect(devices.map { $0.table("modbus")?.int("max_registers") } == [125, 125, 60])
        #expect(!devices[1].has("modbus"))

        let channels = devices[1].tables("channel")
        #expect(channels.map(\.path.description) == ["device[1].channel[0]", "device[1].channel[1]"])
        #expect(channels.map { $0.double("scale") } == [1.0, 0.001])
        #expect(channels.map { $0.value("unit", as: Unit.self) } == [.tonnePerHour, .tonne])
        #expect(devices[0].tables("channel")[1].table("limits")?.double("max") == 65535)
        #expect(devices[0].tables("channel")[0].table("limits") == nil)  // optional, no default
        #expect(devices[2].tables("channel").map { $0.string("unit") } == ["m/s"])
        #expect(diagnostics.all.isEmpty)
    }

    @Test func readerLinesAndErrors() throws {
        let device = root.tables("device")[1]
        #expect(device.line(of: nil) == lineNumber(of: "[[device]]", occurrence: 2))
        #expect(device.line(of: "unit_id") == lineNumber(of: "\"unit_id\" = 7"))
        // Absent keys fall back to the table's line.
        #expect(device.line(of: "poll_interval") == lineNumber(of: "[[device]]", occurrence: 2))
        device.tables("channel")[1].error("scale", "scale must be positive")
        #expect(
            diagnostics.all.map(\.description) == [
                "plant.toml:\(lineNumber(of: "  { name = \"total\", type = \"float64\", address = 2, unit = \"t\", scale = 0.001 },")): device[1].channel[1].scale: scale must be positive"
            ])
    }

    @Test func absentOptionalTableWithoutDefaultIsNil() throws {
        let doc = try Fixture.loader.load(text: Fixture.header + "[mqtt]\nhost = \"b\"\n", file: "f")
        let root = ConfigReader(document: doc, diagnostics: ConfigDiagnostics(document: doc))
        #expect(root.table("mqtt")?.table("tls") == nil)
        #expect(root.tables("device").isEmpty)
        #expect(root.table("store")?.byteSize("max_bytes") == 536_870_912)
        #expect(root.presentKeys == ["mqtt", "site"])
    }

    @Test func documentBasics() throws {
        #expect(document.file == "plant.toml")
        #expect(document.text == realisticConfig)
        #expect(document.contentHash == ConfigUnits.fnv1a64Hex(realisticConfig.utf8))
        #expect(document.contentHash.count == 16)
        #expect(document.value(at: ConfigPath(keys: "device").appending(index: 2).appending("id")) == "belt2")
        #expect(document.value(at: ConfigPath(keys: "device").appending(index: 9)) == nil)
    }

    @Test func loadingARealFile() throws {
        let directory = try TempDir()
        defer { directory.remove() }
        let path = try directory.writeFile("kilntally.toml", text: realisticConfig)
        let doc = try Fixture.loader.load(file: path)
        #expect(doc.file == path)
        #expect(doc.text == realisticConfig)
        #expect(doc.contentHash == document.contentHash)
        #expect(doc.root == document.root)
    }

    @Test func readingAKeyNotInTheSchemaIsAProgrammerError() async {
        await #expect(processExitsWith: .failure) {
            let doc = try Fixture.loader.load(text: Fixture.header, file: "f")
            let root = ConfigReader(document: doc, diagnostics: ConfigDiagnostics(document: doc))
            _ = root.table("site")?.string("nmae")
        }
    }
}

@Suite("Config units and paths")
struct ConfigUnitsTests {
    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)), ("1.5s", .milliseconds(1500)), ("2s", .seconds(2)),
        ("5m", .seconds(300)), ("1h", .seconds(3600)), ("1h30m", .seconds(5400)), ("1d", .seconds(86400)),
        ("100us", .microseconds(100)), ("10ns", .nanoseconds(10)), ("0.5ms", .microseconds(500)),
        ("1m30s", .seconds(90)), ("0s", .zero),
    ])
    func durations(_ text: String, _ expected: Duration) {
        #expect(ConfigUnits.parseDuration(text) == expected)
    }

    @Test(arguments: ["", "5", "s", "1.s", ".5s", "-1s", "1 s", "1hh", "5M", "1h 30m", "99999999999999h"])
    func invalidDurations(_ text: String) {
        #expect(ConfigUnits.parseDuration(text) == nil)
    }

    @Test(arguments: [
        ("512MiB", Int64(536_870_912)), ("1GiB", 1_073_741_824), ("64KiB", 65536), ("1000000", 1_000_000),
        ("1kB", 1000), ("1KB", 1000), ("1.5GB", 1_500_000_000), ("4 kB", 4000), ("2TiB", 2_199_023_255_552),
        ("1B", 1), ("0.5KiB", 512),
    ])
    func byteSizes(_ text: String, _ expected: Int64) {
        #expect(ConfigUnits.parseByteSize(text) == expected)
    }

    @Test(arguments: ["", "MiB", "1 ", "1.5B", "12 parsecs", "-1", "1 MiB ", "1  MiB", "1mb", "99999999999TiB"])
    func invalidByteSizes(_ text: String) {
        #expect(ConfigUnits.parseByteSize(text) == nil)
    }

    @Test func formatting() {
        #expect(ConfigUnits.formatDuration(.seconds(5400)) == "1h30m")
        #expect(ConfigUnits.formatDuration(.milliseconds(250)) == "250ms")
        #expect(ConfigUnits.formatDuration(.milliseconds(1500)) == "1s500ms")
        #expect(ConfigUnits.formatDuration(.zero) == "0s")
        #expect(ConfigUnits.parseDuration(ConfigUnits.formatDuration(.nanoseconds(3_723_004_005_006))) == .nanoseconds(3_723_004_005_006))
        #expect(ConfigUnits.formatByteSize(512 << 20) == "512MiB")
        #expect(ConfigUnits.formatByteSize(1_000_000_000) == "1GB")
        #expect(ConfigUnits.formatByteSize(1001) == "1001")
    }

    @Test func contentHashIsFNV1a64() {
        #expect(ConfigUnits.fnv1a64Hex("".utf8) == "cbf29ce484222325")
        #expect(ConfigUnits.fnv1a64Hex("a".utf8) == "af63dc4c8601ec8c")
        #expect(ConfigUnits.fnv1a64Hex("foobar".utf8) == "85944171f73967e8")
    }

    @Test(arguments: [
        ("tyep", ["name", "type", "address"], "type"), ("adress", ["name", "type", "address"], "address"),
        ("pollInterval", ["poll_interval", "unit_id"], "poll_interval"), ("hots", ["host", "port"], "host"),
        ("xyz", ["host", "port"], nil), ("colour", ["host", "port", "keepalive"], nil),
    ] as [(String, [String], String?)])
    func suggestions(_ word: String, _ candidates: [String], _ expected: String?) {
        #expect(ConfigUnits.suggestion(for: word, among: candidates) == expected)
    }

    @Test func pathDescriptionQuotesKeysThatAreNotBare() {
        let p = ConfigPath(keys: "device").appending(index: 2).appending("channel").appending(index: 0).appending("type")
        #expect(p.description == "device[2].channel[0].type")
        #expect(ConfigPath(keys: "mqtt", "odd key").description == "mqtt.\"odd key\"")
        #expect(ConfigPath(keys: "a.b", "c").description == "\"a.b\".c")
        #expect(ConfigPath(keys: "say \"hi\"").description == #""say \"hi\"""#)
        #expect(ConfigPath(keys: "").description == "\"\"")
        #expect(ConfigPath(keys: "größe").description == "\"größe\"")
        #expect(ConfigPath(keys: "bare-key_1").description == "bare-key_1")
        #expect(ConfigPath().description == "")
        #expect(ConfigPath([.index(0)]).description == "[0]")
    }

    @Test func pathOrder() {
        let paths = [
            ConfigPath(keys: "device").appending(index: 10), ConfigPath(keys: "device").appending(index: 2),
            ConfigPath(keys: "bus"), ConfigPath(keys: "device"),
        ]
        #expect(paths.sorted().map(\.description) == ["bus", "device", "device[2]", "device[10]"])
    }

    @Test func schemaKeyLookup() {
        let p = ConfigPath(keys: "device").appending(index: 1).appending("channel").appending(index: 0).appending("type")
        #expect(Fixture.schema.key(at: p)?.name == "type")
        #expect(Fixture.schema.key(at: ConfigPath(keys: "mqtt", "tls", "verify"))?.name == "verify")
        #expect(Fixture.schema.key(at: ConfigPath(keys: "mqtt", "nope")) == nil)
    }

    @Test func markdownReferenceListsEveryKey() {
        let md = Fixture.schema.markdownReference()
        func paths(_ keys: [ConfigKey], _ prefix: String) -> [String] {
            keys.flatMap { k -> [String] in
                let path = prefix + k.name
                switch k.type {
                case .table(let t): return [path] + paths(t.keys, path + ".")
                case .arrayOfTables(let t): return [path + "[]"] + paths(t.keys, path + "[].")
                default: return [path]
                }
            }
        }
        let all = paths(Fixture.schema.sections, "")
        #expect(all.count == 41)
        for p in all { #expect(md.contains("| `\(p)` |"), "missing \(p)") }
        #expect(md.contains("## `[[device]]`"))
        #expect(md.contains("## `[mqtt]`"))
        #expect(md.contains("| `mqtt.host` | string | **required** | Broker host name or address. |"))
        #expect(md.contains("| `mqtt.port` | integer (1 to 65535) | default `1883` | Broker TCP port. |"))
        #expect(md.contains("| `store.max_bytes` | byte size (> 0) | default `\"512MiB\"` |"))
        #expect(md.contains("| `device[].channel[].type` | one of `bool`, `int16`"))
        #expect(md.contains("| `store` | table | optional (defaults apply when absent) |"))
    }

    @Test func invalidSchemaKeyIsAProgrammerError() async {
        await #expect(processExitsWith: .failure) {
            _ = ConfigKey("pollInterval", .duration, doc: "Not snake_case.")
        }
        await #expect(processExitsWith: .failure) {
            _ = ConfigKey("poll_interval", .duration, default: "soon", doc: "A default that doesn't fit.")
        }
    }
}
