import ArgumentParser
import KilnTallyCore
import Logging
import ServiceLifecycle
import Simulator
#if canImport(Glibc)
import Glibc
#endif

extension Simulate {
    /// Serves every device of a scenario file until SIGTERM/SIGINT (or `duration`), then writes the truth.
    func runScenario(_ file: String, writeConfig: String?, truth: String?, duration: Double?) async throws {
        let scenario: Scenario
        do {
            scenario = try Scenario.load(file: file)
        } catch {
            var stderr = StandardError()
            print(error.description, to: &stderr)
            throw ExitCode(KilnTallyExit.configError.rawValue)
        }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .info
            return h
        }
        let logger = Logger(label: "kilntally-simulate")
        var simulators: [(Scenario.Device, ProfileDeviceSimulator)] = []
        var config = ""
        for device in scenario.devices {
            let sim = try ProfileDeviceSimulator(name: device.name, channels: device.channels, host: device.host,
                                                 port: device.port, parameters: device.parameters, logger: logger)
            let port = try sim.start()
            simulators.append((device, sim))
            config += device.daemonConfig(port: port)
            print("simulating \(device.name) (\(device.profile)) on \(device.parameters.rtu == nil ? "\(device.host):\(port)" : sim.endpoint)")
        }
        if let writeConfig { try writeFile(writeConfig, config) }
        fflush(nil)
        let all = simulators.map(\.1)
        let group = ServiceGroup(configuration: .init(
            services: [SimulatorService.configured(run: {
                await withTaskGroup(of: Void.self) { g in
                    for s in all { g.addTask { await s.run() } }
                }
            }, duration: duration)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        for s in all { s.stop() }
        if let truth {
            var w = JSONWriter()
            w.beginObject()
            w.key("devices")
            w.beginArray()
            for (device, sim) in simulators {
                w.beginObject()
                w.field("name", device.name)
                w.field("profile", device.profile)
                if device.channels.contains(where: { $0.role == .rate || { if case .totalizer = $0.role { true } else { false } }($0) }) {
                    w.field("fed_kg", Double(sim.fedMilligrams) / 1e6)
                }
                w.key("passes")
                w.beginArray()
                for p in sim.passes {
                    w.beginObject()
                    w.field("vehicle", p.vehicle)
                    w.field("direction", p.direction.rawValue)
                    w.field("kg", p.kilograms)
                    w.field("ticket", Int(p.ticket))
                    w.field("stable_from_s", p.stable.lowerBound.simulatorSeconds)
                    w.field("stable_to_s", p.stable.upperBound.simulatorSeconds)
                    w.endObject()
                }
                w.endArray()
                w.endObject()
            }
            w.endArray()
            w.endObject()
            try writeFile(truth, w.string + "\n")
        }
    }

    private func writeFile(_ path: String, _ text: String) throws {
        guard let f = fopen(path, "w") else { throw ValidationError("cannot write \(path): errno \(errno)") }
        defer { fclose(f) }
        fputs(text, f)
    }
}

extension Duration {
    var simulatorSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
