import KilnTallyCore
import SerialScale
import Simulator
import Tally
import Testing

/// Frames as readings: the channels, roles, units and values a Modbus weighbridge gives, so the tally's tickets do
/// not depend on the bus.
@Suite("Frames to readings")
struct ReadingsTests {
    static let t0 = UTCInstant(nanosecondsSinceEpoch: 1_790_000_000_000_000_000)
    static let device: DeviceID = "wb2"

    static func frames(_ p: ScaleProtocol, checksum: Bool = false, _ bytes: [UInt8]) -> [ScaleFrame] {
        var parser = ScaleStreamParser(protocol: p, checksum: checksum)
        return parser.feed(bytes)
    }

    static func toledo(_ swb: UInt8, _ swc: UInt8 = 0x20, _ weight: String, _ tare: String = "000000", swa: UInt8 = 0x2A) -> ScaleFrame {
        frames(.toledoContinuous, [0x02, swa, swb, swc] + Array(weight.utf8) + Array(tare.utf8) + [0x0D])[0]
    }

    static func byChannel(_ readings: [Reading]) -> [String: Reading] {
        Dictionary(uniqueKeysWithValues: readings.map { ($0.channel.rawValue, $0) })
    }

    @Test("Toledo: weight, motion, net, over_range, under_range and tare, as a Modbus indicator's poll")
    func toledoReadings() throws {
        let layout = ScaleChannelLayout.builtin(for: .toledoContinuous)
        // Net, in motion, kg, 2500 kg on a tare of 12,340 kg.
        let f = Self.toledo(0x39, 0x20, "002500", "012340")
        let r = Self.byChannel(layout.readings(of: f, device: Self.device, time: Self.t0))
        #expect(r.keys.sorted() == ["motion", "net", "over_range", "tare", "under_range", "weight"])
        let w = try #require(r["weight"])
        #expect(w.value == .double(2500) && w.unit == .kilogram && w.quality == .good && w.time == Self.t0)
        #expect(w.raw == [0, 2500] && w.device == Self.device)
        #expect(r["motion"]?.value == .bool(true) && r["net"]?.value == .bool(true) && r["motion"]?.raw == [0x39])
        #expect(r["over_range"]?.value == .bool(false) && r["under_range"]?.value == .bool(false))
        #expect(r["tare"]?.value == .double(12_340) && r["tare"]?.unit == .kilogram)
        #expect(r["motion"]?.unit == nil)

        let roles = layout.channelRoles(zeroBand: 40)
        #expect(roles["weight"] == .some(.weight(zeroBand: 40)) && roles["motion"] == .some(.motion))
        #expect(roles["over_range"] == .some(.overRange) && roles["tare"] == .some(nil))
    }

    @Test("over range keeps the weight (good) with over_range true, as a Modbus indicator does; dashes are no weight")
    func overRange() {
        let layout = ScaleChannelLayout.builtin(for: .toledoContinuous)
        let over = Self.byChannel(layout.readings(of: Self.toledo(0x34, 0x20, "999999"), device: Self.device, time: Self.t0))
        #expect(over["weight"]?.value == .double(999_999) && over["weight"]?.quality == .good)
        #expect(over["over_range"]?.value == .bool(true) && over["under_range"]?.value == .bool(false))
        let dashes = Self.byChannel(layout.readings(of: Self.toledo(0x34, 0x20, "------"), device: Self.device, time: Self.t0))
        #expect(dashes["weight"]?.quality == .invalid && dashes["weight"]?.value == ReadingValue.none)
        #expect(dashes["weight"]?.raw == [] && dashes["over_range"]?.value == .bool(true))
        let under = Self.byChannel(layout.readings(of: Self.toledo(0x36, 0x20, "000100"), device: Self.device, time: Self.t0))
        #expect(under["weight"]?.value == .double(-100) && under["under_range"]?.value == .bool(true))
    }

    @Test("units: t, lb, g converted exactly to the layout's unit; an unknown unit code is no weight")
    func units() {
        let kg = ScaleChannelLayout.builtin(for: .toledoContinuous)
        let t = ScaleChannelLayout.builtin(for: .toledoContinuous, unit: .tonne)
        func weight(_ layout: ScaleChannelLayout, _ f: ScaleFrame) -> Reading? {
            layout.readings(of: f, device: Self.device, time: Self.t0).first { $0.channel == layout.weight }
        }
        // 20.00 t (code 4, SWC 010).
        let tonnes = Self.toledo(0x30, 0x22, "002000", swa: 0x2C)
        #expect(weight(kg, tonnes)?.value == .double(20_000) && weight(kg, tonnes)?.unit == .kilogram)
        #expect(weight(t, tonnes)?.value == .double(20) && weight(t, tonnes)?.unit == .tonne)
        #expect(weight(kg, tonnes)?.raw == [0, 2000], "raw is the frame's own mantissa")
        // 44,100 lb = 44,100 × 0.45359237 kg = 20,003.423517 kg.
        let pounds = Self.toledo(0x20, 0x20, "044100")
        #expect(kg.convert(pounds.weight!, from: .pound) == ScaleDecimal("20003.423517"))
        #expect(weight(kg, pounds)?.value == .double(20_003.423517))
        #expect(weight(t, pounds)?.value == .double(20.003423517))
        // 123,450 g = 123.45 kg.
        #expect(weight(kg, Self.toledo(0x30, 0x21, "123450"))?.value == .double(123.45))
        // SWC units 100: unrecognised.
        let unknown = weight(kg, Self.toledo(0x30, 0x24, "001000"))
        #expect(unknown?.quality == .invalid && unknown?.value == ReadingValue.none && unknown?.raw == [0, 1000])
        // The value is m / 10^d, bit for bit (what the reading store keeps compactly).
        let small = Self.toledo(0x30, 0x20, "012345", swa: 0x2D)
        #expect(weight(kg, small)?.value == .double(12_345.0 / 1000))
    }

    @Test("Yaohua: the weight only, in the configured unit (frames carry none)")
    func yaohua() {
        let frame = Self.frames(.yaohuaTF0, [0x02, 0x2B, 0x30, 0x30, 0x32, 0x30, 0x30, 0x30, 0x32, 0x31, 0x42, 0x03])[0]
        let inTonnes = ScaleChannelLayout.builtin(for: .yaohuaTF0, unit: .tonne)
        let r = inTonnes.readings(of: frame, device: Self.device, time: Self.t0)
        #expect(r.count == 1 && r[0].channel == "weight" && r[0].value == .double(20) && r[0].unit == .tonne)
        #expect(r[0].raw == [0, 2000])
        let inKilograms = ScaleChannelLayout.builtin(for: .yaohuaTF0)
        #expect(inKilograms.readings(of: frame, device: Self.device, time: Self.t0)[0].value == .double(20))
        #expect(inKilograms.channels(zeroBand: 40).map(\.channel) == ["weight"])
    }

    @Test("A12: ww lines are the weight, wn the net_weight channel, wt the tare channel")
    func a12() {
        let layout = ScaleChannelLayout.builtin(for: .xk3190A12)
        let f = Self.frames(.xk3190A12, Array("ww012.340kgwn001.500kgwt010.840kgww15.02t".utf8))
        let r = f.map { layout.readings(of: $0, device: Self.device, time: Self.t0) }
        #expect(r.map { $0.map(\.channel.rawValue) } == [["weight"], ["net_weight"], ["tare"], ["weight"]])
        #expect(r.map { $0[0].value } == [.double(12.34), .double(1.5), .double(10.84), .double(15_020)])
        #expect(layout.channelRoles(zeroBand: 20).compactMapValues { $0 }.keys.map(\.rawValue) == ["weight"])
    }

    @Test("a silent stream: every channel with the quality given and no value")
    func unavailable() {
        let layout = ScaleChannelLayout.builtin(for: .toledoContinuous)
        let r = layout.unavailableReadings(device: Self.device, time: Self.t0, quality: .timeout)
        #expect(r.count == 6 && r.allSatisfy { $0.quality == .timeout && $0.value == ReadingValue.none })
        #expect(r.first { $0.channel == "weight" }?.unit == .kilogram)
    }

    @Test("the weighbridge finds its channels by role; without a motion bit it needs the spread window")
    func resolvesAsWeighbridge() {
        for p in ScaleProtocol.allCases {
            let devices = [Self.device: ScaleChannelLayout.builtin(for: p).channelRoles(zeroBand: 40)]
            let plain = WeighbridgeConfig(name: "wb", device: Self.device, defaultMaterial: "msw")
            var spread = plain
            spread.spreadCheck = .init(window: .seconds(2), tolerance: .zero)
            switch plain.resolveChannels(devices: devices) {
            case .success(let c): #expect(p.hasMotionBit && c.motion == "motion" && c.net == "net" && c.overRange == "over_range")
            case .failure(let problems): #expect(!p.hasMotionBit && "\(problems)".contains("stable_window"))
            }
            #expect((try? spread.resolveChannels(devices: devices).get()) != nil)
        }
    }

    struct TallyCase: Sendable, CustomTestStringConvertible {
        var scaleProtocol: ScaleProtocol
        var checksum = false
        var unit: ScaleUnit = .kilogram
        var decimals = 0
        var testDescription: String { "\(scaleProtocol.rawValue) in \(unit) with \(decimals) decimals\(checksum ? ", checksum" : "")" }
    }

    @Test("simulated trucks streamed with faults, parsed, as readings into the weighbridge tally: tickets match the truth",
          arguments: [
              TallyCase(scaleProtocol: .toledoContinuous, checksum: true), TallyCase(scaleProtocol: .toledoContinuous),
              TallyCase(scaleProtocol: .yaohuaTF0, unit: .tonne, decimals: 2), TallyCase(scaleProtocol: .yaohuaTF0),
              TallyCase(scaleProtocol: .xk3190A12, unit: .tonne, decimals: 3),
          ])
    func ticketsMatchTruth(c: TallyCase) throws {
        var p = ScaleStreamParameters(scaleProtocol: c.scaleProtocol)
        p.checksum = c.checksum
        p.unit = c.unit
        p.decimals = c.decimals
        p.garbageRate = 0.1
        p.splitRate = 0.2
        p.badChecksumRate = 0.05
        p.seed = 42
        p.trucks = WeighbridgeModel.randomTrucks(count: 6, every: .seconds(40), outboundAfter: .seconds(25), seed: 42)
        var script = ScaleStreamScript(p)
        let layout = ScaleChannelLayout.builtin(for: c.scaleProtocol, unit: c.unit == .tonne ? .tonne : .kilogram)
        let zeroBand = c.unit == .tonne ? 0.04 : 40
        var config = WeighbridgeConfig(name: "wb2", device: Self.device, pairing: .order, defaultMaterial: "msw")
        if !c.scaleProtocol.hasMotionBit { config.spreadCheck = .init(window: .seconds(2), tolerance: .zero) }
        var tally = try WeighbridgeTally(config: config, devices: [Self.device: layout.channelRoles(zeroBand: zeroBand)])
        var parser = ScaleStreamParser(protocol: c.scaleProtocol, checksum: c.checksum)
        var closed: [Ticket] = []
        var others: [WeighbridgeOutput] = []
        let end = (script.model.passes.last.map { $0.stable.upperBound } ?? .zero) + .seconds(10)
        var elapsed = Duration.zero
        while elapsed < end {
            let (_, _, pieces) = script.next(at: elapsed)
            for piece in pieces {
                parser.feed(piece.bytes) { frame in
                    for out in tally.consume(layout.readings(of: frame, device: Self.device, time: Self.t0.adding(elapsed))) {
                        if case .ticketClosed(let t) = out { closed.append(t) } else { others.append(out) }
                    }
                }
            }
            elapsed += .milliseconds(100)
        }
        let truth = script.model.passes
        #expect(closed.count == truth.count / 2, "\(others)")
        // Pairing in order: the k-th ticket is the k-th truck's inbound then outbound pass.
        let byVehicle = Dictionary(grouping: truth, by: \.vehicle)
        for ticket in closed {
            let vehicle = truth.first { Mass(kilograms: Int64($0.kilograms)) == ticket.gross && $0.direction == .inbound }?.vehicle
            let passes = vehicle.flatMap { byVehicle[$0] } ?? []
            #expect(passes.count == 2, "ticket \(ticket.id) gross \(String(describing: ticket.gross)) matches no truck")
            #expect(ticket.tare == passes.last.map { Mass(kilograms: Int64($0.kilograms)) })
            #expect(ticket.direction == .received && ticket.flags == [])
        }
        let injected = script.injected
        #expect(parser.counters.frames == UInt64(injected.frames))
        #expect(parser.counters.discardedBytes == UInt64(injected.garbageBytes) && injected.garbageBytes > 0)
        #expect(parser.counters.badChecksums == UInt64(injected.badChecksums))
        #expect(injected.splitFrames > 0)
    }
}
