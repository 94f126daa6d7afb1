import Foundation
import KilnTallyCore

/// The sections most test configurations of the daemon start with, so each test writes only what it is about.
public enum DaemonConfig {
    /// `[node]`, `[mqtt]` and, when asked for, `[uplink]`, `[store]` and `[profiles]`, ending in a blank line so the
    /// caller appends its buses, devices, streams and other sections.
    ///
    /// - `mqttPort`: the loopback broker's port (or a port nobody listens on); nil leaves the default.
    /// - `keepAlive`, `reconnect`: the short timings tests use so they need not wait out production ones.
    /// - `mqtt`: further lines of `[mqtt]` (credentials, `protocol`), and possibly a `[mqtt.tls]` table after them.
    /// - `batchInterval`, `batchSize`: `[uplink]`, written when either is given.
    /// - `storeMaxBytes`: `[store] max_bytes`, e.g. `"8MiB"`.
    /// - `profileDirs`: `[profiles] dirs` (`[]`: only the built-in profiles, whatever is in /etc/kilntally).
    public static func header(
        site: String = "plant-a", node: String = "kiln1", mqttHost: String = "127.0.0.1", mqttPort: Int? = nil,
        keepAlive: String? = nil, reconnect: (min: String, max: String)? = nil, mqtt: String = "",
        batchInterval: String? = nil, batchSize: Int? = nil, storeMaxBytes: String? = nil, profileDirs: [String]? = nil
    ) -> String {
        var lines = ["[node]", "site = \"\(site)\"", "name = \"\(node)\"", "", "[mqtt]", "host = \"\(mqttHost)\""]
        if let mqttPort { lines.append("port = \(mqttPort)") }
        if let keepAlive { lines.append("keep_alive = \"\(keepAlive)\"") }
        if let reconnect { lines += ["reconnect_min = \"\(reconnect.min)\"", "reconnect_max = \"\(reconnect.max)\""] }
        if !mqtt.isEmpty { lines.append(mqtt) }
        if batchInterval != nil || batchSize != nil {
            lines += ["", "[uplink]"]
            if let batchInterval { lines.append("batch_interval = \"\(batchInterval)\"") }
            if let batchSize { lines.append("batch_size = \(batchSize)") }
        }
        if let storeMaxBytes { lines += ["", "[store]", "max_bytes = \"\(storeMaxBytes)\""] }
        if let profileDirs { lines += ["", "[profiles]", "dirs = [\(profileDirs.map { "\"\($0)\"" }.joined(separator: ", "))]"] }
        return lines.joined(separator: "\n") + "\n\n"
    }

    /// `[shifts]` of `cycle` from `anchor`, and `[tally]` closing them `grace` after their end with a clock tick every
    /// `tickInterval`: shifts short enough for a test to see several close.
    public static func shortShifts(cycle: String = "10s", anchor: UTCInstant = recentAnchor(), grace: String = "1s",
                                   tickInterval: String = "500ms") -> String {
        """
        [shifts]
        cycle = "\(cycle)"
        anchor = "\(anchor.rfc3339)"

        [tally]
        grace = "\(grace)"
        tick_interval = "\(tickInterval)"


        """
    }

    /// A whole minute ten minutes ago: an anchor that puts the boundaries of short shifts on whole multiples of their
    /// cycle (in UTC) and makes the shift in progress one of many since the anchor.
    public static func recentAnchor(now: Date = Date()) -> UTCInstant {
        UTCInstant(secondsSinceEpoch: Int64(now.timeIntervalSince1970) / 60 * 60 - 600)
    }
}
