@testable import Acquisition
import KilnTallyCore
import Testing

func channel(_ name: String, _ table: RegisterTable, _ address: Int, _ type: ValueType) -> ChannelConfig {
    ChannelConfig(id: ChannelID(name), table: table, address: address, type: type, wordOrder: .abcd, scale: 1, offset: 0, unit: nil)
}

/// Fewest requests that cover the channels (sorted by address) when each request reads a run of consecutive
/// channels — computed by dynamic programming, independently of the planner's greedy rule.
func optimalRequestCount(_ chans: [ChannelConfig], limits: PlannerLimits) -> Int {
    var total = 0
    for table in RegisterTable.allCases {
        let limit = table.isBitTable ? limits.maxBits : limits.maxRegisters
        let c = chans.filter { $0.table == table }.sorted { $0.address < $1.address }
        guard !c.isEmpty else { continue }
        var best = [Int](repeating: .max, count: c.count + 1)
        best[0] = 0
        for end in 1...c.count {
            for start in 0..<end where best[start] != .max {
                let run = c[start..<end]
                let lo = run.first!.address
                var hi = lo, ok = true
                for ch in run {
                    if ch.address - hi > limits.maxGap { ok = false; break }
                    hi = max(hi, ch.address + ch.registerCount)
                }
                if ok && hi - lo <= limit { best[end] = min(best[end], best[start] + 1) }
            }
        }
        total += best[c.count]
    }
    return total
}

@Suite("Request planner")
struct PlannerTests {
    @Test("the simulated belt scale: three holding channels with a 2-register gap become one request")
    func beltScale() {
        let chans = [
            channel("rate", .holding, 1009, .uint32), channel("total1", .holding, 1015, .uint32),
            channel("speed", .holding, 1013, .uint32), channel("rate_f32", .input, 0, .float32),
            channel("total_kg_cdab", .input, 4, .uint32), channel("running", .coil, 0, .bool),
        ]
        let plan = RequestPlanner.plan(chans, limits: .init())
        #expect(plan.map { "\($0.table.rawValue)@\($0.address)+\($0.count)" } == ["coil@0+1", "holding@1009+8", "input@0+6"])
        #expect(RequestPlanner.wasted(plan, channels: chans) == 4)  // 1011-1012 and input 2-3
        #expect(plan.count == 3)
        // A gap budget of 1 keeps the gaps out, at the price of more requests.
        let strict = RequestPlanner.plan(chans, limits: .init(maxGap: 1))
        #expect(strict.count == 5)
        #expect(RequestPlanner.wasted(strict, channels: chans) == 0)
    }

    @Test("bus limits split long runs; bit tables use the bit limit")
    func limits() {
        let regs = (0..<100).map { channel("r\($0)", .holding, $0 * 2, .uint32) }  // 200 registers, contiguous
        let plan = RequestPlanner.plan(regs, limits: .init(maxRegisters: 125))
        #expect(plan.map(\.count) == [124, 76])
        let gateway = RequestPlanner.plan(regs, limits: .init(maxRegisters: 32))
        #expect(gateway.allSatisfy { $0.count <= 32 } && gateway.count == 7)
        let bits = (0..<3000).map { channel("b\($0)", .coil, $0, .bool) }
        #expect(RequestPlanner.plan(bits, limits: .init()).map(\.count) == [2000, 1000])
    }

    @Test("random maps: every channel exactly once, inside its request, limits kept, and as few requests as possible", arguments: 0..<200)
    func properties(seed: UInt64) {
        var rng = SplitMix64(seed: seed &+ 11)
        let types: [ValueType] = [.uint16, .int16, .uint32, .float32, .float64, .uint64]
        var chans: [ChannelConfig] = []
        for i in 0..<Int(rng.next() % 40 + 1) {
            let table = RegisterTable.allCases[Int(rng.next() % 4)]
            let type = table.isBitTable ? ValueType.bool : types[Int(rng.next() % UInt64(types.count))]
            chans.append(channel("c\(i)", table, Int(rng.next() % 400), type))
        }
        let limits = PlannerLimits(maxRegisters: Int(rng.next() % 120 + 5), maxBits: Int(rng.next() % 100 + 5), maxGap: Int(rng.next() % 20))
        let plan = RequestPlanner.plan(chans, limits: limits)
        let covered = plan.flatMap(\.channels).sorted()
        #expect(covered == Array(chans.indices), "every channel exactly once")
        for r in plan {
            #expect(r.count <= (r.table.isBitTable ? limits.maxBits : limits.maxRegisters))
            for i in r.channels {
                #expect(chans[i].table == r.table && chans[i].address >= r.address
                        && chans[i].address + chans[i].registerCount <= r.end)
            }
        }
        #expect(plan.count == optimalRequestCount(chans, limits: limits))
    }
}

@Suite("Dead-device backoff")
struct BackoffTests {
    @Test("2, 4, 8 … poll intervals after consecutive failures, capped", arguments: [
        (1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (40, 60.0),
    ])
    func schedule(failures: Int, seconds: Double) {
        let d = BusPoller.backoff(pollInterval: .seconds(1), failures: failures, cap: .seconds(60))
        #expect(d == .milliseconds(Int64(seconds * 1000)))
    }

    @Test func capBelowTheFirstStep() {
        #expect(BusPoller.backoff(pollInterval: .milliseconds(500), failures: 1, cap: .milliseconds(700)) == .milliseconds(700))
        #expect(BusPoller.backoff(pollInterval: .milliseconds(500), failures: 0, cap: .seconds(60)) == .milliseconds(500))
    }
}
