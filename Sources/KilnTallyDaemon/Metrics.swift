import Acquisition
import Foundation
import KilnTallyCore
import Logging
import RingStore
import ServiceLifecycle
import Uplink

/// The daemon's metrics in the Prometheus text exposition format (version 0.0.4): `kilntally metrics` prints them,
/// and `[metrics] textfile` has them written for node_exporter's textfile collector.
enum Metrics {
    static func render(_ c: Daemon.Context) async -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples {
                let labels = s.labels.isEmpty ? "" : "{" + s.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                out += "\(name)\(labels) \(format(s.value))\n"
            }
        }
        let configuration = c.configuration.current
        let node = [("site", configuration.uplink.identity.site), ("node", configuration.uplink.identity.node)]
        family("kilntally_info", "gauge", "Version and configuration in force (always 1).",
               [(node + [("version", KilnTallyVersion.current), ("config_hash", configuration.contentHash)], 1)])
        family("kilntally_uptime_seconds", "gauge", "Seconds since the daemon started.",
               [(node, seconds(ContinuousClock.now - c.started))])
        family("kilntally_clock_synchronized", "gauge", "1 when the system clock is synchronized.",
               [(node, c.clock.isSynchronized() ? 1 : 0)])
        let buses = c.pollers.pollers.map(\.status)
        let devices = buses.flatMap { b in b.devices.map { (bus: b.bus, d: $0) } }
        func per(_ f: (BusPoller.DeviceStatus) -> Double?) -> [(labels: [(String, String)], value: Double)] {
            devices.compactMap { x in f(x.d).map { (node + [("bus", x.bus), ("device", x.d.device.rawValue)], $0) } }
        }
        family("kilntally_device_up", "gauge", "1 while the device answers its polls.", per { $0.up ? 1 : 0 })
        family("kilntally_device_polls_total", "counter", "Polls of the device (this run).", per { Double($0.polls) })
        family("kilntally_device_poll_errors_total", "counter", "Polls that got no answer (this run).", per { Double($0.errors) })
        family("kilntally_device_poll_latency_seconds", "gauge", "Duration of the last answered poll.", per { $0.lastLatency.map(seconds) })
        family("kilntally_device_last_good_read_timestamp_seconds", "gauge", "Wall-clock time of the last answered poll.",
               per { $0.lastGoodRead.map { Double($0.nanosecondsSinceEpoch) / 1e9 } })
        family("kilntally_bus_open", "gauge", "1 while the bus (serial line or TCP endpoint) can be used.",
               buses.map { (node + [("bus", $0.bus)], $0.busError == nil ? 1 : 0) })
        let streams = c.pollers.streams
        func stream(_ f: (StreamBusReader.Status) -> Double) -> [(labels: [(String, String)], value: Double)] {
            streams.map { r in (node + [("bus", r.bus.name), ("device", r.device.id.rawValue)], f(r.status)) }
        }
        if !streams.isEmpty {
            family("kilntally_stream_up", "gauge", "1 while the stream indicator sends frames.", stream { $0.up ? 1 : 0 })
            family("kilntally_stream_frames_total", "counter", "Frames decoded from the stream (this run).", stream { Double($0.counters.frames) })
            family("kilntally_stream_bad_checksums_total", "counter", "Frames dropped for a bad checksum (this run).",
                   stream { Double($0.counters.badChecksums) })
            family("kilntally_stream_discarded_bytes_total", "counter", "Bytes that were not part of a frame (this run).",
                   stream { Double($0.counters.discardedBytes) })
        }
        let stats = await c.store.statistics()
        family("kilntally_store_bytes", "gauge", "Bytes in the reading ring's segments.", [(node, Double(stats.bytes))])
        family("kilntally_store_max_bytes", "gauge", "The ring's byte bound.", [(node, Double(c.store.options.maxBytes))])
        family("kilntally_store_readings", "gauge", "Readings held in the ring.", [(node, Double(stats.readings))])
        family("kilntally_store_last_sequence", "gauge", "Sequence number of the newest durable reading.", [(node, Double(stats.lastDurableSequence))])
        family("kilntally_store_dropped_readings_total", "counter", "Readings dropped for space (oldest first) since the daemon started.",
               [(node, Double(stats.droppedReadings))])
        family("kilntally_store_dropped_in_memory_total", "counter", "Readings lost from the in-memory queue while the disk could not be written.",
               [(node, Double(stats.droppedInMemory))])
        family("kilntally_store_commits_total", "counter", "Group commits written.", [(node, Double(stats.commits))])
        family("kilntally_store_syncs_total", "counter", "fdatasync calls of the ring.", [(node, Double(stats.syncs))])
        family("kilntally_store_pending_readings", "gauge", "Readings waiting for the next commit.", [(node, Double(stats.pendingReadings))])
        family("kilntally_store_write_failing", "gauge", "1 while the ring cannot be written (disk full, read-only, failing).",
               [(node, stats.lastError == nil ? 0 : 1)])
        family("kilntally_ledger_records", "gauge", "Records in the ledger (tickets, reports, events).", [(node, Double(await c.ledger.count))])
        let acked = c.uplink.readingsAcknowledged
        family("kilntally_uplink_connected", "gauge", "1 while connected to the MQTT broker.", [(node, c.uplink.isConnected ? 1 : 0)])
        family("kilntally_uplink_acknowledged_sequence", "gauge", "Newest reading the broker acknowledged in this run.", [(node, Double(acked))])
        family("kilntally_uplink_backlog_readings", "gauge", "Durable readings not yet acknowledged by the broker.",
               acked > 0 ? [(node, Double(stats.lastDurableSequence > acked ? stats.lastDurableSequence - acked : 0))] : [])
        if let tally = c.tally, let bytes = tally.snapshot.current,
           let current = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] {
            let shift = current["shift"] as? String ?? ""
            let streams = current["streams"] as? [[String: Any]] ?? []
            family("kilntally_shift_fed_kilograms", "gauge", "Mass fed so far in the open shift, per stream.",
                   streams.compactMap { s in
                       (s["fed_kg"] as? String).flatMap(Double.init).map { (node + [("shift", shift), ("stream", s["name"] as? String ?? ""),
                                                                                  ("material", s["material"] as? String ?? "")], $0) }
                   })
            family("kilntally_open_tickets", "gauge", "Tickets weighed once and waiting for their second weighing.",
                   [(node, Double(tally.snapshot.openTickets.count))])
        }
        return out
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// Rewrites `[metrics] textfile` every interval (temporary file, then rename: node_exporter never reads half a file).
struct MetricsTextfileService: Service {
    let path: String
    let interval: Duration
    let context: Daemon.Context
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var failing = false
            while !Task.isCancelled {
                let text = await Metrics.render(context)
                do {
                    try PosixFileIO().replaceAtomically(path, with: Array(text.utf8))
                    if failing { logger.notice("metrics textfile \(path) written again") }
                    failing = false
                } catch {
                    if !failing { logger.error("metrics textfile \(path) cannot be written: \(error)") }
                    failing = true
                }
                do { try await Task.sleep(for: interval) } catch { break }
            }
        }
    }
}
