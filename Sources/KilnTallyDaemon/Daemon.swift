import Foundation
import Acquisition
import KilnTallyCore
import Logging
import ModbusKit
import RingStore
import ServiceLifecycle
import Synchronization
import Tally
import Uplink

/// The bus pollers running now, one task (and one connection thread) per bus. A reload replaces the pollers of the
/// buses whose configuration changed; the others keep polling undisturbed.
final class PollerSet: Sendable {
    private let running = Mutex<[(poller: BusPoller, task: Task<Void, Never>)]>([])
    private let store: RingStore
    private let events: EventLog

    init(store: RingStore, events: EventLog) {
        self.store = store
        self.events = events
    }

    var pollers: [BusPoller] { running.withLock { $0.map(\.poller) } }
    /// Serial stream lines (weighbridge indicators streaming ASCII frames).
    private let streaming = Mutex<[(reader: StreamBusReader, task: Task<Void, Never>)]>([])
    var streams: [StreamBusReader] { streaming.withLock { $0.map(\.reader) } }

    func start(_ reader: StreamBusReader) {
        let store = self.store, events = self.events
        let task = Task {
            await reader.run(deliver: { readings in store.submit(readings) }, event: { event in events.record(event) })
        }
        streaming.withLock { $0.append((reader, task)) }
    }

    func start(_ poller: BusPoller) {
        let store = self.store, events = self.events
        let task = Task {
            await poller.run(
                // Never waits for the disk: the store commits on its own schedule.
                deliver: { readings in store.submit(readings) },
                event: { event in events.record(event) })
        }
        running.withLock { $0.append((poller, task)) }
    }

    /// Stops the poller of `bus` and waits until its connection is closed (a serial line's lock released).
    func stop(bus: String) async {
        let stopped = running.withLock { r -> [(poller: BusPoller, task: Task<Void, Never>)] in
            let s = r.filter { $0.poller.bus.name == bus }
            r.removeAll { $0.poller.bus.name == bus }
            return s
        }
        for s in stopped {
            s.task.cancel()
            await s.task.value
        }
    }

    func stopAll() async {
        for p in pollers { await stop(bus: p.bus.name) }
        let readers = streaming.withLock { r in defer { r = [] }; return r }
        for r in readers {
            r.task.cancel()
            await r.task.value
        }
    }
}

/// Polls every bus and appends what it reads to the store. One `BusPoller` (one thread) per bus.
struct AcquisitionService: Service {
    let pollers: PollerSet
    let initial: [BusPoller]
    let streams: [StreamBusReader]
    let barrier: ReadinessBarrier
    let logger: Logger

    func run() async throws {
        if initial.isEmpty && streams.isEmpty {
            // Every bus failed to set up (already logged). Returning would end the service group and make systemd
            // restart us in a loop; stay up, so status and the uplink keep reporting.
            logger.error("no bus could be set up: nothing is polled")
        }
        for p in initial { pollers.start(p) }
        for r in streams { pollers.start(r) }
        barrier.arrive("acquisition")
        try? await gracefulShutdown()
        await pollers.stopAll()
        logger.info("acquisition stopped")
    }
}

/// Runs the store's group commit until shutdown, then commits what is pending and closes the files. It starts
/// first and so stops last, after acquisition and the uplink.
struct StoreService: Service {
    let store: RingStore
    let events: EventLog
    let clock: any WallClock
    let barrier: ReadinessBarrier
    let logger: Logger

    func run() async throws {
        barrier.arrive("store")
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in store.events {
                    if let e = Event(event, time: clock.now()) { events.record(e) }
                    switch event {
                    case .dropped(let n, let first, let last):
                        logger.warning("store full: dropped the oldest \(n) readings (\(first)...\(last))")
                    case .droppedInMemory(let n):
                        logger.error("store: \(n) readings lost from the in-memory queue while the disk could not be written")
                    case .writeFailed(let why):
                        logger.error("store: writing failed, readings wait in memory: \(why)")
                    case .writeRecovered:
                        logger.notice("store: writing works again")
                    case .recovered(let report):
                        logger.warning("store recovered at open: cut \(report.truncatedBytes) torn bytes, quarantined \(report.quarantined)")
                    }
                }
            }
            await cancelWhenGracefulShutdown { await store.run() }
            await store.close()
            group.cancelAll()
        }
        logger.info("store closed")
    }
}

/// Publishes status and readings to the hub until shutdown, then says `offline`.
struct UplinkService: Service {
    let uplink: Uplink
    let barrier: ReadinessBarrier

    func run() async throws {
        // Ready means running, not connected: a broker that is away must not hold up the start.
        barrier.arrive("uplink")
        await cancelWhenGracefulShutdown { await uplink.run() }
    }
}

/// Builds and runs the daemon. The `@main` executable only parses arguments and calls this; tests call it too.
public enum Daemon {
    public struct Options: Sendable {
        public var stateDirectory: String
        public var clock: any WallClock
        /// The control socket the online CLI commands use.
        public var socketPath: String
        /// sd_notify (from `$NOTIFY_SOCKET`; inert without it).
        public var notifier: SystemdNotifier
        public init(stateDirectory: String = DefaultPaths.stateDirectory, clock: any WallClock = SystemClock(),
                    socketPath: String = DefaultPaths.socket, notifier: SystemdNotifier = SystemdNotifier()) {
            self.stateDirectory = stateDirectory
            self.clock = clock
            self.socketPath = socketPath
            self.notifier = notifier
        }
    }

    /// Opens the store, then runs acquisition and uplink as services until SIGTERM/SIGINT.
    public static func run(configuration: KilnTallyConfiguration, options: Options, logger: Logger) async throws {
        let started = ContinuousClock.now
        logger.info("kilntallyd \(KilnTallyVersion.current) starting", metadata: [
            "config": "\(configuration.file)", "config_hash": "\(configuration.contentHash)",
            "state_dir": "\(options.stateDirectory)",
        ])
        for warning in configuration.uplink.startWarnings { logger.warning("\(warning)") }
        for p in configuration.acquisition.profiles {
            let users = configuration.acquisition.devices.filter { $0.profile == p.name }.map(\.id.rawValue)
            if p.verified {
                logger.info("profile \(p.name) (\(p.file)) used by \(users.joined(separator: ", "))")
            } else {
                logger.warning("profile \(p.name) (\(p.file)), used by \(users.joined(separator: ", ")), is from an unverified source: check its values against the device's display (kilntally profiles show \(p.name))")
            }
        }
        // The store opens before any service runs: services start all at once and must find it ready.
        let store = try await RingStore(directory: options.stateDirectory + "/readings", options: configuration.store,
                                        clock: options.clock, logger: logger)

        var initialPollers: [BusPoller] = []
        let streamReaders = configuration.acquisition.streamDevices.compactMap { d -> StreamBusReader? in
            guard let bus = configuration.acquisition.streamBuses.first(where: { $0.name == d.bus }) else { return nil }
            return StreamBusReader(bus: bus, device: d, clock: options.clock, logger: logger)
        }
        for bus in configuration.acquisition.buses {
            do {
                initialPollers.append(try BusPoller(bus: bus, devices: configuration.acquisition.devices(on: bus.name),
                                             clock: options.clock, logger: logger))
            } catch {
                logger.error("bus \(bus.name) cannot be set up and is not polled: \(error)")
            }
        }
        // The ledger keeps the tally's records and every event; the uplink publishes both from it.
        let ledger = try await Ledger(directory: options.stateDirectory + "/ledger", clock: options.clock, logger: logger)
        let events = EventLog()
        let info = Payloads.StatusInfo(version: KilnTallyVersion.current, configHash: configuration.contentHash,
                                       startedAt: options.clock.now())
        let uplink = Uplink(config: configuration.uplink, store: store, ledger: ledger, info: info, clock: options.clock, logger: logger,
                            events: { events.record($0) })
        // The tally runs when there is something to account; its checkpoint is loaded before any service.
        let tallyConfigured = !configuration.streams.isEmpty || !configuration.weighbridges.isEmpty
        let barrier = ReadinessBarrier(Set(["store", "events", "uplink", "acquisition"] + (tallyConfigured ? ["tally"] : [])))
        var tallyService: TallyService?
        let tallyStatus: TallyStatus? = tallyConfigured ? TallyStatus() : nil
        if tallyConfigured {
            let tallyDirectory = options.stateDirectory + "/tally"
            try PosixFileIO().makeDirectories(tallyDirectory)
            let checkpoint = TallyCheckpoint(path: tallyDirectory + "/checkpoint.json")
            let restored = try await checkpoint.load()
            let setup = configuration.tallySetup
            if TallyInputs.needsConfiguration(setup, state: restored) {
                // Stored before any reading of this run, so the tally (and a replay) applies it at this point.
                store.submit([try TallyInputs.configuration(setup, time: options.clock.now(),
                                                            synchronized: options.clock.isSynchronized())])
                if restored != nil {
                    logger.notice("tally: configuration \(configuration.contentHash) is new to the tally; it takes effect at the next shift boundary")
                }
            }
            tallyService = TallyService(store: store, ledger: ledger, events: events, barrier: barrier, status: tallyStatus!,
                                        current: { uplink.updateCurrent($0) }, setup: setup, restored: restored, checkpoint: checkpoint,
                                        tickInterval: configuration.tally.tickInterval, clock: options.clock, logger: logger)
        }

        // Started in this order, stopped in reverse: systemd hears STOPPING=1, polling stops, then the tally writes its
        // checkpoint, the uplink says offline, the events queued are stored and the ledger closes, and the store
        // commits what is left and closes.
        let pollers = PollerSet(store: store, events: events)
        let configurationBox = ConfigurationBox(configuration)
        let reloader = Reloader(configuration: configurationBox, pollers: pollers, store: store, events: events,
                                tally: tallyStatus, notifier: options.notifier, clock: options.clock, logger: logger)
        let lifecycle = LifecycleService(notifier: options.notifier, barrier: barrier, pollers: pollers, store: store,
                                         storeDeadline: max(configuration.store.syncInterval * 3, .seconds(15)),
                                         uplink: uplink, logger: logger)
        let context = Context(configuration: configurationBox, pollers: pollers, reloader: reloader, store: store, ledger: ledger,
                              uplink: uplink, tally: tallyStatus, clock: options.clock, startedAt: info.startedAt, started: started)
        let metricsFile: [ServiceGroupConfiguration.ServiceConfiguration] = configuration.metricsTextfile.map {
            [.init(service: MetricsTextfileService(path: $0, interval: configuration.metricsInterval, context: context, logger: logger),
                   serviceName: "metrics")]
        } ?? []
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: StoreService(store: store, events: events, clock: options.clock, barrier: barrier, logger: logger),
                      serviceName: "store"),
                .init(service: EventService(events: events, ledger: ledger, identity: configuration.uplink.identity,
                                            barrier: barrier, logger: logger),
                      serviceName: "events"),
                .init(service: UplinkService(uplink: uplink, barrier: barrier), serviceName: "uplink"),
            ] + (tallyService.map { [.init(service: $0, serviceName: "tally")] } ?? []) + [
                .init(service: AcquisitionService(pollers: pollers, initial: initialPollers, streams: streamReaders, barrier: barrier, logger: logger),
                      serviceName: "acquisition"),
                .init(service: ReloadService(reloader: reloader), serviceName: "reload"),
            ] + metricsFile + [
                .init(service: lifecycle, serviceName: "lifecycle"),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // Both bounds together stay below the unit's TimeoutStopSec (20 s), so systemd never has to SIGKILL us.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(10)
        groupConfiguration.maximumCancellationDuration = .seconds(3)
        let group = ServiceGroup(configuration: groupConfiguration)
        // The control socket: without it the daemon still runs (the online CLI commands say it is unreachable).
        var control: ControlServer?
        do {
            control = try ControlServer(path: options.socketPath, logger: logger) { op, request throws(ControlError) in
                try await handle(op, request, context)
            }
            logger.info("control socket listening", metadata: ["socket": "\(options.socketPath)"])
        } catch {
            logger.error("no control socket (online commands such as `kilntally uplink resend` will not reach this daemon): \(error)")
        }
        defer { control?.stop() }
        do {
            try await group.run()
        } catch {
            await store.close()
            throw error
        }
        logger.info("kilntallyd stopped")
    }

    /// What the control socket's requests look at.
    struct Context: Sendable {
        let configuration: ConfigurationBox
        let pollers: PollerSet
        let reloader: Reloader
        let store: RingStore
        let ledger: Ledger
        let uplink: Uplink
        let tally: TallyStatus?
        let clock: any WallClock
        let startedAt: UTCInstant
        let started: ContinuousClock.Instant
    }

    /// The control socket's requests.
    static func handle(_ op: String, _ request: [String: any Sendable], _ c: Context) async throws(ControlError) -> [UInt8] {
        switch op {
        case "ping":
            return try ControlServer.json(["version": KilnTallyVersion.current])
        case "status":
            return try ControlServer.json(await status(c))
        case "reload":
            let report: ReloadReport
            do {
                report = try await c.reloader.reload()
            } catch {
                throw ControlError(error.description)
            }
            return try ControlServer.json(report.json)
        case "ticket.correct":
            return try ControlServer.json(try correct(request, c))
        case "probe":
            return try ControlServer.json(try await probe(request, c))
        case "readings":
            return try ControlServer.json(try await readings(request, c))
        case "metrics":
            return try ControlServer.json(await Metrics.render(c))
        case "ledger.records":
            return try ControlServer.json(try await records(request, c))
        case "uplink.resend":
            do {
                if let from = request["from_seq"] as? Int64 {
                    guard from >= 1 else { throw ControlError("from_seq must be at least 1") }
                    let range = try await c.uplink.resend(readingsFrom: UInt64(from))
                    return try ControlServer.json(["readings_from": Int64(range.lowerBound), "readings_through": Int64(range.upperBound)])
                }
                if let shift = request["shift"] as? String {
                    return try ControlServer.json(["shift": shift, "records": try await c.uplink.resend(shift: shift)])
                }
            } catch let error as UplinkError {
                throw ControlError(error.description)
            } catch let error as ControlError {
                throw error
            } catch {
                throw ControlError("\(error)")
            }
            throw ControlError("uplink.resend needs from_seq or shift")
        default:
            throw ControlError("unknown op \(op)")
        }
    }

    /// A ticket correction (`kilntally ticket set-material|void`): stored as an input of the tally, in order with the
    /// readings, so a replay applies it at the same point; the tally makes the ticket's next revision (flag S) and,
    /// if its shift has closed, the report's. It never touches a device.
    static func correct(_ r: [String: any Sendable], _ c: Context) throws(ControlError) -> [String: Any] {
        guard c.tally != nil else { throw ControlError("this node has no tally (no [[stream]] or [[weighbridge]] configured)") }
        guard let action = r["action"] as? String, ["set_material", "void"].contains(action) else {
            throw ControlError("action must be set_material or void")
        }
        guard let ticket = r["ticket"] as? String, !ticket.isEmpty else { throw ControlError("no ticket id") }
        guard let who = r["operator"] as? String, !who.isEmpty else { throw ControlError("no operator: a correction names who made it") }
        guard let reason = r["reason"] as? String, !reason.isEmpty else { throw ControlError("no reason: a correction says why") }
        var object: [String: JSONValue] = ["action": .string(action), "ticket": .string(ticket), "operator": .string(who),
                                           "reason": .string(reason)]
        if action == "set_material" {
            guard let material = r["material"] as? String, !material.isEmpty else { throw ControlError("set_material needs a material") }
            object["material"] = .string(material)
        }
        guard let json = try? CanonicalJSON.serialize(.object(object)) else { throw ControlError("the correction cannot be encoded") }
        let reading = Reading(device: TallyEngine.correctionDevice, channel: TallyEngine.correctionChannel, time: c.clock.now(),
                              value: .string(String(decoding: json, as: UTF8.self)), clockSynchronized: c.clock.isSynchronized())
        guard let seq = c.store.submit([reading]) else { throw ControlError("the correction could not be stored") }
        return ["stored_as_reading": Int(seq.lowerBound), "ticket": ticket, "action": action]
    }

    /// `kilntally probe` on a bus this daemon owns: the read goes through the bus's scheduler, in turn with the polls
    /// (a second opener of a serial line would be refused, and two masters on one RS-485 line would collide).
    static func probe(_ r: [String: any Sendable], _ c: Context) async throws(ControlError) -> [String: Any] {
        guard let bus = r["bus"] as? String, let poller = c.pollers.pollers.first(where: { $0.bus.name == bus }) else {
            throw ControlError("this daemon does not poll bus \(r["bus"] as? String ?? "(none)")")
        }
        guard let tableName = r["table"] as? String, let table = RegisterTable(rawValue: tableName),
              let unit = (r["unit"] as? Int64).flatMap(UInt8.init(exactly:)),
              let address = (r["address"] as? Int64).map(Int.init), let count = (r["count"] as? Int64).map(Int.init),
              (1...(table.isBitTable ? 2000 : 125)).contains(count), (0...65535).contains(address), address + count <= 65536 else {
            throw ControlError("probe needs bus, unit (0-255), table (coil, discrete, holding, input), address and count within the Modbus limits")
        }
        do {
            let words = try await poller.read(unit: unit, table: table, address: address, count: count)
            return ["words": words.map { Int($0) }, "endpoint": poller.bus.transport.endpoint + " (through kilntallyd)"]
        } catch {
            // The error names the bus, unit and call itself.
            throw ControlError("device error: \(error)")
        }
    }

    /// Stored readings after `after` (0: the newest few), optionally of one device: what `kilntally tail` follows.
    static func readings(_ r: [String: any Sendable], _ c: Context) async throws(ControlError) -> [String: Any] {
        let device: DeviceID? = (r["device"] as? String).map { DeviceID($0) }
        let limit = max(1, min(Int(r["limit"] as? Int64 ?? 500), 5_000))
        let newest = await c.store.lastSequence
        var after = UInt64(max(0, r["after"] as? Int64 ?? 0))
        if after == 0 { after = newest > 20 ? newest - 20 : 0 }
        var filter: (@Sendable (Reading) -> Bool)?
        if let device {
            filter = { (reading: Reading) -> Bool in reading.device == device }
        }
        let result: RingStore.ReadResult
        do {
            result = try await c.store.read(after: after, limit: limit, filter: filter)
        } catch {
            throw ControlError("the store cannot be read: \(error)")
        }
        var lines: [[String: Any]] = []
        for (seq, reading) in result.readings {
            var w = JSONWriter()
            w.beginObject()
            w.field("seq", seq)
            w.readingFields(reading)
            w.endObject()
            if let o = (try? JSONSerialization.jsonObject(with: Data(w.bytes))) as? [String: Any] { lines.append(o) }
        }
        // The position to ask from next: past what was returned, or (filtered) past everything durable scanned.
        let next = result.readings.count < limit ? max(after, newest) : (result.readings.last?.seq ?? after)
        return ["readings": lines, "next": Int(next)]
    }

    /// The newest `last` ledger records of one type (report, ticket or event), oldest first; optionally of one shift.
    static func records(_ r: [String: any Sendable], _ c: Context) async throws(ControlError) -> [[String: Any]] {
        guard let type = r["type"] as? String, ["report", "ticket", "event"].contains(type) else {
            throw ControlError("type must be report, ticket or event")
        }
        let want = max(1, min(Int(r["last"] as? Int64 ?? 10), 1_000))
        let shift = r["shift"] as? String
        var found: [LedgerRecord] = []
        do {
            let newest = await c.ledger.lastSequence
            var window: UInt64 = 512
            // Scan backwards in growing windows until enough are found or the ledger's start is reached.
            while true {
                let start = newest > window ? newest - window : 0
                var seq = start
                var batch: [LedgerRecord] = []
                while seq < newest {
                    let chunk = try await c.ledger.read(after: seq, limit: 1_000)
                    guard let last = chunk.last else { break }
                    seq = last.sequence
                    batch += chunk.filter { rec in
                        rec.type == type && (shift == nil || (try? JSONSerialization.jsonObject(with: Data(rec.body)) as? [String: Any])?["shift"] as? String == shift)
                    }
                }
                found = batch
                if found.count >= want || start == 0 { break }
                window *= 4
            }
        } catch {
            throw ControlError("the ledger cannot be read: \(error)")
        }
        return found.suffix(want).compactMap { rec in
            guard var o = (try? JSONSerialization.jsonObject(with: Data(rec.body))) as? [String: Any] else { return nil }
            if type == "event" { o["seq"] = Int(rec.sequence) }
            return o
        }
    }

    /// `kilntally status`: the node, every bus and device, the stores, the uplink, the tally's open shift.
    static func status(_ c: Context) async -> [String: Any] {
        let configuration = c.configuration.current
        func ms(_ d: Duration?) -> Any { d.map { Metrics.seconds($0) * 1000 } ?? NSNull() }
        let stats = await c.store.statistics()
        let ledgerRecords = await c.ledger.count
        let acked = c.uplink.readingsAcknowledged
        var out: [String: Any] = [
            "node": [
                "site": configuration.uplink.identity.site, "node": configuration.uplink.identity.node,
                "version": KilnTallyVersion.current, "config_hash": configuration.contentHash,
                "config_file": configuration.file, "started_at": c.startedAt.rfc3339,
                "uptime_s": Int((ContinuousClock.now - c.started).components.seconds),
                "clock_synchronized": c.clock.isSynchronized(), "time": c.clock.now().rfc3339,
            ] as [String: Any],
            "buses": c.pollers.pollers.map { p -> [String: Any] in
                let st = p.status
                return [
                    "bus": st.bus, "endpoint": p.bus.transport.endpoint,
                    "state": st.busError == nil ? "open" : "cannot be opened", "error": st.busError ?? NSNull(),
                    "devices": st.devices.map { d -> [String: Any] in
                        [
                            "device": d.device.rawValue, "state": d.polls == 0 ? "not polled yet" : d.up ? "up" : "down",
                            "last_good_read": d.lastGoodRead?.rfc3339 ?? NSNull(), "last_error": d.lastError ?? NSNull(),
                            "latency_ms": ms(d.lastLatency), "backoff_ms": ms(d.backoff),
                            "polls": d.polls, "errors": d.errors, "failures_in_a_row": d.failures,
                        ]
                    },
                ]
            },
            "streams": c.pollers.streams.map { r -> [String: Any] in
                let st = r.status
                return [
                    "bus": r.bus.name, "endpoint": "\(r.bus.device)@\(r.bus.settings)", "protocol": r.device.scaleProtocol.rawValue,
                    "state": st.busError == nil ? (st.open ? "open" : "opening") : "cannot be opened", "error": st.busError ?? NSNull(),
                    "device": r.device.id.rawValue, "device_state": st.up ? "up" : "down",
                    "last_good_read": st.lastGoodRead?.rfc3339 ?? NSNull(),
                    "frames": Int(st.counters.frames), "bad_checksums": Int(st.counters.badChecksums),
                    "discarded_bytes": Int(st.counters.discardedBytes), "overlong_frames": Int(st.counters.overlongFrames),
                ]
            },
            "store": [
                "bytes": Int(stats.bytes), "max_bytes": Int(c.store.options.maxBytes),
                "fill_pct": Double(stats.bytes) / Double(max(c.store.options.maxBytes, 1)) * 100,
                "readings": stats.readings, "oldest_seq": stats.firstSequence.map { Int($0) } ?? NSNull(),
                "newest_seq": Int(stats.lastDurableSequence), "dropped": Int(stats.droppedReadings),
                "dropped_in_memory": Int(stats.droppedInMemory), "pending": stats.pendingReadings,
                "last_error": stats.lastError ?? NSNull(),
            ] as [String: Any],
            "ledger": ["records": ledgerRecords],
            "uplink": [
                "broker": "\(configuration.uplink.mqtt.host):\(configuration.uplink.mqtt.port)",
                "connected": c.uplink.isConnected, "acknowledged_seq": Int(acked),
                "backlog": acked > 0 && stats.lastDurableSequence > acked ? Int(stats.lastDurableSequence - acked) : NSNull(),
                "last_ack": c.uplink.lastAcknowledgement?.rfc3339 ?? NSNull(),
                "last_error": c.uplink.lastConnectionError ?? NSNull(),
            ] as [String: Any],
        ]
        if let tally = c.tally {
            let snapshot = tally.snapshot
            out["tally"] = [
                "current": snapshot.current.flatMap { try? JSONSerialization.jsonObject(with: Data($0)) } ?? NSNull(),
                "open_tickets": snapshot.openTickets.map { t -> [String: Any] in
                    ["id": t.id, "weighbridge": t.weighbridge, "vehicle": t.vehicle ?? NSNull(), "material": t.material,
                     "first_weight_kg": t.firstWeight, "since": t.since]
                },
            ] as [String: Any]
        } else {
            out["tally"] = NSNull()
        }
        return out
    }
}
