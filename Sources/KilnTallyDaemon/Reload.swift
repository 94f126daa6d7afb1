import Acquisition
import Foundation
import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Synchronization
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

/// SIGHUP: re-read and check the configuration file. An invalid one is refused (logged, with every error) and the
/// running one stays. A valid one is applied without losing anything: buses whose configuration (or devices and
/// channels) changed get a new poller — the others keep polling — the tally gets the new setup as a stored input
/// (it takes effect at the next shift boundary), and the MQTT session, the stores and the tally state stay as they
/// are. Changes to sections read only at start ([node], [mqtt], [uplink], [store], [log], [profiles] search paths)
/// are named in a warning: they take effect at the next restart. systemd hears `RELOADING=1` … `READY=1`.
final class Reloader: Sendable {
    let configuration: ConfigurationBox
    let pollers: PollerSet
    let store: RingStore
    let events: EventLog
    let tallyRunning: Bool
    let notifier: SystemdNotifier
    let clock: any WallClock
    let logger: Logger
    private let busy = Mutex(false)

    init(configuration: ConfigurationBox, pollers: PollerSet, store: RingStore, events: EventLog, tallyRunning: Bool,
         notifier: SystemdNotifier, clock: any WallClock, logger: Logger) {
        self.configuration = configuration
        self.pollers = pollers
        self.store = store
        self.events = events
        self.tallyRunning = tallyRunning
        self.notifier = notifier
        self.clock = clock
        self.logger = logger
    }

    /// Returns what was done, one line.
    @discardableResult
    func reload() async -> String {
        guard busy.withLock({ b in defer { b = true }; return !b }) else { return "a reload is already in progress" }
        defer { busy.withLock { $0 = false } }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000)")
        let result = await apply()
        notifier.notify("READY=1\n" + SystemdNotifier.statusLine(result))
        return result
    }

    private func apply() async -> String {
        let old = configuration.current
        logger.notice("reloading the configuration from \(old.file)")
        let new: KilnTallyConfiguration
        do {
            new = try KilnTallyConfiguration.load(file: old.file)
        } catch {
            let line = "reload refused: \(old.file) has \(error.diagnostics.count) error(s); the running configuration \(old.contentHash) stays"
            logger.error("\(line)\n\(error.description)")
            events.record(Event(kind: .configReloaded, severity: .warning, time: clock.now(), message: line,
                                attributes: ["config_hash": old.contentHash, "refused": "true"]))
            return line
        }
        guard new.contentHash != old.contentHash else {
            logger.notice("reload: the configuration is unchanged (\(old.contentHash))")
            return "configuration unchanged (\(old.contentHash))"
        }
        let later = Self.restartOnlyChanges(old, new)
        if !later.isEmpty {
            logger.warning("reload: changes to \(later.joined(separator: ", ")) take effect at the next restart")
        }
        // Buses: a changed bus (its settings, devices or channels), a removed one and a new one; the rest untouched.
        var changedBuses: [String] = []
        let oldBuses = Dictionary(old.acquisition.buses.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newBuses = Dictionary(new.acquisition.buses.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in Set(oldBuses.keys).union(newBuses.keys).sorted() {
            let before = oldBuses[name].map { ($0, old.acquisition.devices(on: name)) }
            let after = newBuses[name].map { ($0, new.acquisition.devices(on: name)) }
            if before?.0 == after?.0 && before?.1 == after?.1 { continue }
            changedBuses.append(name)
            await pollers.stop(bus: name)
            guard let (bus, devices) = after else { continue }
            do {
                pollers.start(try BusPoller(bus: bus, devices: devices, clock: clock, logger: logger))
            } catch {
                logger.error("reload: bus \(name) cannot be set up and is not polled: \(error)")
            }
        }
        // The tally: the new setup goes in as an input, in order with the readings; it takes effect at the boundary.
        var tally = "tally unchanged"
        if tallyRunning {
            let setup = new.tallySetup
            if setup != old.tallySetup {
                do {
                    store.submit([try TallyInputs.configuration(setup, time: clock.now(), synchronized: clock.isSynchronized())])
                    tally = "tally configuration takes effect at the next shift boundary"
                } catch {
                    logger.error("reload: the tally configuration cannot be stored: \(error)")
                }
            }
        } else if !new.streams.isEmpty || !new.weighbridges.isEmpty {
            tally = "the tally starts at the next restart (it was not running)"
            logger.warning("reload: \(tally)")
        }
        configuration.replace(new)
        let line = "configuration \(new.contentHash) in force (was \(old.contentHash)); buses restarted: \(changedBuses.isEmpty ? "none" : changedBuses.joined(separator: ", ")); \(tally)"
            + (later.isEmpty ? "" : "; at the next restart: \(later.joined(separator: ", "))")
        logger.notice("reload: \(line)")
        events.record(Event(kind: .configReloaded, severity: .info, time: clock.now(), message: line,
                            attributes: ["config_hash": new.contentHash, "previous_config_hash": old.contentHash]))
        return line
    }

    /// Sections only read at start, that differ.
    static func restartOnlyChanges(_ a: KilnTallyConfiguration, _ b: KilnTallyConfiguration) -> [String] {
        var out: [String] = []
        if a.uplink.identity != b.uplink.identity { out.append("[node]") }
        let ma = a.uplink.mqtt, mb = b.uplink.mqtt
        if ma.host != mb.host || ma.port != mb.port || ma.clientID != mb.clientID || ma.keepAlive != mb.keepAlive
            || ma.protocolVersion != mb.protocolVersion || ma.username != mb.username || ma.password != mb.password
            || ma.passwordFile != mb.passwordFile || ma.tls?.caFile != mb.tls?.caFile || ma.tls?.certFile != mb.tls?.certFile
            || ma.tls?.keyFile != mb.tls?.keyFile || ma.tls?.verifyPeer != mb.tls?.verifyPeer || ma.maxInFlight != mb.maxInFlight
            || a.uplink.topicPrefix != b.uplink.topicPrefix || a.uplink.readingsQoS != b.uplink.readingsQoS {
            out.append("[mqtt]")
        }
        if a.uplink.batchSize != b.uplink.batchSize || a.uplink.batchInterval != b.uplink.batchInterval
            || a.uplink.replayRate != b.uplink.replayRate {
            out.append("[uplink]")
        }
        if a.store.maxBytes != b.store.maxBytes || a.store.syncInterval != b.store.syncInterval { out.append("[store]") }
        if a.logLevel != b.logLevel { out.append("[log]") }
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
                await reloader.reload()
            }
        }
    }
}
