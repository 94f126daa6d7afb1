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
        #expect(config.acquisition.devices.map(\.id.rawValue) == ["msw-belt", "wb-north"])
        #expect(config.uplink.mqtt.tls?.caFile == "/etc/kilntally/hub-ca.pem")
    }
}
