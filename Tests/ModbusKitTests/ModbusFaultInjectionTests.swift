import ModbusKit
import TestSupport
import Testing

/// The simulator's servers misbehave on request, and a real libmodbus client sees each misbehaviour as the error a
/// plant device would cause.
@Suite(.serialized)
struct ModbusFaultInjectionTests {
    @Test func eachFaultReachesTheClientAsItsErrorAndNormalServiceResumes() async throws {
        let server = try ModbusTCPServer(host: "127.0.0.1", port: 0, counts: .init(holdingRegisters: 10),
                                         logger: Fixture.logger("server"))
        try server.start()
        defer { server.stop() }
        server.update { $0.holdingRegisters[0] = 4242 }
        let client = try ModbusClient(name: "sim", transport: .tcp(host: "127.0.0.1", port: server.port),
                                      timeouts: ModbusTimeouts(response: .milliseconds(300)), logger: Fixture.logger("client"))
        defer { client.shutdown() }
        func read() async -> Result<[UInt16], ModbusError> {
            do { return .success(try await client.readHoldingRegisters(unit: 1, address: 0, count: 1)) } catch { return .failure(error) }
        }
        #expect(try await read().get() == [4242])

        server.inject(.exception(6))
        guard case .failure(let busy) = await read() else { Issue.record("exception 6 not seen"); return }
        #expect(busy.exception == .serverDeviceBusy)

        server.inject(.exception(2))
        guard case .failure(let illegal) = await read() else { Issue.record("exception 2 not seen"); return }
        #expect(illegal.exception == .illegalDataAddress)

        server.inject(.noReply)
        guard case .failure(let silent) = await read() else { Issue.record("no timeout"); return }
        #expect(silent.isTimeout)

        server.inject(.dropConnection)
        guard case .failure(let dropped) = await read() else { Issue.record("no drop"); return }
        #expect(dropped.isConnectionFailure)

        server.inject(.garbage)
        guard case .failure(let garbled) = await read() else { Issue.record("garbage accepted"); return }
        #expect(garbled.exception == nil)

        server.inject(nil)
        #expect(try await read().get() == [4242], "the client reconnects and the device answers again")
        // Every request is in the log, answered or not.
        let log = server.requestLog
        #expect(log.count == 7)
        #expect(log.map(\.isAnswered) == [true, true, true, false, false, true, true])
    }
}
