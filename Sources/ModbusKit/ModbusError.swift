#if canImport(Glibc)
import Glibc
#endif

/// A Modbus exception code returned by a slave in an exception response (function code | 0x80).
public struct ModbusExceptionCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let illegalFunction = Self(rawValue: 0x01)
    public static let illegalDataAddress = Self(rawValue: 0x02)
    public static let illegalDataValue = Self(rawValue: 0x03)
    public static let serverDeviceFailure = Self(rawValue: 0x04)
    public static let acknowledge = Self(rawValue: 0x05)
    public static let serverDeviceBusy = Self(rawValue: 0x06)
    public static let negativeAcknowledge = Self(rawValue: 0x07)
    public static let memoryParityError = Self(rawValue: 0x08)
    public static let gatewayPathUnavailable = Self(rawValue: 0x0A)
    public static let gatewayTargetFailedToRespond = Self(rawValue: 0x0B)

    public var description: String {
        let name: String
        switch self {
        case .illegalFunction: name = "illegal function"
        case .illegalDataAddress: name = "illegal data address"
        case .illegalDataValue: name = "illegal data value"
        case .serverDeviceFailure: name = "server device failure"
        case .acknowledge: name = "acknowledge"
        case .serverDeviceBusy: name = "server device busy"
        case .negativeAcknowledge: name = "negative acknowledge"
        case .memoryParityError: name = "memory parity error"
        case .gatewayPathUnavailable: name = "gateway path unavailable"
        case .gatewayTargetFailedToRespond: name = "gateway target device failed to respond"
        default: name = "unknown exception"
        }
        return "\(name) (Modbus exception \(rawValue))"
    }
}

/// A failed libmodbus call, with everything needed to tell which bus, device and request failed and why.
///
/// `errno` is exactly what libmodbus left (libmodbus' own codes start at `MODBUS_ENOBASE`, 112345678);
/// `exception` is set when the slave answered with a Modbus exception. Callers never import the C module: the
/// classification (`isTimeout`, `isConnectionFailure`, `exception`) is all they need.
public struct ModbusError: Error, Sendable, CustomStringConvertible {
    /// The connection's name (the bus name from the config), e.g. "kiln-plc".
    public var bus: String
    /// "127.0.0.1:1502" or "/dev/ttyUSB0@9600,8E1".
    public var endpoint: String
    /// The libmodbus function that failed, e.g. "modbus_read_input_registers", "modbus_connect", or "shutdown" when
    /// the client was shut down before the request ran.
    public var call: String
    /// Raw errno as libmodbus left it.
    public var errno: Int32
    /// modbus_strerror text (or a more precise text where libmodbus' errno hides the cause, e.g. name resolution).
    public var message: String
    /// Set when the slave answered with a Modbus exception response.
    public var exception: ModbusExceptionCode?
    public var unit: UInt8?
    public var address: Int?
    public var count: Int?
    /// The host name could not be resolved (libmodbus reports this as ECONNREFUSED; ModbusKit checks the name itself).
    public var isNameResolutionFailure: Bool

    public init(
        bus: String, endpoint: String, call: String, errno: Int32, message: String? = nil,
        exception: ModbusExceptionCode? = nil, unit: UInt8? = nil, address: Int? = nil, count: Int? = nil,
        isNameResolutionFailure: Bool = false
    ) {
        self.bus = bus
        self.endpoint = endpoint
        self.call = call
        self.errno = errno
        self.message = message ?? LibModbus.strerror(errno)
        self.exception = exception ?? Self.exceptionCode(forErrno: errno)
        self.unit = unit
        self.address = address
        self.count = count
        self.isNameResolutionFailure = isNameResolutionFailure
    }

    /// libmodbus maps exception responses to `MODBUS_ENOBASE + code` (EMBXILFUN ... EMBXGTAR).
    static func exceptionCode(forErrno errno: Int32) -> ModbusExceptionCode? {
        let code = Int(errno) - Int(LibModbus.enobase)
        guard (1...0x0B).contains(code), code != 9 else { return nil }
        return ModbusExceptionCode(rawValue: UInt8(code))
    }

    /// The response (or, for a connect, the connection) did not arrive within the configured timeout.
    public var isTimeout: Bool { errno == ETIMEDOUT }

    /// The link itself is unusable (refused, unreachable, reset, closed, not connected, name not resolvable, serial
    /// device gone, or any failure of `modbus_connect` or of a raw `SerialPort`'s `open`): the client has closed its side and the next request
    /// reconnects. A timeout of an established connection is not a connection failure, but the TCP client still
    /// closes after one so a late answer cannot be taken for the next response.
    public var isConnectionFailure: Bool {
        if isNameResolutionFailure || call == "modbus_connect" || call == "open" { return true }
        switch errno {
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN, ECONNRESET, ECONNABORTED, EPIPE, EBADF,
            ENOTCONN, ENOTSOCK, ESHUTDOWN, ENOENT, ENODEV, ENXIO, EIO:
            return true
        default:
            return false
        }
    }

    /// A garbled or unexpected answer (bad CRC, wrong transaction id / unit / function, too much data).
    public var isProtocolError: Bool {
        let base = LibModbus.enobase
        return errno > base + 0x0B && errno <= base + 0x0B + 6
    }

    public var description: String { "bus \(bus) (\(endpoint)): \(detail)" }

    /// The failed call and its cause without the bus, e.g. `modbus_connect failed: Connection refused (errno 111)`:
    /// for messages that name the bus themselves, so they do not say it twice.
    public var detail: String {
        var request = call
        var arguments: [String] = []
        if let unit { arguments.append("unit \(unit)") }
        if let address { arguments.append("address \(address)") }
        if let count { arguments.append("count \(count)") }
        if !arguments.isEmpty { request += "(\(arguments.joined(separator: ", ")))" }
        let cause: String
        if let exception {
            cause = "\(message) (Modbus exception \(exception.rawValue))"
        } else if errno >= LibModbus.enobase || errno == 0 {
            cause = message
        } else {
            cause = "\(message) (errno \(errno))"
        }
        return "\(request) failed: \(cause)"
    }
}
