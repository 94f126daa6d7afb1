import Testing
@testable import KilnTallyCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One file (after `Fixture.header`, so its first line is line 4) and the diagnostic it must produce.
struct ErrorCase: Sendable, CustomTestStringConvertible {
    var name: String
    var toml: String
    var path: String
    var line: Int?
    var message: String
    /// How many diagnostics the file produces in all (so a case can't hide stray errors).
    var count = 1

    var testDescription: String { name }
}

private let file = "/etc/kilntally/kilntally.toml"

private func check(_ c: ErrorCase) throws {
    let diagnostics = Fixture.errors(Fixture.header + c.toml, file: file)
    let all = diagnostics.map(\.description).joined(separator: "\n")
    let d = try #require(diagnostics.first { $0.path?.description == c.path }, "no diagnostic at \(c.path) in:\n\(all)")
    #expect(d.message == c.message)
    #expect(d.line == c.line)
    #expect(d.column == nil)
    #expect(d.file == file)
    #expect(diagnostics.count == c.count, "\(all)")
    let location = c.line.map { ":\($0)" } ?? ""
    #expect(d.description == "\(file)\(location): \(c.path): \(c.message)")
}

/// Two buses and the start of two devices; the second device is open at its end (line 16 is its `[[device]]`).
private let twoDevices = """
    [[bus]]
    name = "line1"
    kind = "tcp"

    [[device]]
    id = "belt1"
    bus = "line1"

    [[device]]
    id = "belt2"
    bus = "line1"

    [[device.channel]]
    name = "rate"

    """

@Suite("Config errors")
struct ConfigErrorTests {
    @Test func syntaxErrorHasLineAndColumn() {
        let diagnostics = Fixture.errors(Fixture.header + "[mqtt]\nhost = \n", file: file)
        #expect(diagnostics.count == 1)
        let d = diagnostics[0]
        #expect(d.path == nil)
        #expect(d.line == 5)
        #expect(d.column == 8)
        #expect(d.message.hasPrefix("TOML syntax error: "))
        #expect(d.description.hasPrefix("\(file):5:8: TOML syntax error: "))
    }

    @Test func duplicateKeyIsASyntaxErrorAtTheSecondDefinition() {
        let diagnostics = Fixture.errors(Fixture.header + "[mqtt]\nhost = \"a\"\nhost = \"b\"\n", file: file)
        #expect(diagnostics.count == 1)
        #expect(diagnostics.first?.line == 6)
        #expect(diagnostics.first?.message.contains("redefine") == true)
    }

    @Test func nulCharacterIsASyntaxError() {
        let diagnostics = Fixture.errors(Fixture.header + "[mqtt]\nhost = \"a\u{0}b\"\n", file: file)
        #expect(diagnostics.map(\.line) == [5])
        #expect(diagnostics.map(\.column) == [10])
    }

    static let unknownKeys: [ErrorCase] = [
        ErrorCase(
            name: "top-level table", toml: "[mqqt]\nhost = \"broker\"\n", path: "mqqt", line: 4,
            message: "unknown key (did you mean \"mqtt\"?)"),
        ErrorCase(
            name: "top-level dotted key", toml: "stie.name = \"x\"\n", path: "stie", line: 4,
            message: "unknown key (did you mean \"site\"?)"),
        ErrorCase(
            name: "nested in a table", toml: "[mqtt]\nhost = \"broker\"\nprot = 1883\n", path: "mqtt.prot", line: 6,
            message: "unknown key (did you mean \"port\"?)"),
        ErrorCase(
            name: "nested, no close match", toml: "[mqtt]\nhost = \"broker\"\ncolour = \"red\"\n",
            path: "mqtt.colour", line: 6, message: "unknown key (valid keys: host, port, keepalive, qos, tls)"),
        ErrorCase(
            name: "snake_case slip", toml: "[mqtt]\nhost = \"broker\"\nkeepAlive = \"5s\"\n",
            path: "mqtt.keepAlive", line: 6, message: "unknown key (did you mean \"keepalive\"?)"),
        ErrorCase(
            name: "inside [[device.channel]]", toml: twoDevices + "tyep = \"float32\"\naddress = 0\n",
            path: "device[1].channel[0].tyep", line: 18, message: "unknown key (did you mean \"type\"?)", count: 2),
        ErrorCase(
            name: "quoted key", toml: "[mqtt]\nhost = \"broker\"\n\"odd key\" = 1\n", path: "mqtt.\"odd key\"",
            line: 6, message: "unknown key (valid keys: host, port, keepalive, qos, tls)"),
    ]

    @Test(arguments: unknownKeys) func unknownKey(_ c: ErrorCase) throws { try check(c) }

    @Test func unknownKeyInsideChannelAlsoReportsTheMissingKey() {
        let diagnostics = Fixture.errors(Fixture.header + twoDevices + "tyep = \"float32\"\naddress = 0\n", file: file)
        #expect(
            diagnostics.map(\.description) == [
                "\(file):16: device[1].channel[0].type: required key is missing",
                "\(file):18: device[1].channel[0].tyep: unknown key (did you mean \"type\"?)",
            ])
    }

    static let wrongTypes: [ErrorCase] = [
        ErrorCase(
            name: "string for integer", toml: "[mqtt]\nhost = \"broker\"\nport = \"1883\"\n", path: "mqtt.port",
            line: 6, message: "expected an integer between 1 and 65535 but found \"1883\""),
        ErrorCase(
            name: "integer for string", toml: "[mqtt]\nhost = 5\n", path: "mqtt.host", line: 5,
            message: "expected a string but found integer 5"),
        ErrorCase(
            name: "float for integer", toml: "[mqtt]\nhost = \"b\"\nqos = 1.5\n", path: "mqtt.qos", line: 6,
            message: "expected an integer between 0 and 2 but found float 1.5"),
        ErrorCase(
            name: "string for boolean", toml: "[mqtt]\nhost = \"b\"\n\n[mqtt.tls]\nverify = \"yes\"\n",
            path: "mqtt.tls.verify", line: 8, message: "expected a boolean (true or false) but found \"yes\""),
        ErrorCase(
            name: "string for float", toml: twoDevices + "type = \"int16\"\naddress = 0\nscale = \"x\"\n",
            path: "device[1].channel[0].scale", line: 20, message: "expected a number but found \"x\""),
        ErrorCase(
            name: "table for array of tables", toml: "[device]\nid = \"belt1\"\nbus = \"line1\"\n", path: "device",
            line: 4, message: "expected an array of tables ([[device]], not [device]) but found a table"),
        ErrorCase(
            name: "array of tables for table", toml: "[[mqtt]]\nhost = \"broker\"\n", path: "mqtt", line: 4,
            message: "expected a table ([mqtt], not [[mqtt]]) but found an array"),
        ErrorCase(
            name: "scalar for table", toml: "mqtt = \"broker\"\n", path: "mqtt", line: 4,
            message: "expected a table but found \"broker\""),
        ErrorCase(
            name: "array element", toml: "[[bus]]\nname = \"l\"\nkind = \"tcp\"\n[[device]]\nid = \"a\"\nbus = \"l\"\n"
                + "tags = [\"belt\",\n  2]\n",
            path: "device[0].tags[1]", line: 11, message: "expected a string but found integer 2"),
        ErrorCase(
            name: "scalar for array", toml: "[[device]]\nid = \"a\"\nbus = \"l\"\ntags = \"belt\"\n",
            path: "device[0].tags", line: 7, message: "expected an array of strings but found \"belt\""),
        ErrorCase(
            name: "date-time for string", toml: "[mqtt]\nhost = 1979-05-27T07:32:00Z\n", path: "mqtt.host", line: 5,
            message: "expected a string but found date-time 1979-05-27T07:32:00Z"),
    ]

    @Test(arguments: wrongTypes) func wrongType(_ c: ErrorCase) throws { try check(c) }

    static let missingKeys: [ErrorCase] = [
        ErrorCase(
            name: "in a table: line of its header", toml: "\n[mqtt]\nport = 1883\n", path: "mqtt.host", line: 5,
            message: "required key is missing"),
        ErrorCase(
            name: "in the second [[device]]",
            toml: "[[bus]]\nname = \"l\"\nkind = \"tcp\"\n[[device]]\nid = \"a\"\nbus = \"l\"\n[[device]]\nid = \"b\"\n",
            path: "device[1].bus", line: 10, message: "required key is missing"),
        ErrorCase(
            name: "in [[device.channel]]", toml: twoDevices + "type = \"int16\"\n", path: "device[1].channel[0].address",
            line: 16, message: "required key is missing"),
        ErrorCase(
            name: "in an inline array of tables",
            toml: "[[device]]\nid = \"a\"\nbus = \"l\"\nchannel = [\n  { name = \"x\", address = 0 },\n]\n",
            path: "device[0].channel[0].type", line: 8, message: "required key is missing"),
        ErrorCase(
            name: "in a table defined by dotted keys", toml: "mqtt.port = 1883\n", path: "mqtt.host", line: 4,
            message: "required key is missing"),
    ]

    @Test(arguments: missingKeys) func missingRequiredKey(_ c: ErrorCase) throws { try check(c) }

    @Test func missingRequiredSectionHasNoLine() {
        let diagnostics = Fixture.errors("[mqtt]\nhost = \"broker\"\n", file: file)
        #expect(diagnostics.map(\.description) == ["\(file): site: required key is missing"])
        #expect(diagnostics.first?.line == nil)
    }

    @Test func requiredKeyOfADefaultedAbsentTableIsReportedWithoutALine() {
        var schema = ConfigSchema()
        schema.register(
            ConfigKey(
                "mqtt", .table(ConfigTable([ConfigKey("host", .string, required: true, doc: "Broker.")])),
                default: [:], doc: "Uplink."))
        do {
            _ = try ConfigLoader(schema: schema).load(text: "# nothing\n", file: file)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "\(file): mqtt.host: required key is missing")
        }
    }

    static let outOfRange: [ErrorCase] = [
        ErrorCase(
            name: "above max", toml: "[[device]]\nid = \"a\"\nbus = \"l\"\nunit_id = 300\n", path: "device[0].unit_id",
            line: 7, message: "expected an integer between 1 and 247 but found 300"),
        ErrorCase(
            name: "below min", toml: "[mqtt]\nhost = \"b\"\nport = 0\n", path: "mqtt.port", line: 6,
            message: "expected an integer between 1 and 65535 but found 0"),
        ErrorCase(
            name: "float below min", toml: "[store]\nretention_years = 2\n", path: "store.retention_years", line: 5,
            message: "expected a number of at least 5 but found 2"),
        ErrorCase(
            name: "float nan", toml: "[store]\nretention_years = nan\n", path: "store.retention_years", line: 5,
            message: "expected a number of at least 5 but found nan"),
    ]

    @Test(arguments: outOfRange) func integerOrFloatOutOfRange(_ c: ErrorCase) throws { try check(c) }

    static let oneOfCases: [ErrorCase] = [
        ErrorCase(
            name: "no close match", toml: twoDevices + "type = \"floot\"\naddress = 0\n",
            path: "device[1].channel[0].type", line: 18,
            message: "expected one of bool, int16, uint16, int32, uint32, float32, float64 but found \"floot\""),
        ErrorCase(
            name: "transposition", toml: twoDevices + "type = \"flaot32\"\naddress = 0\n",
            path: "device[1].channel[0].type", line: 18,
            message:
                "expected one of bool, int16, uint16, int32, uint32, float32, float64 but found \"flaot32\" (did you mean \"float32\"?)"
        ),
        ErrorCase(
            name: "case", toml: "[[bus]]\nname = \"l\"\nkind = \"TCP\"\n", path: "bus[0].kind", line: 6,
            message: "expected one of tcp, rtu but found \"TCP\" (did you mean \"tcp\"?)"),
        ErrorCase(
            name: "not a string", toml: "[[bus]]\nname = \"l\"\nkind = 1\n", path: "bus[0].kind", line: 6,
            message: "expected one of tcp, rtu but found integer 1"),
    ]

    @Test(arguments: oneOfCases) func oneOfViolation(_ c: ErrorCase) throws { try check(c) }

    static let durations: [ErrorCase] = [
        ErrorCase(
            name: "words", toml: "[mqtt]\nhost = \"b\"\nkeepalive = \"5 minutes\"\n", path: "mqtt.keepalive", line: 6,
            message: "expected a duration such as \"250ms\", \"1.5s\", \"5m\" or \"1h30m\" but found \"5 minutes\""),
        ErrorCase(
            name: "no unit", toml: "[mqtt]\nhost = \"b\"\nkeepalive = \"30\"\n", path: "mqtt.keepalive", line: 6,
            message: "expected a duration such as \"250ms\", \"1.5s\", \"5m\" or \"1h30m\" but found \"30\""),
        ErrorCase(
            name: "an integer", toml: "[mqtt]\nhost = \"b\"\nkeepalive = 30\n", path: "mqtt.keepalive", line: 6,
            message: "expected a duration such as \"250ms\", \"1.5s\", \"5m\" or \"1h30m\" but found integer 30"),
        ErrorCase(
            name: "zero", toml: "[mqtt]\nhost = \"b\"\nkeepalive = \"0s\"\n", path: "mqtt.keepalive", line: 6,
            message: "expected a duration greater than 0 but found \"0s\""),
        ErrorCase(
            name: "above a range", toml: "[store]\nflush_interval = \"2m\"\n", path: "store.flush_interval", line: 5,
            message: "expected a duration between 0s and 1m but found \"2m\""),
    ]

    @Test(arguments: durations) func badDuration(_ c: ErrorCase) throws { try check(c) }

    static let byteSizes: [ErrorCase] = [
        ErrorCase(
            name: "unknown unit", toml: "[store]\nmax_bytes = \"12 parsecs\"\n", path: "store.max_bytes", line: 5,
            message:
                "expected a byte size such as \"512MiB\", \"64KiB\", \"1GB\" or an integer number of bytes but found \"12 parsecs\""
        ),
        ErrorCase(
            name: "wrong case", toml: "[store]\nmax_bytes = \"512mib\"\n", path: "store.max_bytes", line: 5,
            message:
                "expected a byte size such as \"512MiB\", \"64KiB\", \"1GB\" or an integer number of bytes but found \"512mib\""
        ),
        ErrorCase(
            name: "fraction of a byte", toml: "[store]\nmax_bytes = \"1.5B\"\n", path: "store.max_bytes", line: 5,
            message:
                "expected a byte size such as \"512MiB\", \"64KiB\", \"1GB\" or an integer number of bytes but found \"1.5B\""
        ),
        ErrorCase(
            name: "zero", toml: "[store]\nmax_bytes = 0\n", path: "store.max_bytes", line: 5,
            message: "expected a byte size greater than 0 but found integer 0"),
        ErrorCase(
            name: "below a range", toml: "[store]\nsegment_bytes = \"1KiB\"\n", path: "store.segment_bytes", line: 5,
            message: "expected a byte size between 4KiB and 1GiB but found \"1KiB\""),
        ErrorCase(
            name: "a boolean", toml: "[store]\nmax_bytes = true\n", path: "store.max_bytes", line: 5,
            message:
                "expected a byte size such as \"512MiB\", \"64KiB\", \"1GB\" or an integer number of bytes but found boolean true"
        ),
    ]

    @Test(arguments: byteSizes) func badByteSize(_ c: ErrorCase) throws { try check(c) }

    static let inlineTables: [ErrorCase] = [
        ErrorCase(
            name: "key of an inline table", toml: twoDevices + "type = \"int16\"\naddress = 0\n"
                + "limits = { min = \"low\", max = 100 }\n",
            path: "device[1].channel[0].limits.min", line: 20, message: "expected a number but found \"low\""),
        ErrorCase(
            name: "unknown key in an inline table", toml: "mqtt = { host = \"b\", prot = 1 }\n", path: "mqtt.prot",
            line: 4, message: "unknown key (did you mean \"port\"?)"),
        ErrorCase(
            name: "element of a multi-line array of inline tables",
            toml: "[[device]]\nid = \"a\"\nbus = \"l\"\nchannel = [\n  { name = \"x\", type = \"int16\", address = 0 },\n"
                + "  # a comment with [[device]] and key = 1\n  { name = \"y\", type = \"floot\", address = 1 },\n]\n",
            path: "device[0].channel[1].type", line: 10,
            message: "expected one of bool, int16, uint16, int32, uint32, float32, float64 but found \"floot\""),
    ]

    @Test(arguments: inlineTables) func errorInsideInlineTable(_ c: ErrorCase) throws { try check(c) }

    @Test func inlineTableLineFallsBackToTheEnclosingKey() throws {
        let text = Fixture.header + "mqtt = { host = \"b\", tls = { verify = true } }\n"
        let doc = try Fixture.loader.load(text: text, file: file)
        #expect(doc.line(of: ConfigPath(keys: "mqtt", "tls", "verify")) == 4)
        // A path the file doesn't define falls back to its nearest enclosing path.
        #expect(doc.line(of: ConfigPath(keys: "mqtt", "tls", "ca_file")) == 4)
        #expect(doc.line(of: ConfigPath(keys: "store", "max_bytes")) == nil)
    }

    @Test func multipleErrorsAreAllReportedInLineOrder() {
        let text = """
            [[device]]
            id = "belt1"
            bus = "line1"
            unit_id = 0
            poll_interval = "soon"

            [[device.channel]]
            name = "rate"
            type = "floot"
            address = 70000

            [mqtt]
            prot = 1883

            [store]
            max_bytes = "lots"
            """
        let diagnostics = Fixture.errors(text, file: file)
        #expect(
            diagnostics.map(\.description) == [
                "\(file):4: device[0].unit_id: expected an integer between 1 and 247 but found 0",
                "\(file):5: device[0].poll_interval: expected a duration such as \"250ms\", \"1.5s\", \"5m\" or \"1h30m\" but found \"soon\"",
                "\(file):9: device[0].channel[0].type: expected one of bool, int16, uint16, int32, uint32, float32, float64 but found \"floot\"",
                "\(file):10: device[0].channel[0].address: expected an integer between 0 and 65535 but found 70000",
                "\(file):12: mqtt.host: required key is missing",
                "\(file):13: mqtt.prot: unknown key (did you mean \"port\"?)",
                "\(file):16: store.max_bytes: expected a byte size such as \"512MiB\", \"64KiB\", \"1GB\" or an integer number of bytes but found \"lots\"",
                "\(file): site: required key is missing",
            ])
        let errors = ConfigErrors(diagnostics: diagnostics.reversed())
        #expect(errors.diagnostics == diagnostics)
        #expect(errors.description == diagnostics.map(\.description).joined(separator: "\n"))
    }

    @Test func semanticErrorThroughReader() throws {
        let text = Fixture.header + """
            [[bus]]
            name = "line1"
            kind = "tcp"

            [[device]]
            id = "belt1"
            bus = "line1"

            [[device]]
            id = "belt2"
            bus = "line2"
            """
        let doc = try Fixture.loader.load(text: text, file: file)
        let diagnostics = ConfigDiagnostics(document: doc)
        let root = ConfigReader(document: doc, diagnostics: diagnostics)
        let buses = Set(root.tables("bus").compactMap { $0.string("name") })
        for device in root.tables("device") {
            if let bus = device.string("bus"), !buses.contains(bus) {
                device.error("bus", "bus \"\(bus)\" is not defined (defined: \(buses.sorted().joined(separator: ", ")))")
            }
        }
        root.error(nil, "a whole-file problem")
        #expect(diagnostics.all.count == 2)
        do {
            try diagnostics.finish()
            Issue.record("finish() must throw")
        } catch {
            #expect(
                error.diagnostics.map(\.description) == [
                    "\(file):14: device[1].bus: bus \"line2\" is not defined (defined: line1)",
                    "\(file): a whole-file problem",
                ])
        }
    }

    @Test func cleanDecodingFinishesWithoutThrowing() throws {
        let doc = try Fixture.loader.load(text: Fixture.header, file: file)
        let diagnostics = ConfigDiagnostics(document: doc)
        try diagnostics.finish()
    }

    @Test func unreadableFile() throws {
        let missing = "/nonexistent-kilntally-dir/kilntally.toml"
        do {
            _ = try Fixture.loader.load(file: missing)
            Issue.record("expected an error")
        } catch {
            #expect(error.diagnostics.count == 1)
            #expect(error.diagnostics.first?.file == missing)
            #expect(error.description == "\(missing): cannot read the file: No such file or directory (errno 2)")
        }
        let directory = try TempDir()
        defer { directory.remove() }
        do {
            _ = try Fixture.loader.load(file: directory.path)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "\(directory.path): cannot read the file: Is a directory (errno 21)")
        }
    }

    @Test func fileThatIsNotUTF8() throws {
        let directory = try TempDir()
        defer { directory.remove() }
        let path = try directory.writeFile("bad.toml", bytes: Array("[site]\nname = \"".utf8) + [0xFF, 0xFE] + Array("\"\n".utf8))
        do {
            _ = try Fixture.loader.load(file: path)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "\(path): the file is not valid UTF-8")
        }
    }
}

/// A temporary directory for the few tests where a real file is the point.
struct TempDir {
    let path: String

    init() throws {
        var template = Array("/tmp/kilntally-config-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw TempDirError() }
        path = String(cString: p)
    }

    func writeFile(_ name: String, bytes: [UInt8]) throws -> String {
        let file = path + "/" + name
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw TempDirError() }
        defer { close(fd) }
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw TempDirError() }
        return file
    }

    func writeFile(_ name: String, text: String) throws -> String { try writeFile(name, bytes: Array(text.utf8)) }

    /// Removes the files this helper wrote, then the directory.
    func remove() {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(path)
    }

    struct TempDirError: Error {}
}
