internal import CSysShims
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Exclusive use of a serial line, for the client and the simulator's RTU server alike: a second master on an
/// RS-485 line garbles both masters' frames, so a line is only ever opened by one owner.
///
/// Opening takes, in this order:
/// 1. a UUCP-style lock file (`LockFile`) in the lock directory — before the device is even opened, so a line in use
///    is not reconfigured (modbus_connect sets baud and framing) under its owner;
/// 2. the device itself (`modbus_connect`);
/// 3. `ioctl(TIOCEXCL)`, after which the kernel refuses any further open(2) of the tty with EBUSY (except to root).
/// Closing undoes all three in reverse. A refused open names the device and its owner (PID and `/proc/PID/comm`).
enum SerialLine {
    /// Where lock files go unless a caller says otherwise: `$KILNTALLY_LOCK_DIR` if set (tests, unusual systems),
    /// else `/run/lock` (FHS; Debian's `/var/lock` points there). If the directory does not exist the line is
    /// guarded by TIOCEXCL alone, with a warning.
    static var defaultLockDirectory: String {
        if let value = getenv("KILNTALLY_LOCK_DIR"), value.pointee != 0 { return String(cString: value) }
        return "/run/lock"
    }

    /// Why a line could not be opened; owners turn it into a `ModbusError` with their bus and endpoint. `call` is
    /// always `modbus_connect` (the step that failed, as far as callers are concerned), so the error classifies as
    /// a connection failure and the next poll tries again.
    struct Failure: Error {
        var errno: Int32
        var message: String? = nil
        var call = "modbus_connect"
    }

    /// An open line: the lock file (nil when there is no lock directory) is held until `close`.
    struct Claim: Sendable {
        let lock: LockFile?
    }

    /// Lock file, modbus_connect, TIOCEXCL — undoing what was done if a later step fails.
    static func open(
        _ ctx: OpaquePointer, device: String, lockDirectory: String?, logger: Logger
    ) -> Result<Claim, Failure> {
        let lock: LockFile?
        switch LockFile.acquire(device: device, directory: lockDirectory, logger: logger) {
        case .success(let l): lock = l
        case .failure(let f): return .failure(f)
        }
        if case .failure(let f) = LibModbus.connect(ctx) {
            lock?.release()
            guard f.errno == EBUSY else { return .failure(Failure(errno: f.errno)) }
            // Another process holds the tty with TIOCEXCL but no lock file here: find it by its open descriptors.
            let owners = holders(of: device).map(describe).joined(separator: ", ")
            return .failure(Failure(
                errno: EBUSY,
                message: "\(device) is held exclusively (TIOCEXCL) by \(owners.isEmpty ? "another process" : owners)"))
        }
        if kt_tty_set_exclusive(LibModbus.socket(ctx), 1) != 0 {
            let e = errno
            LibModbus.close(ctx)
            lock?.release()
            return .failure(Failure(errno: e, message: "cannot take \(device) exclusively (ioctl TIOCEXCL): \(LibModbus.strerror(e))"))
        }
        return .success(Claim(lock: lock))
    }

    /// TIOCNXCL, modbus_close (which restores the tty's old settings), then the lock file.
    static func close(_ ctx: OpaquePointer, _ claim: Claim) {
        let fd = LibModbus.socket(ctx)
        if fd >= 0 { _ = kt_tty_set_exclusive(fd, 0) }
        LibModbus.close(ctx)
        claim.lock?.release()
    }

    /// "PID 4242 (kilntallyd)", with "this process" when it is us.
    static func describe(_ pid: pid_t) -> String {
        var traits: [String] = []
        if let comm = command(of: pid) { traits.append(comm) }
        if pid == getpid() { traits.append("this process") }
        return traits.isEmpty ? "PID \(pid)" : "PID \(pid) (\(traits.joined(separator: ", ")))"
    }

    /// `/proc/PID/comm`, if readable.
    static func command(of pid: pid_t) -> String? {
        let fd = Glibc.open("/proc/\(pid)/comm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[..<n], as: UTF8.self).trimmingWhitespace
        return text.isEmpty ? nil : text
    }

    /// Processes with `device` open, from `/proc/*/fd` (only the ones this process may inspect).
    static func holders(of device: String) -> [pid_t] {
        guard let target = realPath(device), let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        var pids: [pid_t] = []
        while let entry = readdir(proc) {
            guard let pid = pid_t(entryName(entry)), pid > 0 else { continue }
            guard let fds = opendir("/proc/\(pid)/fd") else { continue }
            while let fdEntry = readdir(fds) {
                let name = entryName(fdEntry)
                guard name != ".", name != "..", realPath("/proc/\(pid)/fd/\(name)") == target else { continue }
                pids.append(pid)
                break
            }
            closedir(fds)
        }
        return pids
    }

    private static func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: &entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
    }

    /// The path with every symbolic link resolved, or nil if it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// A UUCP-style (HDB) lock file, `LCK..<name>`, holding the owner's PID as ten ASCII characters (right-aligned)
/// and a newline — the convention minicom, picocom, uucp and ModemManager write and honour, so kilntally and those
/// tools keep off each other's lines. `<name>` is the last path component of the device with symbolic links
/// resolved, so `/dev/serial/by-id/usb-FTDI_…` and `/dev/ttyUSB0` take the same lock (`LCK..ttyUSB0`).
///
/// Created with `O_CREAT | O_EXCL`, so creating it is the test. kilntally also holds `flock(LOCK_EX)` on it while it
/// owns it: a lock whose flock is held is live whatever PID it names, which settles races between two openers that
/// both find a stale lock, and makes a second opener in the same process see the first as the owner. A lock whose
/// flock is free is live only if its PID is a running process other than us (tools that do not flock); otherwise it
/// is stale — its owner died — and is taken over in place (rewritten while holding the flock, after checking the
/// path still names the same file).
///
/// `Sendable`: `fd`, `path` and `device` never change; `released` is atomic, so `release()` runs its body once.
final class LockFile: Sendable {
    let path: String
    let device: String
    private let fd: Int32
    private let released = Atomic<Bool>(false)

    private init(path: String, device: String, fd: Int32) {
        self.path = path
        self.device = device
        self.fd = fd
    }

    deinit { release() }

    /// The lock file's name for `device` ("LCK..ttyUSB0"), or nil when the device does not exist (then there is
    /// nothing to lock, and modbus_connect reports the missing device).
    static func name(forDevice device: String) -> String? {
        guard let resolved = SerialLine.realPath(device) else { return nil }
        return "LCK.." + (resolved.split(separator: "/").last.map(String.init) ?? resolved)
    }

    /// Takes the lock for `device` in `directory`; nil (no lock) when `directory` is nil or does not exist, or
    /// the device does not exist.
    static func acquire(device: String, directory: String?, logger: Logger) -> Result<LockFile?, SerialLine.Failure> {
        guard let directory, let name = name(forDevice: device) else { return .success(nil) }
        var dirStat = stat()
        guard stat(directory, &dirStat) == 0, dirStat.st_mode & S_IFMT == S_IFDIR else {
            logger.warning("lock directory \(directory) does not exist: \(device) is guarded by TIOCEXCL only")
            return .success(nil)
        }
        let path = directory + "/" + name
        let me = getpid()
        let shown = SerialLine.realPath(device).map { $0 == device ? device : "\(device) (\($0))" } ?? device
        func busy(_ owner: pid_t) -> SerialLine.Failure {
            .init(errno: EBUSY, message: "\(shown) is in use by \(SerialLine.describe(owner)), lock file \(path)")
        }
        // Empty or unreadable content is a lock being written: wait for it, up to ~50 ms, then call it stale.
        var unreadable = 0
        for _ in 0..<200 {
            var fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            let created = fd >= 0
            if !created {
                let e = errno
                guard e == EEXIST else {
                    return .failure(.init(errno: e, message: "cannot create the lock file \(path) for \(shown): \(LibModbus.strerror(e))"))
                }
                fd = open(path, O_RDWR | O_CLOEXEC)
                if fd < 0 {
                    let e = errno
                    if e == ENOENT { continue }  // released meanwhile: try to create it again
                    return .failure(foreignLock(path: path, shown: shown, errno: e, busy: busy))
                }
            }
            // The lock is live while someone holds its flock; a creator may have to wait a moment for a racer that
            // is looking at its still-empty file.
            var locked = flock(fd, LOCK_EX | LOCK_NB) == 0
            for _ in 0..<(created ? 200 : 0) where !locked {
                usleep(500)
                locked = flock(fd, LOCK_EX | LOCK_NB) == 0
            }
            let owner = readPID(fd)
            guard locked else {
                _ = close(fd)
                if let owner { return .failure(busy(owner)) }
                usleep(250)
                continue
            }
            guard sameFile(fd, path) else {  // unlinked or replaced since we opened it
                _ = close(fd)
                continue
            }
            if !created {
                if owner == nil, unreadable < 100 {
                    unreadable += 1
                    _ = close(fd)
                    usleep(500)
                    continue
                }
                if let owner, owner != me, isRunning(owner) {
                    _ = close(fd)
                    return .failure(busy(owner))
                }
                logger.notice("taking over the stale lock file \(path) (\(owner.map { "PID \($0), not running" } ?? "no PID in it"))")
            }
            guard writePID(fd, me) else {
                let e = errno
                if created { unlink(path) }
                _ = close(fd)
                return .failure(.init(errno: e, message: "cannot write the lock file \(path): \(LibModbus.strerror(e))"))
            }
            return .success(LockFile(path: path, device: device, fd: fd))
        }
        return .failure(.init(errno: EAGAIN, message: "the lock file \(path) for \(shown) keeps changing; try again"))
    }

    /// A lock file we may not open for writing: live if its PID runs, else stale but not ours to take over.
    private static func foreignLock(
        path: String, shown: String, errno e: Int32, busy: (pid_t) -> SerialLine.Failure
    ) -> SerialLine.Failure {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        let owner = fd >= 0 ? readPID(fd) : nil
        if fd >= 0 { _ = close(fd) }
        if let owner, isRunning(owner) { return busy(owner) }
        return .init(errno: e, message: "cannot take over the lock file \(path) for \(shown)"
                     + "\(owner.map { " (PID \($0), not running)" } ?? ""): \(LibModbus.strerror(e))")
    }

    /// Removes the lock file (if it is still ours) and drops the flock. Idempotent.
    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if Self.sameFile(fd, path) { unlink(path) }
        _ = close(fd)
    }

    /// The PID in a lock file: ten ASCII characters (leading blanks) and a newline, read leniently.
    static func readPID(_ fd: Int32) -> pid_t? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        guard let pid = pid_t(String(decoding: buffer[..<n], as: UTF8.self).trimmingWhitespace), pid > 0 else { return nil }
        return pid
    }

    /// "      4242\n": the HDB format.
    static func content(pid: pid_t) -> String {
        let digits = String(pid)
        return String(repeating: " ", count: max(0, 10 - digits.count)) + digits + "\n"
    }

    private static func writePID(_ fd: Int32, _ pid: pid_t) -> Bool {
        guard ftruncate(fd, 0) == 0 else { return false }
        var text = content(pid: pid)
        return text.withUTF8 { pwrite(fd, $0.baseAddress, $0.count, 0) == $0.count }
    }

    /// kill(pid, 0) succeeds or is refused for permission: the process exists.
    static func isRunning(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    private static func sameFile(_ fd: Int32, _ path: String) -> Bool {
        var a = stat(), b = stat()
        return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
