import Foundation
@testable import ModbusKit
import TestSupport
import Testing

/// ModbusRTUServer (libmodbus' server on a serial line) on one end of a socat pty pair, read from the other end by
/// ModbusClient and by pymodbus' serial client.
@Suite(.serialized)
struct ModbusRTUServerTests {
    static let counts = ModbusRegisterCounts(coils: 20, discreteInputs: 12, holdingRegisters: 30, inputRegisters: 10)

    struct Line {
        let dir: TemporaryDirectory
        let pty: SocatPTYPair
        let server: ModbusRTUServer

        static func start(unit: UInt8 = 5, lineSpeed: LineSpeed? = nil) async throws -> Line {
            let dir = try TemporaryDirectory()
            let pty = try await SocatPTYPair.start(in: dir)
            let server = try ModbusRTUServer(device: pty.b, unit: unit, counts: counts, lineSpeed: lineSpeed, logger: Fixture.logger("rtu-server"))
            try server.start()
            return Line(dir: dir, pty: pty, server: server)
        }

        func client(_ name: String = "line", response: Duration = .seconds(1)) throws -> ModbusClient {
            try ModbusClient(name: name, transport: .rtu(device: pty.a, baud: 19200, parity: .none, dataBits: 8, stopBits: 1),
                             timeouts: .init(response: response), logger: Fixture.logger(name))
        }

        func stop() {
            server.stop()
            pty.stop()
        }
    }

    @Test("serves all four tables to ModbusClient; updates are visible; every request is logged with its frame sizes and time")
    func servesAndLogs() async throws {
        let line = try await Line.start()
        defer { line.stop() }
        let client = try line.client()
        defer { client.shutdown() }
        line.server.update { map in
            for i in 0..<map.coils.count { map.coils[i] = i % 3 == 0 }
            map.discreteInputs[11] = true
            for i in 0..<map.holdingRegisters.count { map.holdingRegisters[i] = UInt16(1000 + i) }
            map.inputRegisters[0..<2] = [0x4049, 0x0FDB]
        }
        let before = ContinuousClock.now
        #expect(try await client.readCoils(unit: 5, address: 0, count: 20) == (0..<20).map { $0 % 3 == 0 })
        #expect(try await client.readDiscreteInputs(unit: 5, address: 4, count: 8) == [false, false, false, false, false, false, false, true])
        #expect(try await client.readHoldingRegisters(unit: 5, address: 3, count: 10) == (3..<13).map { UInt16(1000 + $0) })
        #expect(try await client.readInputRegisters(unit: 5, address: 0, count: 2) == [0x4049, 0x0FDB])
        let error = try #require(await expectModbusError("beyond") { () async throws(ModbusError) in
            try await client.readHoldingRegisters(unit: 5, address: 25, count: 6) })
        #expect(error.exception == .illegalDataAddress)
        let after = ContinuousClock.now
        #expect(line.server.requestCount == 5)

        let log = line.server.requestLog
        #expect(log.map { "\($0.unit):\($0.functionCode)@\($0.address)+\($0.count)" } == ["5:1@0+20", "5:2@4+8", "5:3@3+10", "5:4@0+2", "5:3@25+6"])
        // RTU frames: a read request is unit + 5 PDU bytes + CRC = 8; a reply is unit + fc + byte count + data + CRC;
        // an exception reply is unit + fc|0x80 + code + CRC = 5.
        #expect(log.map(\.requestBytes) == [8, 8, 8, 8, 8])
        #expect(log.map(\.replyBytes) == [5 + 3, 5 + 1, 5 + 20, 5 + 4, 5])
        #expect(log.allSatisfy { $0.time >= before && $0.time <= after && $0.isAnswered })
        #expect(zip(log, log.dropFirst()).allSatisfy { $0.time < $1.time })
    }

    @Test("pymodbus' serial client reads the registers (a peer nobody here wrote)")
    func thirdPartyClient() async throws {
        let line = try await Line.start()
        defer { line.stop() }
        line.server.update { map in
            map.holdingRegisters[0..<3] = [10, 20, 30]
            map.coils[2] = true
        }
        let script = """
            import sys
            from pymodbus.client import ModbusSerialClient
            c = ModbusSerialClient(sys.argv[1], baudrate=19200, timeout=2)
            assert c.connect(), "connect failed"
            r = c.read_holding_registers(0, count=3, device_id=5)
            b = c.read_coils(0, count=4, device_id=5)
            print("holding", r.registers, "coils", b.bits[:4], flush=True)
            c.close()
            """
        let peer = try PeerProcess(name: "pymodbus-serial-client", executable: RepoPaths.venvPython,
                                   arguments: ["-c", script, line.pty.a], logDirectory: line.dir.path)
        #expect(try await peer.waitForExit() == 0, "\(peer.log())")
        #expect(peer.log().contains("holding [10, 20, 30] coils [False, False, True, False]"), "\(peer.log())")
        #expect(line.server.requestCount == 2)
    }

    @Test("a request for another unit id gets no answer (a silent line), is logged as unanswered, and the line stays in step")
    func otherUnitsAreSilent() async throws {
        let line = try await Line.start()
        defer { line.stop() }
        let client = try line.client(response: .milliseconds(200))
        defer { client.shutdown() }
        let error = try #require(await expectModbusError("unit 9") { () async throws(ModbusError) in
            try await client.readHoldingRegisters(unit: 9, address: 0, count: 2) })
        #expect(error.isTimeout, "\(error)")
        #expect(try await client.readHoldingRegisters(unit: 5, address: 0, count: 2) == [0, 0])
        let log = line.server.requestLog
        #expect(log.map(\.unit) == [9, 5])
        #expect(log.map(\.isAnswered) == [false, true])
        #expect(log[0].requestBytes == 8 && log[0].replyBytes == 0)
        #expect(line.server.requestCount == 1)
    }

    @Test("the server holds its line exclusively: a second server on the same device is refused until the first stops")
    func serverLineIsExclusive() async throws {
        let line = try await Line.start()
        defer { line.stop() }
        let second = try ModbusRTUServer(device: line.pty.b, unit: 5, counts: Self.counts, logger: Fixture.logger("second"))
        defer { second.stop() }
        let error = try #require(await expectModbusError("second server") { () throws(ModbusError) in try second.start() })
        #expect(error.errno == EBUSY && error.call == "modbus_connect")
        #expect(error.message.contains("is in use by PID \(getpid())"), "\(error)")
        line.server.stop()
        let third = try ModbusRTUServer(device: line.pty.b, unit: 5, counts: Self.counts, logger: Fixture.logger("third"))
        defer { third.stop() }
        try third.start()
        let client = try line.client()
        defer { client.shutdown() }
        #expect(try await client.readCoils(unit: 5, address: 0, count: 1) == [false])
        let restart = try #require(await expectModbusError("restart") { () throws(ModbusError) in try line.server.start() })
        #expect(restart.call == "modbus_connect" && restart.errno == ECANCELED)
    }

    @Test("with line-speed emulation a served reply takes at least its wire time, RTU and TCP alike", arguments: ["rtu", "tcp"])
    func lineSpeedDelaysReplies(transport: String) async throws {
        let speed = LineSpeed(baud: 9600)
        // Ten holding registers: request 8 bytes, reply 5 + 20 = 25 bytes as RTU frames:
        // (8 + 25) × 11 bits + 2 × 3.5 × 11 bits = 440 bits = 45.83 ms at 9600 baud for the transaction; the reply
        // is complete one t3.5 (38.5 bits, 4.01 ms) before its end: 401.5 bits = 41.82 ms.
        #expect(speed.transactionTime(requestBytes: 8, replyBytes: 25) == .nanoseconds(45_833_334))
        let expected = Duration.nanoseconds(41_822_917)
        #expect(speed.replyDelay(requestBytes: 8, replyBytes: 25) == expected)
        let line: Line?
        let client: ModbusClient
        let tcp: ModbusTCPServer?
        if transport == "rtu" {
            line = try await Line.start(lineSpeed: speed)
            tcp = nil
            client = try line!.client()
        } else {
            line = nil
            tcp = try ModbusTCPServer(host: "127.0.0.1", port: 0, counts: Self.counts, lineSpeed: speed, logger: Fixture.logger("tcp"))
            try tcp!.start()
            client = try ModbusClient(name: "gateway", transport: .tcp(host: "127.0.0.1", port: tcp!.port),
                                      timeouts: .init(response: .seconds(1)), logger: Fixture.logger("gateway"))
        }
        defer {
            client.shutdown()
            line?.stop()
            tcp?.stop()
        }
        let server: any ModbusServer = line?.server ?? tcp!
        try await client.connect()
        for _ in 0..<3 {
            let start = ContinuousClock.now
            _ = try await client.readHoldingRegisters(unit: 5, address: 0, count: 10)
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= expected, "a reply came after \(elapsed), before its wire time \(expected)")
            #expect(elapsed < expected + .milliseconds(500), "\(elapsed)")
        }
        let record = try #require(server.requestLog.last)
        let core = server.core
        #expect(core.rtuBytes(record.requestBytes) == 8 && core.rtuBytes(record.replyBytes) == 25,
                "\(transport) frames \(record.requestBytes)/\(record.replyBytes) are RTU frames of 8/25")
    }
}

@Suite("Line-speed arithmetic")
struct LineSpeedTests {
    // Expected values worked out by hand: bits = bytes × 11; t3.5 = 38.5 bits up to 19200 baud, else 1.75 ms.
    @Test("transaction time = (request + reply) × 11 bits / baud + 2 × t3.5", arguments: [
        (9600, 8, 9, 27_500_000),      // (17 × 11 + 77) bits = 264 bits / 9600 = 27.5 ms
        (9600, 8, 25, 45_833_334),     // 440 bits / 9600 = 45.8333… ms, rounded up to the ns
        (19200, 8, 9, 13_750_000),     // 264 bits / 19200: still 3.5-character gaps at 19200
        (38400, 8, 9, 8_369_792),      // 187 bits / 38400 = 4.869791… ms + 2 × 1.75 ms
        (115200, 8, 255, 28_612_848),  // 2893 bits / 115200 = 25.112847… ms + 3.5 ms
    ])
    func transactionTime(baud: Int, request: Int, reply: Int, nanoseconds: Int64) {
        #expect(LineSpeed(baud: baud).transactionTime(requestBytes: request, replyBytes: reply) == .nanoseconds(nanoseconds))
    }

    @Test func partsAddUp() {
        let s = LineSpeed(baud: 9600)
        #expect(s.characterTime == .nanoseconds(1_145_834))  // 11 / 9600 s
        #expect(s.frameGap == .nanoseconds(4_010_417))       // 38.5 / 9600 s
        #expect(s.frameTime(bytes: 8) == .nanoseconds(9_166_667))
        #expect(LineSpeed(baud: 19201).frameGap == .microseconds(1750))
        #expect(LineSpeed(baud: 9600, bitsPerCharacter: 10).transactionTime(requestBytes: 8, replyBytes: 9) == .nanoseconds(25_000_000))
        #expect(LineSpeed.rtuFrameBytes(pduBytes: 5) == 8)
    }
}
