import Acquisition
import KilnTallyCore
import RingStore  // SplitMix64, the seeded generator the store's crash tests use

/// (a) Requests per poll cycle from RequestPlanner versus the fewest possible, for several register maps and bus
/// limits. The reference is computed here by dynamic programming, independently of the planner's greedy rule.
enum PlannerBenchmark {
    struct Case {
        var name: String
        var channels: [ChannelConfig]
        var limits: PlannerLimits
    }

    static let gateway = PlannerLimits(maxRegisters: 32, maxBits: 256, maxGap: 4)

    static func run() {
        print("(a) requests per poll cycle: RequestPlanner vs the optimum (DP over the same limits)")
        print(pad("map", 34) + pad("channels", 10) + pad("planner", 9) + pad("optimum", 9)
              + pad("ratio", 7) + "registers wasted in gaps")
        var planned = 0, optimal = 0
        for c in cases() {
            let plan = RequestPlanner.plan(c.channels, limits: c.limits)
            let best = fewestRequests(c.channels, limits: c.limits)
            planned += plan.count
            optimal += best
            print(pad(c.name, 34) + pad(c.channels.count, 10) + pad(plan.count, 9) + pad(best, 9)
                  + pad(fixed(Double(plan.count) / Double(best), 2), 7) + String(RequestPlanner.wasted(plan, channels: c.channels)))
        }
        print("all maps: \(planned) requests vs optimum \(optimal) (ratio \(fixed(Double(planned) / Double(optimal), 3)); goal 1.000)")
    }

    /// The fewest requests covering every channel when a request reads channels that are adjacent in address order,
    /// spans at most the bus limit and skips at most `maxGap` unused registers between two of them: for each table,
    /// cost[j] = fewest requests for the first j channels, relaxed forward from every reachable prefix.
    static func fewestRequests(_ channels: [ChannelConfig], limits: PlannerLimits) -> Int {
        var total = 0
        for table in RegisterTable.allCases {
            let run = channels.filter { $0.table == table }.sorted { $0.address < $1.address }
            guard !run.isEmpty else { continue }
            let cap = table.isBitTable ? limits.maxBits : limits.maxRegisters
            var cost = [Int](repeating: .max, count: run.count + 1)
            cost[0] = 0
            for first in run.indices where cost[first] != .max {
                var reach = run[first].address
                for last in first..<run.count {
                    if last > first && run[last].address - reach > limits.maxGap { break }
                    reach = max(reach, run[last].address + run[last].registerCount)
                    if reach - run[first].address > cap { break }
                    cost[last + 1] = min(cost[last + 1], cost[first] + 1)
                }
            }
            total += cost[run.count]
        }
        return total
    }

    static func ch(_ name: String, _ table: RegisterTable, _ address: Int, _ type: ValueType, bit: Int? = nil) -> ChannelConfig {
        ChannelConfig(id: ChannelID(name), table: table, address: address, type: type, bit: bit)
    }

    static func cases() -> [Case] {
        // 40 uint32 then 20 uint16: 100 registers without a hole.
        let contiguous = (0..<40).map { ch("u32_\($0)", .holding, $0 * 2, .uint32) } + (0..<20).map { ch("u16_\($0)", .holding, 80 + $0, .uint16) }
        // One register every 50: every gap is too wide to read through.
        let sparse = (0..<30).map { ch("s\($0)", .input, $0 * 50, .uint16) }
        // Gaps of 0-30 registers: where reading through a gap or not matters.
        var rng = SplitMix64(seed: 7)
        var address = 0
        var gappy: [ChannelConfig] = []
        for i in 0..<60 {
            let type: ValueType = rng.next() % 2 == 0 ? .uint16 : .float32
            gappy.append(ch("g\(i)", .holding, address, type))
            address += type.registerCount + Int(rng.next() % 31)
        }
        let mixed = (0..<12).map { ch("coil\($0)", .coil, $0 < 8 ? $0 : 30 + $0, .bool) }
            + (0..<6).map { ch("di\($0)", .discrete, $0 * 3, .bool) }
            + [ch("flow", .holding, 100, .float32), ch("total", .holding, 102, .uint32), ch("level", .holding, 130, .int16),
               ch("mode", .holding, 131, .uint16)]
            + [ch("temp", .input, 0, .float32), ch("press", .input, 4, .float32), ch("status", .input, 20, .uint16),
               ch("alarm", .input, 20, .bit, bit: 3)]
        return [
            Case(name: "contiguous (100 registers)", channels: contiguous, limits: .init()),
            Case(name: "contiguous, gateway (32 regs/req)", channels: contiguous, limits: gateway),
            Case(name: "sparse (one register every 50)", channels: sparse, limits: .init()),
            Case(name: "gaps of 0-30 registers", channels: gappy, limits: .init()),
            Case(name: "gaps of 0-30, gateway", channels: gappy, limits: gateway),
            Case(name: "mixed tables", channels: mixed, limits: .init()),
            Case(name: "BW500-like", channels: bw500(), limits: .init()),
            Case(name: "BW500-like, gateway", channels: bw500(), limits: gateway),
            Case(name: "big random (2000 channels)", channels: bigRandom(), limits: .init()),
            Case(name: "big random, gateway", channels: bigRandom(), limits: gateway),
        ]
    }

    /// A Siemens Milltronics BW500 read the way DOMAIN.md §2.1 lays it out (0-based holding addresses): device
    /// identifier 40,064; parameter handshake 40,090-40,095; clock 41,000-41,006; rate, load, speed, total 1,
    /// total 2 (UINT32) at 41,010-41,019; device state bits at 41,020.
    static func bw500() -> [ChannelConfig] {
        [ch("device_id", .holding, 63, .uint16)]
            + (0..<4).map { ch("param\($0)", .holding, 89 + $0, .uint16) } + [ch("param_value", .holding, 93, .uint32)]
            + (0..<6).map { ch("clock\($0)", .holding, 999 + $0, .uint16) }
            + ["rate", "load", "speed", "total1", "total2"].enumerated().map { ch($1, .holding, 1009 + 2 * $0, .uint32) }
            + (0..<4).map { (b: Int) in ch("state_b\(b)", .holding, 1019, .bit, bit: b) }
    }

    /// 2000 channels over the four tables, random types, random gaps (mostly small), seeded.
    static func bigRandom() -> [ChannelConfig] {
        var rng = SplitMix64(seed: 2024)
        var next = [RegisterTable: Int]()
        var out: [ChannelConfig] = []
        let types: [ValueType] = [.uint16, .int16, .uint32, .int32, .float32, .float64, .uint64]
        for i in 0..<2000 {
            let table = RegisterTable.allCases[Int(rng.next() % 4)]
            let type = table.isBitTable ? ValueType.bool : types[Int(rng.next() % UInt64(types.count))]
            let gap = rng.next() % 4 == 0 ? Int(rng.next() % 60) : Int(rng.next() % 4)
            let address = next[table, default: 0] + gap
            out.append(ch("r\(i)", table, address, type))
            next[table] = address + type.registerCount
        }
        return out
    }
}

func pad(_ value: Any, _ width: Int) -> String {
    let s = "\(value)"
    return s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}

func fixed(_ x: Double, _ digits: Int) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (x * p).rounded() / p
    var s = "\(r)"
    let decimals = s.split(separator: ".").last?.count ?? 0
    if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    return s
}
