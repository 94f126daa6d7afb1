import ArgumentParser
import Foundation
import KilnTallyCore
import KilnTallyDaemon

struct UplinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uplink", abstract: "Ask the running daemon's uplink to do something (through its control socket).",
        subcommands: [Resend.self])

    struct Resend: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish again, on the hub's request, readings from a sequence number or a shift's reports and tickets.",
            discussion: """
                --from-seq N re-publishes the readings from N through the last one the broker acknowledged (at most at \
                [uplink] replay_rate, beside the normal publishing; the cursor does not move). --shift YYYY-MM-DD/NAME \
                re-publishes every revision of that shift's report and every ticket revision of the shift still in the \
                ledger. Duplicates carry the ids the hub de-duplicates on. Exit 69 when the daemon cannot be reached, 1 \
                when it refuses (e.g. nothing acknowledged from N on).
                """)

        @Option(name: .customLong("from-seq"), help: "First reading sequence number to publish again.")
        var fromSeq: UInt64?

        @Option(help: "Shift id (YYYY-MM-DD/NAME) whose reports and tickets to publish again.")
        var shift: String?

        @Option(help: "The daemon's control socket.")
        var socket: String = DefaultPaths.socket

        @Flag(help: "Print the daemon's reply as JSON.")
        var json = false

        func validate() throws {
            guard (fromSeq == nil) != (shift == nil) else { throw ValidationError("give exactly one of --from-seq and --shift") }
            if let fromSeq, fromSeq == 0 { throw ValidationError("--from-seq starts at 1") }
        }

        func run() throws {
            var request: [String: Any] = ["op": "uplink.resend"]
            if let fromSeq { request["from_seq"] = fromSeq }
            if let shift { request["shift"] = shift }
            let reply: [String: Any]
            do {
                reply = try ControlClient.request(request, socket: socket)
            } catch {
                var stderr = StandardError()
                print("kilntally uplink resend: \(error)", to: &stderr)
                throw ExitCode(KilnTallyExit.daemonUnreachable.rawValue)
            }
            if json, let data = try? JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
            guard reply["ok"] as? Bool == true, let result = reply["result"] as? [String: Any] else {
                var stderr = StandardError()
                print("kilntally uplink resend: the daemon refused: \(reply["error"] as? String ?? "no reason given")", to: &stderr)
                throw ExitCode(KilnTallyExit.checkFailed.rawValue)
            }
            guard !json else { return }
            if let from = result["readings_from"], let through = result["readings_through"] {
                print("re-publishing readings \(from)...\(through)")
            } else if let records = result["records"], let shift = result["shift"] {
                print("re-publishing \(records) record(s) of shift \(shift)")
            }
        }
    }
}
