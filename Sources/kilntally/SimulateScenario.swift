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
        var streams: [(Scenario.Device, ScaleStreamSimulator)] = []
        var config = ""
        for device in scenario.devices {
            if let stream = device.stream {
                let sim = try ScaleStreamSimulator(name: device.name, parameters: stream.parameters, line: stream.line,
                                                   clientDevice: stream.client, settings: stream.settings, logger: logger)
                streams.append((device, sim))
                config += device.daemonConfig(port: 0, streamDevice: sim.clientDevice)
                print("simulating \(device.name) (\(stream.parameters.scaleProtocol) stream, \(stream.settings)) on \(sim.endpoint), read from \(sim.clientDevice)")
                continue
            }
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
        let allStreams = streams.map(\.1)
        let group = ServiceGroup(configuration: .init(
            services: [SimulatorService.configured(run: {
                await withTaskGroup(of: Void.self) { g in
                    for s in all { g.addTask { await s.run() } }
                    for s in allStreams { g.addTask { await s.run() } }
                }
            }, duration: duration)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        for s in all { s.stop() }
        for s in allStreams { s.stop() }
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
                writePasses(&w, sim.passes)
                w.endObject()
            }
            for (device, sim) in streams {
                let injected = sim.injected
                w.beginObject()
                w.field("name", device.name)
                w.field("protocol", sim.parameters.scaleProtocol.rawValue)
                w.field("frames", injected.frames)
                w.field("garbage_bytes", injected.garbageBytes)
                w.field("bad_checksums", injected.badChecksums)
                w.field("split_frames", injected.splitFrames)
                w.field("bytes_dropped", sim.bytesDropped)
                w.key("passes")
                writePasses(&w, sim.passes)
                w.endObject()
            }
            w.endArray()
            w.endObject()
            try writeFile(truth, w.string + "\n")
        }
    }

    private func writePasses(_ w: inout JSONWriter, _ passes: [WeighbridgeModel.Pass]) {
        w.beginArray()
        for p in passes {
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
