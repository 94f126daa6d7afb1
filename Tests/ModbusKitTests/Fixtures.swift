import Foundation
import Logging
import ModbusKit
import TestSupport
import Testing

/// The register map the pymodbus peers serve, and what each read must return.
enum Fixture {
    static let unit: UInt8 = 7
    static let size = 40

    static let coils: [Bool] = (0..<size).map { $0 % 3 == 0 || $0 == 37 }
    static let discrete: [Bool] = (0..<size).map { $0 % 2 == 1 && $0 != 21 }
    /// Plain registers 0..<20; 20..<28 hold the typed values below; the rest are zero.
    static let holdingPlain: [UInt16] = (0..<20).map { UInt16($0 * 1000 + 1) } + [0xFFFF - 1]
    static let inputPlain: [UInt16] = (0..<20).map { UInt16(65535 - $0 * 7) }

    static let holdingFloat: Float = 1234.5678
    static let inputFloat: Float = -0.15625
    static let uint32Value: UInt32 = 0x1234_5678
    static let inputUInt32: UInt32 = 4_000_000_001

    /// Expected words for a 32-bit pattern in ABCD (high word first) and CDAB (low word first) order —
    /// computed here independently of pymodbus' encoder.
    static func abcd(_ bits: UInt32) -> [UInt16] { [UInt16(bits >> 16), UInt16(bits & 0xFFFF)] }
    static func cdab(_ bits: UInt32) -> [UInt16] { [UInt16(bits & 0xFFFF), UInt16(bits >> 16)] }

    static var map: PymodbusRegisterMap {
        PymodbusRegisterMap(
            size: size, coils: coils, discrete: discrete, holding: holdingPlain, input: inputPlain,
            typed: [
                .init(table: .holding, address: 22, type: .float32, value: Double(holdingFloat), wordOrder: .abcd),
                .init(table: .holding, address: 24, type: .float32, value: Double(holdingFloat), wordOrder: .cdab),
                .init(table: .holding, address: 26, type: .uint32, value: Double(uint32Value), wordOrder: .abcd),
                .init(table: .holding, address: 28, type: .uint32, value: Double(uint32Value), wordOrder: .cdab),
                .init(table: .input, address: 22, type: .float32, value: Double(inputFloat), wordOrder: .abcd),
                .init(table: .input, address: 24, type: .float32, value: Double(inputFloat), wordOrder: .cdab),
                .init(table: .input, address: 26, type: .uint32, value: Double(inputUInt32), wordOrder: .abcd),
                .init(table: .input, address: 28, type: .uint32, value: Double(inputUInt32), wordOrder: .cdab),
            ])
    }

    /// Registers 0..<size as the server holds them.
    static var holding: [UInt16] {
        var r = holdingPlain + [UInt16](repeating: 0, count: size - holdingPlain.count)
        r.replaceSubrange(22..<24, with: abcd(holdingFloat.bitPattern))
        r.replaceSubrange(24..<26, with: cdab(holdingFloat.bitPattern))
        r.replaceSubrange(26..<28, with: abcd(uint32Value))
        r.replaceSubrange(28..<30, with: cdab(uint32Value))
        return r
    }

    static var input: [UInt16] {
        var r = inputPlain + [UInt16](repeating: 0, count: size - inputPlain.count)
        r.replaceSubrange(22..<24, with: abcd(inputFloat.bitPattern))
        r.replaceSubrange(24..<26, with: cdab(inputFloat.bitPattern))
        r.replaceSubrange(26..<28, with: abcd(inputUInt32))
        r.replaceSubrange(28..<30, with: cdab(inputUInt32))
        return r
    }

    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: "ModbusKitTests.\(label)")
        logger.logLevel = ProcessInfo.processInfo.environment["MODBUS_TEST_DEBUG"] == nil ? .warning : .debug
        return logger
    }
}

/// Runs `body` with the ModbusError it is expected to throw; fails with a clear message if it throws nothing or
/// something else.
func expectModbusError<T>(
    _ what: String, _ body: () async throws(ModbusError) -> T
) async -> ModbusError? {
    do {
        let value = try await body()
        Issue.record("\(what): expected a ModbusError, got \(value)")
        return nil
    } catch {
        return error
    }
}

/// Polls `condition` (a state with no event to await) until it holds or `timeout` passes.
func waitFor(_ what: String, timeout: Duration = .seconds(5), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw PeerError("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

