import ArgumentParser
import KilnTallyCore
import KilnTallyDaemon
import RingStore
import Logging
import ModbusKit
import ServiceLifecycle
import Simulator
#if canImport(Glibc)
import Glibc
#endif

@main
struct KilnTally: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kilntally",
        abstract: "kilntally command-line tool.",
        version: KilnTallyVersion.current,
        subcommands: [Status.self, Reload.self, Tail.self, Shifts.self, Tickets.self, Events.self, TicketCommand.self, MetricsCommand.self, ConfigCommand.self, Plan.self, Probe.self, Profiles.self, StoreCommand.self, LedgerCommand.self, UplinkCommand.self, Simulate.self])
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Check or describe the configuration.",
        subcommands: [Check.self, Keys.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file: prints every error (file:line: key.path: message) and exits 78, or 0 when valid.")

        @Option(help: "Configuration file.")
        var config: String = DefaultPaths.config

        func run() async throws {
            do {
                let c = try KilnTallyConfiguration.load(file: config)
                print("\(config): ok (\(c.acquisition.buses.count) bus(es), \(c.acquisition.devices.count) device(s), "
                      + "\(c.acquisition.devices.reduce(0) { $0 + $1.channels.count }) channel(s); config hash \(c.contentHash))")
            } catch {
                var stderr = StandardError()
                print(error.description, to: &stderr)
                print("\(config): \(error.diagnostics.count) error(s)", to: &stderr)
                throw ExitCode(KilnTallyExit.configError.rawValue)
            }
        }
    }

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the reference of every configuration key (Markdown).")
        func run() async throws {
            print(KilnTallyConfiguration.schema.markdownReference())
        }
    }
}

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a simulated belt-scale integrator (BW500-style registers) over Modbus TCP or RTU.",
        discussion: """
            RTU on a pty pair, e.g. for a bus configured on /tmp/ttyV0:
              socat pty,raw,echo=0,link=/tmp/ttyV0 pty,raw,echo=0,link=/tmp/ttyV1 &
              kilntally simulate --rtu /tmp/ttyV1 --line-speed 9600
            --line-speed delays each reply until its last character would be on a real RTU line at that baud rate:
            (request + reply bytes) × 11 bits / baud plus the 3.5-character silence between them (1.75 ms above
            19200); the silence after the reply is the master's to keep (kilntally's bus pause).
            """)

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free port and prints it).")
    var listen: String = "127.0.0.1:1502"

    @Option(help: "Serve Modbus RTU on this serial device instead of TCP (e.g. one end of a socat pty pair).")
    var rtu: String?

    @Option(help: "RTU: baud rate the line is set to.")
    var baud: Int = 9600

    @Option(help: "RTU: parity (Modbus' default framing is 8E1).")
    var parity: ParityArgument = .even

    @Option(help: "RTU: the unit id served; requests for other units get no answer.")
    var unit: UInt8 = 1

    @Option(name: .customLong("line-speed"), help: "Delay each reply by its wire time at this baud rate (TCP or RTU).")
    var lineSpeed: Int?

    @Option(help: "Mean feed rate in t/h.")
    var meanRate: Double = 30

    @Option(help: "Stop after this many seconds (default: run until SIGTERM/SIGINT).")
    var duration: Double?

    @Flag(help: "Print the daemon config ([[bus]] and [[device]]) that reads this simulator, and exit. With --rtu, give the other end of the line as --rtu.")
    var printConfig = false

    @Option(help: "Serve the profile devices and stream indicators of a scenario file (trucks, feeders, rollover, ASCII weighbridge streams; see docs/ACQUISITION.md, docs/SERIAL-SCALES.md) instead of the one belt scale.")
    var scenario: String?

    @Option(help: "With --scenario: write the daemon's [[bus]]/[[device]] sections for the bound ports to this file.")
    var writeConfig: String?

    @Option(help: "With --scenario: write what really happened (weighbridge passes, mass fed) as JSON to this file at exit.")
    var truth: String?

    func run() async throws {
        if let scenario {
            try await runScenario(scenario, writeConfig: writeConfig, truth: truth, duration: duration)
            return
        }
        let speed: LineSpeed?
        if let lineSpeed {
            guard lineSpeed > 0 else { throw ValidationError("--line-speed must be a positive baud rate") }
            speed = LineSpeed(baud: lineSpeed)
        } else {
            speed = nil
        }
        let parity = self.parity.modbus
        var host = "", port = 0
        if rtu == nil {
            guard let colon = listen.lastIndex(of: ":"), let p = Int(listen[listen.index(after: colon)...]),
                  (0...65535).contains(p) else {
                throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:1502")
            }
            host = String(listen[..<colon])
            port = p
        }
        if printConfig {
            if let rtu {
                print(BeltScaleSimulator.exampleDeviceConfig(rtuDevice: rtu, baud: baud, parity: parity, unit: unit))
            } else {
                print(BeltScaleSimulator.exampleDeviceConfig(host: host, port: port))
            }
            return
        }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .info
            return h
        }
        let logger = Logger(label: "kilntally-simulate")
        var parameters = BeltScaleSimulator.Parameters()
        parameters.meanRate = meanRate
        let simulator: BeltScaleSimulator
        if let rtu {
            simulator = try BeltScaleSimulator(
                rtuDevice: rtu, baud: baud, parity: parity, unit: unit, parameters: parameters, lineSpeed: speed, logger: logger)
        } else {
            simulator = try BeltScaleSimulator(host: host, port: port, parameters: parameters, lineSpeed: speed, logger: logger)
        }
        let bound = try simulator.start()
        let pace = speed.map { ", replies at the pace of \($0.baud) baud" } ?? ""
        if let rtu {
            print("simulating belt scale on \(rtu) (Modbus RTU, unit \(unit), \(baud) baud\(pace))")
        } else {
            print("simulating belt scale on \(host):\(bound)\(pace)")
        }
        fflush(nil)  // flush stdout so a parent reading the pipe sees the line now
        // The simulator ending by itself (--duration) ends the command normally, not as a failed service.
        let group = ServiceGroup(configuration: .init(
            services: [SimulatorService.configured(run: { await simulator.run() }, duration: duration)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        simulator.stop()
    }
}

/// `--parity` of `probe` and `simulate`: checked by the argument parser, so a misspelt parity is a usage error (exit 64)
/// that lists the valid ones instead of quietly becoming `even`.
enum ParityArgument: String, CaseIterable, ExpressibleByArgument {
    case none, even, odd

    var modbus: ModbusParity {
        switch self {
        case .none: .none
        case .even: .even
        case .odd: .odd
        }
    }
}

struct SimulatorService: Service {
    let run: @Sendable () async -> Void
    let duration: Double?

    /// The service, set to shut the group down cleanly when it ends (after `duration`) instead of failing it.
    static func configured(run: @escaping @Sendable () async -> Void, duration: Double?) -> ServiceGroupConfiguration.ServiceConfiguration {
        .init(service: SimulatorService(run: run, duration: duration), successTerminationBehavior: .gracefullyShutdownGroup)
    }
    func run() async throws {
        await cancelWhenGracefulShutdown {
            if let duration {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await run() }
                    group.addTask { try? await Task.sleep(for: .seconds(duration)) }
                    await group.next()
                    group.cancelAll()
                }
            } else {
                await run()
            }
        }
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var s = string
        s.withUTF8 { buf in _ = Glibc.write(2, buf.baseAddress, buf.count) }
    }
}
