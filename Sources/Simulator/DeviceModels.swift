import KilnTallyCore
#if canImport(Glibc)
import Glibc
#endif

/// The simulator's random source: seeded, so a scenario replays exactly.
public typealias SeededRandom = SplitMix64

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

/// A truck scale's life: each pass is a truck driving on (the weight climbs with the motion bit set), settling,
/// standing still (stable, the weight exact to the division: the indicator prints a ticket), driving off and the
/// scale returning to zero. A truck comes inbound loaded (gross) and leaves outbound empty (tare) later.
public struct WeighbridgeModel: Sendable {
    public struct Truck: Sendable, Hashable {
        public var vehicle: String
        /// When the inbound (loaded) pass starts, from the start of the run.
        public var arrive: Duration
        public var grossKilograms: Int
        public var tareKilograms: Int
        /// How long after arriving the outbound (empty) pass starts.
        public var outboundAfter: Duration

        public init(vehicle: String, arrive: Duration, grossKilograms: Int, tareKilograms: Int, outboundAfter: Duration) {
            self.vehicle = vehicle
            self.arrive = arrive
            self.grossKilograms = grossKilograms
            self.tareKilograms = tareKilograms
            self.outboundAfter = outboundAfter
        }
    }

    /// One pass over the scale, as the simulator knows it (the truth a tally's tickets are checked against).
    public struct Pass: Sendable, Hashable {
        public enum Direction: String, Sendable { case inbound, outbound }
        public var vehicle: String
        public var direction: Direction
        public var start: Duration
        public var kilograms: Int
        /// The ticket number the indicator shows once this pass is stable.
        public var ticket: UInt64
        /// When the weight is on the scale and stable.
        public var stable: Range<Duration>
    }

    public var divisionKilograms: Int = 20
    public var rampUp: Duration = .seconds(4)
    public var settle: Duration = .seconds(1)
    public var hold: Duration = .seconds(6)
    public var rampDown: Duration = .seconds(3)
    public var firstTicket: UInt64 = 1
    /// Noise while the truck moves, kg (± this much on top of the ramp).
    public var motionNoiseKilograms: Double = 150
    public private(set) var passes: [Pass] = []

    public init(trucks: [Truck], divisionKilograms: Int = 20, firstTicket: UInt64 = 1) {
        self.divisionKilograms = max(1, divisionKilograms)
        self.firstTicket = firstTicket
        setTrucks(trucks)
    }

    /// Lays the passes out in time (a pass waits until the previous one has left the scale).
    public mutating func setTrucks(_ trucks: [Truck]) {
        var events: [(Duration, String, Pass.Direction, Int)] = []
        for t in trucks {
            events.append((t.arrive, t.vehicle, .inbound, t.grossKilograms))
            events.append((t.arrive + t.outboundAfter, t.vehicle, .outbound, t.tareKilograms))
        }
        events.sort { $0.0 < $1.0 }
        var free = Duration.zero
        var ticket = firstTicket
        passes = []
        let length = rampUp + settle + hold + rampDown
        for (at, vehicle, direction, kg) in events {
            let start = max(at, free)
            let rounded = (kg / divisionKilograms) * divisionKilograms
            let stableFrom = start + rampUp + settle
            passes.append(Pass(vehicle: vehicle, direction: direction, start: start, kilograms: rounded, ticket: ticket,
                               stable: stableFrom..<(stableFrom + hold)))
            ticket += 1
            free = start + length + .seconds(1)
        }
    }

    public struct State: Sendable, Hashable {
        public var kilograms: Int
        public var stable: Bool
        /// The last ticket printed (0 before the first).
        public var ticket: UInt64
        public var vehicle: String
    }

    /// The indicator at `t`; `random` adds the jitter of a moving truck.
    public func state(at t: Duration, random: inout SeededRandom) -> State {
        let printed = passes.last { $0.stable.lowerBound <= t }?.ticket ?? 0
        guard let pass = passes.last(where: { $0.start <= t }), t < pass.stable.upperBound + rampDown else {
            return State(kilograms: 0, stable: true, ticket: printed, vehicle: "")
        }
        let target = Double(pass.kilograms)
        let into = t - pass.start
        var kg: Double
        var stable = false
        if into < rampUp {
            kg = target * (into.seconds / rampUp.seconds) + random.uniform(-motionNoiseKilograms...motionNoiseKilograms)
        } else if into < rampUp + settle {
            kg = target + random.uniform(-motionNoiseKilograms / 3...motionNoiseKilograms / 3)
        } else if t < pass.stable.upperBound {
            kg = target
            stable = true
        } else {
            let out = t - pass.stable.upperBound
            kg = target * (1 - out.seconds / rampDown.seconds) + random.uniform(-motionNoiseKilograms...motionNoiseKilograms)
        }
        kg = max(0, kg)
        let shown = Int((kg / Double(divisionKilograms)).rounded()) * divisionKilograms
        return State(kilograms: stable ? pass.kilograms : shown, stable: stable, ticket: printed, vehicle: pass.vehicle)
    }

    /// `count` trucks a seed makes up: one arriving every `every` (± a third), gross 20-40 t, tare 12-16 t.
    public static func randomTrucks(count: Int, every: Duration, outboundAfter: Duration, seed: UInt64) -> [Truck] {
        var random = SeededRandom(seed: seed)
        var at = Duration.seconds(2)
        return (0..<count).map { i in
            let tare = Int(random.uniform(12_000...16_000))
            let truck = Truck(vehicle: "T\(100 + i)", arrive: at, grossKilograms: tare + Int(random.uniform(8_000...24_000)),
                              tareKilograms: tare, outboundAfter: outboundAfter)
            at += .milliseconds(Int64(Double(every.milliseconds) * random.uniform(0.67...1.33)))
            return truck
        }
    }
}

/// A feeder (belt scale, weigh feeder, pump): a rate moving around its mean, and a mass counter integrated exactly.
///
/// Mass accumulates in integer milligrams with the remainder carried (rate in g/h × elapsed ms), so however many
/// updates there are, no mass is created or lost to rounding; a totalizer shows `floor(mass / count size)` counts
/// modulo its width, which is how a real integrator rolls over.
public struct FeederModel: Sendable {
    public var meanTonnesPerHour: Double
    public var swingTonnesPerHour: Double
    public var period: Duration
    /// Relative noise on the rate (0.02 = ± 2 %).
    public var noise: Double
    /// Mass fed since the start of the run, mg (the truth).
    public private(set) var fedMilligrams: UInt64 = 0
    private var remainder: UInt64 = 0  // mg·ms/h not yet a whole milligram
    public private(set) var tonnesPerHour: Double = 0

    public init(meanTonnesPerHour: Double, swingTonnesPerHour: Double = 0, period: Duration = .seconds(60), noise: Double = 0) {
        self.meanTonnesPerHour = meanTonnesPerHour
        self.swingTonnesPerHour = swingTonnesPerHour
        self.period = period
        self.noise = noise
    }

    /// The rate at `t` (never negative).
    public func rate(at t: Duration, random: inout SeededRandom) -> Double {
        let wave = swingTonnesPerHour * sin(2 * Double.pi * t.seconds / max(period.seconds, 0.001))
        let jitter = noise > 0 ? random.uniform(-noise...noise) : 0
        return max(0, (meanTonnesPerHour + wave) * (1 + jitter))
    }

    /// Feeds at `tonnesPerHour` for `dt`.
    public mutating func advance(by dt: Duration, tonnesPerHour rate: Double) {
        tonnesPerHour = rate
        let milligramsPerHour = UInt64((rate * 1e9).rounded())
        remainder += milligramsPerHour * UInt64(max(0, dt.milliseconds))
        fedMilligrams += remainder / 3_600_000
        remainder %= 3_600_000
    }
}
