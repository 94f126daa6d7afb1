import Acquisition
import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Uplink

/// systemd's view of the daemon: `READY=1` once every service is running (the readiness barrier), `WATCHDOG=1`
/// while the daemon is alive, `STATUS=` with a one-line summary, `STOPPING=1` when the shutdown begins.
///
/// **Alive** means every bus's scheduler finished a turn (a poll attempt, a reconnect attempt or an idle tick) within
/// its `livenessDeadline` and the store's commit loop turned within `storeDeadline`. A plant outage, a cut cable, a
/// broker that is away or a full disk keep the daemon alive — they show in `STATUS=`, events and `kilntally status`;
/// a restart would fix nothing. A stuck thread (a hung driver, a disk that never returns from fsync) stops the pings,
/// and systemd restarts the daemon after `WatchdogSec`.
///
/// It is the last service of the group, so it is the first told to stop: `STOPPING=1` goes out as the shutdown starts.
struct LifecycleService: Service {
    let notifier: SystemdNotifier
    let barrier: ReadinessBarrier
    let pollers: PollerSet
    let store: RingStore
    let storeDeadline: Duration
    let uplink: Uplink
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown { await barrier.wait() }
        // Shut down before every service ran: never ready.
        guard barrier.waitingFor.isEmpty else { return }
        let summary = await Self.summary(pollers: pollers.pollers, streams: pollers.streams, store: store, uplink: uplink)
        notifier.notify("READY=1\n" + SystemdNotifier.statusLine(summary))
        logger.info("ready: \(summary)")
        // Pings at half the watchdog interval; without a watchdog the status line is still refreshed.
        let tick = notifier.watchdogInterval.map { max($0 / 2, .milliseconds(100)) } ?? .seconds(10)
        await cancelWhenGracefulShutdown {
            var reported: [String] = []
            while !Task.isCancelled {
                let problems = liveness()
                let line = await Self.summary(pollers: pollers.pollers, streams: pollers.streams, store: store, uplink: uplink)
                if problems.isEmpty {
                    notifier.notify("WATCHDOG=1\n" + SystemdNotifier.statusLine(line))
                    if !reported.isEmpty { logger.notice("alive again") }
                } else {
                    notifier.notify(SystemdNotifier.statusLine("NOT ALIVE: " + problems.joined(separator: "; ")))
                    if problems != reported {
                        logger.critical("not alive, watchdog pings stopped: \(problems.joined(separator: "; "))")
                    }
                }
                reported = problems
                do { try await Task.sleep(for: tick) } catch { break }
            }
        }
        notifier.notify("STOPPING=1\n" + SystemdNotifier.statusLine("stopping"))
    }

    /// What is stuck, if anything.
    func liveness(now: ContinuousClock.Instant = .now) -> [String] {
        var problems: [String] = []
        for p in pollers.pollers {
            let since = now - p.status.lastProgress
            if since > p.livenessDeadline {
                problems.append("bus \(p.bus.name)'s scheduler has not finished a turn for \(since) (deadline \(p.livenessDeadline))")
            }
        }
        for r in pollers.streams {
            let since = now - r.status.lastProgress
            if since > r.livenessDeadline {
                problems.append("stream bus \(r.bus.name)'s reading thread has not turned for \(since)")
            }
        }
        if let turn = store.lastCommitLoopTurn, now - turn > storeDeadline {
            problems.append("the store's commit loop has not turned for \(now - turn)")
        }
        return problems
    }

    /// One line: devices answering, the uplink, the store.
    static func summary(pollers: [BusPoller], streams: [StreamBusReader] = [], store: RingStore, uplink: Uplink) async -> String {
        let devices = pollers.flatMap(\.status.devices)
        // Answering: answered its last poll. A device not polled yet (at READY, before the first turn) is not
        // counted as answering; the line says how many are still to be polled.
        let up = devices.filter { $0.up && $0.polls > 0 }.count + streams.filter(\.status.up).count
        let pending = devices.filter { $0.polls == 0 }.count
        let total = devices.count + streams.count
        let stats = await store.statistics()
        let fill = Double(stats.bytes) / Double(max(store.options.maxBytes, 1)) * 100
        var parts = ["\(up)/\(total) devices answering" + (pending > 0 ? " (\(pending) not polled yet)" : "")]
        let busesDown = pollers.filter { $0.status.busError != nil }.map(\.bus.name)
        if !busesDown.isEmpty { parts.append("bus \(busesDown.joined(separator: ", ")) cannot be opened") }
        parts.append(uplink.isConnected ? "uplink connected" : "uplink not connected")
        let backlog = stats.lastDurableSequence > uplink.readingsAcknowledged && uplink.readingsAcknowledged > 0
            ? stats.lastDurableSequence - uplink.readingsAcknowledged : 0
        if backlog > 0 { parts.append("backlog \(backlog) readings") }
        parts.append(String(format: "store %.0f%% full", fill))
        if stats.droppedReadings > 0 { parts.append("\(stats.droppedReadings) readings dropped") }
        if let error = stats.lastError { parts.append("store error: \(error)") }
        return parts.joined(separator: ", ")
    }
}
