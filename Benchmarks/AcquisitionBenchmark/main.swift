// Acquisition benchmarks (issue 3). Each figure is printed next to a reference computed or measured in the same run
// (a ratio), because the machines are shared and noisy. Run by hand, in release:
//
//   swift run -c release acquisition-benchmark            # planner, cycle and cadence
//   swift run -c release acquisition-benchmark planner    # (a) requests per poll cycle vs the optimum
//   swift run -c release acquisition-benchmark cycle      # (b) poll-cycle time at 9600 baud vs the wire-time limit
//   swift run -c release acquisition-benchmark cadence [--seconds S]   # (d) healthy cadence with/without a dead neighbour
//   swift run -c release acquisition-benchmark decode N   # (c) decode N readings (for Benchmarks/callgrind.sh)
//   swift run -c release acquisition-benchmark tally N    # N inputs through the tally engine (Benchmarks/callgrind.sh tally)
//   swift run -c release acquisition-benchmark store N [--rate R]    # N readings submitted + group-committed into the ring
//   swift run -c release acquisition-benchmark encode N [--rate R]   # N durable readings read back + encoded as payloads
//                                                         # (Benchmarks/callgrind.sh store|encode; R readings per commit, 10,000)
//   swift run -c release acquisition-benchmark serial N   # issue 8: N bytes per stream protocol through parser + readings
//   swift run -c release acquisition-benchmark replay [N] [--batch B] [--rate R]
//                                                         # issue 6: store → loopback mosquitto replay vs mosquitto_pub
//
// cycle and cadence run the real BusPoller/ModbusClient over a socat pty pair to the simulator's RTU server with
// line-speed emulation (deploy/setup.sh installs socat and the venv the harness uses).
import Foundation

var args = CommandLine.arguments.dropFirst()
var mode = "all"
var decodeCount = 100_000
var cadenceSeconds = 60.0
var cycles = 100
var replayCount = 500_000
var replayBatch = 500
var replayRate = 0
var stageRate = 10_000
while let a = args.popFirst() {
    switch a {
    case "planner", "cycle", "cadence", "all": mode = a
    case "decode", "tally", "store", "encode", "serial":
        mode = a
        if let n = args.first.flatMap({ Int($0) }) {
            decodeCount = n
            args.removeFirst()
        }
    case "replay":
        mode = a
        if let n = args.first.flatMap({ Int($0) }) {
            replayCount = n
            args.removeFirst()
        }
    case "--batch": replayBatch = Int(args.popFirst()!)!
    case "--rate":
        replayRate = Int(args.popFirst()!)!
        stageRate = replayRate
    case "--seconds": cadenceSeconds = Double(args.popFirst()!)!
    case "--cycles": cycles = Int(args.popFirst()!)!
    default: fatalError("unknown argument \(a) (modes: planner, cycle, cadence, decode N; options --seconds S, --cycles N)")
    }
}

switch mode {
case "planner":
    PlannerBenchmark.run()
case "cycle":
    try await CycleBenchmark.run(cycles: cycles)
case "cadence":
    try await CadenceBenchmark.run(seconds: cadenceSeconds)
case "decode":
    DecodeBenchmark.run(readings: decodeCount)
case "tally":
    try TallyBenchmark.run(readings: decodeCount)
case "store":
    // Pass the count by value: the top-level variables are main-actor isolated, and reading one inside the closure
    // would hop to the main thread that `blocking` keeps waiting (a deadlock, before the stage ever starts).
    let (n, rate) = (decodeCount, stageRate)
    StageBenchmarks.blocking { try await StageBenchmarks.store(readings: n, rate: rate) }
case "encode":
    let (n, rate) = (decodeCount, stageRate)
    StageBenchmarks.blocking { try await StageBenchmarks.encode(readings: n, rate: rate) }
case "serial":
    SerialBenchmark.run(bytes: decodeCount)
case "replay":
    try await ReplayBenchmark.run(readings: replayCount, batchSize: replayBatch, replayRate: replayRate)
default:
    PlannerBenchmark.run()
    try await CycleBenchmark.run(cycles: cycles)
    try await CadenceBenchmark.run(seconds: cadenceSeconds)
    print("\n(c) instructions per decoded reading: Benchmarks/callgrind.sh")
}
