import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The four Modbus data tables a client can read.
enum ModbusTable: Sendable {
    case coils, discreteInputs, holdingRegisters, inputRegisters

    /// The libmodbus function that reads this table (the `call` of its errors).
    var call: String {
        switch self {
        case .coils: "modbus_read_bits"
        case .discreteInputs: "modbus_read_input_bits"
        case .holdingRegisters: "modbus_read_registers"
        case .inputRegisters: "modbus_read_input_registers"
        }
    }

    var maxCount: Int {
        switch self {
        case .coils, .discreteInputs: LibModbus.maxReadBits
        case .holdingRegisters, .inputRegisters: LibModbus.maxReadRegisters
        }
    }
}

/// Owns one `modbus_t*` for a client: created (with its timeouts) by `make`, which frees it on every failure path;
/// closed and freed by `release()` (the executor's last job) or, failing that, by `deinit`.
///
/// `@unchecked Sendable`: `ctx` and `isOpen` are read and written only on the owning `BlockingExecutor`'s thread —
/// every method below except `make`, `init`, `deinit` and `connected` is called only from a job that executor runs,
/// and it runs jobs one at a time. `make`/`init` run before any job can reference the object, and `deinit` runs when
/// no job references it any more (the executor's thread has ended or never saw it). `connected` is an `Atomic`.
final class ModbusConnection: @unchecked Sendable {
    let bus: String
    let transport: ModbusTransport
    let endpoint: String
    let logger: Logger
    /// Mirror of `isOpen` readable from any thread (`ModbusClient.isConnected`).
    let connected = Atomic<Bool>(false)

    /// Where an RTU line's lock file goes (`SerialLine`); tests point it at a temporary directory.
    let lockDirectory: String?

    private var ctx: OpaquePointer?
    private var isOpen = false
    /// The serial line's lock while an RTU connection is open.
    private var claim: SerialLine.Claim?

    private init(bus: String, transport: ModbusTransport, ctx: OpaquePointer, lockDirectory: String?, logger: Logger) {
        self.bus = bus
        self.transport = transport
        self.endpoint = transport.endpoint
        self.ctx = ctx
        self.lockDirectory = lockDirectory
        self.logger = logger
    }

    /// modbus_new_tcp_pi / modbus_new_rtu, then the timeouts. Frees the context if any step fails.
    static func make(
        bus: String, transport: ModbusTransport, timeouts: ModbusTimeouts,
        lockDirectory: String? = SerialLine.defaultLockDirectory, logger: Logger
    ) throws(ModbusError) -> ModbusConnection {
        let endpoint = transport.endpoint
        func fail(_ failure: LibModbus.Failure, _ message: String? = nil) -> ModbusError {
            ModbusError(bus: bus, endpoint: endpoint, call: failure.call, errno: failure.errno, message: message ?? failure.message)
        }
        let created: Result<OpaquePointer, LibModbus.Failure>
        switch transport {
        case .tcp(let host, let port):
            guard (0...65535).contains(port) else {
                throw fail(.init(call: "modbus_new_tcp_pi", errno: EINVAL), "invalid TCP port \(port)")
            }
            created = LibModbus.newTCPProtocolIndependent(node: host, service: String(port))
        case .rtu(let device, let baud, let parity, let dataBits, let stopBits):
            created = LibModbus.newRTU(device: device, baud: baud, parity: parity, dataBits: dataBits, stopBits: stopBits)
        }
        let ctx: OpaquePointer
        switch created {
        case .success(let c): ctx = c
        case .failure(let failure): throw fail(failure)
        }
        if case .failure(let failure) = LibModbus.setResponseTimeout(ctx, timeouts.response) {
            LibModbus.free(ctx)
            throw fail(failure, "invalid response timeout \(timeouts.response) (must be > 0)")
        }
        if let byte = timeouts.byte, case .failure(let failure) = LibModbus.setByteTimeout(ctx, byte) {
            LibModbus.free(ctx)
            throw fail(failure, "invalid byte timeout \(byte)")
        }
        var logger = logger
        logger[metadataKey: "modbus.bus"] = .string(bus)
        logger[metadataKey: "modbus.endpoint"] = .string(endpoint)
        return ModbusConnection(bus: bus, transport: transport, ctx: ctx, lockDirectory: lockDirectory, logger: logger)
    }

    deinit {
        if let ctx {
            if isOpen { closeLink(ctx) }
            LibModbus.free(ctx)
        }
    }

    /// modbus_connect; for RTU the exclusive open (lock file, then connect, then TIOCEXCL).
    private func openLink(_ ctx: OpaquePointer) -> Result<Void, SerialLine.Failure> {
        guard case .rtu(let device, _, _, _, _) = transport else {
            return LibModbus.connect(ctx).map { _ in () }.mapError { SerialLine.Failure(errno: $0.errno, call: $0.call) }
        }
        return SerialLine.open(ctx, device: device, lockDirectory: lockDirectory, logger: logger).map { claim = $0 }
    }

    private func closeLink(_ ctx: OpaquePointer) {
        if let claim {
            SerialLine.close(ctx, claim)
            self.claim = nil
        } else {
            LibModbus.close(ctx)
        }
    }

    // MARK: executor-thread only

    func error(
        _ failure: LibModbus.Failure, message: String? = nil, unit: UInt8? = nil, address: Int? = nil,
        count: Int? = nil, nameResolution: Bool = false
    ) -> ModbusError {
        ModbusError(
            bus: bus, endpoint: endpoint, call: failure.call, errno: failure.errno, message: message, unit: unit,
            address: address, count: count, isNameResolutionFailure: nameResolution)
    }

    /// The error every request gets once the client is shut down.
    func shutdownError() -> ModbusError {
        ModbusError(bus: bus, endpoint: endpoint, call: "shutdown", errno: ECANCELED, message: "the client was shut down")
    }

    private func liveContext() throws(ModbusError) -> OpaquePointer {
        guard let ctx else { throw shutdownError() }
        return ctx
    }

    /// modbus_connect unless already connected.
    func connectIfNeeded() throws(ModbusError) {
        let ctx = try liveContext()
        guard !isOpen else { return }
        switch openLink(ctx) {
        case .success:
            isOpen = true
            connected.store(true, ordering: .releasing)
            logger.debug("modbus connected")
        case .failure(let failure):
            var error = self.error(.init(call: failure.call, errno: failure.errno), message: failure.message)
            // libmodbus reports a failed getaddrinfo as ECONNREFUSED; tell the two apart for the operator.
            if case .tcp(let host, let port) = transport, failure.errno == ECONNREFUSED,
                let reason = LibModbus.resolutionError(host: host, port: port)
            {
                error = self.error(
                    .init(call: failure.call, errno: failure.errno), message: "cannot resolve host name '\(host)': \(reason)",
                    nameResolution: true)
            }
            logger.debug("modbus connect failed", metadata: ["modbus.error": "\(error)"])
            throw error
        }
    }

    /// modbus_close if connected; the next request reconnects.
    func disconnect() {
        guard let ctx, isOpen else { return }
        closeLink(ctx)
        isOpen = false
        connected.store(false, ordering: .releasing)
        logger.debug("modbus connection closed")
    }

    /// Closes and frees the context; afterwards every request fails with `shutdownError()`.
    func release() {
        disconnect()
        if let ctx {
            LibModbus.free(ctx)
            self.ctx = nil
        }
    }

    /// Reconnects if needed, selects the unit, and runs one read; on failure decides what the link needs:
    /// - a connection failure closes it (the next request reconnects);
    /// - over TCP, a timeout or a garbled answer also closes it, so a late answer can never be taken for the
    ///   response to the next request (libmodbus would report every following read as "invalid data");
    /// - over RTU, a timeout or a garbled answer flushes the line instead.
    private func read<Element>(
        _ table: ModbusTable, unit: UInt8, address: Int, count: Int, zero: Element,
        _ call: (OpaquePointer, Int32, Int32, UnsafeMutablePointer<Element>) -> Result<Int32, LibModbus.Failure>
    ) throws(ModbusError) -> [Element] {
        guard (0...65535).contains(address), (1...table.maxCount).contains(count), address + count <= 65536 else {
            throw error(
                .init(call: table.call, errno: EINVAL),
                message: "invalid request: address must be 0...65535 and count 1...\(table.maxCount) within it",
                unit: unit, address: address, count: count)
        }
        try connectIfNeeded()
        let ctx = try liveContext()
        if case .failure(let failure) = LibModbus.setSlave(ctx, unit) {
            throw error(failure, unit: unit, address: address, count: count)
        }
        var values = [Element](repeating: zero, count: count)
        let result = values.withUnsafeMutableBufferPointer { call(ctx, Int32(address), Int32(count), $0.baseAddress!) }
        switch result {
        case .success(let n) where n == count:
            return values
        case .success(let n):
            throw error(
                .init(call: table.call, errno: LibModbus.enobase + 0x0B + 2),
                message: "short response: \(n) of \(count) values", unit: unit, address: address, count: count)
        case .failure(let failure):
            let error = self.error(failure, unit: unit, address: address, count: count)
            if error.isConnectionFailure || (transport.isTCP && (error.isTimeout || error.isProtocolError)) {
                logger.debug("modbus request failed, closing the connection", metadata: ["modbus.error": "\(error)"])
                disconnect()
            } else if error.isTimeout || error.isProtocolError {
                logger.debug("modbus request failed, flushing the line", metadata: ["modbus.error": "\(error)"])
                _ = LibModbus.flush(ctx)
            }
            throw error
        }
    }

    func readBits(_ table: ModbusTable, unit: UInt8, address: Int, count: Int) throws(ModbusError) -> [Bool] {
        let raw = try read(table, unit: unit, address: address, count: count, zero: UInt8(0)) { ctx, a, n, dest in
            table == .coils ? LibModbus.readBits(ctx, a, n, dest) : LibModbus.readInputBits(ctx, a, n, dest)
        }
        return raw.map { $0 != 0 }
    }

    func readRegisters(_ table: ModbusTable, unit: UInt8, address: Int, count: Int) throws(ModbusError) -> [UInt16] {
        try read(table, unit: unit, address: address, count: count, zero: UInt16(0)) { ctx, a, n, dest in
            table == .holdingRegisters
                ? LibModbus.readRegisters(ctx, a, n, dest) : LibModbus.readInputRegisters(ctx, a, n, dest)
        }
    }
}
