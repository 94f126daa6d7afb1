import Foundation
import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Tally

/// The tally's checkpoint file: its whole position (`TallyEngine.State`) as JSON, replaced atomically through the
/// stores' `FileIO` (temporary file, fsync, rename, directory fsync), so a crash leaves either the old checkpoint
/// or the new one, never a torn one. An actor on its own thread: encoding and fsync never run on the cooperative
/// pool.
actor TallyCheckpoint {
    private let executor = ThreadExecutor(name: "kt-tally")
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    let path: String
    private let fs: any FileIO

    init(path: String, fs: any FileIO = PosixFileIO()) {
        self.path = path
        self.fs = fs
    }

    func load() throws -> TallyEngine.State? {
        guard let bytes = try fs.readWhole(path) else { return nil }
        return try JSONCoding.decoder.decode(TallyEngine.State.self, from: Data(bytes))
    }

    func save(_ state: TallyEngine.State) throws {
        try fs.replaceAtomically(path, with: Array(try JSONCoding.encoder.encode(state)))
    }

    func close() { executor.shutdown() }
}

/// The clock ticks the tally is driven by are stored as readings of this reserved device (so a replay of the store
/// closes shifts at the same instants); the value says whether the clock was synchronized.
public enum TallyClock {
    /// The device name kilntally reserves for its own inputs (ticks here, corrections in the engine).
    public static let device: DeviceID = TallyEngine.correctionDevice
    public static let channel: ChannelID = "clock"

    public static func input(_ seq: UInt64, _ r: Reading) -> TallyInput {
        r.device == device && r.channel == channel ? .tick(sequence: seq, time: r.time) : .reading(sequence: seq, r)
    }
}

/// Runs the tally: records a clock tick in the store every `tickInterval`, feeds the store's readings (from the
/// checkpoint's position on) to the engine, appends the records it produces to the ledger (each fsynced), and only
/// then writes the checkpoint (after every batch that wrote records, else at most every `checkpointInterval`, and
/// at shutdown). After a crash the engine replays from the checkpoint and produces the same records
/// again; those already in the ledger are recognized (same bytes, right after the checkpoint's chain head) and not
/// written twice.
struct TallyService: Service {
    let store: RingStore
    let ledger: Ledger
    let setup: TallyEngine.Setup
    let checkpoint: TallyCheckpoint
    let tickInterval: Duration
    let clock: any WallClock
    let logger: Logger

    func run() async throws {
        let updates = await store.updates()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    let synced = clock.isSynchronized()
                    store.submit([Reading(device: TallyClock.device, channel: TallyClock.channel, time: clock.now(),
                                          value: .bool(synced), clockSynchronized: synced)])
                    do { try await Task.sleep(for: tickInterval) } catch { return }
                }
            }
            try await cancelWhenGracefulShutdown { try await consume(updates) }
            group.cancelAll()
        }
        await ledger.close()
        await checkpoint.close()
    }

    /// Loads the checkpoint, then consumes the store as it grows until cancelled.
    private func consume(_ updates: AsyncStream<UInt64>) async throws {
        var engine = TallyEngine(setup: setup, state: try await checkpoint.load() ?? .init())
        var alreadyWritten = try await recordsAfterCheckpoint(engine.state.chainHead)
        if !alreadyWritten.isEmpty {
            logger.notice("tally: \(alreadyWritten.count) record(s) in the ledger are newer than the checkpoint; replaying to them")
        }
        logger.info("tally starts after reading \(engine.state.lastSequence)", metadata: ["checkpoint": "\(checkpoint.path)"])
        var lastSave = ContinuousClock.now
        try await catchUp(&engine, &alreadyWritten, &lastSave)
        for await _ in updates {
            do {
                try await catchUp(&engine, &alreadyWritten, &lastSave)
            } catch {
                logger.error("tally: \(error); retrying with the next readings")
            }
        }
        try await checkpoint.save(engine.state)
        logger.info("tally stopped after reading \(engine.state.lastSequence)")
    }

    /// A checkpoint without new records only saves replay time after a crash (replay and the ledger check make an
    /// older one exactly as correct), so it is written at most this often; one that follows records, always.
    static let checkpointInterval: Duration = .seconds(10)

    /// Consumes every durable reading after the engine's position, writing records, then the checkpoint.
    private func catchUp(_ engine: inout TallyEngine, _ alreadyWritten: inout [[UInt8]],
                         _ lastSave: inout ContinuousClock.Instant) async throws {
        while true {
            let batch = try await store.read(after: engine.state.lastSequence, limit: 2_000)
            if let gap = batch.gap {
                logger.error("tally: readings \(gap.lowerBound)...\(gap.upperBound) are gone from the store (dropped for space before the tally read them)")
            }
            guard !batch.readings.isEmpty else { return }
            var wrote = false
            for (seq, reading) in batch.readings {
                for output in engine.consume(TallyClock.input(seq, reading)) {
                    switch output {
                    case .record(let kind, let id, let revision, let json):
                        if alreadyWritten.first == json {
                            alreadyWritten.removeFirst()
                            continue
                        }
                        try await ledger.append(type: kind.rawValue, body: json, time: reading.time)
                        wrote = true
                        logger.info("tally: \(kind.rawValue) \(id) revision \(revision) written")
                    case .event(let e):
                        logger.notice("event \(e.kind.rawValue): \(e.message)")
                    }
                }
            }
            if wrote || ContinuousClock.now - lastSave >= Self.checkpointInterval {
                try await checkpoint.save(engine.state)
                lastSave = ContinuousClock.now
            }
        }
    }

    /// The ledger's chained records after the one whose hash is the checkpoint's chain head (all of them when the
    /// head is the genesis).
    private func recordsAfterCheckpoint(_ head: String) async throws -> [[UInt8]] {
        var after: [[UInt8]] = []
        var seq: UInt64 = 0
        var seen = head == HashChain.genesis
        while true {
            let records = try await ledger.read(after: seq, limit: 1_000)
            guard let last = records.last else { break }
            seq = last.sequence
            for r in records where r.type == "ticket" || r.type == "report" {
                if seen {
                    after.append(r.body)
                } else if case .string(let h)? = (try? CanonicalJSON.parse(r.body))?.objectValue?[HashChain.hashField], h == head {
                    seen = true
                }
            }
        }
        return after
    }
}

/// One JSON encoding for checkpoints: sorted keys, so the same state always gives the same bytes.
enum JSONCoding {
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
    static var decoder: JSONDecoder { JSONDecoder() }
}
