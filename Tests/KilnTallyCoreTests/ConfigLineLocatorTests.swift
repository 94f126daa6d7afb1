import Testing
@testable import KilnTallyCore

private func path(_ text: String) -> ConfigPath {
    // "device[2].channel[0].type" → components (test paths use bare keys only).
    var p = ConfigPath()
    for part in text.split(separator: ".") {
        var rest = Substring(part)
        if let open = rest.firstIndex(of: "[") {
            p = p.appending(String(rest[..<open]))
            rest = rest[open...]
            while let o = rest.firstIndex(of: "["), let c = rest.firstIndex(of: "]") {
                p = p.appending(index: Int(rest[rest.index(after: o)..<c])!)
                rest = rest[rest.index(after: c)...]
            }
        } else {
            p = p.appending(String(rest))
        }
    }
    return p
}

@Suite("Config line locator")
struct ConfigLineLocatorTests {
    static let lines = ConfigLineLocator.locate(realisticConfig)

    /// (path, the exact line that defines it, which occurrence of that line).
    static let expectations: [(String, String, Int)] = [
        ("site", "[site]", 1),
        ("site.name", "name = \"north\"          # used in topics", 1),
        ("site.node", "node = 'edge-1'", 1),
        ("mqtt", "[mqtt]", 1),
        ("mqtt.keepalive", "keepalive = \"45s\"", 1),
        ("mqtt.tls", "  [mqtt.tls]", 1),
        ("mqtt.tls.ca_file", "  ca_file = \"/etc/kilntally/ca.pem\"", 1),
        ("store.flush_interval", "flush_interval = \"0s\"", 1),
        ("bus", "[[bus]]", 1),
        ("bus[0]", "[[bus]]", 1),
        ("bus[1]", "[[bus]]", 2),
        ("bus[1].timeout", "timeout = \"1h30m\"    # long, but valid", 1),
        ("device", "[[device]]", 1),
        ("device[0]", "[[device]]", 1),
        ("device[0].tags", "tags = [", 1),
        ("device[0].tags[1]", "  \"[[device]]\",      # a string that looks like a header", 1),
        ("device[0].tags[2]", "  \"\"\"", 1),
        ("device[0].poll_interval", "poll_interval = \"250ms\"", 1),
        // The first `[[device.channel]]` at the start of a line is inside a multi-line string.
        ("device[0].channel", "[[device.channel]]", 2),
        ("device[0].channel[0]", "[[device.channel]]", 2),
        ("device[0].channel[0].unit", "unit = \"kg\"", 1),
        ("device[0].channel[1]", "[[device.channel]]", 3),
        ("device[0].channel[1].address", "address = 2", 1),
        ("device[0].channel[1].limits", "limits = { min = 0, max = 65535 }", 1),
        ("device[0].channel[1].limits.max", "limits = { min = 0, max = 65535 }", 1),
        ("device[0].modbus", "[device.modbus]", 1),
        ("device[0].modbus.word_order", "word_order = \"little\"", 1),
        ("device[1]", "[[device]]", 2),
        ("device[1].unit_id", "\"unit_id\" = 7", 1),
        ("device[1].channel", "channel = [", 1),
        ("device[1].channel[0].unit", "  { name = \"rate\", type = \"float32\", address = 0, unit = \"t/h\" },", 1),
        (
            "device[1].channel[1].scale",
            "  { name = \"total\", type = \"float64\", address = 2, unit = \"t\", scale = 0.001 },", 1
        ),
        ("device[2]", "[[device]]", 3),
        ("device[2].modbus", "modbus.max_registers = 60", 1),
        ("device[2].modbus.max_registers", "modbus.max_registers = 60", 1),
        ("device[2].tags[0]", "tags = ['''", 1),
        ("device[2].tags[1]", "''', \"a#b\"]", 1),
        ("device[2].channel[0]", "[[device.channel]]", 4),
        ("device[2].channel[0].unit", "unit = \"m/s\"", 1),
    ]

    @Test func realisticFile() {
        for (p, content, occurrence) in Self.expectations {
            #expect(Self.lines[path(p)] == lineNumber(of: content, occurrence: occurrence), "\(p)")
        }
        // Nothing inside strings was taken for structure.
        let keys = Set(Self.lines.keys.flatMap(\.components).compactMap { c -> String? in
            if case .key(let k) = c { return k }
            return nil
        })
        #expect(keys.isDisjoint(with: ["key", "x", "multi"]))
        #expect(Self.lines[path("device[3]")] == nil)
        #expect(Self.lines[path("device[0].channel[2]")] == nil)
        #expect(Self.lines[path("device[2].channel[1]")] == nil)
    }

    @Test func documentFallsBackToTheNearestEnclosingPath() throws {
        let doc = try Fixture.loader.load(text: realisticConfig, file: "plant.toml")
        #expect(doc.line(of: path("device[0].channel[1].scale")) == lineNumber(of: "[[device.channel]]", occurrence: 3))
        #expect(doc.line(of: path("device[1].modbus.word_order")) == lineNumber(of: "[[device]]", occurrence: 2))
        #expect(doc.line(of: path("nowhere.at.all")) == nil)
    }

    static let snippets: [(String, String, Int?)] = [
        // (text, path, line)
        ("[mqtt.\"odd key\"]\nx = 1\n", "mqtt", 1),
        ("[ device . channel ]\n\nname = 1\n", "device.channel.name", 3),
        ("a = \"\"\"x\"\"\"\"\nb = 1\n", "b", 2),
        ("a = '''x''''\nb = 1\n", "b", 2),
        ("a = \"q\\\"[[b]]\"\nc = 1\n", "c", 2),
        ("a = \"\"\"\\\n  [[x]]\n\"\"\"\nc = 1\n", "c", 4),
        ("\u{FEFF}a = 1\r\nb = 2\r\n", "b", 2),
        ("[[a]]\n[[a.b]]\n[[a]]\n[[a.b]]\n[[a.b]]\nx = 1\n", "a[1].b[1].x", 6),
        ("[[a]]\n[[a.b]]\n[[a]]\n[[a.b]]\n[[a.b]]\nx = 1\n", "a[0].b[0]", 2),
        ("[x.y]\nk = 1\n[x]\nj = 2\n", "x", 3),
        ("t = { a = { b = [1,\n 2] } }\n", "t.a.b[1]", 2),
        ("d = 1979-05-27 07:32:00 # a comment\ne = 1\n", "e", 2),
        ("arr = [ # comment [[x]]\n  1, # key = 2\n  2,\n]\nz = 0\n", "arr[1]", 3),
        ("arr = [ # comment [[x]]\n  1, # key = 2\n  2,\n]\nz = 0\n", "z", 5),
    ]

    @Test func snippets() {
        for (text, p, line) in Self.snippets {
            let lines = ConfigLineLocator.locate(text)
            var expectedPath = path(p)
            if text.hasPrefix("[mqtt.") { expectedPath = ConfigPath(keys: "mqtt") }
            #expect(lines[expectedPath] == line, "\(p) in \(text.debugDescription)")
        }
        #expect(ConfigLineLocator.locate("[mqtt.\"odd key\"]\nx = 1\n")[ConfigPath(keys: "mqtt", "odd key", "x")] == 2)
        #expect(ConfigLineLocator.locate("\"a\\u0041\".'b c' = 1\n")[ConfigPath(keys: "aA", "b c")] == 1)
    }

    @Test func malformedTextTerminates() {
        for text in ["[", "[[", "a = [", "a = {", "a = \"", "a = \"\"\"", "= = =", "]]]\n}}}", "a = [}\n", "a = {]]\n"] {
            _ = ConfigLineLocator.locate(text)
        }
    }
}
