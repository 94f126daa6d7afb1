import Acquisition
import Foundation
import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Synchronization
import Tally
import UnixSignals
import Uplink
#if canImport(Glibc)
import Glibc
#endif

/// The configuration in force (status shows it; a reload replaces it).
final class ConfigurationBox: Sendable {
    private let box: Mutex<KilnTallyConfiguration>
    init(_ c: KilnTallyConfiguration) { box = Mutex(c) }
    var current: KilnTallyConfiguration { box.withLock { $0 } }
    func replace(_ c: KilnTallyConfiguration) { box.withLock { $0 = c } }
}

/// What one reload did: the control socket's `reload` result (`json`), and one line (`line`) for the log, the
/// `config_reloaded` event and systemd's `STATUS=`.
struct ReloadReport: Sendable {
    enum Outcome: String, Sendable {
        /// The new configuration is in force.
        case applied
        /// The file is the configuration in force, byte for byte.
        case unchanged
        /// The file has errors; the running configuration stays.
        case refused
    }

    /// What becomes of the tally's setup.
    enum TallyChange: Sendable {
        /// No tally runs and none is configured.
        case none
        /// No tally runs (none was configured at start); the new file configures one.
        case startsAtRestart
        /// The tally read the new setup: it governs from `firstShift` on (the boundary after the shift in progress).
        /// `accounting`: streams, weighbridges, shifts, stocks or tolerances differ, not only the configuration hash
        /// the records name.
        case staged(firstShift: Shift, accounting: Bool)
        /// The tally read the new setup and it is in force at once (nothing accounted yet, or it reverted a change
        /// still waiting for its boundary).
        case inForce(accounting: Bool)
        /// Stored as reading `sequence`; the tally had not read it yet when the reply went out. It takes effect at
        /// the first shift boundary after the tally reads it.
        case pending(sequence: UInt64, accounting: Bool)
        /// The new setup could not be stored.
        case failed(String)
    }

    struct BusFailure: Sendable {
        var bus: String
        var error: String
    }

    var outcome: Outcome
    var file: String
    /// The configuration in force after the reload.
    var configHash: String
    /// Applied: the one it replaced.
    var previousConfigHash: String?
    /// Refused: every error, in report order.
    var errors: [ConfigDiagnostic] = []
    /// Buses whose settings, devices or channels changed: their pollers were replaced.
    var busesRestarted: [String] = []
    /// Buses the new file adds.
    var busesStarted: [String] = []
    /// Buses the new file removes.
    var busesStopped: [String] = []
    /// Changed or new buses that cannot be set up (not polled; logged).
    var busesFailed: [BusFailure] = []
    /// What changed but is read only at start: takes effect at the next restart.
    var restartOnly: [String] = []
    var tally: TallyChange = .none

    var line: String {
        switch outcome {
        case .refused:
            return "reload refused: \(file) has \(errors.count) error(s); the running configuration \(configHash) stays"
        case .unchanged:
            return "configuration unchanged (\(configHash))"
        case .applied:
            var parts = ["configuration \(configHash) in force (was \(previousConfigHash ?? "-"))",
                         "buses restarted: \(busesRestarted.isEmpty ? "none" : busesRestarted.joined(separator: ", "))"]
            if !busesStarted.isEmpty { parts.append("buses started: \(busesStarted.joined(separator: ", "))") }
            if !busesStopped.isEmpty { parts.append("buses stopped: \(busesStopped.joined(separator: ", "))") }
            for f in busesFailed { parts.append("bus \(f.bus) cannot be set up and is not polled: \(f.error)") }
            parts.append("tally: " + tallyLine)
            if !restartOnly.isEmpty { parts.append("at the next restart: \(restartOnly.joined(separator: ", "))") }
            return parts.joined(separator: "; ")
        }
    }

    /// What becomes of the tally, after "tally: ".
    var tallyLine: String {
        let hashOnly = "; only the configuration hash its records name changes"
        switch tally {
        case .none: return "none configured"
        case .startsAtRestart: return "starts at the next restart (it was not running)"
        case .staged(let shift, let accounting):
            return "the new setup takes effect at the shift boundary \(shift.localStart) (shift \(shift.id))" + (accounting ? "" : hashOnly)
        case .inForce(let accounting): return "the new setup is in force at once" + (accounting ? "" : hashOnly)
        case .pending(let sequence, let accounting):
            return "the new setup is stored as reading \(sequence); it takes effect at the first shift boundary after the tally reads it"
                + (accounting ? "" : hashOnly)
        case .failed(let why): return "the new setup cannot be stored: \(why)"
        }
    }

    /// The `reload` op's result. Protocol version 1; `result` (the line) was its only field before, the others
    /// were added beside it.
    var json: [String: Any] {
        var o: [String: Any] = [
            "outcome": outcome.rawValue, "result": line, "config_file": file, "config_hash": configHash,
            "previous_config_hash": previousConfigHash ?? NSNull(),
            "errors": errors.map { e -> [String: Any] in
                ["file": e.file, "line": e.line ?? NSNull(), "column": e.column ?? NSNull(),
                 "key": e.path.flatMap { $0.isRoot ? nil : $0.description } ?? NSNull(), "message": e.message]
            },
            "buses_restarted": busesRestarted, "buses_started": busesStarted, "buses_stopped": busesStopped,
            "buses_failed": busesFailed.map { ["bus": $0.bus, "error": $0.error] },
            "restart_only": restartOnly,
        ]
        var t: [String: Any] = ["message": tallyLine]
        switch tally {
        case .none: t["state"] = "none"
        case .startsAtRestart: t["state"] = "at_restart"
        case .staged(let shift, let accounting):
            t["state"] = "staged"
            t["effective"] = shift.localStart
            t["effective_utc"] = shift.start.rfc3339
            t["first_shift"] = shift.id.description
            t["accounting_changed"] = accounting
        case .inForce(let accounting):
            t["state"] = "in_force"
            t["accounting_changed"] = accounting
        case .pending(let sequence, let accounting):
            t["state"] = "pending"
            t["stored_as_reading"] = Int(sequence)
            t["accounting_changed"] = accounting
        case .failed(let why):
            t["state"] = "failed"
            t["error"] = why
        }
        o["tally"] = t
        return o
    }
}

/// SIGHUP or `kilntally reload`: re-read and check the configuration file. An invalid one is refused (logged, with
/// every error) and the running one stays. A valid one is applied without losing anything: Modbus buses whose
/// configuration (or devices and channels) changed get a new poller — the others keep polling — the tally gets the
/// new setup as a stored input (it takes effect at the next shift boundary, which the report names once the tally
/// has read it), and the MQTT session, the stores and the tally state stay as they are. Changes to what is read only
/// at start ([node], [mqtt], [uplink], [store], [log], [metrics], `[tally] tick_interval`, serial_stream buses) are
/// named: they take effect at the next restart. systemd hears `RELOADING=1` … `READY=1`.
final class Reloader: Sendable {
    let configuration: ConfigurationBox
    let pollers: PollerSet
    let store: RingStore
    let events: EventLog
    /// The running tally (nil: none runs).
    let tally: TallyStatus?
    let notifier: SystemdNotifier
    let clock: any WallClock
    let logger: Logger
    private let busy = Mutex(false)

    init(configuration: ConfigurationBox, pollers: PollerSet, store: RingStore, events: EventLog, tally: TallyStatus?,
         notifier: SystemdNotifier, clock: any WallClock, logger: Logger) {
        self.configuration = configuration
        self.pollers = pollers
        self.store = store
        self.events = events
        self.tally = tally
        self.notifier = notifier
        self.clock = clock
        self.logger = logger
    }

    /// A reload asked for while another runs.
    struct Busy: Error, CustomStringConvertible {
        var description: String { "a reload is already in progress; try again when it has finished" }
    }

    /// Re-reads the file and applies it, or refuses it; throws `Busy` while another reload runs.
    @discardableResult
    func reload() async throws(Busy) -> ReloadReport {
        guard busy.withLock({ b in defer { b = true }; return !b }) else { throw Busy() }
        defer { busy.withLock { $0 = false } }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000)")
        let report = await apply()
        notifier.notify("READY=1\n" + SystemdNotifier.statusLine(report.line))
        return report
    }

    private func apply() async -> ReloadReport {
        let old = configuration.current
        logger.notice("reloading the configuration from \(old.file)")
        let new: KilnTallyConfiguration
        do {
            new = try KilnTallyConfiguration.load(file: old.file)
        } catch {
            let report = ReloadReport(outcome: .refused, file: old.file, configHash: old.contentHash, errors: error.diagnostics)
            logger.error("\(report.line)\n\(error.description)")
            events.record(Event(kind: .configReloaded, severity: .warning, time: clock.now(), message: report.line,
                                attributes: ["config_hash": old.contentHash, "refused": "true"]))
            return report
        }
        guard new.contentHash != old.contentHash else {
            logger.notice("reload: the configuration is unchanged (\(old.contentHash))")
            return ReloadReport(outcome: .unchanged, file: old.file, configHash: old.contentHash)
        }
        var report = ReloadReport(outcome: .applied, file: old.file, configHash: new.contentHash,
                                  previousConfigHash: old.contentHash, restartOnly: Self.restartOnlyChanges(old, new))
        if !report.restartOnly.isEmpty {
            logger.warning("reload: changes to \(report.restartOnly.joined(separator: ", ")) take effect at the next restart")
        }
        // Buses: a changed bus (its settings, devices or channels), a removed one and a new one; the rest untouched.
        let oldBuses = Dictionary(old.acquisition.buses.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newBuses = Dictionary(new.acquisition.buses.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in Set(oldBuses.keys).union(newBuses.keys).sorted() {
            let before = oldBuses[name].map { ($0, old.acquisition.devices(on: name)) }
            let after = newBuses[name].map { ($0, new.acquisition.devices(on: name)) }
            if before?.0 == after?.0 && before?.1 == after?.1 { continue }
            await pollers.stop(bus: name)
            guard let (bus, devices) = after else {
                report.busesStopped.append(name)
                continue
            }
            do {
                pollers.start(try BusPoller(bus: bus, devices: devices, clock: clock, logger: logger))
                if before == nil { report.busesStarted.append(name) } else { report.busesRestarted.append(name) }
            } catch {
                logger.error("reload: bus \(name) cannot be set up and is not polled: \(error)")
                report.busesFailed.append(.init(bus: name, error: "\(error)"))
            }
        }
        let applied = Self.keepingStartOnlyParts(of: old, in: new)
        configuration.replace(applied)
        // The tally: the new setup goes in as an input, in order with the readings; it takes effect at the boundary.
        if let tally {
            report.tally = await stage(applied.tallySetup, replacing: old.tallySetup, tally: tally)
        } else if !new.streams.isEmpty || !new.weighbridges.isEmpty {
            report.tally = .startsAtRestart
            logger.warning("reload: the tally \(report.tallyLine)")
        }
        logger.notice("reload: \(report.line)")
        events.record(Event(kind: .configReloaded, severity: .info, time: clock.now(), message: report.line,
                            attributes: ["config_hash": new.contentHash, "previous_config_hash": old.contentHash]))
        return report
    }

    /// Stores `setup` as the tally's next input and waits (briefly) for the tally to say when it takes effect.
    private func stage(_ setup: TallyEngine.Setup, replacing old: TallyEngine.Setup, tally: TallyStatus) async -> ReloadReport.TallyChange {
        var a = setup, b = old
        a.configHash = ""
        b.configHash = ""
        let accounting = a != b
        let sequence: UInt64
        do {
            guard let stored = store.submit([try TallyInputs.configuration(setup, time: clock.now(), synchronized: clock.isSynchronized())]) else {
                return .failed("the store took no reading")
            }
            sequence = stored.lowerBound
        } catch {
            logger.error("reload: the tally configuration cannot be stored: \(error)")
            return .failed("\(error)")
        }
        // The tally reads what the store has made durable (one group commit, `[store] sync_interval`), then says.
        let wait = min(store.options.syncInterval + .seconds(5), .seconds(20))
        guard let configured = await tally.configured(through: sequence, timeout: wait) else {
            logger.warning("reload: the tally has not read its new configuration (reading \(sequence)) within \(wait)")
            return .pending(sequence: sequence, accounting: accounting)
        }
        return configured.firstShift.map { .staged(firstShift: $0, accounting: accounting) } ?? .inForce(accounting: accounting)
    }

    /// `new` with what is read only at start taken from `old`, which is still what runs: the identity ([node]: the
    /// status, the tally's records and the MQTT topics keep naming the same site and node until the restart), the
    /// uplink, the store, the log level, metrics, the tick interval and the serial_stream buses. Their sections' text
    /// stays the old too, so every later reload keeps naming them until the restart.
    static func keepingStartOnlyParts(of old: KilnTallyConfiguration, in new: KilnTallyConfiguration) -> KilnTallyConfiguration {
        var c = new
        c.uplink = old.uplink
        c.store = old.store
        c.logLevel = old.logLevel
        c.metricsTextfile = old.metricsTextfile
        c.metricsInterval = old.metricsInterval
        c.tally.tickInterval = old.tally.tickInterval
        c.acquisition.streamBuses = old.acquisition.streamBuses
        c.acquisition.streamDevices = old.acquisition.streamDevices
        for key in readAtStart { c.sections[key] = old.sections[key] }
        return c
    }

    /// Sections read only at start, in the file's text, whose text differs.
    static let readAtStart = ["node", "mqtt", "uplink", "store", "log", "metrics"]

    /// What differs between `a` and `b` but is read only at start: each such section whose text differs, the tally's
    /// clock tick interval, and serial_stream buses (their readers are not restarted by a reload).
    static func restartOnlyChanges(_ a: KilnTallyConfiguration, _ b: KilnTallyConfiguration) -> [String] {
        var out = readAtStart.filter { a.sections[$0] != b.sections[$0] }.map { "[\($0)]" }
        if a.tally.tickInterval != b.tally.tickInterval { out.append("[tally] tick_interval") }
        func streamBus(_ c: KilnTallyConfiguration, _ name: String) -> (StreamBusConfig?, [StreamDeviceConfig]) {
            (c.acquisition.streamBuses.first { $0.name == name }, c.acquisition.streamDevices.filter { $0.bus == name })
        }
        let names = Set(a.acquisition.streamBuses.map(\.name)).union(b.acquisition.streamBuses.map(\.name))
        for name in names.sorted() where streamBus(a, name) != streamBus(b, name) {
            out.append("serial_stream bus \(name)")
        }
        return out
    }
}

/// Turns SIGHUP into reloads until shutdown.
struct ReloadService: Service {
    let reloader: Reloader

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                do {
                    try await reloader.reload()
                } catch {
                    reloader.logger.warning("SIGHUP ignored: \(error)")
                }
            }
        }
    }
}
