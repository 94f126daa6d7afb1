import Foundation
import ModbusKit
import TestSupport
import Testing

/// ModbusClient over Modbus RTU: libmodbus on one end of a socat pty pair, pymodbus 3.16 on the other.
@Suite(.serialized)
struct ModbusClientRTUTests {
    static let baud = 19200

    /// A pty pair with pymodbus serving the fixture map on end `b`, and a client on end `a`. 8N1 only: Linux ptys
    /// refuse a parity setting (pyserial's tcsetattr fails with EINVAL), and parity means nothing on a pty anyway.
    struct Bench {
        let dir: TemporaryDirectory
        let pty: SocatPTYPair
        let server: PymodbusServer
        let client: ModbusClient

        static func start(timeouts: ModbusTimeouts = .init(response: .seconds(1))) async throws -> Bench {
            let dir = try TemporaryDirectory()
            let pty = try await SocatPTYPair.start(in: dir)
            let server: PymodbusServer
            do {
                server = try await PymodbusServer.startRTU(
                    in: dir, device: pty.b, baud: baud, parity: "N", map: Fixture.map, unit: Fixture.unit)
            } catch {
                pty.stop()
                throw error
            }
            let client = try ModbusClient(
                name: "feeder-line",
                transport: .rtu(device: pty.a, baud: baud, parity: .none, dataBits: 8, stopBits: 1),
                timeouts: timeouts, logger: Fixture.logger("rtu"))
            return Bench(dir: dir, pty: pty, server: server, client: client)
        }

        func stop() {
            client.shutdown()
            server.stop()
            pty.stop()
        }
    }

    @Test func readsEveryTable() async throws {
        let bench = try await Bench.start()
        defer { bench.stop() }
        let client = bench.client
        #expect(client.endpoint == "\(bench.pty.a)@19200,8N1")

        #expect(try await client.readCoils(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.coils)
        #expect(client.isConnected)
        #expect(try await client.readDiscreteInputs(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.discrete)
        #expect(try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.holding)
        #expect(try await client.readInputRegisters(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.input)
        #expect(try await client.readCoils(unit: Fixture.unit, address: 7, count: 9) == Array(Fixture.coils[7..<16]))
        #expect(try await client.readInputRegisters(unit: Fixture.unit, address: 35, count: 5) == Array(Fixture.input[35..<40]))
    }

    @Test func thirtyTwoBitValuesKeepTheirWordOrder() async throws {
        let bench = try await Bench.start()
        defer { bench.stop() }
        let holding = try await bench.client.readHoldingRegisters(unit: Fixture.unit, address: 22, count: 8)
        #expect(Array(holding[0..<2]) == Fixture.abcd(Fixture.holdingFloat.bitPattern))
        #expect(Array(holding[2..<4]) == Fixture.cdab(Fixture.holdingFloat.bitPattern))
        #expect(Array(holding[4..<6]) == [0x1234, 0x5678])
        #expect(Array(holding[6..<8]) == [0x5678, 0x1234])
        let input = try await bench.client.readInputRegisters(unit: Fixture.unit, address: 22, count: 8)
        #expect(Array(input[0..<2]) == Fixture.abcd(Fixture.inputFloat.bitPattern))
        #expect(Array(input[6..<8]) == Fixture.cdab(Fixture.inputUInt32))
    }

    @Test func exceptionResponseBecomesATypedError() async throws {
        let bench = try await Bench.start()
        defer { bench.stop() }
        let error = try #require(await expectModbusError("beyond the map") { () async throws(ModbusError) in
            try await bench.client.readInputRegisters(unit: Fixture.unit, address: 39, count: 2) })
        #expect(error.exception == .illegalDataAddress)
        #expect(error.call == "modbus_read_input_registers")
        #expect(error.description == "bus feeder-line (\(bench.pty.a)@19200,8N1): modbus_read_input_registers(unit 7, address 39, count 2) failed: Illegal data address (Modbus exception 2)")
        let bits = try #require(await expectModbusError("coils beyond the map") { () async throws(ModbusError) in
            try await bench.client.readCoils(unit: Fixture.unit, address: 40, count: 1) })
        #expect(bits.exception == .illegalDataAddress && bits.call == "modbus_read_bits")
        // The line is still in step: the next read is answered correctly.
        #expect(try await bench.client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 2) == Array(Fixture.holding[0..<2]))
    }

    @Test func missingSerialDeviceIsAConnectionFailure() async throws {
        let dir = try TemporaryDirectory()
        let device = dir.file("ttyUSB-unplugged")
        let client = try ModbusClient(
            name: "feeder-line", transport: .rtu(device: device, baud: 9600, parity: .even, dataBits: 8, stopBits: 1),
            logger: Fixture.logger("rtu"))
        defer { client.shutdown() }
        let error = try #require(await expectModbusError("open") { () async throws(ModbusError) in
            try await client.readHoldingRegisters(unit: 1, address: 0, count: 1) })
        #expect(error.isConnectionFailure)
        #expect(error.call == "modbus_connect")
        #expect(error.errno == ENOENT)
        #expect(error.description == "bus feeder-line (\(device)@9600,8E1): modbus_connect failed: No such file or directory (errno \(ENOENT))")
    }
}
