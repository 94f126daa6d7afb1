import KilnTallyCore
import Tally
import Testing

/// Loads `text` with the `[[weighbridge]]` section registered and decodes it; returns the weighbridges, the
/// diagnostics (as "path: message" with the line) and the root reader for cross-checks.
func decodeWeighbridges(_ text: String) throws -> (configs: [WeighbridgeConfig], root: ConfigReader,
                                                    errors: () -> [String]) {
    var schema = ConfigSchema()
    schema.register(WeighbridgeConfig.configSection)
    let document = try ConfigLoader(schema: schema).load(text: text, file: "plant.toml")
    let diagnostics = ConfigDiagnostics(document: document)
    let root = ConfigReader(document: document, diagnostics: diagnostics)
    let configs = WeighbridgeConfig.decode(root)
    return (configs, root, { diagnostics.all.map { "\($0.line.map(String.init) ?? "-"): \($0.path!): \($0.message)" } })
}

@Suite("Weighbridge configuration")
struct WeighbridgeConfigTests {
    @Test func decodesEveryKey() throws {
        let (configs, _, errors) = try decodeWeighbridges("""
            [[weighbridge]]
            name = "wb-north"
            device = "wb-north"
            pair_by = "vehicle_id"
            min_weight = 2500
            stable_window = "1.5s"
            stable_tolerance = 20.5
            default_material = "msw"
            material_channel = "waste_code"

            [[weighbridge]]
            name = "wb-south"
            device = "ind2"
            mode = "one_pass"
            default_material = "rdf"
            preset_tares = [{ vehicle = "ZJ-B777", tare = 13000 }, { vehicle = " ZJ-A123 ", tare = 12260.25 }]
            """)
        #expect(errors() == [])
        #expect(configs.count == 2)
        let north = configs[0], south = configs[1]
        #expect(north.name == "wb-north" && north.device == "wb-north" && north.mode == .twoPass)
        #expect(north.pairing == .vehicleID)
        #expect(north.minWeight == Mass(kilograms: 2_500))
        #expect(north.spreadCheck == .init(window: .milliseconds(1_500), tolerance: Mass(grams: 20_500)))
        #expect(north.defaultMaterial == "msw" && north.materialChannel == "waste_code")
        #expect(north.presetTares.isEmpty)
        // Defaults: two_pass, pairing chosen from the channels, 1000 kg, indicator bit only.
        #expect(south.mode == .onePass && south.pairing == nil && south.minWeight == Mass(kilograms: 1_000))
        #expect(south.spreadCheck == nil && south.materialChannel == nil)
        // Sorted by vehicle, trimmed, exact to the gram.
        #expect(south.presetTares.map(\.vehicle) == ["ZJ-A123", "ZJ-B777"])
        #expect(south.presetTare(for: "ZJ-A123") == Mass(grams: 12_260_250))
        #expect(south.presetTare(for: "ZJ-B777") == Mass(kilograms: 13_000))
        #expect(south.presetTare(for: "ZJ-C000") == nil)
    }

    @Test func semanticErrorsNameTheKeyAndLine() throws {
        let (_, _, errors) = try decodeWeighbridges("""
            [[weighbridge]]
            name = "wb 1"
            device = "wb1"
            stable_window = "2s"
            default_material = ""
            preset_tares = [{ vehicle = "A", tare = 100 }]

            [[weighbridge]]
            name = "wb2"
            device = "wb2"
            mode = "one_pass"
            pair_by = "order"
            min_weight = 0
            stable_tolerance = 10
            default_material = "msw"

            [[weighbridge]]
            name = "wb2"
            device = "wb3"
            mode = "one_pass"
            default_material = "msw"

              [[weighbridge.preset_tares]]
              vehicle = "A"
              tare = 100

              [[weighbridge.preset_tares]]
              vehicle = "A"
              tare = 0
            """)
        #expect(Set(errors()) == [
            "2: weighbridge[0].name: must be non-empty and use only A-Z a-z 0-9 _ -",
            "4: weighbridge[0].stable_window: needs stable_tolerance as well (set both or neither)",
            "5: weighbridge[0].default_material: must not be empty",
            "6: weighbridge[0].preset_tares: is used by one_pass only (two_pass weighs the tare)",
            "12: weighbridge[1].pair_by: applies to two_pass only (one_pass closes each ticket at its only weighing)",
            "13: weighbridge[1].min_weight: must be greater than 0 kg",
            "14: weighbridge[1].stable_tolerance: needs stable_window as well (set both or neither)",
            "8: weighbridge[1].preset_tares: one_pass needs the vehicles' preset tares",
            "18: weighbridge[2].name: weighbridge 'wb2' is defined more than once",
            "28: weighbridge[2].preset_tares[1].vehicle: vehicle 'A' has more than one preset tare",
            "29: weighbridge[2].preset_tares[1].tare: must be greater than 0 kg",
        ])
    }

    @Test func schemaRejectsUnknownKeysAndValues() throws {
        var schema = ConfigSchema()
        schema.register(WeighbridgeConfig.configSection)
        let error = #expect(throws: ConfigErrors.self) {
            try ConfigLoader(schema: schema).load(text: """
                [[weighbridge]]
                name = "wb"
                device = "wb"
                mode = "three_pass"
                default_material = "msw"
                zero_band = 20
                """, file: "plant.toml")
        }
        let messages = error?.diagnostics.map { "\($0.path!): \($0.message)" } ?? []
        #expect(messages.count == 2)
        #expect(messages.contains { $0.hasPrefix("weighbridge[0].mode: expected one of two_pass, one_pass") })
        #expect(messages.contains { $0.hasPrefix("weighbridge[0].zero_band: unknown key") })
    }

    // MARK: - Cross-check against the devices

    static let ft112: [ChannelID: ChannelRole?] = [
        "actual": .weight(zeroBand: 40), "gross": nil, "unstable": .motion, "net_mode": .net,
        "adc_under_range": .underRange, "adc_over_range": .overRange, "heartbeat": .heartbeat(staleAfter: .seconds(2)),
        "ticket_no": .ticketNumber,
    ]
    static let dgt4x: [ChannelID: ChannelRole?] = [
        "gross": .weight(zeroBand: 20), "stable": .stable, "overload": .overRange, "underload": .underRange,
        "plate": .vehicleID, "waste_code": nil,
    ]
    static let c530: [ChannelID: ChannelRole?] = ["gross": .weight(zeroBand: 40), "status": nil]

    @Test func resolvesChannelsAndPairing() throws {
        let devices: [DeviceID: [ChannelID: ChannelRole?]] = ["ft": Self.ft112, "dgt": Self.dgt4x, "c530": Self.c530]
        let ft = try WeighbridgeConfig(name: "a", device: "ft", defaultMaterial: "msw").resolveChannels(devices: devices).get()
        #expect(ft == WeighbridgeChannels(weight: "actual", zeroBand: 40, motion: "unstable", overRange: "adc_over_range",
                                          underRange: "adc_under_range", net: "net_mode", ticketNumber: "ticket_no"))
        // auto never pairs by a ticket register (ours are print counters): no vehicle channel, so in order.
        #expect(WeighbridgeConfig(name: "a", device: "ft", defaultMaterial: "msw").resolvedPairing(ft) == .order)
        #expect(WeighbridgeConfig(name: "a", device: "ft", pairing: .ticketNumber, defaultMaterial: "msw").resolvedPairing(ft) == .ticketNumber)

        let dgtConfig = WeighbridgeConfig(name: "b", device: "dgt", defaultMaterial: "msw", materialChannel: "waste_code")
        let dgt = try dgtConfig.resolveChannels(devices: devices).get()
        #expect(dgt == WeighbridgeChannels(weight: "gross", zeroBand: 20, stable: "stable", overRange: "overload",
                                           underRange: "underload", vehicle: "plate", material: "waste_code"))
        #expect(dgtConfig.resolvedPairing(dgt) == .vehicleID)

        let c530Config = WeighbridgeConfig(name: "c", device: "c530",
                                           spreadCheck: .init(window: .seconds(2), tolerance: Mass(kilograms: 20)),
                                           defaultMaterial: "msw")
        let c530 = try c530Config.resolveChannels(devices: devices).get()
        #expect(c530 == WeighbridgeChannels(weight: "gross", zeroBand: 40))
        #expect(c530Config.resolvedPairing(c530) == .order)
        // An explicit pairing wins over the channels.
        #expect(WeighbridgeConfig(name: "a", device: "ft", pairing: .order, defaultMaterial: "msw").resolvedPairing(ft) == .order)
    }

    @Test func crossCheckReportsAtTheWeighbridgesKeys() throws {
        let (configs, root, errors) = try decodeWeighbridges("""
            [[weighbridge]]
            name = "ok"
            device = "ft"
            default_material = "msw"

            [[weighbridge]]
            name = "nodevice"
            device = "ghost"
            default_material = "msw"

            [[weighbridge]]
            name = "nostable"
            device = "c530"
            default_material = "msw"
            material_channel = "code"

            [[weighbridge]]
            name = "pairs"
            device = "c530"
            pair_by = "ticket_no"
            stable_window = "2s"
            stable_tolerance = 20
            default_material = "msw"

            [[weighbridge]]
            name = "onepass"
            device = "ft"
            mode = "one_pass"
            default_material = "msw"
            preset_tares = [{ vehicle = "A", tare = 100 }]

            [[weighbridge]]
            name = "byvehicle"
            device = "ft"
            pair_by = "vehicle_id"
            default_material = "msw"
            """)
        #expect(errors() == [])
        let devices: [DeviceID: [ChannelID: ChannelRole?]] = ["ft": Self.ft112, "c530": Self.c530]
        WeighbridgeConfig.validate(configs, devices: devices, root: root)
        #expect(Set(errors()) == [
            "8: weighbridge[1].device: no [[device]] named 'ghost'; defined: c530, ft",
            "11: weighbridge[2]: device 'c530' has no `stable` or `motion` channel: set `stable_window` and `stable_tolerance` so a weight can count as stable",
            "15: weighbridge[2].material_channel: device 'c530' has no channel 'code'",
            "20: weighbridge[3].pair_by: device 'c530' has no channel with role `ticket_no`",
            "28: weighbridge[4].mode: one_pass looks up preset tares by vehicle, but device 'ft' has no channel with role `vehicle_id`",
            "35: weighbridge[5].pair_by: device 'ft' has no channel with role `vehicle_id`",
        ])
        // A device without a weight channel.
        let noWeight = WeighbridgeConfig(name: "x", device: "d", defaultMaterial: "msw")
            .resolveChannels(devices: ["d": ["stable": .stable]])
        #expect(throws: WeighbridgeConfig.Problems([.init(key: "device", "device 'd' has no channel with role `weight`")])) {
            try noWeight.get()
        }
    }
}
