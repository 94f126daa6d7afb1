@testable import Acquisition
@testable import Simulator
import KilnTallyCore
import Logging
import ModbusKit
import TestSupport
import Testing

/// What each kind of trouble on the wire becomes in the readings, provoked by the simulator's fault injection and
/// read through the real poller, and a frozen heartbeat turning a device's readings stale.
@Suite("Reading qualities from the wire", .serialized)
struct QualityAndHeartbeatTests {
    static func flowDevice(faults: [ProfileDeviceSimulator.ScheduledFault]) throws -> (ProfileDeviceSimulator, AcquisitionConfig) {
        let scenario = try Scenario.load(text: """
            [[device]]
            name = "pump"
            profile = "generic-flow"
            """, file: "s.toml")
        var parameters = scenario.devices[0].parameters
        parameters.faults = faults
        var logger = Logger(label: "quality")
        logger.logLevel = .critical
        let d = scenario.devices[0]
        let sim = try ProfileDeviceSimulator(name: d.name, channels: d.channels, host: "127.0.0.1", port: 0,
                                             parameters: parameters, logger: logger)
        let port = try sim.start()
        let config = try KilnTallyTestConfig.acquisition("[profiles]\ndirs = []\n" + d.daemonConfig(port: port)
            .replacingOccurrences(of: "response_timeout = \"500ms\"", with: "response_timeout = \"200ms\""))
        return (sim, config)
    }

    @Test("timeout, exception with its code, dropped connection and garbage each give their quality; then good again")
    func qualities() async throws {
        let second = Duration.seconds(1)
        let (sim, config) = try Self.flowDevice(faults: [
            .init(start: second * 1, duration: second, fault: .noReply),
            .init(start: second * 2, duration: second, fault: .exception(4)),
            .init(start: second * 3, duration: second, fault: .dropConnection),
            .init(start: second * 4, duration: second, fault: .garbage),
        ])
        defer { sim.stop() }
        var logger = Logger(label: "quality")
        logger.logLevel = .critical
        let device = config.devices[0]
        let poller = try BusPoller(bus: config.buses[0], devices: [device], clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }
        func qualities(at t: Duration) async -> [String] {
            sim.step(to: t)
            let (readings, _) = await poller.poll(device, index: 0)
            #expect(readings.count == device.channels.count)
            return Array(Set(readings.map { $0.quality.rawValue + ($0.exceptionCode == 0 ? "" : "/\($0.exceptionCode)") })).sorted()
        }
        #expect(await qualities(at: .milliseconds(500)) == ["good"])
        #expect(await qualities(at: .milliseconds(1500)) == ["timeout"])
        #expect(await qualities(at: .milliseconds(2500)) == ["device_fault/4"])
        #expect(await qualities(at: .milliseconds(3500)) == ["comm_failure"])
        let garbled = await qualities(at: .milliseconds(4500))
        #expect(garbled == ["comm_failure"])
        #expect(await qualities(at: .milliseconds(5500)) == ["good"])
        #expect(sim.requestLog.allSatisfy { (1...4).contains($0.functionCode) })
    }

    @Test("a heartbeat that stops counting marks the device's readings stale with one event; counting again clears it")
    func staleHeartbeat() async throws {
        let (sim, config) = try Self.flowDevice(faults: [])
        defer { sim.stop() }
        var device = config.devices[0]
        device.pollInterval = .milliseconds(50)
        let heartbeat = try #require(device.channels.firstIndex { $0.id == "heartbeat" })
        device.channels[heartbeat].role = .heartbeat(staleAfter: .milliseconds(300))
        var logger = Logger(label: "stale")
        logger.logLevel = .critical
        // The simulator is not stepped: its heartbeat register stands still, as a hung PLC program's would.
        let recorder = PollerRecorder(try BusPoller(bus: config.buses[0], devices: [device], clock: SystemClock(), logger: logger))
        try await recorder.wait("stale readings") { r in r.polls["pump"]?.last?.allSatisfy { $0.quality == .stale } == true }
        sim.step(to: .seconds(1))
        try await recorder.wait("fresh readings") { r in r.events(.heartbeatResumed) == 1 && r.polls["pump"]?.last?.allSatisfy { $0.quality == .good } == true }
        await recorder.stop()
        let record = recorder.snapshot
        // One stop, then the resume. The stepped heartbeat stands still again afterwards, so on a loaded machine a
        // second stop may legitimately land before the recorder stops: only the events up to the resume are fixed.
        let kinds = record.events.map(\.kind)
        let resumed = try #require(kinds.firstIndex(of: .heartbeatResumed))
        #expect(Array(kinds[...resumed]) == [.heartbeatStopped, .heartbeatResumed])
        #expect(kinds[(resumed + 1)...].allSatisfy { $0 == .heartbeatStopped })
        let polls = try #require(record.polls["pump"])
        #expect(polls.first?.allSatisfy { $0.quality == .good } == true, "fresh until stale_after has passed")
        #expect(polls.contains { $0.allSatisfy { $0.quality == .stale && $0.value != .none } }, "stale readings keep their values")
    }
}
