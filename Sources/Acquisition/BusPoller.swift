import KilnTallyCore
import Logging
import ModbusKit

/// Polls every device of one bus in turn, on the bus' own `ModbusClient` (whose blocking calls run on its own
/// thread). One request per channel for now; issue 3 adds the request planner, retries and per-device backoff.
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
        while !Task.isCancelled {
            // The device whose next poll is soonest.
            let i = due.indices.min { due[$0] < due[$1] }!
            if due[i] > ContinuousClock.now {
                do { try await Task.sleep(until: due[i], clock: .continuous) } catch { return }
            }
            let device = devices[i]
            let (readings, failure) = await poll(device)
            // Next poll one interval after the scheduled time, skipping missed slots instead of bursting.
            due[i] += device.pollInterval
            let now = ContinuousClock.now
            if due[i] < now { due[i] = now }
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

    /// Reads every channel of `device` once. Returns the readings (failed channels with quality `comm_failure`)
    /// and the first error, if any.
    func poll(_ device: DeviceConfig) async -> ([Reading], ModbusError?) {
        var readings: [Reading] = []
        readings.reserveCapacity(device.channels.count)
        var firstError: ModbusError?
        for ch in device.channels {
            // Shutdown does not wait for the rest of a long device (each channel may take a response timeout).
            if Task.isCancelled { break }
            let synced = clock.isSynchronized()
            do {
                let (value, raw) = try await read(ch, unit: device.unitID)
                readings.append(Reading(device: device.id, channel: ch.id, time: clock.now(), value: value,
                                        unit: ch.unit, quality: .good, clockSynchronized: synced, raw: raw))
            } catch {
                logger.debug("read failed", metadata: ["device": "\(device.id)", "channel": "\(ch.id)", "error": "\(error)"])
                if firstError == nil { firstError = error }
                readings.append(Reading(device: device.id, channel: ch.id, time: clock.now(), value: .none,
                                        unit: ch.unit, quality: error.exception == nil ? .commFailure : .deviceFault,
                                        clockSynchronized: synced))
                // A dead connection fails every channel the same way: don't wait out a timeout per channel.
                if error.isTimeout || error.isConnectionFailure {
                    for rest in device.channels.drop(while: { $0.id != ch.id }).dropFirst() {
                        readings.append(Reading(device: device.id, channel: rest.id, time: clock.now(), value: .none,
                                                unit: rest.unit, quality: .commFailure, clockSynchronized: synced))
                    }
                    break
                }
            }
        }
        return (readings, firstError)
    }

    private func read(_ ch: ChannelConfig, unit: UInt8) async throws(ModbusError) -> (ReadingValue, [UInt16]) {
        let n = ch.type.registerCount
        switch ch.table {
        case .coil:
            let bits = try await client.readCoils(unit: unit, address: ch.address, count: 1)
            return (.bool(bits[0]), [bits[0] ? 1 : 0])
        case .discrete:
            let bits = try await client.readDiscreteInputs(unit: unit, address: ch.address, count: 1)
            return (.bool(bits[0]), [bits[0] ? 1 : 0])
        case .holding:
            let regs = try await client.readHoldingRegisters(unit: unit, address: ch.address, count: n)
            return (RegisterDecoder.scaled(RegisterDecoder.decode(regs[...], as: ch.type, order: ch.wordOrder),
                                           scale: ch.scale, offset: ch.offset), regs)
        case .input:
            let regs = try await client.readInputRegisters(unit: unit, address: ch.address, count: n)
            return (RegisterDecoder.scaled(RegisterDecoder.decode(regs[...], as: ch.type, order: ch.wordOrder),
                                           scale: ch.scale, offset: ch.offset), regs)
        }
    }
}
