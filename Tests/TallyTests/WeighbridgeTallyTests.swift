import Foundation
import KilnTallyCore
import Tally
import Testing

@Suite("Weighbridge tickets")
struct WeighbridgeTallyTests {
    static let ft112 = TestIndicator(stability: .motionBit, ticketNumber: true)

    // MARK: - Worked example 6

    @Test("worked example 6: gross 31,480 kg at 09:12:40, tare 12,260 kg at 09:41:05, same ticket number → net 19,220 kg")
    func workedExample6() throws {
        let indicator = Self.ft112
        // This indicator keeps one number per transaction (the worked example's premise): pairing by it is asked for.
        var tally = try indicator.tally(indicator.config(pairing: .ticketNumber))
        #expect(tally.pairing == .ticketNumber)
        let inbound = tally.feed([
            Shown(time: at(9, 12, 30), kg: 0, stable: true, ticket: 6),
            Shown(time: at(9, 12, 34), kg: 14_980, stable: false, ticket: 6),
            Shown(time: at(9, 12, 38), kg: 31_520, stable: false, ticket: 6),
            Shown(time: at(9, 12, 39), kg: 31_480, stable: false, ticket: 7),
            Shown(time: at(9, 12, 40), kg: 31_480, stable: true, ticket: 7),
            Shown(time: at(9, 12, 46), kg: 31_480, stable: true, ticket: 7),
            Shown(time: at(9, 12, 49), kg: 9_000, stable: false, ticket: 7),
            Shown(time: at(9, 12, 52), kg: 0, stable: true, ticket: 7),
        ], indicator)
        #expect(inbound.count == 1)
        let opened = try #require(inbound.opened.first)
        #expect(opened.id == "wb1-1" && opened.revision == 1 && opened.status == .open)
        #expect(opened.inbound.time == at(9, 12, 40) && opened.inbound.weight == Mass(kilograms: 31_480))
        #expect(opened.inbound.rawWeight == [0, 31_480])
        #expect(opened.inbound.status == [
            .init(role: "motion", channel: "unstable", value: false, raw: [0]),
            .init(role: "over_range", channel: "over", value: false, raw: [0]),
            .init(role: "under_range", channel: "under", value: false, raw: [0]),
            .init(role: "net", channel: "net_mode", value: false, raw: [0]),
        ])
        #expect(opened.indicatorTicket == "7" && opened.material == "msw" && opened.materialSource == .configured)
        #expect(opened.gross == nil && opened.net == nil && opened.closedAt == nil)
        #expect(tally.openTickets == [opened])

        let outbound = tally.feed([
            Shown(time: at(9, 41, 0), kg: 12_300, stable: false, ticket: 7),
            Shown(time: at(9, 41, 5), kg: 12_260, stable: true, ticket: 7),
            Shown(time: at(9, 41, 9), kg: 12_260, stable: true, ticket: 7),
            Shown(time: at(9, 41, 12), kg: 0, stable: true, ticket: 7),
        ], indicator)
        #expect(outbound.count == 1)
        let closed = try #require(outbound.closed.first)
        #expect(closed.id == "wb1-1" && closed.revision == 2 && closed.status == .closed)
        #expect(closed.gross == Mass(kilograms: 31_480) && closed.tare == Mass(kilograms: 12_260))
        #expect(closed.net == Mass(kilograms: 19_220) && closed.net?.kilogramsString == "19220.000")
        #expect(closed.closedAt == at(9, 41, 5) && closed.outbound?.time == at(9, 41, 5))
        #expect(closed.inbound == opened.inbound)
        #expect(closed.direction == .received && closed.tareSource == .weighed && closed.isReceipt)
        #expect(closed.flags == [] && closed.hj212Flag == "N")
        #expect(tally.openTickets.isEmpty)
        // The ticket counts in the shift that contains 09:41:05 (08:00-16:00), not the one before.
        let shiftB = Shift(id: ShiftID(localDate: "2026-11-23", name: "B"), start: at(8, 0, 0), end: at(16, 0, 0),
                           crew: nil, localStart: "", localEnd: "")
        let shiftA = Shift(id: ShiftID(localDate: "2026-11-23", name: "A"), start: at(0, 0, 0), end: at(8, 0, 0),
                           crew: nil, localStart: "", localEnd: "")
        #expect(shiftB.contains(closed.closedAt!) && !shiftA.contains(closed.closedAt!))
    }

    // MARK: - Traces

    @Test("a noisy truck trace is captured at its first stable poll, whichever polarity the indicator has",
          arguments: [TestIndicator.Stability.motionBit, .stableBit, .both])
    func noisyTrace(stability: TestIndicator.Stability) throws {
        let indicator = TestIndicator(stability: stability)
        var tally = try indicator.tally(indicator.config())
        #expect(tally.pairing == .order)
        var random = SplitMix64(seed: 42)
        let (polls, _) = TruckTrace().shown([.init(kg: 31_480), .init(kg: 12_260)], from: at(9, 0, 0), random: &random)
        let out = tally.feed(polls, indicator)
        // Pass 1 is stable from 09:00:07 (gap 2 s, ramp 4 s, settle 1 s); pass 1 lasts 16 s, so pass 2 is stable
        // from 09:00:16 + 7 s.
        #expect(out.count == 2 && out.events.isEmpty)
        #expect(out.opened.map(\.inbound.time) == [at(9, 0, 7)])
        let closed = try #require(out.closed.first)
        #expect(closed.inbound.time == at(9, 0, 7) && closed.closedAt == at(9, 0, 23))
        #expect(closed.gross == Mass(kilograms: 31_480) && closed.tare == Mass(kilograms: 12_260))
        #expect(closed.net == Mass(kilograms: 19_220))
    }

    @Test func stabilityBitsThatDisagreeHoldTheCapture() throws {
        let indicator = TestIndicator(stability: .both)
        var tally = try indicator.tally(indicator.config())
        // A stable bit saying stable and a motion bit saying moving: not stable.
        let polls = [Shown(time: at(9, 0, 0), kg: 0, stable: true), Shown(time: at(9, 0, 1), kg: 20_000, stable: true),
                     Shown(time: at(9, 0, 2), kg: 0, stable: true)]
        var readings = polls.map(indicator.poll)
        readings[1] = readings[1].map { r in r.channel == "unstable" ? Reading(device: r.device, channel: r.channel, time: r.time, value: .bool(true), raw: [1]) : r }
        let out = readings.flatMap { tally.consume($0) }
        #expect(out.opened.isEmpty)
        #expect(out.events.map(\.kind) == [.weighingMissed] && out.events.first?.attributes["reason"] == "motion")
    }

    @Test func truckThatLeavesBeforeSettlingGivesAnEventAndNoTicket() throws {
        let indicator = Self.ft112
        var tally = try indicator.tally(indicator.config(pairing: .order))
        var random = SplitMix64(seed: 3)
        let (polls, _) = TruckTrace().shown([.init(kg: 28_000, settles: false), .init(kg: 30_000)],
                                             from: at(9, 0, 0), random: &random)
        let out = tally.feed(polls, indicator)
        // Pass 1: gap 2 s, ramp 4 s, settle 1 s, ramp down 3 s: the scale is empty again at 09:00:10.
        let missed = try #require(out.events.first)
        #expect(out.events.count == 1 && missed.kind == .weighingMissed && missed.severity == .warning)
        #expect(missed.time == at(9, 0, 10) && missed.device == "wb1")
        let peak = polls.filter { $0.time < at(9, 0, 10) }.map(\.kg).max()!
        #expect(missed.attributes == ["weighbridge": "wb1", "reason": "motion", "peak_kg": Mass(kilograms: peak).kilogramsString,
                                      "since": polls.first { $0.kg > 40 }!.time.rfc3339])
        // The next truck gets the first ticket number: a missed weighing uses none.
        #expect(out.opened.map(\.id) == ["wb1-1"] && out.opened.first?.inbound.weight == Mass(kilograms: 30_000))
        // Pass 2 starts at 09:00:10 and is stable 7 s later.
        #expect(out.opened.first?.inbound.time == at(9, 0, 17))
    }

    @Test func lightPassesAreIgnored() throws {
        let indicator = Self.ft112
        var tally = try indicator.tally(indicator.config(minWeight: 1_000))
        let out = tally.feed([
            Shown(time: at(9, 0, 0), kg: 0, stable: true, ticket: 1),
            Shown(time: at(9, 0, 1), kg: 980, stable: false, ticket: 1),
            Shown(time: at(9, 0, 2), kg: 1_000, stable: true, ticket: 1),  // not above the minimum
            Shown(time: at(9, 0, 3), kg: 0, stable: true, ticket: 1),
        ], indicator)
        #expect(out.isEmpty && !tally.isPassInProgress)
    }

    @Test("two trucks back to back without the scale reaching zero: one capture and a scale_not_zeroed event")
    func backToBackWithoutZero() throws {
        let indicator = TestIndicator(stability: .motionBit)
        var tally = try indicator.tally(indicator.config())
        var random = SplitMix64(seed: 11)
        let (polls, _) = TruckTrace().shown([.init(kg: 31_000, zeroAfter: false), .init(kg: 25_000), .init(kg: 12_000)],
                                             from: at(9, 0, 0), random: &random)
        let out = tally.feed(polls, indicator)
        // Truck 1 stable at 09:00:07, hold to :13, half a ramp down to :14.5; truck 2 drives on at once: ramp
        // :14.5-:18.5, settle to :19.5, stable from 09:00:19.5; it leaves (ramp down to :28.5) and the scale is
        // empty until :30.5; truck 3 (truck 1 empty) is stable 7 s after :28.5.
        #expect(out.opened.map(\.inbound.time) == [at(9, 0, 7)])
        let notZeroed = try #require(out.events.first)
        #expect(out.events.count == 1 && notZeroed.kind == .scaleNotZeroed && notZeroed.time == at(9, 0, 19, ms: 500))
        #expect(notZeroed.attributes["weight_kg"] == "25000.000" && notZeroed.attributes["captured_kg"] == "31000.000")
        // Truck 2's weighing is lost; truck 3 closes truck 1's ticket in order.
        #expect(out.closed.count == 1 && out.closed.first?.closedAt == at(9, 0, 35, ms: 500))
        #expect(out.closed.first?.net == Mass(kilograms: 19_000))
    }

    @Test("two trucks back to back with zero between: two tickets, paired by vehicle")
    func backToBackWithZeroPairedByVehicle() throws {
        let indicator = TestIndicator(stability: .stableBit, vehicle: true)
        var tally = try indicator.tally(indicator.config())
        #expect(tally.pairing == .vehicleID)
        var random = SplitMix64(seed: 5)
        // A in, B in, A out, B out: 16 s a pass, each stable 7 s after it starts.
        let (polls, _) = TruckTrace().shown([
            .init(kg: 31_000, vehicle: "A"), .init(kg: 29_000, vehicle: "B"),
            .init(kg: 12_000, vehicle: "A"), .init(kg: 13_500, vehicle: "B"),
        ], from: at(9, 0, 0), random: &random)
        let out = tally.feed(polls, indicator)
        #expect(out.events.isEmpty)
        #expect(out.opened.map(\.id) == ["wb1-1", "wb1-2"] && out.opened.map(\.vehicle) == ["A", "B"])
        #expect(out.closed.map(\.id) == ["wb1-1", "wb1-2"])
        #expect(out.closed.map(\.closedAt) == [at(9, 0, 39), at(9, 0, 55)])
        #expect(out.closed.map(\.net) == [Mass(kilograms: 19_000), Mass(kilograms: 15_500)])
    }

    // MARK: - Pairing

    /// One clean pass: empty, stable at `kg` for two polls, empty; 10 s.
    static func pass(at start: UTCInstant, kg: Int64, ticket: UInt64? = nil, vehicle: String? = nil,
                     material: String? = nil) -> [Shown] {
        let t = { (s: Int64) in UTCInstant(nanosecondsSinceEpoch: start.nanosecondsSinceEpoch + s * 1_000_000_000) }
        return [
            Shown(time: t(0), kg: 0, stable: true, ticket: ticket, vehicle: vehicle, material: material),
            Shown(time: t(2), kg: kg - 60, stable: false, ticket: ticket, vehicle: vehicle, material: material),
            Shown(time: t(4), kg: kg, stable: true, ticket: ticket, vehicle: vehicle, material: material),
            Shown(time: t(6), kg: kg, stable: true, ticket: ticket, vehicle: vehicle, material: material),
            Shown(time: t(8), kg: 0, stable: true, ticket: ticket, vehicle: vehicle, material: material),
        ]
    }

    @Test func pairsByTicketNumber() throws {
        let indicator = Self.ft112
        var tally = try indicator.tally(indicator.config(pairing: .ticketNumber))
        let out = tally.feed(
            Self.pass(at: at(9, 0, 0), kg: 31_000, ticket: 11) + Self.pass(at: at(9, 1, 0), kg: 29_000, ticket: 12)
                + Self.pass(at: at(9, 2, 0), kg: 13_500, ticket: 12) + Self.pass(at: at(9, 3, 0), kg: 12_000, ticket: 11)
                + Self.pass(at: at(9, 4, 0), kg: 30_000, ticket: 13),
            indicator)
        #expect(out.opened.map(\.id) == ["wb1-1", "wb1-2", "wb1-3"])
        #expect(out.opened.map(\.indicatorTicket) == ["11", "12", "13"])
        // Ticket 12 closes first, then 11; 13 stays open.
        #expect(out.closed.map(\.id) == ["wb1-2", "wb1-1"])
        #expect(out.closed.map(\.closedAt) == [at(9, 2, 4), at(9, 3, 4)])
        #expect(out.closed.map(\.net) == [Mass(kilograms: 15_500), Mass(kilograms: 19_000)])
        #expect(tally.openTickets.map(\.id) == ["wb1-3"])
    }

    @Test func pairsInOrderAndTheHeavierWeighingIsGross() throws {
        let indicator = TestIndicator(stability: .motionBit)
        var tally = try indicator.tally(indicator.config())
        let out = tally.feed(
            Self.pass(at: at(9, 0, 0), kg: 31_480) + Self.pass(at: at(9, 1, 0), kg: 12_260)
                // A pickup: in empty, out loaded.
                + Self.pass(at: at(9, 2, 0), kg: 12_000) + Self.pass(at: at(9, 3, 0), kg: 26_500),
            indicator)
        #expect(out.map(\.kind) == ["opened", "closed", "opened", "closed"])
        let (delivery, pickup) = (out.closed[0], out.closed[1])
        #expect(delivery.direction == .received && delivery.isReceipt && delivery.net == Mass(kilograms: 19_220))
        #expect(pickup.direction == .dispatched && !pickup.isReceipt)
        #expect(pickup.gross == Mass(kilograms: 26_500) && pickup.tare == Mass(kilograms: 12_000))
        #expect(pickup.net == Mass(kilograms: 14_500) && pickup.inbound.weight == Mass(kilograms: 12_000))
    }

    @Test("a capture waits for the pairing register; a pass without it is missed", arguments: [
        (WeighbridgeConfig.Pairing.ticketNumber, "no_ticket_number"), (.vehicleID, "no_vehicle_id"),
    ])
    func pairingRegisterRequired(pairing: WeighbridgeConfig.Pairing, reason: String) throws {
        let indicator = TestIndicator(ticketNumber: true, vehicle: true)
        var tally = try indicator.tally(indicator.config(pairing: pairing))
        var polls = Self.pass(at: at(9, 0, 0), kg: 31_000, ticket: 5, vehicle: "A")
        polls[2].ticket = nil
        polls[2].vehicle = nil
        let out = tally.feed(polls, indicator)
        #expect(out.opened.map(\.inbound.time) == [at(9, 0, 6)])  // the second stable poll

        polls = Self.pass(at: at(9, 1, 0), kg: 12_000)
        let missed = tally.feed(polls, indicator)
        #expect(missed.events.map(\.kind) == [.weighingMissed] && missed.events.first?.attributes["reason"] == reason)
        #expect(tally.openTickets.count == 1)
    }

    // MARK: - One pass

    @Test func onePassWithPresetTare() throws {
        let indicator = TestIndicator(vehicle: true)
        var tally = try indicator.tally(indicator.config(mode: .onePass, presets: ["ZJ-A123": 12_260, "ZJ-B777": 13_000]))
        var late = Self.pass(at: at(9, 3, 0), kg: 27_000, vehicle: "ZJ-B777")
        late[2].vehicle = nil  // the plate is read one poll late
        let out = tally.feed(
            Self.pass(at: at(9, 0, 0), kg: 31_480, vehicle: "ZJ-A123") + Self.pass(at: at(9, 1, 0), kg: 30_000, vehicle: "ZJ-X")
                + Self.pass(at: at(9, 2, 0), kg: 12_200, vehicle: "ZJ-A123") + late,
            indicator)
        #expect(out.opened.isEmpty)
        #expect(out.closed.map(\.id) == ["wb1-1", "wb1-2"])
        let first = out.closed[0]
        #expect(first.revision == 1 && first.status == .closed && first.closedAt == at(9, 0, 4) && first.outbound == nil)
        #expect(first.gross == Mass(kilograms: 31_480) && first.tare == Mass(kilograms: 12_260))
        #expect(first.net == Mass(kilograms: 19_220) && first.tareSource == .preset && first.flags == [.presetTare])
        #expect(out.closed[1].closedAt == at(9, 3, 6) && out.closed[1].net == Mass(kilograms: 14_000))
        #expect(out.events.map(\.kind) == [.weighingRejected, .weighingRejected])
        #expect(out.events.map(\.time) == [at(9, 1, 4), at(9, 2, 4)])
        #expect(out.events.map { $0.attributes["vehicle"] } == ["ZJ-X", "ZJ-A123"])
        #expect(out.events[0].message.contains("has no preset tare"))
        #expect(out.events[1].message.contains("not above the vehicle's preset tare"))
    }

    // MARK: - Software stability check

    /// Weights every 500 ms from 09:00:00; a `nil` weight is a reading that timed out.
    static func settling(_ kgs: [Int64?]) -> [Shown] {
        kgs.enumerated().map { i, kg in
            Shown(time: at(9, 0, 0, ms: Int64(i) * 500), kg: kg ?? 0, stable: true,
                  weightQuality: kg == nil ? .timeout : .good)
        }
    }

    // 09:00:00 0; :01 15,000 (index 2); :02 31,400; :02.5 31,520; :03 31,480; :03.5 31,500; then 31,480.
    static let settlingWeights: [Int64?] = [0, 7_000, 15_000, 25_000, 31_400, 31_520, 31_480, 31_500,
                                            31_480, 31_480, 31_480, 31_480, 31_480, 31_480, 31_480, 31_480]

    @Test("spread over a 2 s window within the tolerance", arguments: [
        // Tolerance 20: at :05 the window reaches back to :03 (31,480), the spread is 31,500 − 31,480 = 20.
        // (At :04.5 it reaches back to :02.5 and 31,520 gives 40.)
        (TestIndicator.Stability.none, Int64(20), at(9, 0, 5), Int64(20)),
        (.motionBit, 20, at(9, 0, 5), 20),
        // Tolerance 10: at :05.5 the window still holds :03.5's 31,500; at :06 only 31,480s, spread 0.
        (.none, 10, at(9, 0, 6), 0),
    ])
    func spreadCheck(stability: TestIndicator.Stability, tolerance: Int64, capturedAt: UTCInstant, spread: Int64) throws {
        let indicator = TestIndicator(stability: stability, rangeBits: stability != .none, netBit: false)
        var tally = try indicator.tally(indicator.config(spread: (.seconds(2), tolerance)))
        let out = tally.feed(Self.settling(Self.settlingWeights), indicator)
        let opened = try #require(out.opened.first)
        #expect(out.count == 1 && opened.inbound.time == capturedAt)
        #expect(opened.inbound.weight == Mass(kilograms: 31_480) && opened.inbound.spread == Mass(kilograms: spread))
    }

    @Test func aReadingThatIsNotGoodRestartsTheWindow() throws {
        let indicator = TestIndicator(stability: .none, rangeBits: false, netBit: false)
        var tally = try indicator.tally(indicator.config(spread: (.seconds(2), 20)))
        var weights = Self.settlingWeights
        weights[8] = nil  // 09:00:04 times out: the window starts again at :04.5 and is full at :06.5
        let out = tally.feed(Self.settling(weights), indicator)
        #expect(out.opened.map(\.inbound.time) == [at(9, 0, 6, ms: 500)])
        #expect(out.opened.first?.inbound.spread == .zero)
    }

    @Test func aClockSteppingBackRestartsTheWindow() throws {
        let indicator = TestIndicator(stability: .none, rangeBits: false, netBit: false)
        var tally = try indicator.tally(indicator.config(spread: (.seconds(2), 20)))
        var polls = Self.settling(Self.settlingWeights)
        // From 09:00:04 on the clock reads 10 s earlier: the window restarts at 08:59:54 and is full 2 s later.
        for i in 8..<polls.count { polls[i].time = UTCInstant(nanosecondsSinceEpoch: polls[i].time.nanosecondsSinceEpoch - 10_000_000_000) }
        let out = tally.feed(polls, indicator)
        #expect(out.opened.map(\.inbound.time) == [at(8, 59, 56)])
    }

    // MARK: - Status conditions

    @Test("a stable weight is not captured while", arguments: [
        ("over range", "over_range"), ("under range", "under_range"), ("net mode", "net_mode"),
        ("status not read", "status_not_read"),
    ])
    func heldBy(condition: String, reason: String) throws {
        let indicator = TestIndicator(stability: .motionBit)
        var tally = try indicator.tally(indicator.config())
        var polls = Self.pass(at: at(9, 0, 0), kg: 31_000)
        for i in 1...3 {
            switch condition {
            case "over range": polls[i].overRange = true
            case "under range": polls[i].underRange = true
            case "net mode": polls[i].net = true
            default: polls[i].statusQuality = .commFailure
            }
        }
        let out = tally.feed(polls, indicator)
        #expect(out.opened.isEmpty)
        #expect(out.events.last?.kind == .weighingMissed && out.events.last?.attributes["reason"] == reason)
        #expect(out.events.last?.time == at(9, 0, 8))
        #expect(out.events.map(\.kind).filter { $0 == .weighbridgeOverRange }.count == (condition == "over range" ? 1 : 0))
    }

    @Test func overRangeOnTheScaleFlagsTheTicket() throws {
        let indicator = TestIndicator(stability: .motionBit)
        var tally = try indicator.tally(indicator.config())
        // Before the capture of pass 1; after the capture of pass 2 (its open ticket is flagged); after pass 4's
        // closing capture (the closed ticket is out already: the event only).
        var p1 = Self.pass(at: at(9, 0, 0), kg: 31_000)
        p1[1].overRange = true
        var p2 = Self.pass(at: at(9, 1, 0), kg: 30_000)
        p2[3].overRange = true
        var p4 = Self.pass(at: at(9, 3, 0), kg: 11_000)
        p4[3].overRange = true
        let out = tally.feed(p1 + Self.pass(at: at(9, 0, 30), kg: 12_000) + p2 + p4, indicator)
        #expect(out.events.map(\.kind) == [.weighbridgeOverRange, .weighbridgeOverRange, .weighbridgeOverRange])
        #expect(out.events.map(\.time) == [at(9, 0, 2), at(9, 1, 6), at(9, 3, 6)])
        #expect(out.opened.map(\.flags) == [[.overRange], []])
        #expect(out.closed.map(\.flags) == [[.overRange], [.overRange]])
        #expect(out.closed.map(\.hj212Flag) == ["T", "T"])
    }

    @Test func unsynchronizedClockFlagsTheTicket() throws {
        let indicator = Self.ft112
        var tally = try indicator.tally(indicator.config())
        var inbound = Self.pass(at: at(9, 0, 0), kg: 31_000, ticket: 4)
        inbound[2].clockSynchronized = false
        let out = tally.feed(inbound + Self.pass(at: at(9, 1, 0), kg: 12_000, ticket: 4), indicator)
        #expect(out.opened.first?.inbound.clockSynchronized == false && out.opened.first?.flags == [.clockUnsynchronized])
        #expect(out.closed.first?.outbound?.clockSynchronized == true && out.closed.first?.flags == [.clockUnsynchronized])
    }

    // MARK: - Material

    @Test func materialFromTheChannelThenTheSecondWeighingThenTheDefault() throws {
        let indicator = TestIndicator(material: true)
        var tally = try indicator.tally(indicator.config())
        let out = tally.feed(
            Self.pass(at: at(9, 0, 0), kg: 31_000, material: " MSW-A ") + Self.pass(at: at(9, 1, 0), kg: 12_000, material: "RDF")
                + Self.pass(at: at(9, 2, 0), kg: 30_000) + Self.pass(at: at(9, 3, 0), kg: 12_000, material: "SLUDGE")
                + Self.pass(at: at(9, 4, 0), kg: 30_000) + Self.pass(at: at(9, 5, 0), kg: 12_000),
            indicator)
        #expect(out.closed.map(\.material) == ["MSW-A", "SLUDGE", "msw"])
        #expect(out.closed.map(\.materialSource) == [.channel, .channel, .configured])
    }

    // MARK: - Corrections

    @Test func correctionsAreRevisionsFlaggedS() throws {
        let indicator = TestIndicator(stability: .motionBit)
        var tally = try indicator.tally(indicator.config())
        let opened = try #require(tally.feed(Self.pass(at: at(9, 0, 0), kg: 31_000), indicator).opened.first)

        // On the open ticket: revision 2, still open; the material carries over to the close.
        let set = try tally.setMaterial(ticket: opened, material: "RDF", operator: "li.wei", reason: "LPR misread",
                                        at: at(9, 0, 30))
        let rev2 = try #require(set.revised.first)
        #expect(rev2.revision == 2 && rev2.status == .open && rev2.material == "RDF" && rev2.materialSource == .manual)
        #expect(rev2.flags == [.manual] && rev2.hj212Flag == "S")
        #expect(rev2.corrections == [.init(action: .setMaterial(from: "msw", to: "RDF"), revision: 2, time: at(9, 0, 30),
                                           operatorName: "li.wei", reason: "LPR misread")])
        #expect(set.events.map(\.kind) == [.ticketCorrected] && set.events.first?.attributes["operator"] == "li.wei")
        #expect(tally.openTickets == [rev2])
        // The stale revision 1 is refused.
        #expect(throws: TicketCorrectionError.staleRevision("wb1-1", latest: 2)) {
            try tally.void(ticket: opened, operator: "li.wei", reason: "x", at: at(9, 0, 31))
        }

        let closed = try #require(tally.feed(Self.pass(at: at(9, 1, 0), kg: 12_000), indicator).closed.first)
        #expect(closed.revision == 3 && closed.material == "RDF" && closed.materialSource == .manual)
        #expect(closed.flags == [.manual] && closed.net == Mass(kilograms: 19_000))

        // On the closed ticket (as the ledger has it): revision 4, then voided as revision 5.
        let rev4 = try #require(try tally.setMaterial(ticket: closed, material: "MSW", operator: "zhang", reason: "lab",
                                                      at: at(10, 0, 0)).revised.first)
        #expect(rev4.revision == 4 && rev4.status == .closed && rev4.material == "MSW" && rev4.corrections.count == 2)
        #expect(throws: TicketCorrectionError.unchanged("wb1-1")) {
            try tally.setMaterial(ticket: rev4, material: " MSW ", operator: "zhang", reason: "again", at: at(10, 0, 1))
        }
        let void = try tally.void(ticket: rev4, operator: "zhang", reason: "test weighing", at: at(10, 1, 0))
        let rev5 = try #require(void.revised.first)
        #expect(rev5.revision == 5 && rev5.status == .voided && !rev5.isReceipt && rev5.closedAt == at(9, 1, 4))
        #expect(rev5.corrections.last?.action == .void && void.events.map(\.kind) == [.ticketVoided])
        #expect(throws: TicketCorrectionError.voided("wb1-1")) {
            try tally.setMaterial(ticket: rev5, material: "X", operator: "zhang", reason: "r", at: at(10, 2, 0))
        }
    }

    @Test func voidingAnOpenTicketTakesItOutOfPairing() throws {
        let indicator = TestIndicator(stability: .motionBit)
        var tally = try indicator.tally(indicator.config())
        let falseCapture = try #require(tally.feed(Self.pass(at: at(9, 0, 0), kg: 5_000), indicator).opened.first)
        let out = try tally.void(ticket: falseCapture, operator: "li.wei", reason: "a loader crossed the scale", at: at(9, 0, 20))
        #expect(out.revised.map(\.status) == [.voided] && out.revised.first?.closedAt == nil && tally.openTickets.isEmpty)
        // The next truck opens a ticket of its own instead of closing the false one.
        let next = tally.feed(Self.pass(at: at(9, 1, 0), kg: 31_000) + Self.pass(at: at(9, 2, 0), kg: 12_000), indicator)
        #expect(next.opened.map(\.id) == ["wb1-2"] && next.closed.map(\.id) == ["wb1-2"])
        #expect(throws: TicketCorrectionError.notOpen("wb1-1")) {
            try tally.void(ticket: falseCapture, operator: "li.wei", reason: "again", at: at(9, 3, 0))
        }
    }

    @Test func correctionsAreChecked() throws {
        let indicator = TestIndicator(stability: .motionBit)
        var tally = try indicator.tally(indicator.config())
        let opened = try #require(tally.feed(Self.pass(at: at(9, 0, 0), kg: 31_000), indicator).opened.first)
        var other = opened
        other.weighbridge = "wb2"
        #expect(throws: TicketCorrectionError.otherWeighbridge("wb1-1")) {
            try tally.void(ticket: other, operator: "a", reason: "b", at: at(9, 1, 0))
        }
        #expect(throws: TicketCorrectionError.missing("reason")) {
            try tally.void(ticket: opened, operator: "a", reason: "  ", at: at(9, 1, 0))
        }
        #expect(throws: TicketCorrectionError.missing("operator")) {
            try tally.setMaterial(ticket: opened, material: "RDF", operator: "", reason: "b", at: at(9, 1, 0))
        }
        #expect(throws: TicketCorrectionError.missing("material")) {
            try tally.setMaterial(ticket: opened, material: "", operator: "a", reason: "b", at: at(9, 1, 0))
        }
        // A closed revision of a ticket that is still open here is not its latest.
        var closedCopy = opened
        closedCopy.status = .closed
        #expect(throws: TicketCorrectionError.staleRevision("wb1-1", latest: 1)) {
            try tally.void(ticket: closedCopy, operator: "a", reason: "b", at: at(9, 1, 0))
        }
        #expect(tally.openTickets == [opened])
    }

    // MARK: - Polls, devices, checkpoints

    @Test func severalPollsInOneCallAndOtherDevicesReadings() throws {
        let indicator = Self.ft112
        let polls = Self.pass(at: at(9, 0, 0), kg: 31_000, ticket: 1) + Self.pass(at: at(9, 1, 0), kg: 12_000, ticket: 1)
        var one = try indicator.tally(indicator.config())
        let expected = one.feed(polls, indicator)
        var all = try indicator.tally(indicator.config())
        let belt = TestIndicator(device: "belt1", ticketNumber: true)
        // Interleaved with a device that looks the same but is not the weighbridge.
        let readings = polls.flatMap { s in
            var other = s
            other.kg = 40_000
            other.ticket = 99
            return indicator.poll(s) + belt.poll(other)
        }
        #expect(all.consume(readings) == expected)
        #expect(all == one && expected.count == 2)
    }

    @Test func checkpointRoundTripContinuesIdentically() throws {
        let indicator = TestIndicator(stability: .motionBit, vehicle: true)
        let config = indicator.config(pairing: .vehicleID, spread: (.milliseconds(1_500), 20))
        var random = SplitMix64(seed: 99)
        let (polls, _) = TruckTrace().shown([
            .init(kg: 31_000, vehicle: "A"), .init(kg: 29_000, vehicle: "B", settles: false), .init(kg: 28_000, vehicle: "B"),
            .init(kg: 12_000, vehicle: "A", zeroAfter: false), .init(kg: 13_000, vehicle: "B"),
        ], from: at(9, 0, 0), random: &random)
        var reference = try indicator.tally(config)
        var expected: [[WeighbridgeOutput]] = []
        var states: [WeighbridgeTally] = []
        for p in polls {
            states.append(reference)
            expected.append(reference.consume(indicator.poll(p)))
        }
        #expect(Array(expected.joined()).opened.count == 2 && Array(expected.joined()).closed.count == 1)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Restart from a checkpoint before every poll: the rest of the run is the same.
        for cut in stride(from: 0, to: polls.count, by: 1) {
            let data = try encoder.encode(states[cut])
            var restored = try JSONDecoder().decode(WeighbridgeTally.self, from: data)
            #expect(restored == states[cut])
            #expect(try encoder.encode(restored) == data)
            let rest = polls[cut...].map { restored.consume(indicator.poll($0)) }
            #expect(Array(rest) == Array(expected[cut...]), "restarted before poll \(cut)")
        }
    }
}

extension WeighbridgeOutput {
    var kind: String {
        switch self {
        case .ticketOpened: "opened"
        case .ticketClosed: "closed"
        case .ticketRevised: "revised"
        case .event(let e): e.kind.rawValue
        }
    }
}
