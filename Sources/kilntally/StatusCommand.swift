import ArgumentParser
import Foundation
import KilnTallyCore
import KilnTallyDaemon

/// `kilntally status`: what the running daemon is doing, from its control socket.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what the running daemon is doing: buses and devices, stores, uplink, the open shift and tickets.",
        discussion: "Exit 69 when the daemon cannot be reached.")

    @Option(help: "The daemon's control socket.")
    var socket: String = DefaultPaths.socket

    @Flag(help: "Print the daemon's status as JSON.")
    var json = false

    func run() throws {
        let reply: [String: Any]
        do {
            reply = try ControlClient.request(["op": "status"], socket: socket, timeout: .seconds(10))
        } catch {
            var stderr = StandardError()
            print("kilntally status: \(error)", to: &stderr)
            throw ExitCode(KilnTallyExit.daemonUnreachable.rawValue)
        }
        guard reply["ok"] as? Bool == true, let status = reply["result"] as? [String: Any] else {
            var stderr = StandardError()
            print("kilntally status: the daemon refused: \(reply["error"] as? String ?? "no reason given")", to: &stderr)
            throw ExitCode(KilnTallyExit.checkFailed.rawValue)
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: status, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print(Self.render(status), terminator: "")
    }

    static func render(_ s: [String: Any]) -> String {
        func str(_ v: Any?) -> String {
            switch v {
            case nil, is NSNull: "-"
            case let d as Double: String(format: d == d.rounded() ? "%.0f" : "%.1f", d)
            default: "\(v!)"
            }
        }
        var out = ""
        let node = s["node"] as? [String: Any] ?? [:]
        let uptime = node["uptime_s"] as? Int ?? 0
        out += "kilntallyd \(str(node["version"])) — \(str(node["site"]))/\(str(node["node"])), up \(uptime / 3600)h \(uptime / 60 % 60)m \(uptime % 60)s, "
        out += "config \(str(node["config_hash"])) (\(str(node["config_file"]))), clock \((node["clock_synchronized"] as? Bool ?? false) ? "synchronized" : "NOT synchronized")\n\n"
        var lines: [TableLine] = [.row(["BUS", "STATE", "DEVICE", "STATE", "LAST GOOD READ", "LATENCY", "BACKOFF", "POLLS", "ERRORS", "LAST ERROR"])]
        for bus in s["buses"] as? [[String: Any]] ?? [] {
            let devices = bus["devices"] as? [[String: Any]] ?? []
            let busError = bus["error"] as? String
            for (i, d) in devices.enumerated() {
                // A device down because its bus cannot be opened: the reason is the bus error, printed once below.
                let lastError = busError != nil && d["last_error"] as? String == busError ? "bus cannot be opened" : str(d["last_error"])
                lines.append(.row([i == 0 ? str(bus["bus"]) : "", i == 0 ? str(bus["state"]) : "", str(d["device"]), str(d["state"]),
                                   str(d["last_good_read"]), d["latency_ms"] is Double ? str(d["latency_ms"]) + " ms" : "-",
                                   d["backoff_ms"] is Double ? str(d["backoff_ms"]) + " ms" : "-", str(d["polls"]), str(d["errors"]),
                                   lastError]))
            }
            if devices.isEmpty { lines.append(.row([str(bus["bus"]), str(bus["state"]), "-", "", "", "", "", "", "", ""])) }
            // On a line of its own under the bus's rows: in a column it would stretch that column to its length.
            if let busError { lines.append(.text("  bus error: \(busError)")) }
        }
        out += table(lines) + "\n"
        let streams = s["streams"] as? [[String: Any]] ?? []
        if !streams.isEmpty {
            var srows = [["STREAM BUS", "STATE", "DEVICE", "PROTOCOL", "STATE", "LAST GOOD READ", "FRAMES", "BAD CHECKSUMS", "DISCARDED BYTES", "ERROR"]]
            for st in streams {
                srows.append([str(st["bus"]), str(st["state"]), str(st["device"]), str(st["protocol"]), str(st["device_state"]),
                              str(st["last_good_read"]), str(st["frames"]), str(st["bad_checksums"]), str(st["discarded_bytes"]), str(st["error"])])
            }
            out += table(srows) + "\n"
        }
        let store = s["store"] as? [String: Any] ?? [:]
        out += "store:  \(str(store["bytes"])) of \(str(store["max_bytes"])) bytes (\(String(format: "%.1f", store["fill_pct"] as? Double ?? 0)) %), readings \(str(store["oldest_seq"]))...\(str(store["newest_seq"])), dropped \(str(store["dropped"]))"
        if let e = store["last_error"] as? String { out += ", ERROR: \(e)" }
        out += "\nledger: \(str((s["ledger"] as? [String: Any])?["records"])) records\n"
        let up = s["uplink"] as? [String: Any] ?? [:]
        out += "uplink: \((up["connected"] as? Bool ?? false) ? "connected to" : "NOT connected to") \(str(up["broker"])), acknowledged up to reading \(str(up["acknowledged_seq"])), backlog \(str(up["backlog"])), last acknowledgement \(str(up["last_ack"]))\n"
        if let error = up["last_error"] as? String { out += "        last error: \(error)\n" }
        if let tally = s["tally"] as? [String: Any] {
            if let c = tally["current"] as? [String: Any] {
                out += "\nshift \(str(c["shift"])) (\(str(c["start_local"])) to \(str(c["end_local"]))), crew \(str(c["crew"])), as of \(str(c["as_of"]))\n"
                var srows = [["STREAM", "MATERIAL", "FEED POINT", "FED KG", "COVERAGE %", "FLAG"]]
                for st in c["streams"] as? [[String: Any]] ?? [] {
                    srows.append([str(st["name"]), str(st["material"]), str(st["feed_point"]), str(st["fed_kg"]), str(st["coverage_pct"]), str(st["flag"])])
                }
                out += table(srows)
                for r in c["receipts"] as? [[String: Any]] ?? [] {
                    out += "received: \(str(r["material"])) \(str(r["tickets"])) ticket(s), \(str(r["net_kg"])) kg\n"
                }
            }
            let open = tally["open_tickets"] as? [[String: Any]] ?? []
            out += open.isEmpty ? "no open tickets\n" : "open tickets:\n"
            for t in open {
                out += "  \(str(t["id"])) \(str(t["vehicle"])) \(str(t["material"])) first weighing \(str(t["first_weight_kg"])) kg at \(str(t["since"]))\n"
            }
        }
        return out
    }

    /// A line of a table: a row of cells, or text of its own between the rows that does not count in the columns' widths.
    enum TableLine {
        case row([String])
        case text(String)
    }

    static func table(_ rows: [[String]]) -> String { table(rows.map { .row($0) }) }

    /// Columns padded to their widest cell, two spaces apart, the last one not padded. Empty leading cells keep their
    /// width (a bus's second device sits under its first); only trailing blanks are cut.
    static func table(_ lines: [TableLine]) -> String {
        let rows = lines.compactMap { if case .row(let cells) = $0 { cells } else { nil } }
        guard let width = rows.first?.count else { return "" }
        let widths = (0..<width).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return lines.map { line in
            switch line {
            case .text(let text): return text
            case .row(let row):
                var s = row.enumerated().map { i, cell in i == width - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ")
                while s.last == " " { s.removeLast() }
                return s
            }
        }.joined(separator: "\n") + "\n"
    }
}
