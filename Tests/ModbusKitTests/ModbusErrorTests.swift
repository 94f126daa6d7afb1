import Foundation
import Testing

@testable import ModbusKit

/// The parts that need no peer: error text and classification, timeout conversion, argument checks.
@Suite struct ModbusErrorTests {
    @Test(arguments: [
        (UInt8(1), ModbusExceptionCode.illegalFunction), (2, .illegalDataAddress), (3, .illegalDataValue),
        (4, .serverDeviceFailure), (5, .acknowledge), (6, .serverDeviceBusy), (8, .memoryParityError),
        (0x0A, .gatewayPathUnavailable), (0x0B, .gatewayTargetFailedToRespond),
    ])
    func exceptionErrnoMapsToItsCode(code: UInt8, expected: ModbusExceptionCode) {
        let error = ModbusError(bus: "b", endpoint: "e", call: "modbus_read_registers", errno: 112_345_678 + Int32(code))
        #expect(error.exception == expected)
        #expect(!error.isTimeout && !error.isConnectionFailure && !error.isProtocolError)
        #expect(expected.rawValue == code)
    }

    @Test func libmodbusOwnErrorsAreNotExceptions() {
        let badCRC = ModbusError(bus: "b", endpoint: "e", call: "modbus_read_registers", errno: 112_345_678 + 0x0B + 1)
        #expect(badCRC.exception == nil)
        #expect(badCRC.isProtocolError)
        #expect(badCRC.message == "Invalid CRC")
        #expect(badCRC.description == "bus b (e): modbus_read_registers failed: Invalid CRC")
    }

    @Test(arguments: [ECONNREFUSED, ECONNRESET, EPIPE, EBADF, EHOSTUNREACH, ENETUNREACH, ENOTCONN])
    func linkErrorsAreConnectionFailures(errno: Int32) {
        let error = ModbusError(bus: "b", endpoint: "e", call: "modbus_read_input_registers", errno: errno)
        #expect(error.isConnectionFailure)
        #expect(!error.isTimeout && error.exception == nil)
    }

    @Test func timeoutIsNotAConnectionFailure() {
        let error = ModbusError(
            bus: "kiln-plc", endpoint: "10.0.0.5:502", call: "modbus_read_input_registers", errno: ETIMEDOUT,
            unit: 3, address: 100, count: 2)
        #expect(error.isTimeout && !error.isConnectionFailure)
        #expect(error.description == "bus kiln-plc (10.0.0.5:502): modbus_read_input_registers(unit 3, address 100, count 2) failed: Connection timed out (errno \(ETIMEDOUT))")
    }

    @Test func exceptionCodeDescription() {
        #expect(ModbusExceptionCode.illegalDataAddress.description == "illegal data address (Modbus exception 2)")
        #expect(ModbusExceptionCode(rawValue: 0x42).description == "unknown exception (Modbus exception 66)")
    }

    @Test func endpoints() {
        #expect(ModbusTransport.tcp(host: "127.0.0.1", port: 1502).endpoint == "127.0.0.1:1502")
        #expect(ModbusTransport.tcp(host: "::1", port: 502).endpoint == "[::1]:502")
        #expect(ModbusTransport.rtu(device: "/dev/ttyUSB0", baud: 9600, parity: .even, dataBits: 8, stopBits: 1).endpoint
                == "/dev/ttyUSB0@9600,8E1")
    }

    @Test func durationsBecomeSecondsAndMicroseconds() {
        #expect(Duration.milliseconds(500).secondsAndMicroseconds == (0, 500_000))
        #expect(Duration.seconds(3).secondsAndMicroseconds == (3, 0))
        #expect(Duration.milliseconds(2_250).secondsAndMicroseconds == (2, 250_000))
        #expect(Duration.nanoseconds(1).secondsAndMicroseconds == (0, 1))
        #expect(Duration.nanoseconds(999_999_999).secondsAndMicroseconds == (1, 0))
        #expect(Duration.zero.secondsAndMicroseconds == (0, 0))
        #expect(Duration.milliseconds(-5).secondsAndMicroseconds == (0, 0))
    }

    @Test func invalidSettingsFailAtInit() {
        #expect {
            try ModbusClient(name: "b", transport: .tcp(host: "127.0.0.1", port: 502),
                             timeouts: ModbusTimeouts(response: .zero), logger: Fixture.logger("init"))
        } throws: { error in
            (error as? ModbusError)?.call == "modbus_set_response_timeout"
        }
        #expect {
            try ModbusClient(name: "b", transport: .rtu(device: "/dev/null", baud: 9600, parity: .none, dataBits: 9, stopBits: 1),
                             logger: Fixture.logger("init"))
        } throws: { error in
            (error as? ModbusError)?.call == "modbus_new_rtu"
        }
        #expect {
            try ModbusClient(name: "b", transport: .tcp(host: "127.0.0.1", port: 70000), logger: Fixture.logger("init"))
        } throws: { error in
            (error as? ModbusError)?.call == "modbus_new_tcp_pi"
        }
    }

    @Test func invalidRequestsFailBeforeTouchingTheBus() async throws {
        // Nothing listens on port 1: had the client tried to connect, the error would name modbus_connect.
        let client = try ModbusClient(name: "b", transport: .tcp(host: "127.0.0.1", port: 1), logger: Fixture.logger("args"))
        defer { client.shutdown() }
        for (address, count) in [(0, 0), (0, 126), (-1, 1), (65535, 2), (70000, 1)] {
            let error = try #require(await expectModbusError("read(\(address), \(count))") { () async throws(ModbusError) in
                try await client.readHoldingRegisters(unit: 1, address: address, count: count) })
            #expect(error.call == "modbus_read_registers" && error.errno == EINVAL)
            #expect(error.address == address && error.count == count)
        }
        let bits = try #require(await expectModbusError("2001 coils") { () async throws(ModbusError) in
            try await client.readCoils(unit: 1, address: 0, count: 2001) })
        #expect(bits.call == "modbus_read_bits" && bits.errno == EINVAL)
        #expect(!client.isConnected)
    }
}
