internal import CSysShims
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A serial line opened for raw bytes, without libmodbus: for the ASCII streams of weighbridge indicators that do
/// not speak Modbus (read only) and for the simulator that plays such an indicator (write only).
///
/// Opened exclusively, exactly as an RTU bus is (`SerialLine`): the UUCP lock file first, then the device
/// (`O_NOCTTY | O_NONBLOCK`), then `ioctl(TIOCEXCL)`; a refused open names the owner. The line is set raw at the
/// given baud rate and framing (no echo, no line editing, no flow control, CLOCAL | CREAD), input that arrived
/// before the open is flushed (stale frames of an indicator nobody was reading), and the old settings are restored
/// at `close()`.
///
/// `Sendable`: the descriptor, device and settings never change; `closed` is atomic, so `close()` runs its body once.
/// Reads and writes are plain syscalls on the descriptor: one reader and one writer at a time.
public final class SerialPort: Sendable {
    public struct Settings: Sendable, Hashable, CustomStringConvertible {
        public var baud: Int
        public var parity: ModbusParity
        public var dataBits: Int
        public var stopBits: Int

        public init(baud: Int = 9600, parity: ModbusParity = .none, dataBits: Int = 8, stopBits: Int = 1) {
            self.baud = baud
            self.parity = parity
            self.dataBits = dataBits
            self.stopBits = stopBits
        }

        /// Whether `open` can set this baud rate (the termios standard rates, 300 to 921600).
        public static func isSupported(baud: Int) -> Bool { SerialPort.speed(baud) != nil }

        /// "9600,8N1".
        public var description: String { "\(baud),\(dataBits)\(parity.rawValue)\(stopBits)" }
    }

    public let device: String
    public let settings: Settings
    /// The name errors carry as their bus.
    public let name: String
    private let fd: Int32
    private let lock: LockFile?
    private let saved: termios
    private let closed = Atomic<Bool>(false)

    /// Where lock files go: `$KILNTALLY_LOCK_DIR` if set, else `/run/lock` (the same as RTU lines').
    public static var defaultLockDirectory: String { SerialLine.defaultLockDirectory }

    /// "/dev/ttyUSB0@9600,8N1", as errors and logs show it.
    public var endpoint: String { "\(device)@\(settings)" }

    private init(device: String, settings: Settings, name: String, fd: Int32, lock: LockFile?, saved: termios) {
        self.device = device
        self.settings = settings
        self.name = name
        self.fd = fd
        self.lock = lock
        self.saved = saved
    }

    deinit { close() }

    /// Opens `device` exclusively with `settings`. Errors are `ModbusError`s with `call` "open" (connection
    /// failures: `isConnectionFailure`), naming `name` as the bus.
    public static func open(
        _ device: String, settings: Settings, name: String, lockDirectory: String? = SerialPort.defaultLockDirectory,
        logger: Logger
    ) throws(ModbusError) -> SerialPort {
        func failure(_ e: Int32, _ message: String? = nil) -> ModbusError {
            ModbusError(bus: name, endpoint: "\(device)@\(settings)", call: "open", errno: e,
                        message: message ?? String(cString: strerror(e)))
        }
        guard let speed = speed(settings.baud) else { throw failure(EINVAL, "unsupported baud rate \(settings.baud)") }
        guard (5...8).contains(settings.dataBits), (1...2).contains(settings.stopBits) else {
            throw failure(EINVAL, "unsupported framing \(settings)")
        }
        let lock: LockFile?
        switch LockFile.acquire(device: device, directory: lockDirectory, logger: logger) {
        case .success(let l): lock = l
        case .failure(let f): throw failure(f.errno, f.message)
        }
        let fd = Glibc.open(device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            lock?.release()
            guard e == EBUSY else { throw failure(e) }
            let owners = SerialLine.holders(of: device).map(SerialLine.describe).joined(separator: ", ")
            throw failure(EBUSY, "\(device) is held exclusively (TIOCEXCL) by \(owners.isEmpty ? "another process" : owners)")
        }
        func undo(_ e: Int32, _ message: String) -> ModbusError {
            _ = Glibc.close(fd)
            lock?.release()
            return failure(e, message)
        }
        if kt_tty_set_exclusive(fd, 1) != 0 {
            let e = errno
            throw undo(e, "cannot take \(device) exclusively (ioctl TIOCEXCL): \(String(cString: strerror(e)))")
        }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else {
            let e = errno
            throw undo(e, "\(device) is not a terminal (tcgetattr): \(String(cString: strerror(e)))")
        }
        var t = saved
        cfmakeraw(&t)
        t.c_cflag &= ~(tcflag_t(CSIZE) | tcflag_t(PARENB) | tcflag_t(PARODD) | tcflag_t(CSTOPB) | tcflag_t(CRTSCTS))
        t.c_cflag |= tcflag_t(CLOCAL) | tcflag_t(CREAD)
        switch settings.dataBits {
        case 5: t.c_cflag |= tcflag_t(CS5)
        case 6: t.c_cflag |= tcflag_t(CS6)
        case 7: t.c_cflag |= tcflag_t(CS7)
        default: t.c_cflag |= tcflag_t(CS8)
        }
        switch settings.parity {
        case .none: break
        case .even: t.c_cflag |= tcflag_t(PARENB)
        case .odd: t.c_cflag |= tcflag_t(PARENB) | tcflag_t(PARODD)
        }
        if settings.stopBits == 2 { t.c_cflag |= tcflag_t(CSTOPB) }
        t.c_iflag &= ~(tcflag_t(IXON) | tcflag_t(IXOFF) | tcflag_t(IXANY))
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        cfsetispeed(&t, speed)
        cfsetospeed(&t, speed)
        guard tcsetattr(fd, TCSANOW, &t) == 0 else {
            let e = errno
            throw undo(e, "cannot set \(device) to \(settings) (tcsetattr): \(String(cString: strerror(e)))")
        }
        tcflush(fd, TCIFLUSH)
        return SerialPort(device: device, settings: settings, name: name, fd: fd, lock: lock, saved: saved)
    }

    /// Waits up to `timeout` for bytes and reads what has arrived (at most `buffer.count`); 0 when none came.
    /// A line that went away (EOF, EIO: a USB adapter unplugged, the other end of a pty closed for good) throws.
    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration) throws(ModbusError) -> Int {
        guard !closed.load(ordering: .acquiring) else { throw error("read", EBADF) }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        while true {
            let r = poll(&p, 1, ms)
            if r < 0 {
                if errno == EINTR { continue }
                throw error("poll", errno)
            }
            if r == 0 { return 0 }
            break
        }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return n }
            if n == 0 { throw error("read", EIO, "\(device): end of file") }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return 0 }
            throw error("read", e)
        }
    }

    /// Writes what the line takes now without waiting: the count written, 0 when its output buffer is full (a
    /// pty nobody reads). Throws when the line went away.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(ModbusError) -> Int {
        guard !closed.load(ordering: .acquiring) else { throw error("write", EBADF) }
        while true {
            let n = Glibc.write(fd, bytes.baseAddress, bytes.count)
            if n >= 0 { return n }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return 0 }
            throw error("write", e)
        }
    }

    /// Restores the old settings, lets go of the line (TIOCNXCL, close, lock file). Idempotent.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var t = saved
        tcsetattr(fd, TCSANOW, &t)
        _ = kt_tty_set_exclusive(fd, 0)
        _ = Glibc.close(fd)
        lock?.release()
    }

    private func error(_ call: String, _ e: Int32, _ message: String? = nil) -> ModbusError {
        ModbusError(bus: name, endpoint: endpoint, call: call, errno: e, message: message ?? String(cString: strerror(e)))
    }

    /// The termios speed constant of a baud rate.
    static func speed(_ baud: Int) -> speed_t? {
        switch baud {
        case 300: speed_t(B300)
        case 600: speed_t(B600)
        case 1200: speed_t(B1200)
        case 2400: speed_t(B2400)
        case 4800: speed_t(B4800)
        case 9600: speed_t(B9600)
        case 19200: speed_t(B19200)
        case 38400: speed_t(B38400)
        case 57600: speed_t(B57600)
        case 115200: speed_t(B115200)
        case 230400: speed_t(B230400)
        case 460800: speed_t(B460800)
        case 921600: speed_t(B921600)
        default: nil
        }
    }
}
