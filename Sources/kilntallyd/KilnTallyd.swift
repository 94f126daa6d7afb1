import ArgumentParser
import KilnTallyCore
import KilnTallyDaemon
import Logging
#if canImport(Glibc)
import Glibc
#endif

@main
struct KilnTallyd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kilntallyd",
        abstract: "kilntally edge daemon: polls Modbus devices, stores every reading, publishes to the hub over MQTT.",
        version: KilnTallyVersion.current)

    @Option(help: "Configuration file.")
    var config: String = DefaultPaths.config

    @Option(name: .customLong("state-dir"), help: "State directory (readings/, ledger/, tally/).")
    var stateDir: String = DefaultPaths.stateDirectory

    @Option(help: "Control socket for the online CLI commands.")
    var socket: String = DefaultPaths.socket

    @Option(name: .customLong("log-level"), help: "Overrides [log] level.")
    var logLevel: LogLevelArgument?

    func run() async throws {
        // A peer that goes away mid-write (a CLI client, a broker) must cost an EPIPE, never the process.
        signal(SIGPIPE, SIG_IGN)
        let configuration: KilnTallyConfiguration
        do {
            configuration = try KilnTallyConfiguration.load(file: config)
        } catch {
            var stderr = StandardError()
            print(error.description, to: &stderr)
            print("kilntallyd: configuration has \(error.diagnostics.count) error(s); not starting", to: &stderr)
            throw ExitCode(KilnTallyExit.configError.rawValue)
        }
        let level = logLevel?.level ?? configuration.logLevel
        LoggingSystem.bootstrap { label in JournalLogHandler(label: label, level: level) }
        let logger = Logger(label: "kilntallyd")
        do {
            try await Daemon.run(configuration: configuration, options: .init(stateDirectory: stateDir, socketPath: socket), logger: logger)
        } catch {
            logger.critical("kilntallyd failed: \(error)")
            throw ExitCode.failure
        }
    }
}

/// `--log-level`: one of swift-log's levels, checked by the argument parser, so a misspelt level is a usage error
/// (exit 64) that lists the valid ones instead of being ignored.
struct LogLevelArgument: ExpressibleByArgument {
    let level: Logger.Level

    init?(argument: String) {
        guard let level = Logger.Level(rawValue: argument) else { return nil }
        self.level = level
    }

    static var allValueStrings: [String] { Logger.Level.allCases.map(\.rawValue) }
    static var defaultCompletionKind: CompletionKind { .list(allValueStrings) }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var s = string
        s.withUTF8 { buf in _ = Glibc.write(2, buf.baseAddress, buf.count) }
    }
}
