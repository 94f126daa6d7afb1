import Foundation
import KilnTallyCore
import Logging
import ModbusKit
import SerialScale
import Synchronization

/// Reads one weighbridge indicator that streams ASCII frames on a serial line (`kind = "serial_stream"`). The line is
/// opened exclusively like an RTU line and only ever read: not one byte is sent to the indicator. Each decoded frame
/// becomes the readings a Modbus weighbridge's poll gives (weight, and the status roles the format has), so tickets
/// work the same whichever bus the indicator is on. No frame for `silenceTimeout`: the device is down (one
/// `device_down`, readings of quality timeout once per silence period); frames again: `device_up`. A line that
/// cannot be opened is retried with backoff (one `bus_down`/`bus_up` per outage).
///
/// Blocking reads run on a thread of the reader's own; frames reach `deliver` from a task.
public final class StreamBusReader: Sendable {
    public let bus: StreamBusConfig
    public let device: StreamDeviceConfig
    private let clock: any WallClock
    private let logger: Logger
    private let statusBox: Mutex<Status>

    /// What `kilntally status` shows of the line.
    public struct Status: Sendable {
        public var open: Bool
        public var busError: String?
        public var up: Bool
        public var lastGoodRead: UTCInstant?
        public var counters: ScaleParserCounters
        /// When the reading thread last turned (a read returned, with bytes or on its timeout).
        public var lastProgress: ContinuousClock.Instant
    }

    public var status: Status { statusBox.withLock { $0 } }
    /// The reading thread turns at least every read timeout (200 ms); longer than this means it is stuck.
    public var livenessDeadline: Duration { .seconds(10) }

    public init(bus: StreamBusConfig, device: StreamDeviceConfig, clock: any WallClock, logger: Logger) {
        self.bus = bus
        self.device = device
        self.clock = clock
        var logger = logger
        logger[metadataKey: "bus"] = "\(bus.name)"
        logger[metadataKey: "device"] = "\(device.id)"
        self.logger = logger
        statusBox = Mutex(Status(open: false, busError: nil, up: false, lastGoodRead: nil, counters: .init(), lastProgress: .now))
    }

    enum Output: Sendable {
        case readings([Reading])
        case event(Event)
    }

    /// Reads until the task is cancelled.
    public func run(deliver: @Sendable ([Reading]) async -> Void, event: @Sendable (Event) async -> Void) async {
        let (stream, continuation) = AsyncStream.makeStream(of: Output.self, bufferingPolicy: .bufferingNewest(1_000))
        let stop = Atomic<Bool>(false)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            readLoop(stop: stop, emit: { continuation.yield($0) })
            continuation.finish()
            done.signal()
        }
        thread.name = "kt-stream:\(bus.name)"
        thread.start()
        await withTaskCancellationHandler {
            for await output in stream {
                switch output {
                case .readings(let r): await deliver(r)
                case .event(let e): await event(e)
                }
            }
        } onCancel: {
            stop.store(true, ordering: .releasing)
        }
        // The thread ends within one read timeout of the stop; waiting for it here releases the line's lock first.
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                done.wait()
                c.resume()
            }
        }
    }

    private func readLoop(stop: borrowing Atomic<Bool>, emit: (Output) -> Void) {
        var parser = ScaleStreamParser(protocol: device.scaleProtocol, checksum: device.checksum)
        var port: SerialPort?
        var failures = 0
        var nextAttempt = ContinuousClock.now
        var busDownSince: ContinuousClock.Instant?
        var lastFrame = ContinuousClock.now
        var lastSilentReport: ContinuousClock.Instant?
        var up = false
        // Whether this silence (or a line that never streamed) was reported down already.
        var reportedDown = false
        var buffer = [UInt8](repeating: 0, count: 512)
        defer { port?.close() }
        while !stop.load(ordering: .acquiring) {
            statusBox.withLock { $0.lastProgress = .now }
            if port == nil {
                guard ContinuousClock.now >= nextAttempt else {
                    Thread.sleep(forTimeInterval: 0.2)
                    continue
                }
                do {
                    port = try SerialPort.open(bus.device, settings: bus.settings, name: bus.name, logger: logger)
                    parser.reset()
                    lastFrame = .now
                    statusBox.withLock { $0.open = true; $0.busError = nil }
                    if let since = busDownSince {
                        logger.notice("bus \(bus.name) (\(bus.device)) is open again after \(ContinuousClock.now - since)")
                        emit(.event(Event(kind: .busUp, severity: .info, time: clock.now(), message: "bus \(bus.name) (\(bus.device)) is open again",
                                          attributes: ["bus": bus.name, "attempts": "\(failures)"])))
                    }
                    failures = 0
                    busDownSince = nil
                } catch {
                    failures += 1
                    nextAttempt = .now + min(bus.reconnectBackoffMax, .milliseconds(500) * (1 << min(failures, 10)))
                    statusBox.withLock { $0.open = false; $0.busError = "\(error)"; $0.up = false }
                    if busDownSince == nil {
                        busDownSince = .now
                        logger.error("bus \(bus.name) (\(bus.device)) cannot be opened: \(error.detail); retrying with backoff up to \(bus.reconnectBackoffMax)",
                                     metadata: ["call": "\(error.call)"])
                        emit(.event(Event(kind: .busDown, severity: .alarm, time: clock.now(),
                                          message: "bus \(bus.name) (\(bus.device)) cannot be opened: \(error.detail)",
                                          attributes: ["bus": bus.name, "call": error.call, "errno": "\(error.errno)"])))
                        if !reportedDown {
                            reportedDown = true
                            up = false
                            emit(.event(downEvent("bus \(bus.name) cannot be opened")))
                        }
                    }
                    continue
                }
            }
            let n: Int
            do {
                n = try buffer.withUnsafeMutableBytes { try port!.read(into: $0, timeout: .milliseconds(200)) }
            } catch {
                logger.error("bus \(bus.name): reading \(bus.device) failed: \((error as? ModbusError)?.detail ?? "\(error)"); reopening", metadata: ["call": "read"])
                port?.close()
                port = nil
                nextAttempt = .now
                busDownSince = .now
                statusBox.withLock { $0.open = false; $0.busError = "\(error)" }
                continue
            }
            var frames: [ScaleFrame] = []
            if n > 0 { parser.feed(buffer[0..<n]) { frames.append($0) } }
            let now = clock.now()
            for frame in frames {
                lastFrame = .now
                lastSilentReport = nil
                emit(.readings(device.layout.readings(of: frame, device: device.id, time: now, clockSynchronized: clock.isSynchronized())))
            }
            if !frames.isEmpty {
                statusBox.withLock { $0.lastGoodRead = now; $0.up = true }
                if !up {
                    up = true
                    reportedDown = false
                    logger.notice("indicator \(device.id) on bus \(bus.name) is streaming")
                    emit(.event(Event(kind: .deviceUp, severity: .info, time: now, device: device.id,
                                      message: "indicator \(device.id) on bus \(bus.name) is streaming \(device.scaleProtocol.rawValue) frames",
                                      attributes: ["bus": bus.name])))
                }
            }
            statusBox.withLock { $0.counters = parser.counters }
            // Silent longer than the timeout: down, and a timeout reading per silence period so the gap shows.
            if ContinuousClock.now - lastFrame > bus.silenceTimeout,
               lastSilentReport.map({ ContinuousClock.now - $0 > bus.silenceTimeout }) ?? true {
                lastSilentReport = .now
                emit(.readings(device.layout.unavailableReadings(device: device.id, time: now, quality: .timeout,
                                                                clockSynchronized: clock.isSynchronized())))
                if !reportedDown {
                    reportedDown = true
                    up = false
                    statusBox.withLock { $0.up = false }
                    emit(.event(downEvent("no frame for \(bus.silenceTimeout)")))
                }
            }
        }
    }

    private func downEvent(_ why: String) -> Event {
        let message = "indicator \(device.id) on bus \(bus.name) is not streaming: \(why)"
        logger.error("\(message)", metadata: ["call": "read"])
        return Event(kind: .deviceDown, severity: .alarm, time: clock.now(), device: device.id, message: message,
                     attributes: ["bus": bus.name, "call": "read"])
    }
}
