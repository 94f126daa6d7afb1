// Reading-ring benchmarks (issue 4). Each figure is printed next to a reference measured in the same run, because
// the machines are shared and noisy. Usage: swift run -c release store-benchmark [--readings N] [--recovery-mib M]
import KilnTallyCore
import Logging
import RingStore
#if canImport(Glibc)
import Glibc
#endif

var args = CommandLine.arguments.dropFirst()
var readingsCount = 2_000_000
var recoveryMiB = 256
while let a = args.popFirst() {
    switch a {
    case "--readings": readingsCount = Int(args.popFirst()!)!
    case "--recovery-mib": recoveryMiB = Int(args.popFirst()!)!
    default: fatalError("unknown argument \(a)")
    }
}

var logger = Logger(label: "bench")
logger.logLevel = .error

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

/// A realistic plant mix, polled once a second: a belt scale (rate t/h with 3 decimals, totalizer kg, speed,
/// running) and a weighbridge (weight kg, status word), each reading with its raw registers.
func plantReadings(_ n: Int, start: Int64 = 1_790_000_000) -> [Reading] {
    var out: [Reading] = []
    out.reserveCapacity(n)
    var total: UInt64 = 1_234_567
    var t = start * 1_000_000_000
    var weight: Int64 = 0
    var i = 0
    while out.count < n {
        let rate = 30.0 + Double((i * 7919) % 6000) / 1000
        total += UInt64(rate / 3.6)
        if i % 120 == 0 { weight = weight == 0 ? 18_000 + Int64(i % 7000) : 0 }
        let time = UTCInstant(nanosecondsSinceEpoch: t)
        let rateMilli = UInt32(rate * 1000)
        out.append(Reading(device: "belt1", channel: "rate", time: time, value: .double(Double(rateMilli) / 1000), unit: .tonnePerHour,
                           raw: [UInt16(rateMilli >> 16), UInt16(rateMilli & 0xFFFF)]))
        out.append(Reading(device: "belt1", channel: "total1", time: time, value: .uint(total), unit: .kilogram,
                           raw: [UInt16(total >> 16 & 0xFFFF), UInt16(total & 0xFFFF)]))
        out.append(Reading(device: "belt1", channel: "speed", time: time, value: .double(1.2), unit: .metrePerSecond, raw: [0, 1200]))
        out.append(Reading(device: "belt1", channel: "running", time: time, value: .bool(true), raw: [1]))
        let wt = time.adding(.milliseconds(40))
        out.append(Reading(device: "wb-north", channel: "weight", time: wt, value: .int(weight), unit: .kilogram,
                           raw: [UInt16(truncatingIfNeeded: weight >> 16), UInt16(truncatingIfNeeded: weight)]))
        out.append(Reading(device: "wb-north", channel: "status", time: wt, value: .uint(weight == 0 ? 0x1000 : 0x0008), raw: [weight == 0 ? 0x1000 : 0x0008]))
        t += 1_000_000_000
        i += 1
    }
    return Array(out.prefix(n))
}

func tempDir(_ name: String) -> String {
    var template = Array("/var/tmp/kt-bench-\(name).XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!
    return String(cString: p)
}

func removeTree(_ path: String) { _ = system("rm -rf '\(path)'") }

print("kilntally store benchmark: \(readingsCount) readings, realistic mix of 6 channels on 2 devices at 1 Hz")
let readings = plantReadings(readingsCount)
let clock = ContinuousClock()

// 1. Append throughput (group commit of 100k readings per fdatasync) vs raw sequential write of the same bytes.
let dir = tempDir("append")
var options = RingStore.Options(maxBytes: 64 << 30)
options.syncInterval = .seconds(3600)
options.syncBytes = .max
options.maxPendingReadings = .max
let store = try await RingStore(directory: dir, options: options, logger: logger)
let appendTime = try await clock.measure {
    var i = 0
    while i < readings.count {
        let end = min(readings.count, i + 1000)
        store.submit(Array(readings[i..<end]))
        i = end
        if i % 100_000 == 0 || i == readings.count { await store.commit() }
    }
}
let stats = await store.statistics()
precondition(stats.lastDurableSequence == UInt64(readings.count), "not all readings stored")
let bytes = stats.bytes
// Reference: the same number of bytes written sequentially in 1 MiB pwrites, fdatasync every ~same volume.
let rawPath = dir + "/raw.bin"
let fd = open(rawPath, O_RDWR | O_CREAT | O_TRUNC, 0o640)
let chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
let syncEvery = max(1, Int(bytes) / max(1, readings.count / 100_000))
let rawTime = clock.measure {
    var written = 0
    var sinceSync = 0
    while written < Int(bytes) {
        let n = min(chunk.count, Int(bytes) - written)
        _ = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, n, off_t(written)) }
        written += n
        sinceSync += n
        if sinceSync >= syncEvery { fdatasync(fd); sinceSync = 0 }
    }
    fdatasync(fd)
}
close(fd)
unlink(rawPath)
let appendRate = Double(readings.count) / seconds(appendTime)
let rawRate = Double(bytes) / seconds(rawTime)
print("append:         \(Int(appendRate)) readings/s (goal >= 1,000,000)  = \(Int(Double(bytes) / seconds(appendTime) / 1e6)) MB/s "
      + "vs raw sequential write \(Int(rawRate / 1e6)) MB/s of the same bytes (ratio \((Double(bytes) / seconds(appendTime) / rawRate * 100).rounded() / 100))")
print("bytes/reading:  \((Double(bytes) / Double(readings.count) * 100).rounded() / 100) in 100,000-reading frames (goal <= 16; segment and frame headers included)")
// The same mix at the default cadence: one commit (one frame) per second holding one poll of each device.
let cadenceFS = SimulatedFileSystem()
let cadence = try await RingStore(directory: "/bench", options: RingStore.Options(maxBytes: 1 << 40), fs: cadenceFS, logger: logger)
let cadenceCount = getenv("CADENCE").flatMap { Int(String(cString: $0)) } ?? 60_000  // CADENCE=N to change
var j = 0
while j < cadenceCount {
    cadence.submit(Array(readings[j..<j + 6]))
    await cadence.commit()
    j += 6
}
let cadenceBytes = await cadence.statistics().bytes
// The uplink's access pattern on that store: batches of 200 from a cursor that moves forward.
let uplinkTime = try await clock.measure {
    var after: UInt64 = 0
    while let last = try await cadence.read(after: after, limit: 200, filter: nil).readings.last { after = last.seq }
}
await cadence.close()
print("bytes/reading:  \((Double(cadenceBytes) / Double(cadenceCount) * 100).rounded() / 100) at the default cadence (one 6-reading frame per second; goal <= 16)")
print("uplink reads:   \(Int(Double(cadenceCount) / seconds(uplinkTime))) readings/s in batches of 200 from a moving cursor over \(cadenceCount / 6) small frames")

// 2. Read-back rate from the oldest reading, in batches of 10k, vs decoding nothing (the raw read of the bytes).
let readTime = try await clock.measure {
    var after: UInt64 = 0
    while true {
        let batch = try await store.read(after: after, limit: 10_000, filter: nil)
        guard let last = batch.readings.last else { break }
        after = last.seq
    }
}
print("read-back:      \(Int(Double(readings.count) / seconds(readTime))) readings/s (goal >= 2,000,000)")
await store.close()

// 3. Recovery time: open a store of `recoveryMiB` MiB (page cache warm, as after a daemon restart).
let recDir = tempDir("recovery")
var recOptions = RingStore.Options(maxBytes: 64 << 30)
recOptions.syncInterval = .seconds(3600)
recOptions.maxPendingReadings = .max
let filler = try await RingStore(directory: recDir, options: recOptions, logger: logger)
var seqBase = 0
while await filler.statistics().bytes < Int64(recoveryMiB) << 20 {
    var i = 0
    while i < readings.count {
        let end = min(readings.count, i + 100_000)
        filler.submit(Array(readings[i..<end]))
        await filler.commit()
        i = end
        if await filler.statistics().bytes >= Int64(recoveryMiB) << 20 { break }
    }
    seqBase += 1
}
let recBytes = await filler.statistics().bytes
let recReadings = await filler.statistics().readings
await filler.close()
var reopened: RingStore?
let recoveryTime = try await clock.measure {
    reopened = try await RingStore(directory: recDir, options: recOptions, logger: logger)
}
let perGiB = seconds(recoveryTime) * Double(1 << 30) / Double(recBytes)
print("recovery:       \((seconds(recoveryTime) * 1000).rounded()) ms for \(recBytes >> 20) MiB (\(recReadings) readings) = \((perGiB * 100).rounded() / 100) s per GiB (goal <= 1 s)")
await reopened!.close()

// 4. fsyncs per second at the default sync interval while polling 1,000 readings/s.
let syncDir = tempDir("sync")
let live = try await RingStore(directory: syncDir, logger: logger)
let runner = Task { await live.run() }
let liveStart = ContinuousClock.now
var k = 0
while ContinuousClock.now - liveStart < .seconds(5) {
    live.submit(Array(readings[k..<k + 100]))
    k += 100
    try await Task.sleep(for: .milliseconds(100))
}
let liveStats = await live.statistics()
runner.cancel()
await runner.value
await live.close()
print("fsyncs:         \((Double(liveStats.syncs) / seconds(ContinuousClock.now - liveStart) * 100).rounded() / 100) per second at the default interval (goal <= 1) while storing 1,000 readings/s")

removeTree(dir)
removeTree(recDir)
removeTree(syncDir)
