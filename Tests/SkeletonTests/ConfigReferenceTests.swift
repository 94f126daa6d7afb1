import KilnTallyCore
import Foundation
import KilnTallyDaemon
import TestSupport
import Testing

@Suite("Configuration reference")
struct ConfigReferenceTests {
    @Test("docs/CONFIG.md is the schema's reference (regenerate with `kilntally config keys > docs/CONFIG.md`)")
    func referenceIsCurrent() throws {
        let committed = try String(contentsOf: RepoPaths.root.appendingPathComponent("docs/CONFIG.md"), encoding: .utf8)
        let generated = KilnTallyConfiguration.schema.markdownReference()
        #expect(committed.trimmingCharacters(in: .whitespacesAndNewlines) == generated.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("the example config in deploy/ is valid")
    func exampleIsValid() throws {
        let path = RepoPaths.root.appendingPathComponent("deploy/kilntally.example.toml").path
        let config = try KilnTallyConfiguration.load(file: path)
        #expect(config.acquisition.devices.map(\.id.rawValue) == ["msw-belt", "rdf-belt", "sludge-pump", "wb-north"])
        // Every device comes from a profile, and the roles the tally needs are all there.
        #expect(config.acquisition.devices.allSatisfy { $0.profile != nil })
        #expect(config.acquisition.profiles.map(\.name) == ["flintec-ft112", "generic-flow", "siemens-bw500"])
        let wb = try #require(config.acquisition.devices.last)
        #expect(wb.channel(withRole: .weight)?.role == .weight(zeroBand: 40))
        #expect(wb.channel(withRole: .motion)?.id == "unstable")
        #expect(config.streams.map(\.name) == ["msw-calciner", "rdf-riser", "sludge-inlet"])
        #expect(config.weighbridges.map(\.name) == ["wb-north"])
        // 四班三倒 from 2026-01-01: on the third day crew 丁 has the night shift. 2026-01-03 00:00 +08:00 is
        // 2026-01-02T16:00:00Z = 1767369600 s.
        let night = config.shifts.shift(containing: UTCInstant(secondsSinceEpoch: 1_767_369_600))
        #expect(night.id.description == "2026-01-03/A" && night.crew == "丁")
        #expect(config.uplink.mqtt.tls?.caFile == "/etc/kilntally/hub-ca.pem")
    }
}
