@testable import Acquisition
@testable import Simulator
import KilnTallyCore
import Logging
import ModbusKit

import TestSupport
import Testing

@Suite("Simulator models")
struct SimulatorModelTests {
    @Test("a truck drives on in motion, stands still at its exact weight with a new ticket, leaves, and the scale returns to zero")
    func truckPass() {
        let model = WeighbridgeModel(trucks: [
            .init(vehicle: "AB123", arrive: .seconds(1), grossKilograms: 32_010, tareKilograms: 14_000, outboundAfter: .seconds(16)),
        ], divisionKilograms: 20, firstTicket: 41)
        // Inbound loaded, outbound empty, weights on the division, tickets in order.
        #expect(model.passes.map(\.direction) == [.inbound, .outbound])
        #expect(model.passes.map(\.kilograms) == [32_000, 14_000])
        #expect(model.passes.map(\.ticket) == [41, 42])
        #expect(model.passes[0].stable == .seconds(6)..<(.seconds(12)))
        var random = SeededRandom(seed: 3)
        let empty = model.state(at: .milliseconds(500), random: &random)
        #expect(empty.kilograms == 0 && empty.stable && empty.ticket == 0)
        let climbing = model.state(at: .seconds(3), random: &random)
        #expect(!climbing.stable && climbing.kilograms > 10_000 && climbing.kilograms < 20_000)
        #expect(climbing.kilograms % 20 == 0, "an indicator shows whole divisions")
        let standing = model.state(at: .seconds(8), random: &random)
        #expect(standing == .init(kilograms: 32_000, stable: true, ticket: 41, vehicle: "AB123"))
        let leaving = model.state(at: .milliseconds(13_500), random: &random)
        #expect(!leaving.stable && leaving.ticket == 41)
        let gone = model.state(at: .seconds(16), random: &random)
        #expect(gone.kilograms == 0 && gone.stable && gone.ticket == 41)
        let outbound = model.state(at: .seconds(23), random: &random)
        #expect(outbound == .init(kilograms: 14_000, stable: true, ticket: 42, vehicle: "AB123"))
    }

    @Test("trucks arriving while the scale is busy wait their turn")
    func queueing() {
        let model = WeighbridgeModel(trucks: [
            .init(vehicle: "A", arrive: .seconds(0), grossKilograms: 30_000, tareKilograms: 13_000, outboundAfter: .seconds(100)),
            .init(vehicle: "B", arrive: .seconds(2), grossKilograms: 25_000, tareKilograms: 12_000, outboundAfter: .seconds(100)),
        ])
        #expect(model.passes.map(\.vehicle) == ["A", "B", "A", "B"])
        for (a, b) in zip(model.passes, model.passes.dropFirst()) {
            #expect(b.start >= a.stable.upperBound + .seconds(3), "the next pass starts after the previous truck left")
        }
    }

    @Test("a seed gives the same made-up trucks every time")
    func seeded() {
        let a = WeighbridgeModel.randomTrucks(count: 5, every: .seconds(40), outboundAfter: .seconds(30), seed: 9)
        let b = WeighbridgeModel.randomTrucks(count: 5, every: .seconds(40), outboundAfter: .seconds(30), seed: 9)
        let c = WeighbridgeModel.randomTrucks(count: 5, every: .seconds(40), outboundAfter: .seconds(30), seed: 10)
        #expect(a == b && a != c)
        #expect(a.allSatisfy { $0.grossKilograms > $0.tareKilograms && (12_000...16_000).contains($0.tareKilograms) })
    }

    @Test("a feeder integrates exactly: 36 t/h for 100 s in uneven steps is 1 t to the milligram")
    func exactIntegration() {
        var feeder = FeederModel(meanTonnesPerHour: 36)
        var random = SeededRandom(seed: 1)
        var elapsed = Duration.zero
        while elapsed < .seconds(100) {
            let step = min(Duration.milliseconds(Int64(1 + random.next() % 250)), .seconds(100) - elapsed)
            feeder.advance(by: step, tonnesPerHour: 36)
            elapsed += step
        }
        #expect(feeder.fedMilligrams == 1_000_000_000)
    }
}

@Suite("Simulator over the wire", .serialized)
struct SimulatorWireTests {
    static let scenario = """
        seed = 7
        [[device]]
        name = "wb1"
        profile = "generic-weighbridge"
        first_ticket = 500
          [[device.truck]]
          vehicle = "AB123"
          arrive = "1s"
          gross = 32010
          tare = 14000
          outbound_after = "16s"
        [[device]]
        name = "belt1"
        profile = "siemens-bw500"
        mean_rate = 36
        swing = 0
        noise = 0
        total_start = 4294967.2
        """

    @Test("scenario devices read through the poller with the config the simulator writes: trucks and a BW500 rolling over")
    func scenarioThroughThePoller() async throws {
        let scenario = try Scenario.load(text: Self.scenario, file: "s.toml")
        var logger = Logger(label: "sim-wire")
        logger.logLevel = .critical
        var sims: [ProfileDeviceSimulator] = []
        var config = "[profiles]\ndirs = []\n"
        for d in scenario.devices {
            let sim = try ProfileDeviceSimulator(name: d.name, channels: d.channels, host: d.host, port: d.port,
                                                 parameters: d.parameters, logger: logger)
            config += d.daemonConfig(port: try sim.start())
            sims.append(sim)
        }
        defer { for s in sims { s.stop() } }
        let acquisition = try KilnTallyTestConfig.acquisition(config)
        #expect(acquisition.devices.map(\.profile) == ["generic-weighbridge", "siemens-bw500"])
        let pollers = try acquisition.buses.map { bus in
            try BusPoller(bus: bus, devices: acquisition.devices(on: bus.name), clock: SystemClock(), logger: logger)
        }
        defer { for p in pollers { p.shutdownClient() } }
        func read(_ i: Int) async -> [String: Reading] {
            let (readings, _) = await pollers[i].poll(acquisition.devices[i], index: 0)
            return Dictionary(uniqueKeysWithValues: readings.map { ($0.channel.rawValue, $0) })
        }

        // The weighbridge at chosen moments of the truck's passes (driven, not waited for).
        sims[0].step(to: .seconds(3))
        var wb = await read(0)
        #expect(wb["stable"]?.value == .bool(false), "climbing: in motion")
        sims[0].step(to: .seconds(8))
        wb = await read(0)
        #expect(wb["weight"]?.value == .int(32_000) && wb["stable"]?.value == .bool(true))
        #expect(wb["ticket_no"]?.value == .uint(500))
        #expect(wb["over_range"]?.value == .bool(false) && wb["under_range"]?.value == .bool(false))
        sims[0].step(to: .seconds(23))
        wb = await read(0)
        #expect(wb["weight"]?.value == .int(14_000) && wb["stable"]?.value == .bool(true) && wb["ticket_no"]?.value == .uint(501))

        // 36 t/h = 10 kg/s: from 4,294,967.200 t, 10 s later the counter has passed 2^32 kg and shows 0.004 t.
        var belt = await read(1)
        #expect(belt["total1"]?.value == .double(4_294_967.2))
        #expect(belt["rate"]?.value == .double(36))
        #expect(belt["device_id"]?.value == .uint(2))
        sims[1].step(to: .seconds(5))
        belt = await read(1)
        #expect(belt["total1"]?.value == .double(4_294_967.25))
        sims[1].step(to: .seconds(10))
        belt = await read(1)
        #expect(belt["total1"]?.value == .double(0.004))
        #expect(sims[1].fedMilligrams == 100_000_000)
        #expect(sims[1].requestLog.allSatisfy { (1...4).contains($0.functionCode) })
    }

    @Test("a scenario device served on one end of a socat pty pair is read over RTU with the config it writes")
    func scenarioOverRTU() async throws {
        let dir = try TemporaryDirectory()
        let pty = try await SocatPTYPair.start(in: dir)
        defer { pty.stop() }
        let scenario = try Scenario.load(text: """
            [[device]]
            name = "wb-south"
            profile = "flintec-ft112"
            rtu = "\(pty.b)"
            rtu_client = "\(pty.a)"
            baud = 19200
            parity = "none"
            unit_id = 7
              [[device.truck]]
              vehicle = "ZJ-B777"
              arrive = "0s"
              gross = 28000
              tare = 12000
            """, file: "s.toml")
        var logger = Logger(label: "sim-rtu")
        logger.logLevel = .critical
        let d = scenario.devices[0]
        let sim = try ProfileDeviceSimulator(name: d.name, channels: d.channels, host: d.host, port: d.port,
                                             parameters: d.parameters, logger: logger)
        try sim.start()
        defer { sim.stop() }
        let config = try KilnTallyTestConfig.acquisition("[profiles]\ndirs = []\n" + d.daemonConfig(port: 0))
        #expect(config.buses[0].transport == .rtu(device: pty.a, baud: 19200, parity: .none, dataBits: 8, stopBits: 1))
        let poller = try BusPoller(bus: config.buses[0], devices: config.devices, clock: SystemClock(), logger: logger)
        defer { poller.shutdownClient() }
        sim.step(to: .seconds(7))
        let (readings, error) = await poller.poll(config.devices[0], index: 0)
        #expect(error == nil)
        let r = Dictionary(uniqueKeysWithValues: readings.map { ($0.channel.rawValue, $0) })
        // FT-112 polarity: the unstable bit (role motion) is clear while the truck stands still.
        #expect(r["actual"]?.value == .int(28_000) && r["unstable"]?.value == .bool(false))
        #expect(r["ticket_no"]?.value == .uint(1))
        #expect(sim.requestLog.allSatisfy { $0.unit == 7 && $0.functionCode == 3 })
    }

    @Test("the example scenario in deploy/ loads, and its daemon config is valid")
    func exampleScenario() throws {
        let scenario = try Scenario.load(file: RepoPaths.root.appendingPathComponent("deploy/scenario.example.toml").path)
        #expect(scenario.devices.map(\.name) == ["wb-north", "msw-belt", "sludge-pump", "rdf-belt"])
        #expect(scenario.devices[0].parameters.trucks.count == 31)
        #expect(scenario.devices[3].parameters.faults.map(\.fault) == [.noReply, .exception(6), .dropConnection])
        let config = try KilnTallyTestConfig.acquisition("[profiles]\ndirs = []\n"
            + scenario.devices.enumerated().map { $1.daemonConfig(port: 1000 + $0) }.joined())
        #expect(config.devices.count == 4)
        #expect(config.devices.allSatisfy { d in d.channels.contains { $0.role != nil } })
    }

    @Test("a scenario mistake names the file, line and key")
    func scenarioErrors() {
        do {
            _ = try Scenario.load(text: "[[device]]\nname = \"x\"\nprofile = \"nope\"\nlisten = \"localhost\"\n", file: "s.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.diagnostics.map(\.description) == ["s.toml:4: device[0].listen: must be HOST:PORT, e.g. 127.0.0.1:1502 (port 0 picks a free one)"])
        }
    }
}
