import Logging

/// What every ModbusKit server (the simulator's side of the wire) offers, over TCP (`ModbusTCPServer`) or on a
/// serial line (`ModbusRTUServer`): one register mapping, a serving thread, a request counter and a request log.
/// The behaviour lives in one engine, `ModbusServerCore`, which only ModbusKit creates.
public protocol ModbusServer: AnyObject, Sendable {
    /// The serving engine (opaque outside ModbusKit).
    var core: ModbusServerCore { get }
}

extension ModbusServer {
    /// Opens the endpoint — `modbus_tcp_listen`, or the serial line opened exclusively (lock file, `modbus_connect`,
    /// TIOCEXCL) — and starts the serving thread. Calling it again while running does nothing; after `stop()` it
    /// throws.
    public func start() throws(ModbusError) {
        try core.start()
    }

    /// Stops the serving thread, closes every socket (or the line, releasing its lock) and frees the libmodbus
    /// context. Idempotent; also run by the servers' `deinit`. The register mapping stays readable through `update`
    /// until the server is released.
    public func stop() {
        core.stop()
    }

    /// Requests answered so far (counted just before the reply is sent, so a client that has its answer sees it).
    public var requestCount: Int { core.requests.load(ordering: .acquiring) }

    /// The requests received so far, oldest first (the last 50,000-100,000 are kept). A request is logged before its
    /// reply is sent.
    public var requestLog: [ModbusRequestRecord] { core.log.withLock { $0 } }

    /// Makes the server misbehave from now on (nil: answer normally again), for fault-injection tests and scenarios.
    public func inject(_ fault: ModbusFault?) {
        core.fault.withLock { $0 = fault }
    }

    /// The line-speed emulation replies are delayed by, if any.
    public var lineSpeed: LineSpeed? { core.lineSpeed }

    /// Runs `body` on the register mapping while holding the lock the serving thread holds while building a reply, so
    /// a request sees either all or none of the changes.
    public func update<R: Sendable, E: Error>(_ body: (inout ModbusRegisterMap) throws(E) -> R) throws(E) -> R {
        try core.mapping.withLock { (box: inout MappingBox) throws(E) -> R in
            var map = ModbusRegisterMap(box.mapping)
            return try body(&map)
        }
    }
}

/// How a simulated device misbehaves (`ModbusServer.inject`). Every request is still logged; `replyBytes` says
/// what was sent.
public enum ModbusFault: Sendable, Hashable {
    /// No answer at all: the master times out.
    case noReply
    /// A Modbus exception answer, e.g. 2 (illegal data address) or 6 (slave device busy).
    case exception(UInt8)
    /// TCP: the connection is closed on receiving the request (the master sees it reset or closed). On a serial
    /// line there is no connection to drop: no answer, like `noReply`.
    case dropConnection
    /// A frame that is not an answer to the request (an unknown function code; on RTU also a wrong CRC).
    case garbage
}

/// Sizes of a server's four tables (addresses 0..<count each; reads beyond give exception 2).
public struct ModbusRegisterCounts: Sendable, Hashable {
    public var coils: Int
    public var discreteInputs: Int
    public var holdingRegisters: Int
    public var inputRegisters: Int

    public init(coils: Int = 0, discreteInputs: Int = 0, holdingRegisters: Int = 0, inputRegisters: Int = 0) {
        self.coils = coils
        self.discreteInputs = discreteInputs
        self.holdingRegisters = holdingRegisters
        self.inputRegisters = inputRegisters
    }
}

/// One request a server received, as it came on the wire.
public struct ModbusRequestRecord: Sendable, Hashable {
    public var unit: UInt8
    public var functionCode: UInt8
    public var address: Int
    /// The quantity field (for the read function codes; a write's value field for others).
    public var count: Int
    /// When the request had arrived (monotonic clock; compare records with each other or with `ContinuousClock.now`).
    public var time: ContinuousClock.Instant
    /// The request frame as received: RTU with unit id and CRC, TCP with its 7-byte MBAP header.
    public var requestBytes: Int
    /// The reply frame as sent (same framing); 0 when the server did not answer — on a serial line, a request for
    /// another unit id (the server stays silent, as a line with no such slave does) or a broadcast.
    public var replyBytes: Int

    public var isAnswered: Bool { replyBytes > 0 }
}

/// libmodbus' server side on a serial line, for the simulator: Modbus RTU on `device` (in tests and benchmarks one
/// end of a socat pty pair), answering unit `unit` from a register mapping exactly like `ModbusTCPServer`'s. A
/// request for another unit id gets no answer — a real line with no such slave stays silent — but is logged (with
/// `replyBytes == 0`); that is how a benchmark puts a dead neighbour on the line. The line is opened exclusively,
/// like a client's (lock file + TIOCEXCL), and released by `stop()`.
///
/// `start()`, `stop()`, `update`, `requestCount` and `requestLog` are `ModbusServer`'s.
public final class ModbusRTUServer: ModbusServer {
    public typealias RegisterCounts = ModbusRegisterCounts

    public let transport: ModbusTransport
    public let unit: UInt8
    public let core: ModbusServerCore

    /// Creates the libmodbus context (`modbus_new_rtu`, `modbus_set_slave`) and the register mapping (all zero); the
    /// line is opened by `start()`.
    public convenience init(
        device: String, baud: Int = 19200, parity: ModbusParity = .none, dataBits: Int = 8, stopBits: Int = 1,
        unit: UInt8 = 1, counts: RegisterCounts, lineSpeed: LineSpeed? = nil, logger: Logger
    ) throws(ModbusError) {
        try self.init(
            transport: .rtu(device: device, baud: baud, parity: parity, dataBits: dataBits, stopBits: stopBits), unit: unit,
            counts: counts, lineSpeed: lineSpeed, lockDirectory: SerialLine.defaultLockDirectory, logger: logger)
    }

    init(
        transport: ModbusTransport, unit: UInt8, counts: RegisterCounts, lineSpeed: LineSpeed?, lockDirectory: String?,
        logger: Logger
    ) throws(ModbusError) {
        self.transport = transport
        self.unit = unit
        core = try ModbusServerCore.makeRTU(
            transport: transport, unit: unit, counts: counts, lineSpeed: lineSpeed, lockDirectory: lockDirectory, logger: logger)
    }

    deinit {
        stop()
    }

    /// "/dev/ttyUSB0@9600,8N1".
    public var endpoint: String { transport.endpoint }
}
