import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import ModbusKit

/// ModbusClient over Modbus TCP against pymodbus 3.16 (Tests/peers/modbus_server.py).
@Suite(.serialized)
struct ModbusClientTCPTests {
    func client(port: Int, name: String = "kiln-plc", timeouts: ModbusTimeouts = .init(response: .seconds(2)))
        throws -> ModbusClient
    {
        try ModbusClient(name: name, transport: .tcp(host: "127.0.0.1", port: port), timeouts: timeouts,
                         logger: Fixture.logger(name))
    }

    @Test func readsEveryTable() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit)
        defer { server.stop() }
        let client = try client(port: server.port)
        defer { client.shutdown() }

        #expect(!client.isConnected)
        try await client.connect()
        #expect(client.isConnected)
        #expect(try await client.readCoils(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.coils)
        #expect(try await client.readDiscreteInputs(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.discrete)
        #expect(try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.holding)
        #expect(try await client.readInputRegisters(unit: Fixture.unit, address: 0, count: Fixture.size) == Fixture.input)
        // Unaligned slices, including the last address of each table.
        #expect(try await client.readCoils(unit: Fixture.unit, address: 5, count: 33) == Array(Fixture.coils[5..<38]))
        #expect(try await client.readDiscreteInputs(unit: Fixture.unit, address: 39, count: 1) == [Fixture.discrete[39]])
        #expect(try await client.readHoldingRegisters(unit: Fixture.unit, address: 19, count: 2) == Array(Fixture.holding[19..<21]))
        #expect(try await client.readInputRegisters(unit: Fixture.unit, address: 39, count: 1) == [Fixture.input[39]])
    }

    @Test func thirtyTwoBitValuesKeepTheirWordOrder() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit)
        defer { server.stop() }
        let client = try client(port: server.port)
        defer { client.shutdown() }

        let holding = try await client.readHoldingRegisters(unit: Fixture.unit, address: 22, count: 8)
        #expect(Array(holding[0..<2]) == Fixture.abcd(Fixture.holdingFloat.bitPattern))  // float32 ABCD
        #expect(Array(holding[2..<4]) == Fixture.cdab(Fixture.holdingFloat.bitPattern))  // float32 CDAB
        #expect(Array(holding[4..<6]) == [0x1234, 0x5678])  // uint32 ABCD
        #expect(Array(holding[6..<8]) == [0x5678, 0x1234])  // uint32 CDAB
        let input = try await client.readInputRegisters(unit: Fixture.unit, address: 22, count: 8)
        #expect(Array(input[0..<2]) == Fixture.abcd(Fixture.inputFloat.bitPattern))
        #expect(Array(input[2..<4]) == Fixture.cdab(Fixture.inputFloat.bitPattern))
        #expect(Array(input[4..<6]) == Fixture.abcd(Fixture.inputUInt32))
        #expect(Array(input[6..<8]) == Fixture.cdab(Fixture.inputUInt32))
    }

    @Test func exceptionResponseBecomesATypedError() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit)
        defer { server.stop() }
        let client = try client(port: server.port)
        defer { client.shutdown() }

        let cases: [(String, () async throws(ModbusError) -> Any)] = [
            ("modbus_read_registers", { () async throws(ModbusError) -> Any in
                try await client.readHoldingRegisters(unit: Fixture.unit, address: 38, count: 4) }),
            ("modbus_read_input_registers", { () async throws(ModbusError) -> Any in
                try await client.readInputRegisters(unit: Fixture.unit, address: 38, count: 4) }),
            ("modbus_read_bits", { () async throws(ModbusError) -> Any in
                try await client.readCoils(unit: Fixture.unit, address: 38, count: 4) }),
            ("modbus_read_input_bits", { () async throws(ModbusError) -> Any in
                try await client.readDiscreteInputs(unit: Fixture.unit, address: 38, count: 4) }),
        ]
        for (call, read) in cases {
            let error = try #require(await expectModbusError(call, read))
            #expect(error.exception == .illegalDataAddress)
            #expect(error.call == call)
            #expect(error.unit == Fixture.unit && error.address == 38 && error.count == 4)
            #expect(!error.isTimeout && !error.isConnectionFailure)
            #expect(error.errno == 112_345_678 + 2)
            #expect(error.description == "bus kiln-plc (127.0.0.1:\(server.port)): \(call)(unit 7, address 38, count 4) failed: Illegal data address (Modbus exception 2)")
        }
        // An exception is an answer: the connection stays up and the next read works.
        #expect(client.isConnected)
        #expect(try await client.readHoldingRegisters(unit: Fixture.unit, address: 36, count: 4) == Array(Fixture.holding[36..<40]))
    }

    @Test func connectionRefusedIsAConnectionFailure() async throws {
        let port = try FreePort.allocate()  // nothing listens here
        let client = try client(port: port, name: "kiln-plc")
        defer { client.shutdown() }

        let connectError = try #require(await expectModbusError("connect") { () async throws(ModbusError) in try await client.connect() })
        #expect(connectError.isConnectionFailure)
        #expect(connectError.errno == ECONNREFUSED)
        #expect(connectError.call == "modbus_connect")
        #expect(!connectError.isTimeout && !connectError.isNameResolutionFailure && connectError.exception == nil)
        #expect(connectError.description == "bus kiln-plc (127.0.0.1:\(port)): modbus_connect failed: Connection refused (errno \(ECONNREFUSED))")

        // A read connects on demand and reports the same failure.
        let readError = try #require(await expectModbusError("read") { () async throws(ModbusError) in
            try await client.readInputRegisters(unit: 1, address: 0, count: 1) })
        #expect(readError.isConnectionFailure && readError.call == "modbus_connect")
        #expect(!client.isConnected)
    }

    @Test func unresolvableHostNameIsReportedAsSuch() async throws {
        let client = try ModbusClient(
            name: "scale-1", transport: .tcp(host: "no-such-host.invalid", port: 502), logger: Fixture.logger("dns"))
        defer { client.shutdown() }
        let error = try #require(await expectModbusError("connect") { () async throws(ModbusError) in try await client.connect() })
        #expect(error.isNameResolutionFailure)
        #expect(error.isConnectionFailure)
        #expect(error.call == "modbus_connect")
        #expect(error.description.hasPrefix("bus scale-1 (no-such-host.invalid:502): modbus_connect failed: cannot resolve host name 'no-such-host.invalid': "))
    }

    @Test func slowAnswerIsATimeoutAndClosesTheConnection() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit, delayMs: 1500)
        defer { server.stop() }
        let client = try client(port: server.port, timeouts: ModbusTimeouts(response: .milliseconds(200)))
        defer { client.shutdown() }

        let error = try #require(await expectModbusError("slow read") { () async throws(ModbusError) in
            try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 2) })
        #expect(error.isTimeout)
        #expect(error.errno == ETIMEDOUT)
        #expect(!error.isConnectionFailure && error.exception == nil)
        #expect(error.call == "modbus_read_registers")
        #expect(error.description.contains("modbus_read_registers(unit 7, address 0, count 2) failed: Connection timed out"))
        // Over TCP a timeout closes the connection, so the late answer cannot be taken for the next response.
        #expect(!client.isConnected)
    }

    @Test func reconnectsByItselfAfterTheServerRestarts() async throws {
        let dir = try TemporaryDirectory()
        var server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit, name: "first")
        let port = server.port
        let client = try client(port: port)
        defer { client.shutdown() }
        #expect(try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 3) == Array(Fixture.holding[0..<3]))
        #expect(client.isConnected)

        server.stop()
        let down = try #require(await expectModbusError("read while down") { () async throws(ModbusError) in
            try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 3) })
        #expect(down.isConnectionFailure, "\(down)")
        #expect(!client.isConnected)
        // Still down: the next read tries to reconnect and is refused.
        let refused = try #require(await expectModbusError("read while down") { () async throws(ModbusError) in
            try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 3) })
        #expect(refused.isConnectionFailure && refused.call == "modbus_connect")

        server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit, port: port, name: "second")
        defer { server.stop() }
        #expect(try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 3) == Array(Fixture.holding[0..<3]))
        #expect(client.isConnected)
    }

    @Test func closeThenReadReconnects() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit)
        defer { server.stop() }
        let client = try client(port: server.port)
        defer { client.shutdown() }
        #expect(try await client.readCoils(unit: Fixture.unit, address: 0, count: 4) == Array(Fixture.coils[0..<4]))
        await client.close()
        #expect(!client.isConnected)
        #expect(try await client.readCoils(unit: Fixture.unit, address: 0, count: 4) == Array(Fixture.coils[0..<4]))
        #expect(client.isConnected)
    }

    @Test func shutdownCancelsQueuedRequests() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit, delayMs: 300)
        defer { server.stop() }
        let client = try client(port: server.port)

        // The first read connects, then waits ~300 ms for its answer; the two behind it are queued.
        let first = Task { try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 1) }
        try await waitFor("the first read to connect") { client.isConnected }
        let queued = (0..<2).map { _ in
            Task { () async -> ModbusError? in
                await expectModbusError("queued read") { () async throws(ModbusError) in
                    try await client.readHoldingRegisters(unit: Fixture.unit, address: 1, count: 1) }
            }
        }
        client.shutdown()  // waits for the read in progress, cancels the rest
        #expect(try await first.value == [Fixture.holding[0]])
        for task in queued {
            let error = try #require(await task.value)
            #expect(error.call == "shutdown" && error.errno == ECANCELED)
        }
        let after = try #require(await expectModbusError("read after shutdown") { () async throws(ModbusError) in
            try await client.readCoils(unit: Fixture.unit, address: 0, count: 1) })
        #expect(after.call == "shutdown")
        #expect(!client.isConnected)
        client.shutdown()  // idempotent
    }

    @Test func concurrentReadsAreSerializedPerClient() async throws {
        let dir = try TemporaryDirectory()
        let serverA = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit, name: "a")
        defer { serverA.stop() }
        let serverB = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit, name: "b")
        defer { serverB.stop() }
        let a = try client(port: serverA.port, name: "bus-a")
        defer { a.shutdown() }
        let b = try client(port: serverB.port, name: "bus-b")
        defer { b.shutdown() }

        // 2 clients × 60 reads in flight at once, of all four kinds and many ranges; every answer must be the one
        // for its own request (one connection per client, so interleaved requests would mix answers up).
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in [a, b] {
                for i in 0..<60 {
                    let address = i % 30, count = 1 + i % 10
                    group.addTask {
                        switch i % 4 {
                        case 0:
                            let got = try await client.readHoldingRegisters(unit: Fixture.unit, address: address, count: count)
                            #expect(got == Array(Fixture.holding[address..<address + count]))
                        case 1:
                            let got = try await client.readInputRegisters(unit: Fixture.unit, address: address, count: count)
                            #expect(got == Array(Fixture.input[address..<address + count]))
                        case 2:
                            let got = try await client.readCoils(unit: Fixture.unit, address: address, count: count)
                            #expect(got == Array(Fixture.coils[address..<address + count]))
                        default:
                            let got = try await client.readDiscreteInputs(unit: Fixture.unit, address: address, count: count)
                            #expect(got == Array(Fixture.discrete[address..<address + count]))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func blockingCallsRunOnTheClientsOwnThread() async throws {
        let dir = try TemporaryDirectory()
        let server = try await PymodbusServer.startTCP(in: dir, map: Fixture.map, unit: Fixture.unit, delayMs: 600)
        defer { server.stop() }
        // More clients blocked in libmodbus at once than the cooperative pool has threads.
        let width = ProcessInfo.processInfo.activeProcessorCount * 2 + 2
        let clients = try (0..<width).map { try client(port: server.port, name: "slow-\($0)") }
        defer { clients.forEach { $0.shutdown() } }

        // Each libmodbus call runs on its client's dedicated thread, named after the bus.
        let threadName = await clients[0].executor.run({ () -> Result<String, ModbusError> in
            .success(Thread.current.name ?? "")
        }, cancelled: { fatalError("executor is running") })
        #expect(try threadName.get() == "modbus:slow-0")

        // While every client waits ~600 ms for its answer, the cooperative pool still runs other work: a task
        // started after all the reads finishes before any of them.
        final class Order: Sendable { let events = Mutex<[String]>([]) }
        let order = Order()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients {
                group.addTask {
                    _ = try await client.readHoldingRegisters(unit: Fixture.unit, address: 0, count: 1)
                    order.events.withLock { $0.append("read") }
                }
            }
            try await waitFor("every client to be connected") { clients.allSatisfy(\.isConnected) }
            group.addTask {
                let sum = (1...1000).reduce(0, +)
                order.events.withLock { $0.append("pool:\(sum)") }
            }
            try await group.waitForAll()
        }
        let seen = order.events.withLock { $0 }
        #expect(seen.first == "pool:500500", "\(seen)")
        #expect(seen.filter { $0 == "read" }.count == width)
    }
}
