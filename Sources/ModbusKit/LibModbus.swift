internal import CModbus

#if canImport(Glibc)
import Glibc
#endif

/// The one place where ModbusKit calls libmodbus (and the few socket syscalls the server needs).
///
/// Every call that can fail returns `Result<Int32, LibModbus.Failure>` with errno captured immediately after the call,
/// before any other code can overwrite it. Owners (`ModbusClient`'s connection, `ModbusTCPServer`) turn a `Failure`
/// into a `ModbusError` that names the bus, endpoint and request. Nothing here is public, and the client's read-only
/// promise is visible here: no libmodbus write function is referenced anywhere in ModbusKit.
enum LibModbus {
    /// A failed call: which function, and the errno it left.
    struct Failure: Error {
        var call: String
        var errno: Int32
        /// A more precise text than strerror's, where the wrapper knows one (e.g. which setting was invalid).
        var message: String? = nil
    }

    /// `MODBUS_ENOBASE`: libmodbus' own errno values start here (exception codes, bad CRC, bad data ...).
    static let enobase: Int32 = 112_345_678
    /// `MODBUS_MAX_READ_BITS`, `MODBUS_MAX_READ_REGISTERS`.
    static let maxReadBits = 2000
    static let maxReadRegisters = 125
    /// `MODBUS_MAX_ADU_LENGTH`: the request buffer modbus_receive needs (TCP 260, RTU 256).
    static let maxADULength = 260

    @inline(__always)
    private static func check(_ call: String, _ rc: Int32) -> Result<Int32, Failure> {
        if rc == -1 {
            let e = Glibc.errno
            return .failure(Failure(call: call, errno: e))
        }
        return .success(rc)
    }

    static func strerror(_ errnum: Int32) -> String {
        guard let text = modbus_strerror(errnum) else { return "errno \(errnum)" }
        return String(cString: text)
    }

    // MARK: contexts

    static func newTCPProtocolIndependent(node: String, service: String) -> Result<OpaquePointer, Failure> {
        guard let ctx = modbus_new_tcp_pi(node, service) else {
            let e = Glibc.errno
            return .failure(Failure(call: "modbus_new_tcp_pi", errno: e))
        }
        return .success(ctx)
    }

    static func newTCP(ip: String, port: Int32) -> Result<OpaquePointer, Failure> {
        guard let ctx = modbus_new_tcp(ip, port) else {
            let e = Glibc.errno
            return .failure(Failure(call: "modbus_new_tcp", errno: e))
        }
        return .success(ctx)
    }

    /// modbus_new_rtu, with the settings checked first (libmodbus takes nonsense such as 0 baud without a word).
    static func newRTU(
        device: String, baud: Int, parity: ModbusParity, dataBits: Int, stopBits: Int
    ) -> Result<OpaquePointer, Failure> {
        guard baud > 0, let baud32 = Int32(exactly: baud), (5...8).contains(dataBits), (1...2).contains(stopBits) else {
            return .failure(Failure(
                call: "modbus_new_rtu", errno: EINVAL,
                message: "invalid serial settings \(baud) baud, \(dataBits) data bits, \(stopBits) stop bits"))
        }
        let parityChar = CChar(parity.rawValue.utf8.first!)
        guard let ctx = modbus_new_rtu(device, baud32, parityChar, Int32(dataBits), Int32(stopBits)) else {
            let e = Glibc.errno
            return .failure(Failure(call: "modbus_new_rtu", errno: e))
        }
        return .success(ctx)
    }

    static func free(_ ctx: OpaquePointer) { modbus_free(ctx) }

    // MARK: settings

    static func setResponseTimeout(_ ctx: OpaquePointer, _ timeout: Duration) -> Result<Int32, Failure> {
        let (sec, usec) = timeout.secondsAndMicroseconds
        return check("modbus_set_response_timeout", modbus_set_response_timeout(ctx, sec, usec))
    }

    static func setByteTimeout(_ ctx: OpaquePointer, _ timeout: Duration) -> Result<Int32, Failure> {
        let (sec, usec) = timeout.secondsAndMicroseconds
        return check("modbus_set_byte_timeout", modbus_set_byte_timeout(ctx, sec, usec))
    }

    static func setSlave(_ ctx: OpaquePointer, _ unit: UInt8) -> Result<Int32, Failure> {
        check("modbus_set_slave", modbus_set_slave(ctx, Int32(unit)))
    }

    static func setSocket(_ ctx: OpaquePointer, _ fd: Int32) -> Result<Int32, Failure> {
        check("modbus_set_socket", modbus_set_socket(ctx, fd))
    }

    // MARK: connection

    static func connect(_ ctx: OpaquePointer) -> Result<Int32, Failure> {
        check("modbus_connect", modbus_connect(ctx))
    }

    static func close(_ ctx: OpaquePointer) { modbus_close(ctx) }

    /// The connection's descriptor (the tty for RTU), -1 when closed.
    static func socket(_ ctx: OpaquePointer) -> Int32 { modbus_get_socket(ctx) }

    /// Bytes before the function code: 7 (MBAP) for TCP, 1 (the unit id) for RTU.
    static func headerLength(_ ctx: OpaquePointer) -> Int { Int(modbus_get_header_length(ctx)) }

    static func flush(_ ctx: OpaquePointer) -> Result<Int32, Failure> {
        check("modbus_flush", modbus_flush(ctx))
    }

    // MARK: reads (the client's only requests)

    static func readBits(
        _ ctx: OpaquePointer, _ address: Int32, _ count: Int32, _ dest: UnsafeMutablePointer<UInt8>
    ) -> Result<Int32, Failure> {
        check("modbus_read_bits", modbus_read_bits(ctx, address, count, dest))
    }

    static func readInputBits(
        _ ctx: OpaquePointer, _ address: Int32, _ count: Int32, _ dest: UnsafeMutablePointer<UInt8>
    ) -> Result<Int32, Failure> {
        check("modbus_read_input_bits", modbus_read_input_bits(ctx, address, count, dest))
    }

    static func readRegisters(
        _ ctx: OpaquePointer, _ address: Int32, _ count: Int32, _ dest: UnsafeMutablePointer<UInt16>
    ) -> Result<Int32, Failure> {
        check("modbus_read_registers", modbus_read_registers(ctx, address, count, dest))
    }

    static func readInputRegisters(
        _ ctx: OpaquePointer, _ address: Int32, _ count: Int32, _ dest: UnsafeMutablePointer<UInt16>
    ) -> Result<Int32, Failure> {
        check("modbus_read_input_registers", modbus_read_input_registers(ctx, address, count, dest))
    }

    // MARK: server side (the simulator)

    static func mappingNew(
        bits: Int32, inputBits: Int32, registers: Int32, inputRegisters: Int32
    ) -> Result<UnsafeMutablePointer<modbus_mapping_t>, Failure> {
        guard let mapping = modbus_mapping_new(bits, inputBits, registers, inputRegisters) else {
            let e = Glibc.errno
            return .failure(Failure(call: "modbus_mapping_new", errno: e))
        }
        return .success(mapping)
    }

    static func mappingFree(_ mapping: UnsafeMutablePointer<modbus_mapping_t>) { modbus_mapping_free(mapping) }

    static func tcpListen(_ ctx: OpaquePointer, backlog: Int32) -> Result<Int32, Failure> {
        check("modbus_tcp_listen", modbus_tcp_listen(ctx, backlog))
    }

    static func receive(_ ctx: OpaquePointer, _ request: UnsafeMutablePointer<UInt8>) -> Result<Int32, Failure> {
        check("modbus_receive", modbus_receive(ctx, request))
    }

    static func reply(
        _ ctx: OpaquePointer, _ request: UnsafePointer<UInt8>, _ length: Int32,
        _ mapping: UnsafeMutablePointer<modbus_mapping_t>
    ) -> Result<Int32, Failure> {
        check("modbus_reply", modbus_reply(ctx, request, length, mapping))
    }

    /// Builds (and sends on the context's socket) an exception answer to `request`.
    static func replyException(_ ctx: OpaquePointer, _ request: UnsafePointer<UInt8>, _ code: UInt8) -> Result<Int32, Failure> {
        check("modbus_reply_exception", modbus_reply_exception(ctx, request, UInt32(code)))
    }

    // MARK: sockets (server side; libmodbus' modbus_tcp_accept closes the listening socket on any accept error)

    static func accept(_ listenFD: Int32) -> Result<Int32, Failure> {
        // accept4/pipe2 are GNU extensions Swift's Glibc module does not export: set FD_CLOEXEC right after.
        let result = check("accept", Glibc.accept(listenFD, nil, nil))
        if case .success(let fd) = result { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return result
    }

    static func localPort(_ fd: Int32) -> Result<Int32, Failure> {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        if rc == -1 {
            let e = Glibc.errno
            return .failure(Failure(call: "getsockname", errno: e))
        }
        switch Int32(address.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { .success(Int32(UInt16(bigEndian: $0.pointee.sin_port))) }
            }
        case AF_INET6:
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { .success(Int32(UInt16(bigEndian: $0.pointee.sin6_port))) }
            }
        default:
            return .failure(Failure(call: "getsockname", errno: EAFNOSUPPORT))
        }
    }

    /// A pipe whose write end wakes the server's poll loop.
    static func pipe() -> Result<(read: Int32, write: Int32), Failure> {
        var fds: [Int32] = [-1, -1]
        let rc = Glibc.pipe(&fds)
        if rc == -1 {
            let e = Glibc.errno
            return .failure(Failure(call: "pipe", errno: e))
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return .success((fds[0], fds[1]))
    }

    static func closeFD(_ fd: Int32) { _ = Glibc.close(fd) }

    /// A connected AF_UNIX stream pair. The servers let modbus_reply write a reply into one end and read it back from
    /// the other, so they know the reply before it goes on the wire (to log it, and to hold it for line-speed
    /// emulation).
    static func socketPair() -> Result<(Int32, Int32), Failure> {
        var fds: [Int32] = [-1, -1]
        if socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == -1 {
            let e = Glibc.errno
            return .failure(Failure(call: "socketpair", errno: e))
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return .success((fds[0], fds[1]))
    }

    /// Reads exactly `buffer.count` bytes (retrying short reads and EINTR).
    static func readExactly(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) -> Result<Int32, Failure> {
        var done = 0
        while done < buffer.count {
            let n = Glibc.read(fd, buffer.baseAddress! + done, buffer.count - done)
            if n > 0 { done += n; continue }
            let e = n == 0 ? ECONNRESET : Glibc.errno
            if e == EINTR { continue }
            return .failure(Failure(call: "read", errno: e))
        }
        return .success(Int32(done))
    }

    /// Reads and drops whatever `fd` holds right now, without waiting.
    static func drain(_ fd: Int32) {
        var pending = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var scratch = [UInt8](repeating: 0, count: 64)
        while poll(&pending, 1, 0) > 0, scratch.withUnsafeMutableBytes({ Glibc.read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Writes all of `bytes` to `fd`: `send(MSG_NOSIGNAL)` on a socket (a client that went away is an error, not a
    /// SIGPIPE), `write` on a tty.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, isSocket: Bool) -> Result<Int32, Failure> {
        var done = 0
        while done < bytes.count {
            let n = isSocket
                ? Glibc.send(fd, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
                : Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n >= 0 { done += n; continue }
            let e = Glibc.errno
            if e == EINTR { continue }
            return .failure(Failure(call: isSocket ? "send" : "write", errno: e))
        }
        return .success(Int32(done))
    }

    /// Resolves `host` the way modbus_new_tcp_pi's connect does; nil when it resolves, else gai_strerror's text.
    static func resolutionError(host: String, port: Int) -> String? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        if let list { freeaddrinfo(list) }
        guard rc != 0 else { return nil }
        return String(cString: gai_strerror(rc))
    }
}
