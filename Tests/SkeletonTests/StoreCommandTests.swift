import Foundation
import KilnTallyCore
import Logging
import RingStore
import TestSupport
import Testing

@Suite("store verify and dump", .serialized)
struct StoreCommandTests {
    func run(_ args: [String], in dir: TemporaryDirectory) async throws -> (Int32, String) {
        let p = try PeerProcess(name: "kilntally-\(UUID().uuidString.prefix(6))", executable: try RepoPaths.builtProduct("kilntally"),
                                arguments: args, logDirectory: dir.path)
        return (try await p.waitForExit(timeout: .seconds(30)), p.log())
    }

    @Test func verifyAndDumpBothStores() async throws {
        let dir = try TemporaryDirectory()
        var logger = Logger(label: "t")
        logger.logLevel = .critical
        let ring = try await RingStore(directory: dir.file("readings"), logger: logger)
        for start in stride(from: 1, through: 201, by: 100) { try await ring.append((UInt64(start)...UInt64(start + 99)).map(sampleReading)) }
        await ring.close()
        let ledger = try await Ledger(directory: dir.file("ledger"), logger: logger)
        try await ledger.append(type: "ticket", body: Array("{\"id\":\"T-1\"}".utf8))
        await ledger.close()

        var (status, out) = try await run(["store", "verify", "--state-dir", dir.path], in: dir)
        #expect(status == 0, "\(out)")
        #expect(out.contains("readings       300"))
        #expect(out.contains("records        1"))
        #expect(out.contains("sequence       1...300"))

        (status, out) = try await run(["store", "dump", "--state-dir", dir.path, "--from", "299", "--json"], in: dir)
        #expect(status == 0)
        let lines = out.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("{\"seq\":299,\"device\":\"dev2\",\"channel\":\"ch3\"") == true, "\(out)")

        (status, out) = try await run(["store", "dump", "--state-dir", dir.path, "--ledger"], in: dir)
        #expect(status == 0)
        #expect(out.contains("\tticket\t{\"id\":\"T-1\"}"))

        // A flipped byte in the first of three frames (damage with good data after it, so not a torn tail):
        // verify says where, and exits 1; nothing is modified.
        let segDir = dir.file("readings/segments")
        let seg = segDir + "/" + (try FileManager.default.contentsOfDirectory(atPath: segDir).first { $0.hasSuffix(".krs") }!)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: seg))
        bytes[44 + 8 + 20] ^= 0x10  // segment header (44) + frame header (8) + into the first frame's body
        try bytes.write(to: URL(fileURLWithPath: seg))
        (status, out) = try await run(["store", "verify", "--state-dir", dir.path], in: dir)
        #expect(status == 1, "\(out)")
        #expect(out.contains("DAMAGE") && out.contains("bad checksum"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: seg)) == bytes, "verify is read-only")
    }
}
