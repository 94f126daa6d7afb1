@testable import Acquisition
import Foundation
import KilnTallyCore
import Logging
import ModbusKit
import Synchronization
import TestSupport
import Testing

/// Runs a `BusPoller` in a task and records what it delivers, so tests await conditions on the record instead of
/// sleeping. The fault matrix itself is read from the pymodbus peer's request log, not from this.
final class PollerRecorder: Sendable {
    struct Record: Sendable {
        /// Each delivered poll, per device name.
        var polls: [String: [[Reading]]] = [:]
        var events: [Event] = []

        func count(_ device: String) -> Int { polls[device]?.count ?? 0 }
        func goodPolls(_ device: String) -> Int {
            polls[device]?.filter { $0.allSatisfy { $0.quality == .good } }.count ?? 0
        }
        func events(_ kind: Event.Kind, _ device: String? = nil) -> Int {
            events.filter { $0.kind == kind && (device == nil || $0.device?.rawValue == device) }.count
        }
    }

    /// The record behind a lock, shared with the poller's callbacks.
    private final class Shared: Sendable {
        let record = Mutex(Record())
    }

    let poller: BusPoller
    private let shared = Shared()
    private let updates: AsyncStream<Void>
    private let task: Task<Void, Never>

    init(_ poller: BusPoller) {
        self.poller = poller
        let (updates, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.updates = updates
        let shared = self.shared
        task = Task {
            await poller.run(
                deliver: { readings in
                    if let device = readings.first?.device.rawValue {
                        shared.record.withLock { $0.polls[device, default: []].append(readings) }
                    }
                    continuation.yield()
                },
                event: { e in
                    shared.record.withLock { $0.events.append(e) }
                    continuation.yield()
                })
            continuation.finish()
        }
    }

    var snapshot: Record { shared.record.withLock { $0 } }

    /// Waits until `condition` holds for the record; fails after `timeout`.
    func wait(
        _ what: String, timeout: Duration = .seconds(10), until condition: @escaping @Sendable (Record) -> Bool
    ) async throws {
        let shared = self.shared
        let updates = self.updates
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                if shared.record.withLock({ condition($0) }) { return true }
                for await _ in updates where shared.record.withLock({ condition($0) }) { return true }
                return false
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            let met = try await group.next() ?? false
            group.cancelAll()
            if !met { throw PeerError("timed out after \(timeout) waiting for \(what); record: \(shared.record.withLock { $0.summary })") }
        }
    }

    func stop() async {
        task.cancel()
        await task.value
    }
}

extension PollerRecorder.Record {
    var summary: String {
        "polls " + polls.mapValues(\.count).description + ", events " + events.map { "\($0.kind.rawValue)(\($0.device?.rawValue ?? "-"))" }.description
    }
}

private func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return logger
}

/// The function code that reads `table`.
func functionCode(_ table: RegisterTable) -> Int {
    switch table {
    case .coil: 1
    case .discrete: 2
    case .holding: 3
    case .input: 4
    }
}

/// Times (seconds) of the requests in `log` for `unit`, in order.
private func times(_ log: [PymodbusRequest], unit: Int) -> [Double] { log.filter { $0.unit == unit }.map(\.t) }

private func gaps(_ t: [Double]) -> [Double] { zip(t.dropFirst(), t).map { $0 - $1 } }

private func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Every function code pymodbus received is a read (1-4): kilntally never writes to a plant device.
private func expectOnlyReads(_ log: [PymodbusRequest], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!log.isEmpty, sourceLocation: sourceLocation)
    #expect(log.allSatisfy { (1...4).contains($0.fc) }, "function codes \(Set(log.map(\.fc)).sorted())", sourceLocation: sourceLocation)
}

@Suite("Scheduler fault matrix against pymodbus (from its request log)", .serialized)
struct SchedulerFaultTests {
    @Test("(d) read-only from pymodbus' side: only function codes 1-4, and every poll sends exactly the planned requests")
    func readOnlyAndPlannedRequests() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(
            size: 40, coils: [true, false, true], discrete: [false, true], holding: Array(0..<40).map { UInt16($0) },
            input: [500, 501, 502]))
        defer { server.stop() }
        let channels = [
            channel("h0", .holding, 0, .uint16), channel("h2", .holding, 2, .uint32), channel("h30", .holding, 30, .int16),
            channel("i1", .input, 1, .uint16), channel("c0", .coil, 0, .bool), channel("c2", .coil, 2, .bool),
            channel("d1", .discrete, 1, .bool),
        ]
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: server.port),
                            timeouts: ModbusTimeouts(response: .seconds(1)), limits: PlannerLimits(maxGap: 8))
        let device = DeviceConfig(id: "mixed", bus: "plc", unitID: 1, pollInterval: .milliseconds(50), channels: channels)
        let plan = RequestPlanner.plan(channels, limits: bus.limits)
        #expect(plan.count == 5, "holding 0-3, holding 30, input 1, coils 0-2, discrete 1")

        let recorder = PollerRecorder(try BusPoller(bus: bus, devices: [device], clock: SystemClock(), logger: quietLogger("d")))
        try await recorder.wait("10 polls") { $0.count("mixed") >= 10 }
        await recorder.stop()

        let polls = recorder.snapshot.polls["mixed"] ?? []
        #expect(polls.allSatisfy { $0.allSatisfy { $0.quality == .good } })
        #expect(polls.first?.map(\.value) == [.uint(0), .uint(2 << 16 | 3), .int(30), .uint(501), .bool(true), .bool(true), .bool(true)])
        let log = try server.requestLog()
        expectOnlyReads(log)
        // The log is the plan, request for request, poll after poll (the last poll may have been cut by the stop).
        let expected = plan.map { [functionCode($0.table), $0.address, $0.count] }
        for (k, entry) in log.enumerated() {
            #expect([entry.fc, entry.address ?? -1, entry.count ?? -1] == expected[k % plan.count], "request \(k)")
        }
        #expect(log.count >= polls.count * plan.count && log.count <= (polls.count + 1) * plan.count,
                "\(log.count) requests for \(polls.count) polls of \(plan.count)")
    }
}

@Suite("Scheduler: bus pause, retries, busy, reconnect (pymodbus request log)", .serialized)
struct SchedulerTests {
    @Test("the bus pause separates every request on the bus: within a device's poll and between devices")
    func pauseBetweenEveryRequest() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 10, holding: [1, 2, 3], input: [4, 5, 6]), unit: 1, moreUnits: [2])
        defer { server.stop() }
        let pause = Duration.milliseconds(40)
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: server.port),
                            timeouts: ModbusTimeouts(response: .seconds(1)), pause: pause)
        // Two requests per poll (holding and input), two devices due at the same moments.
        let channels = [channel("h", .holding, 0, .uint16), channel("i", .input, 0, .uint16)]
        let devices = [
            DeviceConfig(id: "a", bus: "plc", unitID: 1, pollInterval: .milliseconds(50), channels: channels),
            DeviceConfig(id: "b", bus: "plc", unitID: 2, pollInterval: .milliseconds(50), channels: channels),
        ]
        let recorder = PollerRecorder(try BusPoller(bus: bus, devices: devices, clock: SystemClock(), logger: quietLogger("pause")))
        try await recorder.wait("5 polls of each") { $0.count("a") >= 5 && $0.count("b") >= 5 }
        await recorder.stop()

        let log = try server.requestLog()
        expectOnlyReads(log)
        #expect(Set(log.map(\.unit)) == [1, 2])
        // Each request reaches the peer at least `pause` after the one before (whose answer came even earlier).
        let shortest = gaps(log.map(\.t)).min() ?? 0
        #expect(shortest >= seconds(pause), "shortest gap between requests \(shortest) s, pause \(pause)")
    }
}
