import ArgumentParser
import Foundation
import KilnTallyCore

/// `kilntally reload`: the daemon re-reads its configuration file (as on SIGHUP) and says what it did.
struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the running daemon re-read its configuration file, and show what the reload did.",
        discussion: """
            An invalid file is refused: every error is printed (file:line: key.path: message, as `config check` \
            prints them), the running configuration stays, and the exit status is 78. A valid one is applied: the \
            buses whose settings, devices or channels changed are restarted (the others keep polling), the tally's \
            new setup takes effect at the next shift boundary, and what is read only at start ([node], [mqtt], \
            [uplink], [store], [log], [metrics], serial_stream buses) waits for the next restart. \
            Exit 0 when applied or unchanged; 1 when applied but a bus cannot be set up, or the daemon refused the \
            request (another reload in progress); 69 when the daemon cannot be reached; 78 when the file has errors.
            """)

    @OptionGroup var options: OnlineOptions

    func run() throws {
        let result = try daemonRequest(["op": "reload"], socket: options.socket, command: "reload") as? [String: Any] ?? [:]
        let status = Self.exitStatus(result)
        if options.json {
            try printJSON(result)
        } else if status == KilnTallyExit.configError.rawValue {
            var stderr = StandardError()
            print(Self.render(result), terminator: "", to: &stderr)
        } else {
            print(Self.render(result), terminator: "")
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// 78 refused (the file has errors), 1 applied with a bus that cannot be set up, else 0.
    static func exitStatus(_ r: [String: Any]) -> Int32 {
        switch r["outcome"] as? String {
        case "refused": return KilnTallyExit.configError.rawValue
        case "applied": return (r["buses_failed"] as? [Any] ?? []).isEmpty ? 0 : KilnTallyExit.checkFailed.rawValue
        case nil:
            // A daemon from before the structured reply sends only the line.
            return (r["result"] as? String ?? "").hasPrefix("reload refused") ? KilnTallyExit.configError.rawValue : 0
        default: return 0
        }
    }

    static func render(_ r: [String: Any]) -> String {
        let s = RecordsQuery.s
        func list(_ key: String) -> String {
            let names = r[key] as? [String] ?? []
            return names.isEmpty ? "none" : names.joined(separator: ", ")
        }
        switch r["outcome"] as? String {
        case "refused":
            let errors = r["errors"] as? [[String: Any]] ?? []
            var out = errors.map { e -> String in
                var place = s(e["file"])
                if let line = e["line"] as? Int {
                    place += ":\(line)"
                    if let column = e["column"] as? Int { place += ":\(column)" }
                }
                let key = (e["key"] as? String).map { "\($0): " } ?? ""
                return "\(place): \(key)\(s(e["message"]))\n"
            }.joined()
            out += "kilntally reload: refused, \(s(r["config_file"])) has \(errors.count) error(s); the running configuration \(s(r["config_hash"])) stays\n"
            return out
        case "unchanged":
            return "\(s(r["config_file"])): unchanged, configuration \(s(r["config_hash"])) stays in force\n"
        case "applied":
            let tally = r["tally"] as? [String: Any] ?? [:]
            var rows = [
                ["buses restarted:", list("buses_restarted")],
                ["buses started:", list("buses_started")],
                ["buses stopped:", list("buses_stopped")],
            ]
            for f in r["buses_failed"] as? [[String: Any]] ?? [] {
                rows.append(["bus NOT polled:", "\(s(f["bus"])): \(s(f["error"]))"])
            }
            rows.append(["tally:", s(tally["message"])])
            rows.append(["at next restart:", list("restart_only")])
            return "\(s(r["config_file"])): configuration \(s(r["config_hash"])) in force (was \(s(r["previous_config_hash"])))\n"
                + Status.table(rows)
        default:
            return s(r["result"]) + "\n"
        }
    }
}
