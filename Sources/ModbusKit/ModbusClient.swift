import Foundation
import Logging

/// A read-only Modbus client for one bus (one TCP endpoint or one serial line).
///
/// Owns one `modbus_t*` and ONE dedicated OS thread (not the Swift cooperative pool) on which every blocking
/// libmodbus call runs, serially, in the order the requests were made. Many tasks may share one client; their
/// requests queue up and run one at a time — that is what a Modbus bus allows anyway.
///
/// **Reconnection.** Reads connect on demand: if the client is not connected (never connected, closed, or a previous
/// request hit a connection failure), a read first calls `modbus_connect` itself, and a failed connect is thrown
/// with `call == "modbus_connect"` and `isConnectionFailure == true`. After a connection-type failure (refused, reset,
/// unreachable, closed by the peer ...) the client closes its side, so the *next* read reconnects; a read never
/// retries by itself. Over TCP a response timeout also closes the connection (a late answer must not be taken for
/// the next request's); over RTU it flushes the line instead. `connect()` is only needed to connect early.
///
/// **Read-only.** This type never calls, and ModbusKit never references, any libmodbus write function.
///
/// **Cancellation.** A request that has started runs to completion (bounded by the timeouts); Swift task
/// cancellation does not interrupt it.
public final class ModbusClient: Sendable {
    /// The bus name used in errors and logs.
    public let name: String
    public let transport: ModbusTransport
    public let timeouts: ModbusTimeouts
    /// "127.0.0.1:1502" or "/dev/ttyUSB0@9600,8E1".
    public var endpoint: String { transport.endpoint }

    private let connection: ModbusConnection
    let executor: BlockingExecutor

    /// Creates the libmodbus context (`modbus_new_tcp_pi` / `modbus_new_rtu`) and sets the timeouts; does not
    /// connect. Invalid settings throw here; a host name that does not resolve is reported by the first connect.
    ///
    /// **Serial lines are opened exclusively.** An RTU client takes a UUCP-style lock file (`/run/lock/LCK..ttyUSB0`,
    /// holding its PID) before it opens the device and `ioctl(TIOCEXCL)` right after, and gives both up when the
    /// connection closes. While another owner — this process or another, kilntally or a tool such as minicom — holds
    /// the line, every connect fails with `errno == EBUSY` and a message naming the device and the owner's PID and
    /// command. A lock left by a process that no longer runs is taken over.
    public convenience init(
        name: String, transport: ModbusTransport, timeouts: ModbusTimeouts = .init(), logger: Logger
    ) throws(ModbusError) {
        try self.init(name: name, transport: transport, timeouts: timeouts, lockDirectory: SerialLine.defaultLockDirectory, logger: logger)
    }

    /// As the public initializer, with the lock-file directory chosen (tests use a temporary one).
    init(
        name: String, transport: ModbusTransport, timeouts: ModbusTimeouts = .init(), lockDirectory: String?, logger: Logger
    ) throws(ModbusError) {
        self.name = name
        self.transport = transport
        self.timeouts = timeouts
        connection = try ModbusConnection.make(
            bus: name, transport: transport, timeouts: timeouts, lockDirectory: lockDirectory, logger: logger)
        executor = BlockingExecutor(name: "modbus:\(name)")
        connection.logger.debug("modbus client created", metadata: ["modbus.thread": "\(executor.name)"])
    }

    deinit {
        shutdown()
    }

    /// Whether the client currently holds an open connection (as of its last request).
    public var isConnected: Bool { connection.connected.load(ordering: .acquiring) }

    /// Connects now if not connected (reads also do this on demand).
    public func connect() async throws(ModbusError) {
        try await perform { connection throws(ModbusError) in try connection.connectIfNeeded() }
    }

    /// Closes the connection (if open); the next read reconnects.
    public func close() async {
        _ = try? await perform { connection in connection.disconnect() }
    }

    /// Function 0x01.
    public func readCoils(unit: UInt8, address: Int, count: Int) async throws(ModbusError) -> [Bool] {
        try await perform { connection throws(ModbusError) in
            try connection.readBits(.coils, unit: unit, address: address, count: count)
        }
    }

    /// Function 0x02.
    public func readDiscreteInputs(unit: UInt8, address: Int, count: Int) async throws(ModbusError) -> [Bool] {
        try await perform { connection throws(ModbusError) in
            try connection.readBits(.discreteInputs, unit: unit, address: address, count: count)
        }
    }

    /// Function 0x03.
    public func readHoldingRegisters(unit: UInt8, address: Int, count: Int) async throws(ModbusError) -> [UInt16] {
        try await perform { connection throws(ModbusError) in
            try connection.readRegisters(.holdingRegisters, unit: unit, address: address, count: count)
        }
    }

    /// Function 0x04.
    public func readInputRegisters(unit: UInt8, address: Int, count: Int) async throws(ModbusError) -> [UInt16] {
        try await perform { connection throws(ModbusError) in
            try connection.readRegisters(.inputRegisters, unit: unit, address: address, count: count)
        }
    }

    /// Closes the connection, frees the context and ends the thread. Requests still queued fail with
    /// `call == "shutdown"`; the request in progress (if any) finishes first, so this blocks for at most one response
    /// timeout. Idempotent; also called from `deinit`.
    public func shutdown() {
        let connection = self.connection
        if executor.shutdown(final: { connection.release() }) {
            connection.logger.debug("modbus client shut down")
        }
    }

    /// Debug fault hook (tests): the client's thread blocks for an hour, as it would in a hung driver; every
    /// request after this waits behind it. Never called unless a test asks for it.
    public func debugHang() {
        executor.execute { Thread.sleep(forTimeInterval: 3600) }
    }

    /// Runs `body` on the client's thread with its connection.
    private func perform<T: Sendable>(
        _ body: @escaping @Sendable (ModbusConnection) throws(ModbusError) -> T
    ) async throws(ModbusError) -> T {
        let connection = self.connection
        let result = await executor.run(
            { Result { () throws(ModbusError) -> T in try body(connection) } },
            cancelled: { connection.shutdownError() })
        return try result.get()
    }
}
