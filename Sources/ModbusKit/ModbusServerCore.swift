internal import CModbus
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The register mapping pointer, only ever used inside `ModbusServerCore.mapping`'s lock.
struct MappingBox: ~Copyable {
    let mapping: UnsafeMutablePointer<modbus_mapping_t>
    deinit { LibModbus.mappingFree(mapping) }
}

/// The engine behind every `ModbusServer`: owns the server's `modbus_t*`, register mapping, request log and serving
/// thread, over TCP (a listening socket and any number of clients) or RTU (one serial line). Both transports share
/// one serving loop and one way of answering: `modbus_receive`, then `modbus_reply` under the mapping lock into a
/// socket pair (so the reply is known before it is sent), log, wait out the line-speed time if any, send.
///
/// `@unchecked Sendable`: `ctx` (and the libmodbus state behind it, e.g. its current socket) is used by `make…`
/// before the object is shared, by the serving job while it runs on the executor's thread, by `start()` under the
/// `lifecycle` lock before that job is queued (listen / open the line), and by `stop()` only after the thread has
/// been joined; `lifecycle`, `mapping` and `log` are `Mutex`es, the counters are `Atomic`s, the rest is immutable.
public final class ModbusServerCore: @unchecked Sendable {
    enum Link: Sendable {
        case tcp(host: String)
        case rtu(transport: ModbusTransport, lockDirectory: String?)
    }

    /// Descriptors the serving job uses and `stop()` closes once the job has returned.
    struct Pipes: Sendable {
        var wakeRead: Int32, wakeWrite: Int32
        var captureRead: Int32, captureWrite: Int32
        var all: [Int32] { [wakeRead, wakeWrite, captureRead, captureWrite] }
    }

    enum Lifecycle {
        case idle
        case running(executor: BlockingExecutor, pipes: Pipes)
        case stopped
    }

    /// What the serving loop reads requests from.
    enum Source: Sendable {
        case listener(Int32)
        case line(Int32, SerialLine.Claim)
    }

    let ctx: OpaquePointer
    let link: Link
    let mapping: Mutex<MappingBox>
    let lifecycle = Mutex(Lifecycle.idle)
    let requests = Atomic<Int>(0)
    /// The most recent requests received (bounded), for tests and the simulator's request log.
    let log = Mutex<[ModbusRequestRecord]>([])
    static let logLimit = 100_000
    /// The misbehaviour injected, if any (`ModbusServer.inject`).
    let fault = Mutex<ModbusFault?>(nil)
    let boundPort: Atomic<Int>
    let lineSpeed: LineSpeed?
    let logger: Logger
    /// Bytes before the function code (7 MBAP for TCP, 1 unit id for RTU) and after the PDU (the RTU CRC).
    let headerLength: Int
    let checksumLength: Int
    private let contextFreed = Atomic<Bool>(false)

    private init(
        ctx: OpaquePointer, mapping: consuming sending MappingBox, link: Link, port: Int, lineSpeed: LineSpeed?, logger: Logger
    ) {
        self.ctx = ctx
        self.mapping = Mutex(mapping)
        self.link = link
        self.boundPort = Atomic(port)
        self.lineSpeed = lineSpeed
        self.logger = logger
        headerLength = LibModbus.headerLength(ctx)
        if case .rtu = link { checksumLength = 2 } else { checksumLength = 0 }
    }

    deinit {
        freeContext()
    }

    var endpoint: String {
        switch link {
        case .tcp(let host): "\(host):\(boundPort.load(ordering: .relaxed))"
        case .rtu(let transport, _): transport.endpoint
        }
    }

    /// The call whose failure `start()` reports.
    private var openCall: String {
        if case .tcp = link { "modbus_tcp_listen" } else { "modbus_connect" }
    }

    func error(_ failure: LibModbus.Failure) -> ModbusError {
        ModbusError(bus: "server", endpoint: endpoint, call: failure.call, errno: failure.errno, message: failure.message)
    }

    // MARK: creation

    static func makeTCP(
        host: String, port: Int, counts: ModbusRegisterCounts, lineSpeed: LineSpeed?, logger: Logger
    ) throws(ModbusError) -> ModbusServerCore {
        var probe = in_addr()
        return try make(link: .tcp(host: host), endpoint: "\(host):\(port)", port: port, counts: counts, lineSpeed: lineSpeed,
                        logger: logger) {
            guard inet_pton(AF_INET, host, &probe) == 1 else {
                return .failure(.init(call: "modbus_new_tcp", errno: EINVAL, message: "the server host must be an IPv4 address, not '\(host)'"))
            }
            guard (0...65535).contains(port) else {
                return .failure(.init(call: "modbus_new_tcp", errno: EINVAL, message: "invalid TCP port \(port)"))
            }
            return LibModbus.newTCP(ip: host, port: Int32(port))
        }
    }

    static func makeRTU(
        transport: ModbusTransport, unit: UInt8, counts: ModbusRegisterCounts, lineSpeed: LineSpeed?, lockDirectory: String?,
        logger: Logger
    ) throws(ModbusError) -> ModbusServerCore {
        guard case .rtu(let device, let baud, let parity, let dataBits, let stopBits) = transport else {
            preconditionFailure("makeRTU needs an RTU transport")
        }
        return try make(link: .rtu(transport: transport, lockDirectory: lockDirectory), endpoint: transport.endpoint, port: 0,
                        counts: counts, lineSpeed: lineSpeed, logger: logger) {
            let created = LibModbus.newRTU(device: device, baud: baud, parity: parity, dataBits: dataBits, stopBits: stopBits)
            guard case .success(let ctx) = created else { return created }
            // The unit this server answers; libmodbus' RTU receive drops frames for any other (returns 0).
            if case .failure(let f) = LibModbus.setSlave(ctx, unit) {
                LibModbus.free(ctx)
                return .failure(f)
            }
            return .success(ctx)
        }
    }

    private static func make(
        link: Link, endpoint: String, port: Int, counts: ModbusRegisterCounts, lineSpeed: LineSpeed?, logger: Logger,
        context: () -> Result<OpaquePointer, LibModbus.Failure>
    ) throws(ModbusError) -> ModbusServerCore {
        func fail(_ f: LibModbus.Failure) -> ModbusError {
            ModbusError(bus: "server", endpoint: endpoint, call: f.call, errno: f.errno, message: f.message)
        }
        let tables = [counts.coils, counts.discreteInputs, counts.holdingRegisters, counts.inputRegisters]
        guard tables.allSatisfy({ (0...65536).contains($0) }) else {
            throw fail(.init(call: "modbus_mapping_new", errno: EINVAL, message: "register counts must be 0...65536, got \(tables)"))
        }
        let ctx: OpaquePointer
        switch context() {
        case .success(let c): ctx = c
        case .failure(let f): throw fail(f)
        }
        let mapping: UnsafeMutablePointer<modbus_mapping_t>
        switch LibModbus.mappingNew(
            bits: Int32(counts.coils), inputBits: Int32(counts.discreteInputs),
            registers: Int32(counts.holdingRegisters), inputRegisters: Int32(counts.inputRegisters))
        {
        case .success(let m): mapping = m
        case .failure(let f):
            LibModbus.free(ctx)
            throw fail(f)
        }
        var logger = logger
        logger[metadataKey: "modbus.server"] = .string(endpoint)
        return ModbusServerCore(
            ctx: ctx, mapping: MappingBox(mapping: mapping), link: link, port: port, lineSpeed: lineSpeed, logger: logger)
    }

    private func freeContext() {
        if !contextFreed.exchange(true, ordering: .acquiringAndReleasing) { LibModbus.free(ctx) }
    }

    // MARK: lifecycle

    func start() throws(ModbusError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(ModbusError) in
            switch state {
            case .running: return
            case .stopped:
                throw ModbusError(bus: "server", endpoint: endpoint, call: openCall, errno: ECANCELED, message: "the server was stopped")
            case .idle: break
            }
            let source = try open()
            let wake: (read: Int32, write: Int32)
            switch LibModbus.pipe() {
            case .success(let fds): wake = fds
            case .failure(let f):
                close(source)
                throw error(f)
            }
            let capture: (Int32, Int32)
            switch LibModbus.socketPair() {
            case .success(let fds): capture = fds
            case .failure(let f):
                [wake.read, wake.write].forEach(LibModbus.closeFD)
                close(source)
                throw error(f)
            }
            let pipes = Pipes(wakeRead: wake.read, wakeWrite: wake.write, captureRead: capture.0, captureWrite: capture.1)
            let executor = BlockingExecutor(name: "modbus-srv:\(threadSuffix)")
            executor.execute { [self] in serve(source, pipes: pipes) }
            state = .running(executor: executor, pipes: pipes)
            logger.debug("modbus server serving", metadata: ["modbus.endpoint": "\(endpoint)"])
        }
    }

    /// The port, or the device's last path component ("ttyUSB0", "3" for /dev/pts/3).
    private var threadSuffix: String {
        switch link {
        case .tcp: String(boundPort.load(ordering: .relaxed))
        case .rtu(let transport, _): String(transport.endpoint.split(separator: "@").first?.split(separator: "/").last ?? "rtu")
        }
    }

    /// TCP: `modbus_tcp_listen` and the bound port. RTU: the serial line, opened exclusively.
    private func open() throws(ModbusError) -> Source {
        switch link {
        case .tcp:
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
            return .listener(listenFD)
        case .rtu(let transport, let lockDirectory):
            guard case .rtu(let device, _, _, _, _) = transport else { preconditionFailure("RTU link without an RTU transport") }
            switch SerialLine.open(ctx, device: device, lockDirectory: lockDirectory, logger: logger) {
            case .success(let claim): return .line(LibModbus.socket(ctx), claim)
            case .failure(let f): throw error(.init(call: f.call, errno: f.errno, message: f.message))
            }
        }
    }

    private func close(_ source: Source) {
        switch source {
        case .listener(let fd):
            LibModbus.closeFD(fd)
            _ = LibModbus.setSocket(ctx, -1)
        case .line(let fd, let claim):
            _ = LibModbus.setSocket(ctx, fd)
            SerialLine.close(ctx, claim)
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
        case .running(let executor, let pipes):
            var byte: UInt8 = 1
            _ = write(pipes.wakeWrite, &byte, 1)
            executor.shutdown(final: {})  // joins the thread: the serve job has returned and closed its source
            pipes.all.forEach(LibModbus.closeFD)
            freeContext()
            logger.debug("modbus server stopped", metadata: ["modbus.requests": "\(requests.load(ordering: .relaxed))"])
        }
    }

    // MARK: serving (on the executor's thread)

    /// Polls the wake pipe, the listening socket (TCP) and every client — or the one serial line — and answers each
    /// request. Drops TCP clients that closed or sent garbage; on the line, flushes after garbage and gives up only
    /// when the line hangs up. Returns (closing its source) when the wake pipe becomes readable.
    private func serve(_ source: Source, pipes: Pipes) {
        var listenFD: Int32?
        var clients: [Int32] = []
        switch source {
        case .listener(let fd): listenFD = fd
        case .line(let fd, _): clients = [fd]
        }
        var buffers = Buffers()
        defer {
            if listenFD != nil { clients.forEach(LibModbus.closeFD) }
            close(source)
        }
        let readable = Int16(POLLIN | POLLHUP | POLLERR)
        while true {
            var fds = [pollfd(fd: pipes.wakeRead, events: Int16(POLLIN), revents: 0)]
            if let listenFD { fds.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)) }
            let firstClient = fds.count
            fds += clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if poll(&fds, nfds_t(fds.count), -1) == -1 {
                let e = errno
                if e == EINTR { continue }
                logger.error("modbus server poll failed, stopping", metadata: ["errno": "\(e)"])
                return
            }
            if fds[0].revents != 0 { return }
            if let listenFD, fds[1].revents & readable != 0 {
                switch LibModbus.accept(listenFD) {
                case .success(let fd):
                    clients.append(fd)
                    logger.debug("modbus server accepted a client", metadata: ["modbus.clients": "\(clients.count)"])
                case .failure(let f):
                    logger.debug("modbus server accept failed", metadata: ["errno": "\(f.errno)"])
                }
            }
            var dropped: [Int32] = []
            for client in fds[firstClient...] where client.revents & readable != 0 {
                switch answer(client.fd, &buffers, pipes: pipes) {
                case .answered:
                    continue
                case .stopping:
                    return
                case .failed where listenFD != nil:
                    dropped.append(client.fd)  // closed by the client, or not Modbus
                case .failed(let f) where client.revents & Int16(POLLHUP) != 0 || f.errno == EIO:
                    logger.error("modbus server: the serial line hung up, no longer serving", metadata: ["errno": "\(f.errno)"])
                    return
                case .failed(let f):
                    logger.debug("modbus server: bad frame on the serial line, flushing", metadata: ["errno": "\(f.errno)"])
                    _ = LibModbus.flush(ctx)
                }
            }
            if !dropped.isEmpty {
                dropped.forEach(LibModbus.closeFD)
                clients.removeAll { dropped.contains($0) }
                logger.debug("modbus server dropped clients", metadata: ["modbus.clients": "\(clients.count)"])
            }
        }
    }

    struct Buffers {
        var request = [UInt8](repeating: 0, count: LibModbus.maxADULength)
        var reply = [UInt8](repeating: 0, count: LibModbus.maxADULength)
    }

    enum Outcome {
        case answered, stopping
        case failed(LibModbus.Failure)
    }

    /// One request from `fd`: receive, build the reply into the capture socket (under the mapping lock), log, wait out
    /// the line-speed time, send.
    private func answer(_ fd: Int32, _ buffers: inout Buffers, pipes: Pipes) -> Outcome {
        _ = LibModbus.setSocket(ctx, fd)
        let received = buffers.request.withUnsafeMutableBufferPointer { LibModbus.receive(ctx, $0.baseAddress!) }
        let arrived = ContinuousClock.now
        let length: Int
        switch received {
        case .failure(let f):
            return .failed(f)
        case .success(0):
            // RTU: a frame for another unit id, which libmodbus read whole and dropped. The read function codes and
            // the single writes have 8-byte frames; log those as unanswered.
            guard headerLength == 1 else { return .answered }
            if (1...6).contains(buffers.request[1]) {
                append(record(buffers.request, length: 8, time: arrived, replyBytes: 0))
            }
            clearIgnoredConfirmation(unit: buffers.request[0], fd: fd, pipes: pipes, buffers: &buffers)
            return .answered
        case .success(let n):
            length = Int(n)
        }
        let injected = fault.withLock { $0 }
        switch injected {
        case .noReply?, .dropConnection? where checksumLength > 0:
            append(record(buffers.request, length: length, time: arrived, replyBytes: 0))
            return .answered
        case .dropConnection?:
            append(record(buffers.request, length: length, time: arrived, replyBytes: 0))
            return .failed(LibModbus.Failure(call: "fault injection: drop connection", errno: ECONNRESET))
        case .garbage?:
            // A complete frame the client can take apart but not accept: the request's framing with a function
            // code that answers nothing (TCP: its transaction id and a consistent length; RTU: a wrong CRC), so the
            // client reports bad data at once instead of waiting for bytes that never come.
            let junk: [UInt8] = checksumLength == 0
                ? [buffers.request[0], buffers.request[1], 0, 0, 0, 3, buffers.request[6], 0x41, 0x00]
                : [buffers.request[0], 0x41, 0x00, 0xDE, 0xAD]
            append(record(buffers.request, length: length, time: arrived, replyBytes: junk.count))
            _ = junk.withUnsafeBytes { LibModbus.writeAll(fd, $0, isSocket: checksumLength == 0) }
            return .answered
        default:
            break
        }
        _ = LibModbus.setSocket(ctx, pipes.captureWrite)
        let built: Result<Int32, LibModbus.Failure>
        if case .exception(let code)? = injected {
            built = buffers.request.withUnsafeBufferPointer { LibModbus.replyException(ctx, $0.baseAddress!, code) }
        } else {
            built = mapping.withLock { (box: inout MappingBox) in
                buffers.request.withUnsafeBufferPointer { LibModbus.reply(ctx, $0.baseAddress!, Int32(length), box.mapping) }
            }
        }
        _ = LibModbus.setSocket(ctx, fd)
        let replyLength: Int
        switch built {
        case .failure(let f): return .failed(f)
        case .success(let n): replyLength = Int(n)
        }
        if replyLength > 0, case .failure(let f) = buffers.reply.withUnsafeMutableBytes({
            LibModbus.readExactly(pipes.captureRead, UnsafeMutableRawBufferPointer(rebasing: $0[..<replyLength]))
        }) {
            return .failed(f)
        }
        append(record(buffers.request, length: length, time: arrived, replyBytes: replyLength))
        guard replyLength > 0 else { return .answered }  // an RTU broadcast: no reply
        if let lineSpeed {
            let wire = lineSpeed.replyDelay(requestBytes: rtuBytes(length), replyBytes: rtuBytes(replyLength))
            guard pause(until: arrived + wire, wakeRead: pipes.wakeRead) else { return .stopping }
        }
        requests.add(1, ordering: .releasing)
        let sent = buffers.reply.withUnsafeBytes {
            LibModbus.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[..<replyLength]), isSocket: checksumLength == 0)
        }
        if case .failure(let f) = sent {
            requests.subtract(1, ordering: .releasing)
            return .failed(f)
        }
        return .answered
    }

    /// libmodbus' RTU receive, having dropped a frame for another unit, takes the next frame on the line for that
    /// unit's answer and drops it too (`confirmation_to_ignore`). On the simulator's line — one master, this one
    /// slave — a request for another unit is followed by silence, so that next frame would be the master's next
    /// request, lost. Hand libmodbus a stand-in answer from the capture socket instead: the flag clears, the line is
    /// untouched.
    private func clearIgnoredConfirmation(unit: UInt8, fd: Int32, pipes: Pipes, buffers: inout Buffers) {
        let standIn: [UInt8] = [unit, 0x83, 0x02, 0x00, 0x00]  // an exception answer: libmodbus frames it as 5 bytes
        _ = standIn.withUnsafeBytes { LibModbus.writeAll(pipes.captureWrite, $0, isSocket: true) }
        _ = LibModbus.setSocket(ctx, pipes.captureRead)
        _ = buffers.reply.withUnsafeMutableBufferPointer { LibModbus.receive(ctx, $0.baseAddress!) }
        _ = LibModbus.setSocket(ctx, fd)
        LibModbus.drain(pipes.captureRead)
    }

    /// Bytes of the RTU frame that carries this frame's PDU (the same for an RTU frame; MBAP off, unit id and CRC on
    /// for TCP).
    func rtuBytes(_ frameBytes: Int) -> Int {
        LineSpeed.rtuFrameBytes(pduBytes: frameBytes - headerLength - checksumLength)
    }

    /// Unit id and PDU fields of a request frame; nil when it is too short to hold them.
    private func record(_ request: [UInt8], length: Int, time: ContinuousClock.Instant, replyBytes: Int) -> ModbusRequestRecord? {
        let h = headerLength
        guard length >= h + 5 else { return nil }
        return ModbusRequestRecord(
            unit: request[h - 1], functionCode: request[h],
            address: Int(request[h + 1]) << 8 | Int(request[h + 2]), count: Int(request[h + 3]) << 8 | Int(request[h + 4]),
            time: time, requestBytes: length, replyBytes: replyBytes)
    }

    private func append(_ record: ModbusRequestRecord?) {
        guard let record else { return }
        log.withLock { l in
            if l.count >= Self.logLimit { l.removeFirst(l.count / 2) }
            l.append(record)
        }
    }

    /// Sleeps until `deadline` (poll on the wake pipe for the bulk, nanosleep for the last 2 ms, so it is both
    /// interruptible and precise); false if `stop()` woke it.
    private func pause(until deadline: ContinuousClock.Instant, wakeRead: Int32) -> Bool {
        while true {
            let remaining = deadline - .now
            guard remaining > .zero else { return true }
            let (seconds, attoseconds) = remaining.components
            if remaining > .milliseconds(2) {
                var wake = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
                let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 - 1)
                if poll(&wake, 1, milliseconds) > 0 { return false }
            } else {
                var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
                nanosleep(&ts, nil)
            }
        }
    }
}
