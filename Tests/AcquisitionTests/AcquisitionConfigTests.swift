import Acquisition
import KilnTallyCore
import Testing

@Suite("Acquisition config")
struct AcquisitionConfigTests {
    func decode(_ text: String) throws(ConfigErrors) -> AcquisitionConfig {
        try KilnTallyTestConfig.acquisition(text, file: "k.toml")
    }

    let base = """
        [[bus]]
        name = "plc"
        kind = "tcp"
        host = "10.0.0.5"
        max_gap = 4

        [[device]]
        name = "bw500"
        bus = "plc"
        backoff_max = "30s"

        """

    @Test func sentinelsAndLimitsAreRead() throws {
        let c = try decode(base + """
              [[device.channel]]
              name = "load"
              table = "holding"
              address = 1011
              type = "uint32"
              sentinels = [22222, 30000, -32768]
            """)
        #expect(c.devices[0].channels[0].sentinels == [22222, 30000, -32768])
        #expect(c.buses[0].limits == PlannerLimits(maxRegisters: 125, maxBits: 2000, maxGap: 4))
        #expect(c.devices[0].backoffMax == .seconds(30))
    }

    @Test func sentinelsOnACoilAreAnError() {
        do {
            _ = try decode(base + """
                  [[device.channel]]
                  name = "running"
                  table = "coil"
                  address = 0
                  sentinels = [1]
                """)
            Issue.record("accepted sentinels on a coil")
        } catch {
            #expect(error.diagnostics.map(\.description) == ["k.toml:15: device[0].channel[0].sentinels: a coil is a single bit: it has no sentinel values"])
        }
    }

    @Test func backoffShorterThanThePollIntervalIsAnError() {
        do {
            _ = try decode(base.replacingOccurrences(of: "backoff_max = \"30s\"", with: "backoff_max = \"100ms\"\npoll_interval = \"1s\"") + """
                  [[device.channel]]
                  name = "v"
                  table = "holding"
                  address = 0
                """)
            Issue.record("accepted a backoff shorter than the poll interval")
        } catch {
            #expect(error.diagnostics.contains { $0.description.contains("device[0].backoff_max: must not be shorter than poll_interval") })
        }
    }

    @Test func bitAndStringNeedTheirParameters() {
        do {
            _ = try decode(base + """
                  [[device.channel]]
                  name = "unstable"
                  table = "holding"
                  address = 6
                  type = "bit"

                  [[device.channel]]
                  name = "plate"
                  table = "holding"
                  address = 20
                  type = "uint16"
                  length = 4
                """)
            Issue.record("accepted a bit without `bit` and a length on a uint16")
        } catch {
            let d = error.diagnostics.map(\.description)
            #expect(d.contains { $0.contains("device[0].channel[0].bit: type \"bit\" needs `bit` (0-31)") }, "\(d)")
            #expect(d.contains { $0.contains("device[0].channel[1].length: `length` is only for type \"string\"") }, "\(d)")
        }
    }

    @Test("reference numbers as manuals print them", arguments: [
        (41010, RegisterTable.holding, 1009), (40001, .holding, 0), (400001, .holding, 0), (465536, .holding, 65535),
        (30001, .input, 0), (300005, .input, 4), (10001, .discrete, 0), (1, .coil, 0), (9999, .coil, 9998),
    ])
    func references(n: Int, table: RegisterTable, address: Int) {
        let r = AcquisitionConfig.reference(n)
        #expect(r?.0 == table && r?.1 == address)
    }

    @Test(arguments: [0, 10000, 20001, 29999, 50000, 99999, 165537, 200001, 465537])
    func notReferences(n: Int) {
        #expect(AcquisitionConfig.reference(n) == nil)
    }

    @Test func registerKeyAndOverlaps() throws {
        let c = try decode(base + """
              [[device.channel]]
              name = "rate"
              register = 41010
              type = "uint32"

              [[device.channel]]
              name = "unstable"
              register = 40007
              type = "bit"
              bit = 2
              word_bits = "32"

              [[device.channel]]
              name = "net"
              register = 40007
              type = "bit"
              bit = 3
              word_bits = "32"
            """)
        #expect(c.devices[0].channels.map { "\($0.table.rawValue)@\($0.address)" } == ["holding@1009", "holding@6", "holding@6"])
        do {
            _ = try decode(base + """
                  [[device.channel]]
                  name = "total"
                  table = "holding"
                  address = 1015
                  type = "uint32"

                  [[device.channel]]
                  name = "total_lo"
                  register = 41017
                """)
            Issue.record("accepted overlapping channels")
        } catch {
            #expect(error.diagnostics.map(\.description) == [
                "k.toml:19: device[0].channel[1].register: overlaps channel 'total' (holding 1015...1016); only bit channels of the same status word may share registers",
            ])
        }
    }

    @Test func registerWithTableOrNeitherIsAnError() {
        do {
            _ = try decode(base + """
                  [[device.channel]]
                  name = "a"
                  register = 41010
                  table = "holding"

                  [[device.channel]]
                  name = "b"
                  type = "uint16"
                """)
            Issue.record("accepted")
        } catch {
            let d = error.diagnostics.map(\.description)
            #expect(d.contains { $0.contains("device[0].channel[0].register: give either `register` or `table` and `address`, not both") }, "\(d)")
            #expect(d.contains { $0.contains("device[0].channel[1]: a channel needs `table` and `address`, or `register`") }, "\(d)")
        }
    }
}
