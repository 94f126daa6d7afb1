import KilnTallyCore
import Tally
import Uplink

/// Payloads as the code makes them (status and readings from `Payloads`, tickets and shift reports from a real
/// `TallyEngine` run), and hand-written ones for the payloads no code produces yet (events, the open shift's totals).
enum ContractFixtures {
    static let identity = NodeIdentity(site: "plant-a", node: "kiln1")
    static let configHash = "5be1f2a09c3d4e17"
    static let started = UTCInstant(nanosecondsSinceEpoch: 1_795_392_000_250_000_000)  // 2026-11-23T00:00:00.250Z (08:00 in Shanghai)

    // MARK: status

    static var info: Payloads.StatusInfo { .init(version: KilnTallyVersion.current, configHash: configHash, startedAt: started) }

    /// The birth message, as the uplink publishes it on every connect.
    static var statusOnline: [UInt8] {
        Payloads.status(online: true, identity: identity, info: info, time: started.adding(.milliseconds(1_500)),
                        clockSynchronized: true)
    }

    /// The will (set at connect, so it carries no time) and the clean-shutdown message, as `Uplink` makes them.
    static var statusWill: [UInt8] {
        Payloads.status(online: false, identity: identity, info: info, time: nil, clockSynchronized: nil, reason: "connection lost")
    }

    static var statusShutdown: [UInt8] {
        Payloads.status(online: false, identity: identity, info: info, time: nil, clockSynchronized: nil, reason: "shutdown")
    }

    // MARK: readings

    /// A batch with every kind of value, units, qualities (a device fault with its Modbus exception, a comm failure
    /// without a value, a stale one), an unsynchronized clock, a value with no unit.
    static var readingsBatch: [UInt8] {
        let t = UTCInstant(nanosecondsSinceEpoch: 1_795_392_060_125_000_000)
        let readings: [Reading] = [
            Reading(device: "belt1", channel: "rate", time: t, value: .double(12.5), unit: .tonnePerHour, raw: [0x4148, 0x0000]),
            Reading(device: "belt1", channel: "total1", time: t, value: .uint(1_234_567), unit: .kilogram, raw: [0x0012, 0xD687]),
            Reading(device: "belt1", channel: "speed", time: t, value: .double(1.0), unit: .metrePerSecond, raw: [0x3F80, 0]),
            Reading(device: "belt1", channel: "load", time: t, value: .double(0.000123), unit: .kilogramPerMetre, raw: [1, 2]),
            Reading(device: "wb", channel: "weight", time: t, value: .int(-20), unit: .kilogram, raw: [0xFFEC]),
            Reading(device: "wb", channel: "stable", time: t, value: .bool(true), raw: [1]),
            Reading(device: "wb", channel: "plate", time: t, value: .string("皖B·7K321 \"quoted\"\n"), raw: [0x7696, 0x42]),
            Reading(device: "wb", channel: "ticket", time: t, value: .uint(UInt64.max), unit: .count, raw: [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
            Reading(device: "bunker", channel: "level", time: t, value: .double(-0.5), unit: .percent, clockSynchronized: false, raw: [0xBF00, 0]),
            Reading(device: "belt2", channel: "rate", time: t, value: .none, unit: .tonnePerHour, quality: .deviceFault, raw: [],
                    exceptionCode: 2),
            Reading(device: "belt2", channel: "total1", time: t, value: .none, unit: .tonne, quality: .commFailure),
            Reading(device: "belt2", channel: "heartbeat", time: t, value: .uint(17), quality: .stale, raw: [17]),
            Reading(device: "belt2", channel: "moisture", time: t, value: .double(.nan), unit: .percent, quality: .invalid, raw: [0x7FC0, 0]),
            Reading(device: "kilntally", channel: "correction", time: t, value: .string(#"{"action":"void"}"#), unit: Unit.none, quality: .manual),
            Reading(device: "belt2", channel: "runtime", time: t, value: .int(3_600), unit: .second, quality: .timeout),
        ]
        return Payloads.readings(readings.enumerated().map { (UInt64(4_000_001 + $0), $1) }, identity: identity)
    }

    // MARK: tally records

    struct EngineRun {
        var tickets: [[UInt8]] = []
        var reports: [[UInt8]] = []
    }

    /// Shift 2026-11-23/B (Asia/Shanghai, 08:00-16:00 +08:00) at plant-a/kiln1: a stream with totalizer and rate,
    /// one with a rate only, a stock for msw, a two-pass weighbridge with two trucks — one weighed in and out and
    /// then corrected to another material after the report closed (a report revision), one weighed in and voided
    /// while open.
    static func engineRun() -> EngineRun {
        var setup = TallyEngine.Setup(site: identity.site, node: identity.node, configHash: configHash,
                                      calendar: ShiftCalendar.standard, grace: .seconds(300), streams: [
            .init(StreamConfig(name: "msw-calciner", material: "msw", feedPoint: .calciner, device: "belt1", totalizer: "total1",
                               rate: "rate", maxGap: .seconds(120), runThresholdTonnesPerHour: 0.5, disagreementTolerance: 0.05),
                  StreamSource(device: "belt1", totalizer: "total1",
                               totalizerParameters: .init(modulus: nil, resettable: false, maxRateTonnesPerHour: 60),
                               rate: "rate", maxGap: .seconds(120), runThresholdTonnesPerHour: 0.5)),
            .init(StreamConfig(name: "rdf-burner", material: "rdf", feedPoint: .mainBurner, device: "belt2", totalizer: nil,
                               rate: "rate", maxGap: .seconds(120), runThresholdTonnesPerHour: 0.5, disagreementTolerance: 0.05),
                  StreamSource(device: "belt2", totalizer: nil, totalizerParameters: nil, rate: "rate", maxGap: .seconds(120),
                               runThresholdTonnesPerHour: 0.5)),
        ], weighbridges: [.init(
            WeighbridgeConfig(name: "wb1", device: "wb", pairing: .ticketNumber, defaultMaterial: "msw"),
            WeighbridgeChannels(weight: "weight", zeroBand: 40, stable: "stable", motion: "unstable", ticketNumber: "ticket",
                                vehicle: "plate")
        )])
        setup.stocks = [.init(StockConfig(material: "msw", device: "bunker", channel: "level"), 0.5)]
        var engine = TallyEngine(setup: setup)
        var run = EngineRun()
        var seq: UInt64 = 0
        func feed(_ input: TallyInput) {
            for case .record(let kind, _, _, let json) in engine.consume(input) {
                if kind == .ticket { run.tickets.append(json) } else { run.reports.append(json) }
            }
        }
        func reading(_ t: Int64, _ device: DeviceID, _ channel: ChannelID, _ value: ReadingValue, _ unit: Unit? = nil) {
            seq += 1
            feed(.reading(sequence: seq, Reading(device: device, channel: channel, time: UTCInstant(secondsSinceEpoch: t),
                                                 value: value, unit: unit, raw: [7])))
        }
        func correction(_ t: Int64, _ json: String) {
            seq += 1
            feed(.reading(sequence: seq, Reading(device: TallyEngine.correctionDevice, channel: TallyEngine.correctionChannel,
                                                 time: UTCInstant(secondsSinceEpoch: t), value: .string(json), quality: .manual)))
        }
        func weigh(_ t: Int64, kg: Int64, moving: Bool, ticket: UInt64, plate: String) {
            reading(t, "wb", "weight", .int(kg), .kilogram)
            reading(t, "wb", "unstable", .bool(moving))
            reading(t, "wb", "stable", .bool(!moving))
            reading(t, "wb", "ticket", .uint(ticket))
            reading(t, "wb", "plate", .string(plate))
        }
        let start: Int64 = 1_795_363_200 + 8 * 3600  // 2026-11-23T00:00:00Z = 08:00 +08:00
        let end = start + 8 * 3600
        reading(start - 30, "bunker", "level", .double(250), .percent)
        var t = start - 60
        while t <= end + 120 {
            let minutes = Double(t - start + 60) / 60
            reading(t, "belt1", "rate", .double(12), .tonnePerHour)
            reading(t, "belt1", "total1", .double(500 + minutes * 0.2), .tonne)
            reading(t, "belt2", "rate", .double(3), .tonnePerHour)
            if t == end - 60 { reading(end - 30, "bunker", "level", .double(58), .percent) }
            // Truck 1 (ticket 7) delivers 19,220 kg of msw; truck 2 (ticket 8) is weighed in and voided.
            let truck: [Int64: (Int64, Bool, UInt64, String)] = [
                start + 3600: (0, false, 7, "皖B·7K321"), start + 3606: (20_000, true, 7, "皖B·7K321"),
                start + 3610: (31_480, false, 7, "皖B·7K321"), start + 3615: (31_480, false, 7, "皖B·7K321"),
                start + 3622: (0, false, 7, "皖B·7K321"),
                start + 5400: (9_000, true, 7, "皖B·7K321"), start + 5405: (12_260, false, 7, "皖B·7K321"),
                start + 5410: (12_260, false, 7, "皖B·7K321"), start + 5420: (0, false, 7, "皖B·7K321"),
                start + 9000: (0, false, 8, "皖A·30M88"), start + 9006: (25_000, true, 8, "皖A·30M88"),
                start + 9010: (27_340, false, 8, "皖A·30M88"), start + 9015: (27_340, false, 8, "皖A·30M88"),
                start + 9022: (0, false, 8, "皖A·30M88"),
            ]
            for dt in 0..<60 {
                if let (kg, moving, ticket, plate) = truck[t + Int64(dt)] {
                    weigh(t + Int64(dt), kg: kg, moving: moving, ticket: ticket, plate: plate)
                }
            }
            if t == start + 10_800 {
                correction(t + 1, #"{"action":"void","ticket":"wb1-2","operator":"张伟","reason":"误称: calibration truck"}"#)
            }
            t += 60
        }
        seq += 1
        feed(.tick(sequence: seq, time: UTCInstant(secondsSinceEpoch: end + 600)))
        correction(end + 900, #"{"action":"set_material","ticket":"wb1-1","material":"生活垃圾","operator":"张伟","reason":"driver's slip says 生活垃圾"}"#)
        return run
    }

    // MARK: hand-written payloads (no producer in the code yet)

    static let event = #"""
    {"schema":"kilntally.event/1","id":"plant-a/kiln1/event-42","seq":42,"site":"plant-a","node":"kiln1","kind":"device_down","severity":"alarm","time":"2026-11-23T03:12:45.125Z","device":"belt1","message":"device belt1 on bus rs485-1 does not answer: modbus_read_registers: Connection timed out","attributes":{"bus":"rs485-1","call":"modbus_read_registers","errno":"110"}}
    """#

    static let eventWithoutDevice = #"""
    {"schema":"kilntally.event/1","id":"plant-a/kiln1/event-43","seq":43,"site":"plant-a","node":"kiln1","kind":"tally_config_changed","severity":"info","time":"2026-11-23T05:00:00.000Z","device":null,"message":"tally configuration 5be1f2a09c3d4e17 takes effect at the shift boundary 2026-11-23T08:00:00.000Z","attributes":{}}
    """#

    static let shiftCurrent = #"""
    {"schema":"kilntally.shift-current/1","id":"plant-a/kiln1/2026-11-23/B","site":"plant-a","node":"kiln1","shift":"2026-11-23/B","crew":"甲","start_local":"2026-11-23T08:00:00.000+08:00","end_local":"2026-11-23T16:00:00.000+08:00","start_utc":"2026-11-23T00:00:00.000Z","end_utc":"2026-11-23T08:00:00.000Z","as_of":"2026-11-23T03:15:00.000Z","config_hash":"5be1f2a09c3d4e17","streams":[{"name":"msw-calciner","material":"msw","feed_point":"calciner","fed_kg":"39000.000","coverage_pct":"99.58","flag":"B"}],"receipts":[{"material":"msw","tickets":2,"net_kg":"38440.000"}]}
    """#

    static let shiftCurrentCycle = #"""
    {"schema":"kilntally.shift-current/1","id":"demo/edge-01/2026-11-23/B-081200","site":"demo","node":"edge-01","shift":"2026-11-23/B-081200","crew":null,"start_local":"2026-11-23T08:12:00.000Z","end_local":"2026-11-23T08:14:00.000Z","start_utc":"2026-11-23T08:12:00.000Z","end_utc":"2026-11-23T08:14:00.000Z","as_of":"2026-11-23T08:12:30.000Z","config_hash":"00000000deadbeef","streams":[],"receipts":[]}
    """#
}
