import KilnTallyCore
import Logging
import ModbusKit
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Polls every device of one bus in turn, on the bus' own `ModbusClient` (whose blocking calls run on its own
/// thread), one request at a time with the bus' pause between them.
///
/// A device that fails gives readings of quality `comm_failure` (so the gap is visible downstream) and one
/// `device_down` event; the other devices of the bus keep being polled.
public final class BusPoller: Sendable {
    public let bus: BusConfig
    public let devices: [DeviceConfig]
    private let client: ModbusClient
    private let clock: any WallClock
    private let logger: Logger

    public init(bus: BusConfig, devices: [DeviceConfig], clock: any WallClock, logger: Logger) throws(ModbusError) {
        self.bus = bus
        self.devices = devices
        self.clock = clock
        var logger = logger
        logger[metadataKey: "bus"] = "\(bus.name)"
        self.logger = logger
        client = try ModbusClient(name: bus.name, transport: bus.transport, timeouts: bus.timeouts, logger: logger)
    }

    /// The wait before probing a device again after `failures` polls in a row failed: 2, 4, 8 … poll intervals,
    /// capped.
    static func backoff(pollInterval: Duration, failures: Int, cap: Duration) -> Duration {
        guard failures > 0 else { return pollInterval }
        var d = pollInterval
        for _ in 0..<min(failures, 32) {
            d = d * 2
            if d >= cap { return cap }
        }
        return d
    }

    /// Ends the bus connection's thread (the poller's `run` does this itself when it ends).
    func shutdownClient() { client.shutdown() }

    /// Polls until the task is cancelled. `deliver` receives each device's readings of one poll;
    /// `event` receives device down/up transitions.
    public func run(
        deliver: @Sendable ([Reading]) async -> Void,
        event: @Sendable (Event) async -> Void
    ) async {
        defer { client.shutdown() }
        guard !devices.isEmpty else { return }
        let start = ContinuousClock.now
        var due = devices.map { _ in start }
        var down = devices.map { _ in false }
        var failures = devices.map { _ in 0 }
        while !Task.isCancelled {
            // The device whose next poll is soonest.
            let i = due.indices.min { due[$0] < due[$1] }!
            if due[i] > ContinuousClock.now {
                do { try await Task.sleep(until: due[i], clock: .continuous) } catch { return }
            }
            let device = devices[i]
            let (readings, error) = await poll(device, index: i)
            if Task.isCancelled {
                // Stopped mid-poll: hand over what was read, and judge nothing from the requests not sent.
                if readings.contains(where: { $0.quality == .good }) { await deliver(readings) }
                return
            }
            // Down means nothing it was asked answered: a refused register (an exception) is a channel's problem.
            let failure = readings.contains { $0.quality == .good } ? nil : error
            failures[i] = failure == nil ? 0 : failures[i] + 1
            let now = ContinuousClock.now
            if failures[i] > 0 {
                // Probe a silent device less and less often, so its timeouts do not eat its neighbours' cadence.
                due[i] = now + Self.backoff(pollInterval: device.pollInterval, failures: failures[i], cap: device.backoffMax)
            } else {
                // Next poll one interval after the scheduled time, skipping missed slots instead of bursting.
                due[i] += device.pollInterval
                if due[i] < now { due[i] = now }
            }
            if let failure, !down[i] {
                down[i] = true
                logger.error("device \(device.id) on bus \(bus.name) is not answering: \(failure)",
                             metadata: ["device": "\(device.id)", "call": "\(failure.call)"])
                await event(Event(kind: .deviceDown, severity: .alarm, time: clock.now(), device: device.id,
                                  message: "device \(device.id) on bus \(bus.name): \(failure)",
                                  attributes: ["bus": bus.name, "call": failure.call, "errno": "\(failure.errno)"]))
            } else if failure == nil, down[i] {
                down[i] = false
                logger.notice("device \(device.id) on bus \(bus.name) answers again", metadata: ["device": "\(device.id)"])
                await event(Event(kind: .deviceUp, severity: .info, time: clock.now(), device: device.id,
                                  message: "device \(device.id) on bus \(bus.name) answers again", attributes: ["bus": bus.name]))
            }
            await deliver(readings)
        }
    }

    /// Channels whose registers the device refuses (exception 2), per device index: left out of the merged plan
    /// so the rest keep their single requests, and tried again now and then.
    private let refused = Mutex<[Int: [Int: ContinuousClock.Instant]]>([:])
    static let refusedRetryInterval: Duration = .seconds(60)

    /// Reads every channel of `device` once, with the merged request plan. Returns the readings (failed channels
    /// with quality `comm_failure` or `device_fault`) and the first error, if any.
    func poll(_ device: DeviceConfig, index: Int = 0) async -> ([Reading], ModbusError?) {
        // One slot per channel, so the readings come out in the device's channel order whatever order the plan
        // reads them in.
        var slots = [Reading?](repeating: nil, count: device.channels.count)
        var firstError: ModbusError?
        let now = ContinuousClock.now
        // Refused channels stay out of the merged plan; each is tried again on its own once per retry interval.
        let (resting, retrying) = refused.withLock { r -> (Set<Int>, [Int]) in
            let mine = r[index] ?? [:]
            return (Set(mine.filter { now - $0.value < Self.refusedRetryInterval }.keys),
                    mine.filter { now - $0.value >= Self.refusedRetryInterval }.keys.sorted())
        }
        for i in resting { slots[i] = failed(device, i, .deviceFault, clock.isSynchronized()) }
        let plan = mergedPlan(device, index: index, excluding: resting.union(retrying))
            + retrying.map { ReadRequest.single($0, of: device.channels) }
        var connectionDead = false
        for request in plan {
            if Task.isCancelled { break }
            let synced = clock.isSynchronized()
            if connectionDead {
                for i in request.channels { slots[i] = failed(device, i, .commFailure, synced) }
                continue
            }
            do {
                let words = try await read(request, unit: device.unitID)
                let time = clock.now()
                for i in request.channels { slots[i] = decode(device, i, words, request, time, synced) }
                if request.channels.count == 1 { refused.withLock { _ = $0[index]?.removeValue(forKey: request.channels[0]) } }
            } catch {
                if firstError == nil { firstError = error }
                if error.exception == .illegalDataAddress && request.channels.count > 1 {
                    // One bad register fails the whole merged request: read its channels one by one this time, and
                    // leave the refused ones out of the merged plan from now on.
                    for i in request.channels {
                        let single = ReadRequest.single(i, of: device.channels)
                        do {
                            let words = try await read(single, unit: device.unitID)
                            slots[i] = decode(device, i, words, single, clock.now(), synced)
                        } catch {
                            if error.exception == .illegalDataAddress {
                                refused.withLock { $0[index, default: [:]][i] = ContinuousClock.now }
                                logger.warning("device \(device.id) on bus \(bus.name) refuses channel \(device.channels[i].id) (exception 2); it is left out of the merged requests and retried alone every \(Self.refusedRetryInterval)")
                            }
                            slots[i] = failed(device, i, error.exception == nil ? .commFailure : .deviceFault, synced)
                        }
                    }
                    continue
                }
                if error.exception == .illegalDataAddress, let i = request.channels.first {
                    refused.withLock { $0[index, default: [:]][i] = ContinuousClock.now }
                }
                logger.debug("read failed", metadata: ["device": "\(device.id)", "address": "\(request.address)", "error": "\(error)"])
                for i in request.channels {
                    slots[i] = failed(device, i, error.exception == nil ? .commFailure : .deviceFault, synced)
                }
                // A dead connection fails every request the same way: don't wait out a timeout per request.
                if error.isTimeout || error.isConnectionFailure { connectionDead = true }
            }
        }
        return (slots.compactMap { $0 }, firstError)
    }

    /// Each device's merged plan, recomputed only when the set of channels left out of it changes (not every poll).
    private let plans = Mutex<[Int: (excluded: Set<Int>, plan: [ReadRequest])]>([:])

    private func mergedPlan(_ device: DeviceConfig, index: Int, excluding excluded: Set<Int>) -> [ReadRequest] {
        if let cached = plans.withLock({ $0[index] }), cached.excluded == excluded { return cached.plan }
        let plan = RequestPlanner.plan(device.channels, limits: bus.limits, excluding: excluded)
        plans.withLock { $0[index] = (excluded, plan) }
        return plan
    }

    private func failed(_ device: DeviceConfig, _ i: Int, _ quality: Quality, _ synced: Bool) -> Reading {
        Reading(device: device.id, channel: device.channels[i].id, time: clock.now(), value: .none,
                unit: device.channels[i].unit, quality: quality, clockSynchronized: synced)
    }

    private func decode(_ device: DeviceConfig, _ i: Int, _ words: [UInt16], _ request: ReadRequest, _ time: UTCInstant, _ synced: Bool) -> Reading {
        let ch = device.channels[i]
        let from = ch.address - request.address
        let slice = words[from..<from + ch.registerCount]
        if ch.table.isBitTable {
            return Reading(device: device.id, channel: ch.id, time: time, value: .bool(slice.first! != 0), unit: ch.unit,
                           quality: .good, clockSynchronized: synced, raw: Array(slice))
        }
        let decoded = RegisterDecoder.decode(slice, channel: ch)
        if RegisterDecoder.isSentinel(decoded, ch.sentinels) {
            // "No value" from the device: never a number in any sum; the raw registers stay for the audit trail.
            return Reading(device: device.id, channel: ch.id, time: time, value: .none, unit: ch.unit, quality: .invalid,
                           clockSynchronized: synced, raw: Array(slice))
        }
        return Reading(device: device.id, channel: ch.id, time: time,
                       value: RegisterDecoder.scaled(decoded, scale: ch.scale, offset: ch.offset), unit: ch.unit,
                       quality: .good, clockSynchronized: synced, raw: Array(slice))
    }

    /// When the last request on the bus ended (its response arrived or it failed): the pause counts from here.
    private let lastRequestEnd = Mutex<ContinuousClock.Instant?>(nil)

    /// One request on the wire, sent no sooner than the bus' pause after the previous one ended; bits come back as
    /// 0/1 words so decoding is uniform.
    private func read(_ r: ReadRequest, unit: UInt8) async throws(ModbusError) -> [UInt16] {
        if bus.pause > .zero, let end = lastRequestEnd.withLock({ $0 }), end + bus.pause > .now {
            try? await Task.sleep(until: end + bus.pause, clock: .continuous)
            // Stopping cuts the pause short: send nothing then, rather than a request without its pause.
            if Task.isCancelled {
                throw ModbusError(bus: bus.name, endpoint: bus.transport.endpoint, call: "cancelled", errno: ECANCELED,
                                  message: "cancelled before it was sent")
            }
        }
        defer { lastRequestEnd.withLock { $0 = .now } }
        switch r.table {
        case .coil: return try await client.readCoils(unit: unit, address: r.address, count: r.count).map { $0 ? 1 : 0 }
        case .discrete: return try await client.readDiscreteInputs(unit: unit, address: r.address, count: r.count).map { $0 ? 1 : 0 }
        case .holding: return try await client.readHoldingRegisters(unit: unit, address: r.address, count: r.count)
        case .input: return try await client.readInputRegisters(unit: unit, address: r.address, count: r.count)
        }
    }
}
