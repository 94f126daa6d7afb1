import ArgumentParser
import Foundation
import KilnTallyCore
import KilnTallyDaemon

/// One request to the running daemon: its `result`, or exit 69 (unreachable) / 1 (refused) with the reason.
func daemonRequest(_ request: [String: Any], socket: String, command: String) throws -> Any {
    var stderr = StandardError()
    let reply: [String: Any]
    do {
        reply = try ControlClient.request(request, socket: socket)
    } catch {
        print("kilntally \(command): \(error)", to: &stderr)
        throw ExitCode(KilnTallyExit.daemonUnreachable.rawValue)
    }
    guard reply["ok"] as? Bool == true, let result = reply["result"] else {
        print("kilntally \(command): the daemon refused: \(reply["error"] as? String ?? "no reason given")", to: &stderr)
        throw ExitCode(KilnTallyExit.checkFailed.rawValue)
    }
    return result
}

func printJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .fragmentsAllowed])
    print(String(decoding: data, as: UTF8.self))
}

struct OnlineOptions: ParsableArguments {
    @Option(help: "The daemon's control socket.")
    var socket: String = DefaultPaths.socket

    @Flag(help: "Print JSON.")
    var json = false
}

struct TicketCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ticket", abstract: "Correct a weighbridge ticket (through the daemon; recorded with operator and reason, flag S).",
        discussion: """
            A correction is stored as an input of the tally, in order with the readings: the ticket gets its next \
            revision, and its shift's report a new revision if the shift has closed. Devices are never touched.
            """,
        subcommands: [SetMaterial.self, Void.self])

    static var defaultOperator: String {
        let env = ProcessInfo.processInfo.environment
        return env["SUDO_USER"] ?? env["USER"] ?? env["LOGNAME"] ?? ""
    }

    struct SetMaterial: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-material", abstract: "Set the material of a ticket.")
        @Argument(help: "Ticket id, e.g. wb1-42.") var ticket: String
        @Argument(help: "The material, as the streams and the balance name it.") var material: String
        @Option(help: "Why (recorded in the ticket).") var reason: String
        @Option(help: "Who (recorded; default: the user running the command).") var `operator`: String = TicketCommand.defaultOperator
        @OptionGroup var options: OnlineOptions

        func run() throws {
            let result = try daemonRequest(["op": "ticket.correct", "action": "set_material", "ticket": ticket, "material": material,
                                            "reason": reason, "operator": `operator`], socket: options.socket, command: "ticket set-material")
            if options.json { try printJSON(result) } else { print("correction of \(ticket) stored; the tally applies it in order with the readings") }
        }
    }

    struct Void: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "void", abstract: "Void a false ticket.")
        @Argument(help: "Ticket id, e.g. wb1-42.") var ticket: String
        @Option(help: "Why (recorded in the ticket).") var reason: String
        @Option(help: "Who (recorded; default: the user running the command).") var `operator`: String = TicketCommand.defaultOperator
        @OptionGroup var options: OnlineOptions

        func run() throws {
            let result = try daemonRequest(["op": "ticket.correct", "action": "void", "ticket": ticket, "reason": reason,
                                            "operator": `operator`], socket: options.socket, command: "ticket void")
            if options.json { try printJSON(result) } else { print("voiding of \(ticket) stored; the tally applies it in order with the readings") }
        }
    }
}

/// `shifts`, `tickets`, `events`: the newest ledger records of a type.
struct RecordsQuery {
    static func run(type: String, last: Int, shift: String?, options: OnlineOptions, command: String, line: ([String: Any]) -> String) throws {
        var request: [String: Any] = ["op": "ledger.records", "type": type, "last": last]
        if let shift { request["shift"] = shift }
        let result = try daemonRequest(request, socket: options.socket, command: command)
        if options.json { return try printJSON(result) }
        let records = result as? [[String: Any]] ?? []
        if records.isEmpty { print("none") }
        for r in records { print(line(r)) }
    }

    static func s(_ v: Any?) -> String {
        switch v {
        case nil, is NSNull: "-"
        default: "\(v!)"
        }
    }
}

struct Shifts: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The latest shift reports (each revision), from the daemon's ledger.")
    @Option(help: "How many.") var last = 5
    @OptionGroup var options: OnlineOptions

    func run() throws {
        try RecordsQuery.run(type: "report", last: last, shift: nil, options: options, command: "shifts") { r in
            let s = RecordsQuery.s
            let streams = (r["streams"] as? [[String: Any]] ?? []).map { "\(s($0["name"])) \(s($0["fed_kg"])) kg (\(s($0["flag"])), \(s($0["coverage_pct"]))%)" }
            let receipts = (r["receipts"] as? [[String: Any]] ?? []).map { "\(s($0["material"])) \(s($0["tickets"]))× \(s($0["net_kg"])) kg" }
            return "\(s(r["shift"])) rev \(s(r["revision"])) crew \(s(r["crew"])) \(s(r["length_s"])) s flag \(s(r["flag"])): fed "
                + (streams.isEmpty ? "-" : streams.joined(separator: ", ")) + "; received " + (receipts.isEmpty ? "-" : receipts.joined(separator: ", "))
        }
    }
}

struct Tickets: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The latest weighbridge ticket revisions, from the daemon's ledger.")
    @Option(help: "How many.") var last = 10
    @Option(help: "Only those of this shift (YYYY-MM-DD/NAME).") var shift: String?
    @OptionGroup var options: OnlineOptions

    func run() throws {
        try RecordsQuery.run(type: "ticket", last: last, shift: shift, options: options, command: "tickets") { r in
            let s = RecordsQuery.s
            return "\(s(r["id"])) rev \(s(r["revision"])) \(s(r["status"])) \(s(r["vehicle"])) \(s(r["material"])) gross \(s(r["gross_kg"])) tare \(s(r["tare_kg"])) net \(s(r["net_kg"])) kg shift \(s(r["shift"])) flag \(s(r["flag"]))"
        }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The latest events (devices, buses, store, tally), from the daemon's ledger.")
    @Option(help: "How many.") var last = 20
    @OptionGroup var options: OnlineOptions

    func run() throws {
        try RecordsQuery.run(type: "event", last: last, shift: nil, options: options, command: "events") { r in
            let s = RecordsQuery.s
            return "\(s(r["time"])) \(s(r["severity"])) \(s(r["kind"])) \(s(r["message"]))"
        }
    }
}

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "Print the daemon's metrics in the Prometheus text format.")
    @Option(help: "The daemon's control socket.") var socket: String = DefaultPaths.socket

    func run() throws {
        print(try daemonRequest(["op": "metrics"], socket: socket, command: "metrics") as? String ?? "", terminator: "")
    }
}

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow the readings the daemon stores (the last few, then new ones as they come), one line each.")
    @Option(help: "Only this device's readings.") var device: String?
    @Option(help: "Stop after this many readings (default: follow until interrupted).") var count: Int?
    @OptionGroup var options: OnlineOptions

    func run() throws {
        var after = 0
        var shown = 0
        while count.map({ shown < $0 }) ?? true {
            var request: [String: Any] = ["op": "readings", "after": after]
            if let device { request["device"] = device }
            let result = try daemonRequest(request, socket: options.socket, command: "tail") as? [String: Any] ?? [:]
            for r in result["readings"] as? [[String: Any]] ?? [] {
                if let count, shown >= count { break }
                shown += 1
                if options.json {
                    try printJSON(r)
                } else {
                    let s = RecordsQuery.s
                    print("\(s(r["seq"])) \(s(r["time"])) \(s(r["device"]))/\(s(r["channel"])) \(s(r["value"]))\(r["unit"].map { " \($0)" } ?? "") \(s(r["quality"]))")
                }
            }
            // Following into a pipe or a file (`kilntally tail | grep belt1`), stdout is block-buffered: flush, so the
            // lines arrive as they come, not a block of them when the buffer fills, nor none when tail is killed.
            fflush(nil)
            after = result["next"] as? Int ?? after
            if count.map({ shown < $0 }) ?? true { usleep(300_000) }
        }
    }
}
