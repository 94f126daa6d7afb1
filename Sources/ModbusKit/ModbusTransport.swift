/// Serial parity, as libmodbus spells it.
public enum ModbusParity: String, Sendable, Hashable {
    case none = "N", even = "E", odd = "O"
}

/// Where a bus is: one TCP endpoint or one serial line.
public enum ModbusTransport: Sendable, Hashable {
    /// Modbus TCP. `host` may be a name or an IPv4/IPv6 address (libmodbus' protocol-independent context).
    case tcp(host: String, port: Int)
    /// Modbus RTU on a serial device (RS-232 mode; RS-485 adapters that switch direction themselves need nothing else).
    case rtu(device: String, baud: Int, parity: ModbusParity, dataBits: Int, stopBits: Int)

    /// "127.0.0.1:1502", "[::1]:502" or "/dev/ttyUSB0@9600,8E1" — the form used in errors and logs.
    public var endpoint: String {
        switch self {
        case .tcp(let host, let port):
            return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .rtu(let device, let baud, let parity, let dataBits, let stopBits):
            return "\(device)@\(baud),\(dataBits)\(parity.rawValue)\(stopBits)"
        }
    }

    var isTCP: Bool {
        if case .tcp = self { return true }
        return false
    }
}

/// Timeouts applied to every request on a connection.
public struct ModbusTimeouts: Sendable, Hashable {
    /// How long to wait for the first byte of a response (`modbus_set_response_timeout`); for TCP also the connect
    /// timeout. Must be greater than zero.
    public var response: Duration
    /// Longest gap between two bytes of one response (`modbus_set_byte_timeout`); `nil` keeps libmodbus' default
    /// (500 ms), `.zero` disables the byte timeout.
    public var byte: Duration?

    public init(response: Duration = .milliseconds(500), byte: Duration? = nil) {
        self.response = response
        self.byte = byte
    }
}

extension Duration {
    /// (seconds, microseconds) as libmodbus' timeout setters take them; negative durations become zero, fractions
    /// below a microsecond round up so a tiny positive timeout never turns into "zero".
    var secondsAndMicroseconds: (UInt32, UInt32) {
        let (seconds, attoseconds) = components
        guard seconds >= 0, !(seconds == 0 && attoseconds <= 0) else { return (0, 0) }
        var usec = (attoseconds + 999_999_999_999) / 1_000_000_000_000
        var sec = seconds
        if usec >= 1_000_000 {
            sec += 1
            usec -= 1_000_000
        }
        return (UInt32(clamping: sec), UInt32(usec))
    }
}
