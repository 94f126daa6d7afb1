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
        // The log is the plan, request for request, poll after poll. The last poll may have been cut by the stop:
        // the poller hands over what it read before stopping, so that delivery has fewer requests behind it.
        let expected = plan.map { [functionCode($0.table), $0.address, $0.count] }
        for (k, entry) in log.enumerated() {
            #expect([entry.fc, entry.address ?? -1, entry.count ?? -1] == expected[k % plan.count], "request \(k)")
        }
        #expect(log.count > (polls.count - 1) * plan.count && log.count <= (polls.count + 1) * plan.count,
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

    @Test("(b) exception 6 (busy) is asked again after short waits and the reading ends good; a unit that stays busy ends as a device fault after 3 retries, still up")
    func busyIsRetried() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 4, holding: [7345]), unit: 2, moreUnits: [3],
            faults: [2: PymodbusFault(busyFirst: 2), 3: PymodbusFault(busyFirst: 100)])
        defer { server.stop() }
        let timeout = Duration.milliseconds(400)
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: server.port), timeouts: ModbusTimeouts(response: timeout))
        let briefly = DeviceConfig(id: "briefly", bus: "plc", unitID: 2, pollInterval: .seconds(5), channels: [channel("rate", .holding, 0, .uint16)])
        let always = DeviceConfig(id: "always", bus: "plc", unitID: 3, pollInterval: .seconds(5), channels: [channel("rate", .holding, 0, .uint16)])
        let recorder = PollerRecorder(try BusPoller(bus: bus, devices: [briefly, always], clock: SystemClock(), logger: quietLogger("b")))
        try await recorder.wait("one poll of each") { $0.count("briefly") >= 1 && $0.count("always") >= 1 }
        await recorder.stop()

        let record = recorder.snapshot
        #expect(record.polls["briefly"]?.first?.map(\.quality) == [.good])
        #expect(record.polls["briefly"]?.first?.map(\.value) == [.uint(7345)])
        #expect(record.polls["always"]?.first?.map(\.quality) == [.deviceFault])
        #expect(record.polls["always"]?.first?.map(\.exceptionCode) == [6], "the reading names the exception")
        #expect(record.events.isEmpty, "a busy device answers: it is not down")

        let log = try server.requestLog()
        expectOnlyReads(log)
        #expect(log.filter { $0.unit == 2 }.map(\.fault) == ["busy", "busy", nil])
        #expect(log.filter { $0.unit == 3 }.map(\.fault) == ["busy", "busy", "busy", "busy"], "asked 1 + 3 times, then given up")
        // Each repeat waits its turn: 1/8, 1/4, 1/2 of the response timeout after the busy answer.
        let waits = BusPoller.busyWaits(responseTimeout: timeout).map(seconds)
        for unit in [2, 3] {
            for (gap, wait) in zip(gaps(times(log, unit: unit)), waits) {
                #expect(gap >= wait, "unit \(unit): asked again after \(gap) s, wait \(wait) s")
            }
        }
    }

    @Test("an exception answer is an answer (device up, normal period); a gateway's exception 11 is silence (down, backoff)")
    func exceptionsVersusGatewaySilence() async throws {
        let dir = try TemporaryDirectory()
        // Unit 5 is not served: pymodbus answers it with exception 4. Unit 6 stands behind a "gateway" that answers
        // exception 11 (target device failed to respond).
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 4), unit: 1, faults: [6: PymodbusFault(exception: 11)])
        defer { server.stop() }
        let bus = BusConfig(name: "gw", transport: .tcp(host: "127.0.0.1", port: server.port), timeouts: ModbusTimeouts(response: .seconds(1)))
        let period = Duration.milliseconds(40)
        let faulty = DeviceConfig(id: "faulty", bus: "gw", unitID: 5, pollInterval: period,
                                  channels: [channel("v", .holding, 0, .uint16)], backoffMax: .seconds(1))
        let behind = DeviceConfig(id: "behind", bus: "gw", unitID: 6, pollInterval: period,
                                  channels: [channel("v", .holding, 0, .uint16)], backoffMax: .seconds(1))
        let recorder = PollerRecorder(try BusPoller(bus: bus, devices: [faulty, behind], clock: SystemClock(), logger: quietLogger("gw")))
        try await recorder.wait("12 polls of the faulty unit") { $0.count("faulty") >= 12 }
        await recorder.stop()

        let record = recorder.snapshot
        #expect(record.polls["faulty"]?.allSatisfy { $0.map(\.quality) == [.deviceFault] && $0.map(\.exceptionCode) == [4] } == true)
        #expect(record.polls["behind"]?.allSatisfy { $0.map(\.quality) == [.timeout] } == true, "exception 11: the device behind the gateway is silent")
        #expect(record.events.map(\.kind) == [.deviceDown] && record.events.first?.device == "behind", "\(record.summary)")
        let log = try server.requestLog()
        expectOnlyReads(log)
        // Asked once and retried once while up, then probed after 2, 4, 8 … periods: far fewer requests.
        let behindTimes = times(log, unit: 6)
        #expect(log.filter { $0.unit == 6 }.allSatisfy { $0.fault == "exception" })
        #expect(behindTimes.count <= 2 + 4, "\(behindTimes.count) requests behind the gateway")
        #expect(gaps(behindTimes).dropFirst().allSatisfy { $0 >= 2 * seconds(period) }, "backing off: \(gaps(behindTimes))")
        #expect(times(log, unit: 5).count >= 12)
    }

    @Test("(c) a connection dropped under a request is re-opened and the request sent again: polling goes on, no events")
    func droppedConnectionIsReopened() async throws {
        let dir = try TemporaryDirectory()
        // pymodbus closes the connection instead of answering unit 1's 4th request.
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 4, holding: [11, 22]), unit: 1, moreUnits: [2],
            faults: [1: PymodbusFault(dropAfter: 3)])
        defer { server.stop() }
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: server.port),
                            timeouts: ModbusTimeouts(response: .milliseconds(500)), pause: .milliseconds(5))
        let devices = [
            DeviceConfig(id: "a", bus: "plc", unitID: 1, pollInterval: .milliseconds(50), channels: [channel("v", .holding, 0, .uint16)]),
            DeviceConfig(id: "b", bus: "plc", unitID: 2, pollInterval: .milliseconds(50), channels: [channel("v", .holding, 1, .uint16)]),
        ]
        let recorder = PollerRecorder(try BusPoller(bus: bus, devices: devices, clock: SystemClock(), logger: quietLogger("c")))
        try await recorder.wait("8 polls of each") { $0.count("a") >= 8 && $0.count("b") >= 8 }
        await recorder.stop()

        let record = recorder.snapshot
        #expect(record.goodPolls("a") == record.count("a") && record.goodPolls("b") == record.count("b"), "\(record.summary)")
        #expect(record.polls["a"]?.flatMap { $0.map(\.value) }.allSatisfy { $0 == .uint(11) } == true)
        #expect(record.events.isEmpty, "the device answered on the new connection: \(record.summary)")

        let log = try server.requestLog()
        expectOnlyReads(log)
        let drop = try #require(log.firstIndex { $0.fault == "drop" })
        #expect(log.filter { $0.fault == "drop" }.count == 1)
        // (The harness' readiness check opens a connection of its own first: compare, don't count from 1.)
        let connections = (Set(log[...drop].map(\.conn)), Set(log[(drop + 1)...].map(\.conn)))
        #expect(connections.0.count == 1 && connections.1.count == 1 && connections.0 != connections.1, "one new connection: \(connections)")
        // The very next request is the dropped one again, on the new connection.
        #expect(log[drop + 1].unit == 1 && log[drop + 1].address == log[drop].address && log[drop + 1].fc == log[drop].fc)
    }

    @Test("(c) a bus that cannot be re-opened is retried with backoff, not on every device's turn; one bus down/up and one down/up per device")
    func lostBusReconnectsWithBackoff() async throws {
        let dir = try TemporaryDirectory()
        let map = PymodbusRegisterMap(size: 4, holding: [5, 6])
        var server = try await PymodbusServer.startTCP(in: dir, map: map, unit: 1, moreUnits: [2], name: "before")
        defer { server.stop() }
        let port = server.port
        let cap = Duration.milliseconds(300)
        let period = Duration.milliseconds(50)
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: port),
                            timeouts: ModbusTimeouts(response: .milliseconds(500)), reconnectBackoffMax: cap)
        let devices = [
            DeviceConfig(id: "a", bus: "plc", unitID: 1, pollInterval: period, channels: [channel("v", .holding, 0, .uint16)]),
            DeviceConfig(id: "b", bus: "plc", unitID: 2, pollInterval: period, channels: [channel("v", .holding, 1, .uint16)]),
        ]
        let poller = try BusPoller(bus: bus, devices: devices, clock: SystemClock(), logger: quietLogger("c2"))
        let recorder = PollerRecorder(poller)
        try await recorder.wait("polls of both") { $0.goodPolls("a") >= 2 && $0.goodPolls("b") >= 2 }

        // Nothing listens on the port for a while: every connect is refused.
        let outageStart = ContinuousClock.now
        server.stop()
        try await recorder.wait("the bus to go down") { $0.events(.busDown) == 1 }
        try await Task.sleep(for: .milliseconds(1200))
        let before = recorder.snapshot
        server = try await PymodbusServer.startTCP(in: dir, map: map, unit: 1, moreUnits: [2], port: port, name: "after")
        try await recorder.wait("both devices to answer again") { r in
            r.events(.deviceUp, "a") == 1 && r.events(.deviceUp, "b") == 1 && r.goodPolls("a") >= before.goodPolls("a") + 2
                && r.goodPolls("b") >= before.goodPolls("b") + 2
        }
        let outage = ContinuousClock.now - outageStart
        await recorder.stop()

        let record = recorder.snapshot
        let busEvents: [Event.Kind] = record.events.map(\.kind).filter { $0 == .busDown || $0 == .busUp }
        #expect(busEvents == [.busDown, .busUp], "\(record.summary)")
        for d in ["a", "b"] {
            #expect(record.events(.deviceDown, d) == 1 && record.events(.deviceUp, d) == 1, "\(d): \(record.summary)")
        }
        // During the outage each device delivered one poll of comm_failure readings (the gap is visible), no more.
        for d in ["a", "b"] {
            #expect(before.count(d) - before.goodPolls(d) == 1, "\(d): \(before.summary)")
        }
        // Attempts to re-open: every 2 × 50 ms, 4 × 50 ms … capped at 300 ms. Without the backoff each of the two
        // devices would try to connect every 50 ms (about 2 × outage / 50 ms attempts).
        let ramp = (1...).prefix { BusPoller.backoff(pollInterval: period, failures: $0, cap: cap) < cap }.count
        let bound = Int((seconds(outage) / seconds(cap)).rounded(.up)) + ramp + 1
        #expect(poller.reconnectAttempts >= 2 && poller.reconnectAttempts <= bound,
                "\(poller.reconnectAttempts) attempts in \(outage); bound \(bound)")
        let after = try server.requestLog()
        expectOnlyReads(after)
        #expect(Set(after.map(\.unit)) == [1, 2], "both units polled on the re-opened bus")
    }

    @Test("other callers' reads run in turn between device polls, with the pause, while the poller runs")
    func callerReadsRunBetweenPolls() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 10, coils: [false, true], holding: [1, 2], input: [0, 0, 0, 0x4142, 0x4344]),
            unit: 1, moreUnits: [7])
        defer { server.stop() }
        let pause = Duration.milliseconds(20)
        let bus = BusConfig(name: "plc", transport: .tcp(host: "127.0.0.1", port: server.port),
                            timeouts: ModbusTimeouts(response: .seconds(1)), pause: pause)
        // Two requests per poll: a read between them would split the poll.
        let device = DeviceConfig(id: "feeder", bus: "plc", unitID: 1, pollInterval: .milliseconds(60),
                                  channels: [channel("h", .holding, 0, .uint16), channel("c", .coil, 1, .bool)])
        let poller = try BusPoller(bus: bus, devices: [device], clock: SystemClock(), logger: quietLogger("read"))
        let recorder = PollerRecorder(poller)
        try await recorder.wait("polling") { $0.count("feeder") >= 2 }

        // Several callers at once, while polls keep coming.
        let results = try await withThrowingTaskGroup(of: [UInt16].self) { group in
            for k in 0..<4 {
                group.addTask {
                    k % 2 == 0 ? try await poller.read(unit: 7, table: .input, address: 3, count: 2)
                        : try await poller.read(unit: 7, table: .coil, address: 0, count: 2)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter { $0 == [0x4142, 0x4344] }.count == 2 && results.filter { $0 == [0, 1] }.count == 2, "\(results)")
        // A refused address comes back as the device's exception, like any read.
        await #expect(throws: ModbusError.self) { try await poller.read(unit: 7, table: .holding, address: 9, count: 5) }
        try await recorder.wait("polling after the reads") { $0.count("feeder") >= 6 }
        await recorder.stop()
        // Once the poller has stopped, a read fails at once.
        do {
            _ = try await poller.read(unit: 7, table: .holding, address: 0, count: 1)
            Issue.record("a read after the poller stopped succeeded")
        } catch {
            #expect(error.call == "shutdown")
        }

        let log = try server.requestLog()
        expectOnlyReads(log)
        #expect(recorder.snapshot.goodPolls("feeder") == recorder.snapshot.count("feeder"))
        // The device's polls are pairs (coil, then holding); every caller read sits between two pairs.
        let lastOfPoll = try #require(RequestPlanner.plan(device.channels, limits: bus.limits).last.map { functionCode($0.table) })
        let callers = log.indices.filter { log[$0].unit == 7 }
        #expect(callers.count == 5)
        for k in callers {
            let previousPoll = log[..<k].last { $0.unit == 1 }
            #expect(previousPoll == nil || previousPoll?.fc == lastOfPoll, "request \(k) of unit 7 follows a complete poll")
        }
        #expect(gaps(log.map(\.t)).allSatisfy { $0 >= seconds(pause) }, "the pause holds around callers' reads too")
    }

    @Test("a silent unit is probed after 2, 4, 8 … poll intervals up to the cap, one request a probe; retried only while up")
    func silentUnitBacksOff() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: PymodbusRegisterMap(size: 4), unit: 1, faults: [9: .silent])
        defer { server.stop() }
        let timeout = Duration.milliseconds(50), cap = Duration.milliseconds(320)
        let bus = BusConfig(name: "line1", transport: .tcp(host: "127.0.0.1", port: server.port), timeouts: ModbusTimeouts(response: timeout))
        let dead = DeviceConfig(id: "dead", bus: "line1", unitID: 9, pollInterval: .milliseconds(40),
                                channels: [channel("v", .holding, 0, .uint16)], backoffMax: cap, retries: 2)
        let recorder = PollerRecorder(try BusPoller(bus: bus, devices: [dead], clock: SystemClock(), logger: quietLogger("backoff")))
        try await recorder.wait("the first poll and 5 probes") { $0.count("dead") >= 6 }
        await recorder.stop()

        let record = recorder.snapshot
        #expect(record.polls["dead"]?.allSatisfy { $0.map(\.quality) == [.timeout] } == true)
        #expect(record.events.map(\.kind) == [.deviceDown])
        let log = try server.requestLog()
        expectOnlyReads(log)
        let requests = times(log, unit: 9)
        // The first poll: the request and its 2 retries, then one request per probe. Each probe comes at least its
        // backoff (80, 160, 320, 320 … ms) after the request before it timed out, so at least the backoff after
        // that request arrived — a retry while down would come one timeout (50 ms) later, below every backoff.
        let probes = Array(requests.dropFirst(dead.retries))
        #expect(requests.count >= 1 + dead.retries + 5, "\(requests.count) requests: 6 polls, the first with 2 retries")
        for (k, gap) in gaps(probes).enumerated() {
            let wait = BusPoller.backoff(pollInterval: dead.pollInterval, failures: k + 1, cap: cap)
            #expect(gap >= seconds(wait), "probe \(k + 1) came \(gap) s after the request before; backoff \(wait)")
        }
    }

    @Test("(a) a dead unit beside a healthy one: ≤ ⌈window / backoff cap⌉ + 1 requests per window, no retries while down, and the healthy unit's gaps stay ≤ period + timeout + pause")
    func deadUnitBesideAHealthyOne() async throws {
        let dir = try TemporaryDirectory()
        // Unit 9 is configured but dead: pymodbus never answers it.
        let server = try await PymodbusServer.startTCP(
            in: dir, map: PymodbusRegisterMap(size: 4, holding: [42]), unit: 1, faults: [9: .silent])
        defer { server.stop() }
        // A timeout longer than the healthy period: a probe cannot fit between two of its polls without delaying
        // one, and a retry sent inline (two timeouts back to back) breaks the bound by ~200 ms. A probe right
        // after a healthy poll keeps the gap at about timeout + 2 × pause, leaving room for a loaded machine.
        let timeout = Duration.milliseconds(600), pause = Duration.milliseconds(10), cap = Duration.milliseconds(800)
        let period = Duration.milliseconds(400)
        let bus = BusConfig(name: "line1", transport: .tcp(host: "127.0.0.1", port: server.port),
                            timeouts: ModbusTimeouts(response: timeout), pause: pause)
        let healthy = DeviceConfig(id: "healthy", bus: "line1", unitID: 1, pollInterval: period,
                                   channels: [channel("v", .holding, 0, .uint16)])
        let dead = DeviceConfig(id: "dead", bus: "line1", unitID: 9, pollInterval: .milliseconds(200),
                                channels: [channel("v", .holding, 0, .uint16)], backoffMax: cap, retries: 1)
        let recorder = PollerRecorder(try BusPoller(bus: bus, devices: [healthy, dead], clock: SystemClock(), logger: quietLogger("a")))
        try await recorder.wait("11 polls of the healthy unit") { $0.count("healthy") >= 11 }
        await recorder.stop()

        let log = try server.requestLog()
        expectOnlyReads(log)
        let deadTimes = times(log, unit: 9), healthyTimes = times(log, unit: 1)
        #expect(log.filter { $0.unit == 9 }.allSatisfy { $0.fault == "silent" })
        // While up, the first timeout is retried once; from then on the unit is down and probed after 2 × 200 ms,
        // then at the cap. The backoff reaches the cap after `ramp` requests (computed from the config).
        let ramp = 1 + dead.retries + (1...).prefix { BusPoller.backoff(pollInterval: dead.pollInterval, failures: $0, cap: cap) < cap }.count
        #expect(deadTimes.count >= ramp + 1, "the run is long enough to see the dead unit at its cap: \(deadTimes.count) requests")
        let steady = Array(deadTimes.dropFirst(ramp - 1))
        // No retries while down: consecutive probes are at least one backoff cap apart.
        #expect(gaps(steady).allSatisfy { $0 >= seconds(cap) }, "probe gaps \(gaps(steady))")
        // The issue's bound, on every window that starts at a probe (the busiest windows start at one).
        let window = 2.0
        let bound = Int((window / seconds(cap)).rounded(.up)) + 1
        for start in steady where start + window <= (log.last?.t ?? 0) {
            let n = steady.filter { $0 >= start && $0 <= start + window }.count
            #expect(n <= bound, "\(n) requests to the dead unit in the \(window) s window from \(start); bound \(bound)")
        }
        // The healthy unit keeps its cadence: no gap longer than its period + one timeout + the pause.
        let limit = seconds(period + timeout + pause)
        #expect(gaps(healthyTimes).allSatisfy { $0 <= limit }, "longest healthy gap \(gaps(healthyTimes).max() ?? 0) s, limit \(limit) s")
        #expect(recorder.snapshot.goodPolls("healthy") == recorder.snapshot.count("healthy"))
        #expect(recorder.snapshot.events.map(\.kind) == [.deviceDown], "one down event for the dead unit, no flapping")
    }
}
