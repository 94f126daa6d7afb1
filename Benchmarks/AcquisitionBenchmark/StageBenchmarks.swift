import Acquisition
import Dispatch
import Foundation
import KilnTallyCore
import Logging
import MQTTKit
import RingStore
import TestSupport
import Uplink

/// The store and encode stages of the per-reading budget, for Benchmarks/callgrind.sh (`store N`, `encode N`).
///
/// callgrind.sh runs valgrind with `--zero-before=*StageBenchmarks*startCounting*`: the counts restart when
/// `startCounting()` is entered, so opening the store, making the readings and (for encode) filling the ring are not
/// in the figure. It then counts at two N and divides the difference by the difference in N, which cancels what is
/// left (the final commit, closing the store, exiting).
///
/// Both stages run at a plant rate of `rate` readings per second (default 10,000, the load of Benchmarks/rss.sh):
/// the daemon's commit loop commits once per sync interval (1 s by default), so one group commit (one or two frames
/// and one fdatasync) carries `rate` readings, and the uplink reads those frames back in batches of 200. The commit
/// is called here every `rate` readings rather than by `RingStore.run()`'s timer, so the count does not depend on
/// the clock (the loop's own turn, once per commit, is not in the figure). A commit has a fixed cost of roughly
/// 65,000 instructions, a few per reading at 10,000 readings per commit, several hundred at `--rate 100`.
enum StageBenchmarks {
    /// Runs `body` on the cooperative pool while the main thread waits on a semaphore. valgrind 3.19 crashes when the
    /// main thread parks in libdispatch's main loop (rt_sigsuspend), which is where an async main waits; a blocked
    /// main thread keeps callgrind working. `body` must not need the main actor (the main thread is blocked): pass
    /// it values, not top-level variables of main.swift, which are main-actor isolated.
    static func blocking(_ body: @escaping @Sendable () async throws -> Void) {
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { try await body() } catch { fatalError("\(error)") }
            done.signal()
        }
        done.wait()
    }

    /// callgrind.sh zeroes the instruction counts when this is entered (see above). Not inlined and not optimized
    /// away, so the symbol is there to match.
    @inline(never) @_optimize(none)
    static func startCounting() {}

    /// The ring as the daemon opens it by default (`[store]` absent: max_bytes 512 MiB, 16 MiB segments).
    static func openStore(_ dir: TemporaryDirectory) async throws -> RingStore {
        var logger = Logger(label: "stage")
        logger.logLevel = .critical
        return try await RingStore(directory: dir.file("readings"), options: RingStore.Options(maxBytes: 512 << 20), logger: logger)
    }

    /// N readings through the reading ring as the daemon stores them: each poll's readings handed over with
    /// `submit` (the poller's call), and a group commit (`commit`: encode the frames, write, fdatasync, wake the
    /// readers, check the byte bound) every `rate` readings. The syscalls' kernel time is not in callgrind's count.
    static func store(readings n: Int, rate: Int) async throws {
        let dir = try TemporaryDirectory(prefix: "kilntally-stage-store")
        let store = try await openStore(dir)
        var polls = PlantPolls()
        startCounting()
        let submitted = await submit(n, from: &polls, to: store, commitEvery: rate)
        await store.commit()
        let stats = await store.statistics()
        await store.close()
        precondition(stats.lastDurableSequence == UInt64(submitted), "not everything submitted became durable")
        print("store: \(submitted) readings in polls of \(polls.readingsPerPoll), \(stats.commits) commits, \(stats.syncs) syncs, "
              + "\(stats.bytes) bytes (\(String(format: "%.1f", Double(stats.bytes) / Double(submitted))) per reading)")
    }

    /// N durable readings read back and encoded as the uplink publishes them: `read(after:limit:)` in batches of 200
    /// (`[uplink] batch_size`'s default), the `readings` payload from `Payloads.readings`, the MQTT message with the
    /// readings topic, and the cursor saved once per `rate` readings (the uplink saves it at most once a second). The
    /// ring is filled first, before the count starts, the way the store stage stores (one commit per `rate`
    /// readings, so the frames are the daemon's). libmosquitto's send is not included.
    static func encode(readings n: Int, rate: Int) async throws {
        let dir = try TemporaryDirectory(prefix: "kilntally-stage-encode")
        let store = try await openStore(dir)
        var polls = PlantPolls()
        let stored = await submit(n, from: &polls, to: store, commitEvery: rate)
        await store.commit()
        let identity = NodeIdentity(site: "plant-a", node: "kiln1")
        let topics = TopicTree(prefix: "kilntally", identity: identity)
        let batchSize = 200
        var acked: UInt64 = 0
        var saved: UInt64 = 0
        var messages = 0
        var bytes = 0
        startCounting()
        while true {
            let batch = try await store.read(after: acked, limit: batchSize).readings
            guard let last = batch.last else { break }
            let message = MQTTMessage(topic: topics.readings, payload: Payloads.readings(batch, identity: identity),
                                      qos: .atLeastOnce, retain: false)
            messages += 1
            bytes += message.payload.count
            acked = last.seq
            if acked - saved >= UInt64(rate) {
                try await store.setCursor(Uplink.readingsCursor, to: acked)
                saved = acked
            }
        }
        try await store.setCursor(Uplink.readingsCursor, to: acked)
        await store.close()
        precondition(acked == UInt64(stored), "read back \(acked) of \(stored) stored readings")
        print("encode: \(acked) durable readings read back in \(messages) readings payloads of up to \(batchSize), "
              + "\(bytes) bytes of JSON (\(bytes / max(1, Int(acked))) per reading)")
    }

    /// Submits n readings poll by poll and commits every `commitEvery` readings; returns how many were submitted.
    private static func submit(_ n: Int, from polls: inout PlantPolls, to store: RingStore, commitEvery: Int) async -> Int {
        var submitted = 0
        var sinceCommit = 0
        while submitted < n {
            var poll = polls.next()
            if poll.count > n - submitted { poll.removeLast(poll.count - (n - submitted)) }
            store.submit(poll)
            submitted += poll.count
            sinceCommit += poll.count
            if sinceCommit >= commitEvery {
                await store.commit()
                sinceCommit = 0
            }
        }
        return submitted
    }
}

/// Readings as a poller hands them to the store: one array per poll of the decode stage's plant mix
/// (`DecodeBenchmark.channels`: a BW500, a weigh feeder, a weighbridge, a coil), 10 polls a second, each request with
/// its own time. The readings are really decoded (`RegisterDecoder`, raw words and all), but once, at set-up, for a
/// cycle of 64 polls whose moving registers differ; a poll then only copies its cycle entry and sets the times, so
/// decoding is not counted twice (it is the decode stage's). That copy (~170 instructions per reading) stands for the
/// poller building its array of readings, and is in the store figure.
struct PlantPolls {
    private var cycle: [[Reading]] = []
    /// Per reading of a poll: its offset from the poll's time (the request it came from).
    private var offsets: [Int64] = []
    private var round = 0
    private var time: Int64 = 1_795_363_200 * 1_000_000_000
    var readingsPerPoll: Int { offsets.count }

    init() {
        let channels = DecodeBenchmark.channels
        let plan = RequestPlanner.plan(channels, limits: .init())
        var words = plan.map { r in (0..<r.count).map { UInt16(truncatingIfNeeded: ($0 &* 7919) &+ r.address) } }
        for round in 0..<64 {
            var poll: [Reading] = []
            offsets = []
            for (k, request) in plan.enumerated() {
                // The totalizers and weights move a little every poll, the rest now and then.
                for w in words[k].indices where w % 2 == 1 || round % 8 == 0 {
                    words[k][w] &+= UInt16(truncatingIfNeeded: 3 &* round &+ w)
                }
                let offset = Int64(k) * 4_000_000  // a request every 4 ms
                for i in request.channels {
                    poll.append(RegisterDecoder.reading(device: "bw500", channel: channels[i], words: words[k],
                                                        requestAddress: request.address,
                                                        time: UTCInstant(nanosecondsSinceEpoch: offset), clockSynchronized: true))
                    offsets.append(offset)
                }
            }
            cycle.append(poll)
        }
    }

    mutating func next() -> [Reading] {
        var poll = cycle[round % cycle.count]
        for i in poll.indices { poll[i].time = UTCInstant(nanosecondsSinceEpoch: time + offsets[i]) }
        round += 1
        time += 100_000_000
        return poll
    }
}
