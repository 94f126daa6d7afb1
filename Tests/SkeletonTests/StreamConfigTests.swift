import KilnTallyCore
import KilnTallyDaemon
import Tally
import Testing

/// `[[stream]]` sections are checked against the devices' channels and roles (profiles included), each error with
/// file, line and key.
@Suite("Stream configuration")
struct StreamConfigTests {
    static let base = """
        [node]
        site = "s"
        name = "n"
        [mqtt]
        host = "127.0.0.1"
        [profiles]
        dirs = []
        [[bus]]
        name = "plc"
        kind = "tcp"
        host = "10.0.0.5"
        [[device]]
        name = "belt1"
        bus = "plc"
        profile = "siemens-bw500"
          [[device.channel]]
          name = "total1"
          max_rate = 40
          [[device.channel]]
          name = "total2"
          max_rate = 40

        """

    @Test func aStreamReadsChannelsWithTheRightRoles() throws {
        let c = try KilnTallyConfiguration.load(text: Self.base + """
            [[stream]]
            name = "msw"
            material = "msw"
            feed_point = "calciner"
            device = "belt1"
            totalizer = "total1"
            rate = "rate"
            max_gap = "20s"
            """, file: "k.toml")
        #expect(c.streams.map(\.name) == ["msw"])
        #expect(c.streams[0].feedPoint == .calciner && c.streams[0].maxGap == .seconds(20))
        #expect(c.streams[0].totalizer == "total1" && c.streams[0].rate == "rate")
    }

    @Test func wrongRolesMissingChannelsAndUnknownDevicesAreErrors() {
        do {
            _ = try KilnTallyConfiguration.load(text: Self.base + """
                [[stream]]
                name = "msw"
                material = "msw"
                feed_point = "calciner"
                device = "belt1"
                totalizer = "rate"
                rate = "speed"
                [[stream]]
                name = "rdf"
                material = "rdf"
                feed_point = "riser_duct"
                device = "belt9"
                totalizer = "total1"
                [[stream]]
                name = "sludge"
                material = "municipal_sludge"
                feed_point = "kiln_inlet"
                device = "belt1"
                """, file: "k.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.diagnostics.map(\.description) == [
                "k.toml:27: stream[0].totalizer: channel 'rate' of device 'belt1' needs role totalizer (it has role rate)",
                "k.toml:28: stream[0].rate: channel 'speed' of device 'belt1' needs role rate (it has no role)",
                "k.toml:33: stream[1].device: no [[device]] named 'belt9'; defined: belt1",
                "k.toml:35: stream[2]: a stream needs a `totalizer` or a `rate` channel (or both)",
            ])
        }
    }

    @Test func aStockNeedsALevelOrStockChannel() {
        do {
            _ = try KilnTallyConfiguration.load(text: Self.base + """
                [[stock]]
                material = "msw"
                device = "belt1"
                channel = "rate"
                [[stock]]
                material = "msw"
                device = "belt1"
                channel = "nope"
                """, file: "k.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.diagnostics.map(\.description) == [
                "k.toml:25: stock[0].channel: channel 'rate' of device 'belt1' needs role level or stock (it has role rate)",
                "k.toml:27: stock[1].material: material 'msw' has more than one [[stock]]",
                "k.toml:29: stock[1].channel: device 'belt1' has no channel 'nope'",
            ])
        }
    }
}
