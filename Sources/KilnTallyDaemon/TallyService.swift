import Foundation
import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Synchronization
import Tally

/// The tally's checkpoint file: its whole position (`TallyEngine.State`) as JSON, replaced atomically through the
/// stores' `FileIO` (temporary file, fsync, rename, directory fsync), so a crash leaves either the old checkpoint
/// or the new one, never a torn one. An actor on its own thread: encoding and fsync never run on the cooperative
/// pool.
/// A checkpoint that exists but cannot be decoded (damaged, or written by an incompatible version): the daemon does
/// not start rather than silently starting a fresh tally over a ledger that already has records.
struct CheckpointError: Error, CustomStringConvertible {
    var path: String
    var underlying: String
    var description: String {
        "the tally checkpoint \(path) cannot be read (\(underlying)); moving it aside makes the tally start afresh from the oldest stored reading, which reproduces the ledger only while the store still holds every reading since the ledger began: check with `kilntally ledger replay` first"
    }
}

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
        do {
            return try JSONCoding.decoder.decode(TallyEngine.State.self, from: Data(bytes))
        } catch {
            throw CheckpointError(path: path, underlying: "\(error)")
        }
    }

    func save(_ state: TallyEngine.State) throws {
        try fs.replaceAtomically(path, with: Array(try JSONCoding.encoder.encode(state)))
    }

    func close() { executor.shutdown() }
}

/// The tally as `kilntally status` shows it: the open shift's running totals and the open tickets, refreshed with
/// `shifts/current`.
final class TallyStatus: Sendable {
    struct OpenTicket: Sendable {
        var id: String
        var weighbridge: String
        var vehicle: String?
        var material: String
        var firstWeight: String
        var since: String
    }

    struct Snapshot: Sendable {
        var current: [UInt8]?
        var openTickets: [OpenTicket]
    }

    private let box = Mutex(Snapshot(current: nil, openTickets: []))
    var snapshot: Snapshot { box.withLock { $0 } }
    func update(_ s: Snapshot) { box.withLock { $0 = s } }

    /// What the tally made of a configuration input (a reload's new setup) once it consumed it.
    struct Configured: Sendable {
        /// The input's sequence in the store.
        var sequence: UInt64
        /// The first shift under the new setup (nil: in force at once, before anything was accounted, or the input
        /// reverted a change that was still waiting for its boundary).
        var firstShift: Shift?
    }

    private struct Waiting {
        var last: Configured?
        var waiters: [Int: (sequence: UInt64, continuation: CheckedContinuation<Configured?, Never>)] = [:]
        var nextID = 0
    }

    private let configured = Mutex(Waiting())

    /// The tally consumed the configuration input at `c.sequence`.
    func didConfigure(_ c: Configured) {
        let ready = configured.withLock { w -> [CheckedContinuation<Configured?, Never>] in
            w.last = c
            let done = w.waiters.filter { $0.value.sequence <= c.sequence }
            for id in done.keys { w.waiters[id] = nil }
            return done.values.map(\.continuation)
        }
        for r in ready { r.resume(returning: c) }
    }

    /// Waits until the tally has consumed the configuration input at `sequence` (or a later one) and says what it
    /// made of it; nil if `timeout` passes first (the tally reads only what the store has made durable, and may be
    /// catching up on a backlog).
    func configured(through sequence: UInt64, timeout: Duration) async -> Configured? {
        await withTaskGroup(of: Configured?.self) { group in
            group.addTask { await self.configured(through: sequence) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func configured(through sequence: UInt64) async -> Configured? {
        let id = configured.withLock { w in
            defer { w.nextID += 1 }
            return w.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Configured?, Never>) in
                // Answered at once when already there, or cancelled before waiting (the cancellation handler
                // may have run before the waiter was registered: it found nothing to resume).
                let now = configured.withLock { w -> Configured?? in
                    if let last = w.last, last.sequence >= sequence { return .some(last) }
                    if Task.isCancelled { return .some(nil) }
                    w.waiters[id] = (sequence, c)
                    return .none
                }
                if let now { c.resume(returning: now) }
            }
        } onCancel: {
            configured.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(returning: nil)
        }
    }
}

/// kilntally's own inputs to the tally, stored as readings of a reserved device so that a replay of the store
/// applies them at the same points: clock ticks (so shifts close at the same instants even when no device answers;
/// the value says whether the clock was synchronized), and the tally configuration (the `TallyEngine.Setup` as JSON,
/// stored when the daemon starts with a configuration the tally has not seen: it takes effect at the next shift
/// boundary). Corrections are the third kind (`TallyEngine.correctionChannel`).
public enum TallyInputs {
    /// The device name kilntally reserves for its own inputs.
    public static let device: DeviceID = TallyEngine.correctionDevice
    public static let clockChannel: ChannelID = "clock"
    public static let configChannel: ChannelID = "config"

    /// The tally input a stored reading stands for. A configuration reading that cannot be decoded (written by a
    /// newer version) is passed on as a plain reading, which the tally ignores.
    public static func input(_ seq: UInt64, _ r: Reading) -> TallyInput {
        guard r.device == device else { return .reading(sequence: seq, r) }
        if r.channel == clockChannel { return .tick(sequence: seq, time: r.time) }
        if r.channel == configChannel, case .string(let json) = r.value,
           let setup = try? JSONCoding.decoder.decode(TallyEngine.Setup.self, from: Data(json.utf8)) {
            return .configure(sequence: seq, time: r.time, setup: setup)
        }
        return .reading(sequence: seq, r)
    }

    public static func tick(time: UTCInstant, synchronized: Bool) -> Reading {
        Reading(device: device, channel: clockChannel, time: time, value: .bool(synchronized), clockSynchronized: synchronized)
    }

    public static func configuration(_ setup: TallyEngine.Setup, time: UTCInstant, synchronized: Bool) throws -> Reading {
        let json = String(decoding: try JSONCoding.encoder.encode(setup), as: UTF8.self)
        return Reading(device: device, channel: configChannel, time: time, value: .string(json), clockSynchronized: synchronized)
    }

    /// Whether the tally, at `state`, has not seen `setup` yet (a fresh tally, or one whose latest setup differs):
    /// then the daemon stores it as an input before any reading of this run.
    public static func needsConfiguration(_ setup: TallyEngine.Setup, state: TallyEngine.State?) -> Bool {
        guard let latest = state?.eras.last?.setup else { return true }
        return latest != setup
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
    let events: EventLog
    let barrier: ReadinessBarrier
    /// What `kilntally status` shows of the tally.
    let status: TallyStatus
    /// Takes the running totals of the open shift (for the retained `shifts/current`).
    let current: @Sendable ([UInt8]) -> Void
    let setup: TallyEngine.Setup
    /// The checkpoint as loaded before the services started (nil: a fresh tally).
    let restored: TallyEngine.State?
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
                    store.submit([TallyInputs.tick(time: clock.now(), synchronized: synced)])
                    do { try await Task.sleep(for: tickInterval) } catch { return }
                }
            }
            try await cancelWhenGracefulShutdown { try await consume(updates) }
            group.cancelAll()
        }
        await checkpoint.close()
    }

    /// Loads the checkpoint, then consumes the store as it grows until cancelled.
    private func consume(_ updates: AsyncStream<UInt64>) async throws {
        var engine = TallyEngine(setup: setup, state: restored ?? .init())
        barrier.arrive("tally")
        var alreadyWritten = try await recordsAfterCheckpoint(engine.state.chainHead)
        if !alreadyWritten.isEmpty {
            logger.notice("tally: \(alreadyWritten.count) record(s) in the ledger are newer than the checkpoint; replaying to them")
        }
        logger.info("tally starts after reading \(engine.state.lastSequence)", metadata: ["checkpoint": "\(checkpoint.path)"])
        var lastSave = ContinuousClock.now
        var currentMark = CurrentMark()
        try await catchUp(&engine, &alreadyWritten, &lastSave, &currentMark)
        for await _ in updates {
            do {
                try await catchUp(&engine, &alreadyWritten, &lastSave, &currentMark)
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
                         _ lastSave: inout ContinuousClock.Instant, _ currentMark: inout CurrentMark) async throws {
        while true {
            let batch = try await store.read(after: engine.state.lastSequence, limit: 2_000)
            if let gap = batch.gap {
                logger.error("tally: readings \(gap.lowerBound)...\(gap.upperBound) are gone from the store (dropped for space before the tally read them)")
            }
            guard !batch.readings.isEmpty else { return }
            var wrote = false
            for (seq, reading) in batch.readings {
                let input = TallyInputs.input(seq, reading)
                for output in engine.consume(input) {
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
                        // Replaying inputs whose records are already in the ledger (after a crash): their events
                        // were recorded the first time.
                        if alreadyWritten.isEmpty { events.record(e) }
                    }
                }
                if case .configure(_, let time, _) = input {
                    // A reload waits for this: the setup era now last is staged for a boundary ahead, or in force.
                    let staged = engine.state.eras.last?.from.flatMap { from in from > time ? from : nil }
                    status.didConfigure(.init(sequence: seq, firstShift: staged.flatMap { engine.state.timeline?.shift(containing: $0) }))
                }
            }
            publishCurrent(engine, &currentMark)
            if wrote || ContinuousClock.now - lastSave >= Self.checkpointInterval {
                try await checkpoint.save(engine.state)
                lastSave = ContinuousClock.now
            }
        }
    }

    /// Gives the running totals of the open shift at most every `currentInterval`, and at once when the shift changed.
    private func publishCurrent(_ engine: TallyEngine, _ mark: inout CurrentMark) {
        let now = ContinuousClock.now
        let shift = engine.state.nextToClose?.id
        guard mark.shift != shift || mark.at.map({ now - $0 >= Self.currentInterval }) ?? true else { return }
        mark = CurrentMark(shift: shift, at: now)
        guard let record = engine.currentShift(), let bytes = try? CanonicalJSON.serialize(.object(record)) else { return }
        current(bytes)
        let open = engine.state.weighbridges.keys.sorted().flatMap { name in
            engine.state.weighbridges[name]!.openTickets.map { t in
                TallyStatus.OpenTicket(id: t.id, weighbridge: name, vehicle: t.vehicle, material: t.material,
                                       firstWeight: t.inbound.weight.kilogramsString, since: t.inbound.time.rfc3339)
            }
        }
        status.update(.init(current: bytes, openTickets: open))
    }

    static let currentInterval: Duration = .seconds(5)
    /// When the running totals were last given, and for which shift.
    struct CurrentMark {
        var shift: ShiftID?
        var at: ContinuousClock.Instant?
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
