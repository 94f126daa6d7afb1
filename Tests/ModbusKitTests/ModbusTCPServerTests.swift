import Foundation
import ModbusKit
import TestSupport
import Testing

/// ModbusTCPServer (libmodbus' server side, used by the simulator), read by ModbusClient and by pymodbus' client.
@Suite(.serialized)
struct ModbusTCPServerTests {
    static let counts = ModbusTCPServer.RegisterCounts(coils: 20, discreteInputs: 12, holdingRegisters: 30, inputRegisters: 10)

    func makeServer() throws -> ModbusTCPServer {
        let server = try ModbusTCPServer(host: "127.0.0.1", port: 0, counts: Self.counts, logger: Fixture.logger("server"))
        try server.start()
        return server
    }

    func client(_ server: ModbusTCPServer, name: String = "sim") throws -> ModbusClient {
        try ModbusClient(
            name: name, transport: .tcp(host: "127.0.0.1", port: server.port),
            timeouts: ModbusTimeouts(response: .seconds(2)), logger: Fixture.logger(name))
    }

    @Test func servesAllFourTablesAndUpdatesAreVisibleToTheNextRead() async throws {
        let server = try makeServer()
        defer { server.stop() }
        #expect(server.port > 0)
        let client = try client(server)
        defer { client.shutdown() }

        // A fresh mapping is all zero.
        #expect(try await client.readHoldingRegisters(unit: 1, address: 0, count: 30) == [UInt16](repeating: 0, count: 30))
        #expect(server.requestCount == 1)

        server.update { map in
            for i in 0..<map.coils.count { map.coils[i] = i % 4 == 1 }
            for i in 0..<map.discreteInputs.count { map.discreteInputs[i] = i >= 6 }
            for i in 0..<map.holdingRegisters.count { map.holdingRegisters[i] = UInt16(i * 11) }
            map.inputRegisters[0..<4] = [0x4049, 0x0FDB, 0xFFFF, 0x0001]
            map.inputRegisters[9] = 0xBEEF
        }
        #expect(try await client.readCoils(unit: 1, address: 0, count: 20) == (0..<20).map { $0 % 4 == 1 })
        #expect(try await client.readDiscreteInputs(unit: 2, address: 0, count: 12) == (0..<12).map { $0 >= 6 })
        #expect(try await client.readHoldingRegisters(unit: 3, address: 5, count: 25) == (5..<30).map { UInt16($0 * 11) })
        #expect(try await client.readInputRegisters(unit: 4, address: 0, count: 10) == [0x4049, 0x0FDB, 0xFFFF, 0x0001, 0, 0, 0, 0, 0, 0xBEEF])

        server.update { $0.holdingRegisters[7] = 4242 }
        #expect(try await client.readHoldingRegisters(unit: 1, address: 7, count: 1) == [4242])
        let current = server.update { map in map.holdingRegisters[6..<8] }
        #expect(current == [66, 4242])
        #expect(server.requestCount == 6)

        // Beyond the mapping: libmodbus answers exception 2.
        let error = try #require(await expectModbusError("beyond") { () async throws(ModbusError) in
            try await client.readInputRegisters(unit: 1, address: 8, count: 3) })
        #expect(error.exception == .illegalDataAddress)
        #expect(server.requestCount == 7)
    }

    @Test func answersAThirdPartyClientAndManyClientsAtOnce() async throws {
        let server = try makeServer()
        defer { server.stop() }
        server.update { map in
            map.holdingRegisters[0..<3] = [10, 20, 30]
            map.coils[2] = true
        }

        // pymodbus' client as a peer nobody here wrote.
        let dir = try TemporaryDirectory()
        let script = """
            from pymodbus.client import ModbusTcpClient
            c = ModbusTcpClient("127.0.0.1", port=\(server.port))
            assert c.connect(), "connect failed"
            r = c.read_holding_registers(0, count=3, device_id=5)
            b = c.read_coils(0, count=4, device_id=5)
            print("holding", r.registers, "coils", b.bits[:4], flush=True)
            c.close()
            """
        let peer = try PeerProcess(
            name: "pymodbus-client", executable: RepoPaths.venvPython, arguments: ["-c", script], logDirectory: dir.path)
        #expect(try await peer.waitForExit() == 0, "\(peer.log())")
        #expect(peer.log().contains("holding [10, 20, 30] coils [False, False, True, False]"), "\(peer.log())")

        let clients = try (0..<4).map { try client(server, name: "sim-\($0)") }
        defer { clients.forEach { $0.shutdown() } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients {
                for _ in 0..<10 {
                    group.addTask {
                        let got = try await client.readHoldingRegisters(unit: 1, address: 0, count: 3)
                        #expect(got == [10, 20, 30])
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(server.requestCount == 2 + 40)
    }

    @Test func stopClosesConnectionsAndIsIdempotent() async throws {
        let server = try makeServer()
        let client = try client(server)
        defer { client.shutdown() }
        #expect(try await client.readCoils(unit: 1, address: 0, count: 1) == [false])

        server.stop()
        let error = try #require(await expectModbusError("after stop") { () async throws(ModbusError) in
            try await client.readCoils(unit: 1, address: 0, count: 1) })
        #expect(error.isConnectionFailure, "\(error)")
        server.stop()
        // Updates after stop are harmless (the mapping lives as long as the server object).
        server.update { $0.coils[0] = true }
        let restart = try #require(await expectModbusError("restart") { () throws(ModbusError) in try server.start() })
        #expect(restart.call == "modbus_tcp_listen")
    }

    @Test func portInUseIsReported() async throws {
        let first = try makeServer()
        defer { first.stop() }
        let second = try ModbusTCPServer(host: "127.0.0.1", port: first.port, counts: Self.counts, logger: Fixture.logger("server"))
        defer { second.stop() }
        let error = try #require(await expectModbusError("listen") { () throws(ModbusError) in try second.start() })
        #expect(error.call == "modbus_tcp_listen")
        #expect(error.errno == EADDRINUSE)
    }

    @Test func hostMustBeAnIPv4Address() throws {
        #expect(throws: ModbusError.self) {
            try ModbusTCPServer(host: "localhost", port: 0, counts: Self.counts, logger: Fixture.logger("server"))
        }
    }
}
