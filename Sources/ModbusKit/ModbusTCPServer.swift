internal import CModbus
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A view of a `ModbusTCPServer`'s register mapping, handed to `ModbusTCPServer.update` while the server holds the
/// mapping lock. It is `~Copyable` (and so are its tables), so it cannot be kept or copied out of the closure: the
/// memory it points to is only safe to touch under that lock.
///
/// Indexes are Modbus addresses starting at 0; an index outside a table traps (a programming error).
public struct ModbusRegisterMap: ~Copyable {
    /// Coils or discrete inputs.
    public struct Bits: ~Copyable {
        let base: UnsafeMutablePointer<UInt8>?
        public let count: Int

        public subscript(index: Int) -> Bool {
            get {
                precondition(index >= 0 && index < count, "bit address \(index) outside 0..<\(count)")
                return base![index] != 0
            }
            nonmutating set {
                precondition(index >= 0 && index < count, "bit address \(index) outside 0..<\(count)")
                base![index] = newValue ? 1 : 0
            }
        }

        public subscript(range: Range<Int>) -> [Bool] {
            get {
                precondition(range.lowerBound >= 0 && range.upperBound <= count, "bit range \(range) outside 0..<\(count)")
                return range.map { base![$0] != 0 }
            }
            nonmutating set {
                precondition(
                    range.lowerBound >= 0 && range.upperBound <= count && newValue.count == range.count,
                    "cannot set \(newValue.count) bits at \(range) in 0..<\(count)")
                for (offset, value) in newValue.enumerated() { base![range.lowerBound + offset] = value ? 1 : 0 }
            }
        }
    }

    /// Holding or input registers.
    public struct Registers: ~Copyable {
        let base: UnsafeMutablePointer<UInt16>?
        public let count: Int

        public subscript(index: Int) -> UInt16 {
            get {
                precondition(index >= 0 && index < count, "register address \(index) outside 0..<\(count)")
                return base![index]
            }
            nonmutating set {
                precondition(index >= 0 && index < count, "register address \(index) outside 0..<\(count)")
                base![index] = newValue
            }
        }

        /// Several consecutive registers, e.g. the two words of a 32-bit value.
        public subscript(range: Range<Int>) -> [UInt16] {
            get {
                precondition(range.lowerBound >= 0 && range.upperBound <= count, "register range \(range) outside 0..<\(count)")
                return Array(UnsafeBufferPointer(start: base! + range.lowerBound, count: range.count))
            }
            nonmutating set {
                precondition(
                    range.lowerBound >= 0 && range.upperBound <= count && newValue.count == range.count,
                    "cannot set \(newValue.count) registers at \(range) in 0..<\(count)")
                for (offset, value) in newValue.enumerated() { base![range.lowerBound + offset] = value }
            }
        }
    }

    public let coils: Bits
    public let discreteInputs: Bits
    public let holdingRegisters: Registers
    public let inputRegisters: Registers

    init(_ mapping: UnsafeMutablePointer<modbus_mapping_t>) {
        let m = mapping.pointee
        coils = Bits(base: m.tab_bits, count: Int(m.nb_bits))
        discreteInputs = Bits(base: m.tab_input_bits, count: Int(m.nb_input_bits))
        holdingRegisters = Registers(base: m.tab_registers, count: Int(m.nb_registers))
        inputRegisters = Registers(base: m.tab_input_registers, count: Int(m.nb_input_registers))
    }

    /// Present so the map cannot be taken apart (partially consumed) to smuggle a table out of `update`.
    deinit {}
}

/// libmodbus' server side, for the simulator: Modbus TCP on `host:port`, any number of clients (a poll loop) on one
/// dedicated thread. Requests are answered by `modbus_reply` from one register mapping (so client writes change it —
/// this is the simulator, not a plant device); any unit id is answered.
public final class ModbusTCPServer: Sendable {
    public struct RegisterCounts: Sendable, Hashable {
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

    public let host: String
    private let core: ServerCore

    /// Creates the libmodbus context (`modbus_new_tcp`) and the register mapping (`modbus_mapping_new`, all zero);
    /// nothing listens until `start()`. `host` must be an IPv4 address ("127.0.0.1", "0.0.0.0" for all); `port` 0
    /// picks a free port at `start()`.
    public init(host: String, port: Int, counts: RegisterCounts, logger: Logger) throws(ModbusError) {
        self.host = host
        core = try ServerCore.make(host: host, port: port, counts: counts, logger: logger)
    }

    deinit {
        stop()
    }

    /// `modbus_tcp_listen`, then starts the serving thread. Calling it again while running does nothing.
    public func start() throws(ModbusError) {
        try core.start()
    }

    /// The bound port (after `start()`; before, the port asked for).
    public var port: Int { core.boundPort.load(ordering: .acquiring) }

    /// Requests answered so far (counted just before the reply is sent, so a client that has its answer sees it).
    public var requestCount: Int { core.requests.load(ordering: .acquiring) }

    /// The requests received so far, oldest first (the last 50,000-100,000 are kept).
    public var requestLog: [ModbusRequestRecord] { core.log.withLock { $0 } }

    /// Runs `body` on the register mapping while holding the lock the serving thread holds while replying, so a
    /// request sees either all or none of the changes.
    public func update<R: Sendable, E: Error>(_ body: (inout ModbusRegisterMap) throws(E) -> R) throws(E) -> R {
        try core.mapping.withLock { (box: inout MappingBox) throws(E) -> R in
            var map = ModbusRegisterMap(box.mapping)
            return try body(&map)
        }
    }

    /// Stops the serving thread, closes all sockets and frees the libmodbus context. Idempotent; also from `deinit`.
    /// The register mapping stays readable through `update` until the server is released.
    public func stop() {
        core.stop()
    }
}

/// The register mapping pointer, only ever used inside `ServerCore.mapping`'s lock.
struct MappingBox: ~Copyable {
    let mapping: UnsafeMutablePointer<modbus_mapping_t>
    deinit { LibModbus.mappingFree(mapping) }
}

/// Owns the server's `modbus_t*`, mapping, listening socket and thread.
///
/// `@unchecked Sendable`: `ctx` (and the libmodbus state behind it, e.g. its current socket) is used by `make`
/// before the object is shared, by the serving job while it runs on `executor`'s thread, and by `stop()` only after
/// that thread has been joined; `lifecycle` and `mapping` are `Mutex`es, the counters are `Atomic`s.
final class ServerCore: @unchecked Sendable {
    enum Lifecycle {
        case idle
        case running(executor: BlockingExecutor, wakeWrite: Int32)
        case stopped
    }

    let ctx: OpaquePointer
    let mapping: Mutex<MappingBox>
    let lifecycle = Mutex(Lifecycle.idle)
    let requests = Atomic<Int>(0)
    /// The most recent requests received (bounded), for tests and the simulator's request log.
    let log = Mutex<[ModbusRequestRecord]>([])
    static let logLimit = 100_000
    let boundPort: Atomic<Int>
    let host: String
    let logger: Logger
    private let contextFreed = Atomic<Bool>(false)

    private init(ctx: OpaquePointer, mapping: consuming sending MappingBox, host: String, port: Int, logger: Logger) {
        self.ctx = ctx
        self.mapping = Mutex(mapping)
        self.host = host
        self.boundPort = Atomic(port)
        self.logger = logger
    }

    var endpoint: String { "\(host):\(boundPort.load(ordering: .relaxed))" }

    func error(_ failure: LibModbus.Failure, message: String? = nil) -> ModbusError {
        ModbusError(bus: "server", endpoint: endpoint, call: failure.call, errno: failure.errno, message: message)
    }

    static func make(host: String, port: Int, counts: ModbusTCPServer.RegisterCounts, logger: Logger) throws(ModbusError)
        -> ServerCore
    {
        let endpoint = "\(host):\(port)"
        func fail(_ call: String, _ errno: Int32, _ message: String? = nil) -> ModbusError {
            ModbusError(bus: "server", endpoint: endpoint, call: call, errno: errno, message: message)
        }
        var probe = in_addr()
        guard inet_pton(AF_INET, host, &probe) == 1 else {
            throw fail("modbus_new_tcp", EINVAL, "the server host must be an IPv4 address, not '\(host)'")
        }
        guard (0...65535).contains(port) else { throw fail("modbus_new_tcp", EINVAL, "invalid TCP port \(port)") }
        let tables = [counts.coils, counts.discreteInputs, counts.holdingRegisters, counts.inputRegisters]
        guard tables.allSatisfy({ (0...65536).contains($0) }) else {
            throw fail("modbus_mapping_new", EINVAL, "register counts must be 0...65536, got \(tables)")
        }
        let ctx: OpaquePointer
        switch LibModbus.newTCP(ip: host, port: Int32(port)) {
        case .success(let c): ctx = c
        case .failure(let f): throw fail(f.call, f.errno)
        }
        let mapping: UnsafeMutablePointer<modbus_mapping_t>
        switch LibModbus.mappingNew(
            bits: Int32(counts.coils), inputBits: Int32(counts.discreteInputs),
            registers: Int32(counts.holdingRegisters), inputRegisters: Int32(counts.inputRegisters))
        {
        case .success(let m): mapping = m
        case .failure(let f):
            LibModbus.free(ctx)
            throw fail(f.call, f.errno)
        }
        var logger = logger
        logger[metadataKey: "modbus.server"] = .string(endpoint)
        return ServerCore(ctx: ctx, mapping: MappingBox(mapping: mapping), host: host, port: port, logger: logger)
    }

    deinit {
        freeContext()
    }

    private func freeContext() {
        if !contextFreed.exchange(true, ordering: .acquiringAndReleasing) { LibModbus.free(ctx) }
    }

    func start() throws(ModbusError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(ModbusError) in
            switch state {
            case .running: return
            case .stopped:
                throw ModbusError(
                    bus: "server", endpoint: endpoint, call: "modbus_tcp_listen", errno: ECANCELED,
                    message: "the server was stopped")
            case .idle: break
            }
            let listenFD: Int32
            switch LibModbus.tcpListen(ctx, backlog: 32) {
            case .success(let fd): listenFD = fd
            case .failure(let f): throw error(f)
            }
            switch LibModbus.localPort(listenFD) {
            case .success(let p): boundPort.store(Int(p), ordering: .releasing)
            case .failure(let f):
                LibModbus.closeFD(listenFD)
                throw error(f)
            }
            let wake: (read: Int32, write: Int32)
            switch LibModbus.pipe() {
            case .success(let fds): wake = fds
            case .failure(let f):
                LibModbus.closeFD(listenFD)
                throw error(f)
            }
            let executor = BlockingExecutor(name: "modbus-srv:\(boundPort.load(ordering: .relaxed))")
            executor.execute { [self] in serve(listenFD: listenFD, wakeRead: wake.read) }
            state = .running(executor: executor, wakeWrite: wake.write)
            logger.debug("modbus server listening", metadata: ["modbus.port": "\(boundPort.load(ordering: .relaxed))"])
        }
    }

    func stop() {
        let previous = lifecycle.withLock { state -> Lifecycle in
            defer { state = .stopped }
            return state
        }
        switch previous {
        case .stopped:
            return
        case .idle:
            freeContext()
        case .running(let executor, let wakeWrite):
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
            executor.shutdown(final: {})  // joins the thread: the serve job has returned and closed its sockets
            LibModbus.closeFD(wakeWrite)
            freeContext()
            logger.debug("modbus server stopped", metadata: ["modbus.requests": "\(requests.load(ordering: .relaxed))"])
        }
    }

    /// The serving loop (on the executor's thread): poll the listening socket, the wake pipe and every client;
    /// accept new clients; for each readable client `modbus_receive` one request and `modbus_reply` under the
    /// mapping lock; drop clients that closed or sent garbage. Returns (closing every socket it owns) when the wake
    /// pipe becomes readable.
    private func serve(listenFD: Int32, wakeRead: Int32) {
        var clients: [Int32] = []
        var request = [UInt8](repeating: 0, count: LibModbus.tcpMaxADULength)
        defer {
            for fd in clients { LibModbus.closeFD(fd) }
            LibModbus.closeFD(listenFD)
            LibModbus.closeFD(wakeRead)
            _ = LibModbus.setSocket(ctx, -1)
        }
        let readable = Int16(POLLIN | POLLHUP | POLLERR)
        while true {
            var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            fds += clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let rc = poll(&fds, nfds_t(fds.count), -1)
            if rc == -1 {
                let e = errno
                if e == EINTR { continue }
                logger.error("modbus server poll failed, stopping", metadata: ["errno": "\(e)"])
                return
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents & readable != 0 {
                switch LibModbus.accept(listenFD) {
                case .success(let fd):
                    clients.append(fd)
                    logger.debug("modbus server accepted a client", metadata: ["modbus.clients": "\(clients.count)"])
                case .failure(let f):
                    logger.debug("modbus server accept failed", metadata: ["errno": "\(f.errno)"])
                }
            }
            var dropped: [Int32] = []
            for client in fds.dropFirst(2) where client.revents & readable != 0 {
                _ = LibModbus.setSocket(ctx, client.fd)
                let received = request.withUnsafeMutableBufferPointer { LibModbus.receive(ctx, $0.baseAddress!) }
                switch received {
                case .success(let length) where length > 0:
                    // MBAP header (7 bytes, unit id last), then the PDU: function code, address, count/value.
                    if length >= 12 {
                        let record = ModbusRequestRecord(
                            unit: request[6], functionCode: request[7],
                            address: Int(request[8]) << 8 | Int(request[9]), count: Int(request[10]) << 8 | Int(request[11]))
                        log.withLock { l in
                            if l.count >= Self.logLimit { l.removeFirst(l.count / 2) }
                            l.append(record)
                        }
                    }
                    let replied = mapping.withLock { (box: inout MappingBox) -> Bool in
                        requests.add(1, ordering: .releasing)
                        let result = request.withUnsafeBufferPointer { LibModbus.reply(ctx, $0.baseAddress!, length, box.mapping) }
                        if case .failure = result {
                            requests.subtract(1, ordering: .releasing)
                            return false
                        }
                        return true
                    }
                    if !replied { dropped.append(client.fd) }
                case .success:
                    continue  // a request libmodbus chose to ignore
                case .failure:
                    dropped.append(client.fd)  // closed by the client, or not Modbus
                }
            }
            if !dropped.isEmpty {
                for fd in dropped { LibModbus.closeFD(fd) }
                clients.removeAll { dropped.contains($0) }
                logger.debug("modbus server dropped clients", metadata: ["modbus.clients": "\(clients.count)"])
            }
        }
    }
}

/// One request a `ModbusTCPServer` received, as it came on the wire.
public struct ModbusRequestRecord: Sendable, Hashable {
    public var unit: UInt8
    public var functionCode: UInt8
    public var address: Int
    /// The quantity field (for the read function codes; a write's value field for others).
    public var count: Int
}
