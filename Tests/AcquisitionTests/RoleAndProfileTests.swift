import Acquisition
import Foundation
import KilnTallyCore
import Testing
import TestSupport

/// Channel roles and device profiles as the configuration loader sees them: what each role needs, what a profile
/// supplies, what the plant must add, and where each mistake is reported.
@Suite("Roles and profiles")
struct RoleAndProfileTests {
    func decode(_ text: String) throws(ConfigErrors) -> AcquisitionConfig {
        try KilnTallyTestConfig.acquisition(text, file: "k.toml")
    }

    /// The messages of a config that must fail.
    func errors(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
        do {
            _ = try decode(text)
            Issue.record("the config was accepted", sourceLocation: sourceLocation)
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    let bus = """
        [profiles]
        dirs = []

        [[bus]]
        name = "plc"
        kind = "tcp"
        host = "10.0.0.5"

        """

    // MARK: Roles

    @Test func everyRoleDecodesWithItsParameters() throws {
        let c = try decode(bus + """
            [[device]]
            name = "wb"
            bus = "plc"
            poll_interval = "500ms"
              [[device.channel]]
              name = "weight"
              register = 40001
              type = "int32"
              unit = "kg"
              role = "weight"
              zero_band = 40
              [[device.channel]]
              name = "unstable"
              register = 40003
              type = "bit"
              bit = 2
              role = "motion"
              [[device.channel]]
              name = "overload"
              register = 40003
              type = "bit"
              bit = 3
              role = "over_range"
              [[device.channel]]
              name = "underload"
              table = "discrete"
              address = 0
              role = "under_range"
              [[device.channel]]
              name = "net"
              table = "discrete"
              address = 1
              role = "net"
              [[device.channel]]
              name = "ticket"
              register = 40010
              type = "uint32"
              role = "ticket_no"
              [[device.channel]]
              name = "plate"
              register = 40020
              type = "string"
              length = 5
              role = "vehicle_id"
              [[device.channel]]
              name = "alive"
              register = 40030
              role = "heartbeat"

            [[device]]
            name = "belt"
            bus = "plc"
              [[device.channel]]
              name = "rate"
              register = 41010
              type = "uint32"
              scale = 0.001
              unit = "t/h"
              role = "rate"
              [[device.channel]]
              name = "total1"
              register = 41016
              type = "uint32"
              scale = 0.001
              unit = "t"
              role = "totalizer"
              max_rate = 60
              [[device.channel]]
              name = "total_kg"
              register = 41030
              type = "float32"
              unit = "kg"
              role = "totalizer"
              max_rate = 60
              resettable = true
              [[device.channel]]
              name = "bunker"
              register = 41040
              type = "float32"
              unit = "%"
              role = "level"
              tonnes_per_unit = 4.5
              [[device.channel]]
              name = "yard"
              register = 41050
              type = "float32"
              unit = "kg"
              role = "stock"
              [[device.channel]]
              name = "alive"
              register = 41060
              role = "heartbeat"
              stale_after = "10s"
            """)
        let wb = c.devices[0].channels.map(\.role)
        #expect(wb == [.weight(zeroBand: 40), .motion, .overRange, .underRange, .net, .ticketNumber, .vehicleID,
                       .heartbeat(staleAfter: .milliseconds(2500))])
        let belt = c.devices[1].channels.map(\.role)
        // BW500 total 1: 2^32 counts of 0.001 t roll over at 4,294,967.296 t (DOMAIN.md §2.1); a float counter
        // has no modulus unless one is given.
        #expect(belt == [.rate,
                         .totalizer(.init(modulus: 4_294_967.296, resettable: false, maxRateTonnesPerHour: 60)),
                         .totalizer(.init(modulus: nil, resettable: true, maxRateTonnesPerHour: 60)),
                         .level(tonnesPerUnit: 4.5), .stock(tonnesPerUnit: 0.001), .heartbeat(staleAfter: .seconds(10))])
        #expect(c.devices[1].channel(withRole: .totalizer)?.id == "total1")
    }

    @Test func aRoleMissingItsParameterOrWithTheWrongKindOfChannelIsAnError() {
        let messages = errors(bus + """
            [[device]]
            name = "wb"
            bus = "plc"
              [[device.channel]]
              name = "weight"
              register = 40001
              type = "int32"
              unit = "kg"
              role = "weight"
              [[device.channel]]
              name = "stable"
              register = 40003
              type = "uint16"
              role = "stable"
              [[device.channel]]
              name = "total"
              register = 40004
              type = "uint32"
              unit = "t/h"
              role = "totalizer"
              max_rate = 10
              [[device.channel]]
              name = "total2"
              register = 40006
              type = "uint32"
              unit = "t"
              role = "totalizer"
              zero_band = 3
              [[device.channel]]
              name = "rate"
              register = 40008
              type = "float32"
              role = "rate"
              [[device.channel]]
              name = "level"
              register = 40010
              type = "float32"
              unit = "%"
              role = "level"
              [[device.channel]]
              name = "alive"
              register = 40012
              type = "float32"
              role = "heartbeat"
            """)
        #expect(messages == [
            "k.toml:16: device[0].channel[0].role: role weight needs `zero_band` (zero_band: the ± band around zero, in the channel's unit, inside which the scale is empty)",
            "k.toml:21: device[0].channel[1].role: role stable is a status bit: type must be bool (coil, discrete) or bit, not uint16",
            "k.toml:27: device[0].channel[2].role: role totalizer needs unit \"kg\" or \"t\", not \"t/h\"",
            "k.toml:34: device[0].channel[3].role: role totalizer needs `max_rate` (max_rate: the highest plausible feed rate in t/h)",
            "k.toml:35: device[0].channel[3].zero_band: `zero_band` is only for role \"weight\" (this channel's role is \"totalizer\")",
            "k.toml:40: device[0].channel[4].role: role rate needs unit \"kg/h\" or \"t/h\"",
            "k.toml:46: device[0].channel[5].role: role level needs `tonnes_per_unit` (tonnes_per_unit: tonnes per unit of the value)",
            "k.toml:51: device[0].channel[6].role: role heartbeat needs an integer type (a counter), not float32",
        ])
    }

    @Test func aDeviceHasOneWeightAndOneStabilityBit() {
        let messages = errors(bus + """
            [[device]]
            name = "wb"
            bus = "plc"
              [[device.channel]]
              name = "stable"
              table = "discrete"
              address = 0
              role = "stable"
              [[device.channel]]
              name = "motion"
              table = "discrete"
              address = 1
              role = "motion"
              [[device.channel]]
              name = "alive"
              register = 40001
              role = "heartbeat"
              stale_after = "1s"
            """)
        #expect(messages == [
            "k.toml:20: device[0].channel[1].role: wb already has channel 'stable' with role stable/motion; a device has one",
            "k.toml:25: device[0].channel[2].stale_after: must be at least two poll intervals (2.0 seconds), or every slow answer would mark the device stale",
        ])
    }

    // MARK: Profiles

    @Test func everyBuiltinProfileLoadsAndSaysWhetherItIsVerified() throws {
        let library = ProfileLibrary(userDirectories: [])
        let dir = try #require(library.builtinDirectory)
        #expect(dir.hasSuffix("/profiles"))
        let names = library.names()
        #expect(names == ["flintec-ft112", "generic-flow", "generic-weighbridge", "rinstrum-c530",
                          "schenck-intecont-satus", "siemens-bw500"])
        for name in names {
            let p = try DeviceProfile.load(file: try #require(library.file(of: name)))
            #expect(p.name == name)
            #expect(!p.source.isEmpty && !p.description.isEmpty)
            #expect(!p.channels.isEmpty)
        }
        // Maps with inferred offsets or assumed addressing say so.
        #expect(try DeviceProfile.load(file: library.file(of: "siemens-bw500")!).verified == false)
        #expect(try DeviceProfile.load(file: library.file(of: "schenck-intecont-satus")!).verified == false)
        #expect(try DeviceProfile.load(file: library.file(of: "rinstrum-c530")!).verified == false)
    }

    @Test func aDeviceTakesItsProfilesChannelsAndAddsThePlantsParameters() throws {
        let c = try decode(bus + """
            [[device]]
            name = "belt1"
            bus = "plc"
            profile = "siemens-bw500"
              [[device.channel]]
              name = "total1"
              max_rate = 80
              [[device.channel]]
              name = "total2"
              max_rate = 80
              word_order = "CDAB"
              [[device.channel]]
              name = "running"
              table = "coil"
              address = 0
            """)
        let d = c.devices[0]
        #expect(d.profile == "siemens-bw500")
        #expect(d.channels.map(\.id.rawValue) == ["format_32", "device_id", "rate", "load", "speed", "total1", "total2",
                                                  "device_state", "diagnostic", "running"])
        let total1 = try #require(d.channels.first { $0.id == "total1" })
        #expect(total1.table == .holding && total1.address == 1015 && total1.type == .uint32 && total1.scale == 0.001)
        #expect(total1.role == .totalizer(.init(modulus: 4_294_967.296, resettable: true, maxRateTonnesPerHour: 80)))
        #expect(total1.sentinels.contains(22222) && total1.sentinels.contains(30014))
        #expect(d.channels.first { $0.id == "total2" }?.wordOrder == .cdab)
        #expect(c.profiles.map(\.name) == ["siemens-bw500"])
        #expect(c.profiles[0].text.contains("41016"))
    }

    @Test func aProfileParameterLeftToThePlantIsReportedAtTheDevicesProfileKey() {
        let messages = errors(bus + """
            [[device]]
            name = "wb"
            bus = "plc"
            profile = "flintec-ft112"
            """)
        #expect(messages == [
            "k.toml:11: device[0].profile: profile 'flintec-ft112' leaves `zero_band` of channel 'actual' (role weight) to the plant: add [[device.channel]] with name = \"actual\" and `zero_band` (zero_band: the ± band around zero, in the channel's unit, inside which the scale is empty)",
        ])
    }

    @Test func anUnknownProfileListsWhatExists() {
        let messages = errors(bus + """
            [[device]]
            name = "wb"
            bus = "plc"
            profile = "flintec-ft-112"
            """)
        #expect(messages.count == 1)
        #expect(messages.first?.hasPrefix("k.toml:11: device[0].profile: no profile 'flintec-ft-112' in ") == true)
        #expect(messages.first?.hasSuffix("available: flintec-ft112, generic-flow, generic-weighbridge, rinstrum-c530, schenck-intecont-satus, siemens-bw500") == true)
    }

    @Test func aDeviceNeedsAProfileOrChannels() {
        #expect(errors(bus + """
            [[device]]
            name = "wb"
            bus = "plc"
            """) == ["k.toml:8: device[0]: a device needs `profile` or at least one [[device.channel]]"])
    }

    @Test func aUserProfileIsFoundFirstAndItsErrorsNameItsFileAndLine() throws {
        let dir = try TemporaryDirectory()
        try """
            name = "my-feeder"
            description = "Plant-made feeder map"
            source = "the PLC programmer's list"
            verified = true

            [[channel]]
            name = "rate"
            register = 40001
            type = "float32"
            unit = "t/h"
            role = "rate"

            [[channel]]
            name = "total"
            register = 40002
            type = "uint32"
            unit = "t"
            role = "totalizer"
            max_rate = 20
            """.write(toFile: dir.file("my-feeder.toml"), atomically: true, encoding: .utf8)
        let text = bus.replacingOccurrences(of: "dirs = []", with: "dirs = [\"\(dir.path)\"]") + """
            [[device]]
            name = "feeder"
            bus = "plc"
            profile = "my-feeder"
            """
        do {
            _ = try decode(text)
            Issue.record("accepted a profile with overlapping channels")
        } catch {
            #expect(error.diagnostics.map(\.description) == [
                "k.toml:11: device[0].profile: profile 'my-feeder' (\(dir.file("my-feeder.toml"))) has 1 error(s)",
                "\(dir.file("my-feeder.toml")):15: channel[1].register: overlaps channel 'rate' (holding 0...1); only bit channels of the same status word may share registers",
            ])
        }
        let fixed = try String(contentsOfFile: dir.file("my-feeder.toml"), encoding: .utf8)
            .replacingOccurrences(of: "register = 40002", with: "register = 40003")
        try fixed.write(toFile: dir.file("my-feeder.toml"), atomically: true, encoding: .utf8)
        let c = try decode(text)
        #expect(c.devices[0].channels.map(\.address) == [0, 2])
        #expect(c.devices[0].channels[1].role == .totalizer(.init(modulus: 4_294_967_296, resettable: false, maxRateTonnesPerHour: 20)))
    }
}
