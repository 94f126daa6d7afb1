import KilnTallyCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An open file of a `FileIO`.
public struct FileID: Hashable, Sendable {
    public let raw: Int32
    public init(raw: Int32) { self.raw = raw }
}

/// The one choke point every file operation of the stores goes through, so tests can inject faults and simulate a
/// power cut (`SimulatedFileSystem`). Calls block: callers run them on a store's own thread, never on the
/// cooperative pool. Every failure is a `StoreError` naming the call, the path and errno.
public protocol FileIO: Sendable {
    /// Opens `path` for reading and writing, creating it (mode 0640) when `create` is set.
    func open(_ path: String, create: Bool) throws(StoreError) -> FileID
    func close(_ file: FileID)
    func size(_ file: FileID, path: String) throws(StoreError) -> Int64
    func read(_ file: FileID, path: String, count: Int, at offset: Int64) throws(StoreError) -> [UInt8]
    func write(_ file: FileID, path: String, _ bytes: [UInt8], at offset: Int64) throws(StoreError)
    func sync(_ file: FileID, path: String) throws(StoreError)
    func truncate(_ file: FileID, path: String, to size: Int64) throws(StoreError)
    func rename(_ from: String, to: String) throws(StoreError)
    func remove(_ path: String) throws(StoreError)
    /// Creates the directory and its parents if missing.
    func makeDirectories(_ path: String) throws(StoreError)
    /// Names in `directory` (no `.`/`..`).
    func list(_ directory: String) throws(StoreError) -> [String]
    /// Makes creations, renames and removals in `directory` durable.
    func syncDirectory(_ directory: String) throws(StoreError)
}

/// The real file system (POSIX calls, EINTR retried).
public struct PosixFileIO: FileIO {
    public init() {}

    public func open(_ path: String, create: Bool) throws(StoreError) -> FileID {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0o640)
        guard fd >= 0 else { throw StoreError(call: "open", path: path, errno: errno) }
        return FileID(raw: fd)
    }

    public func close(_ file: FileID) { _ = Glibc.close(file.raw) }

    public func size(_ file: FileID, path: String) throws(StoreError) -> Int64 {
        var st = stat()
        guard fstat(file.raw, &st) == 0 else { throw StoreError(call: "fstat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    public func read(_ file: FileID, path: String, count: Int, at offset: Int64) throws(StoreError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buf.withUnsafeMutableBytes { pread(file.raw, $0.baseAddress! + done, count - done, off_t(offset + Int64(done))) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError(call: "pread", path: path, errno: errno)
            }
            if n == 0 { throw StoreError(call: "pread", path: path, errno: 0, detail: "unexpected end of file at \(offset + Int64(done))") }
            done += n
        }
        return buf
    }

    public func write(_ file: FileID, path: String, _ bytes: [UInt8], at offset: Int64) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(file.raw, $0.baseAddress! + done, $0.count - done, off_t(offset + Int64(done))) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError(call: "pwrite", path: path, errno: errno)
            }
            if n == 0 { throw StoreError(call: "pwrite", path: path, errno: EIO, detail: "wrote nothing") }
            done += n
        }
    }

    public func sync(_ file: FileID, path: String) throws(StoreError) {
        // fdatasync: the size change of an append is data for this purpose, and it skips the inode timestamps.
        while fdatasync(file.raw) != 0 {
            if errno == EINTR { continue }
            throw StoreError(call: "fdatasync", path: path, errno: errno)
        }
    }

    public func truncate(_ file: FileID, path: String, to size: Int64) throws(StoreError) {
        guard ftruncate(file.raw, off_t(size)) == 0 else { throw StoreError(call: "ftruncate", path: path, errno: errno) }
    }

    public func rename(_ from: String, to: String) throws(StoreError) {
        guard Glibc.rename(from, to) == 0 else { throw StoreError(call: "rename", path: "\(from) -> \(to)", errno: errno) }
    }

    public func remove(_ path: String) throws(StoreError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw StoreError(call: "unlink", path: path, errno: errno) }
    }

    public func makeDirectories(_ path: String) throws(StoreError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o750) != 0 && errno != EEXIST {
                throw StoreError(call: "mkdir", path: current, errno: errno)
            }
        }
    }

    public func list(_ directory: String) throws(StoreError) -> [String] {
        guard let d = opendir(directory) else { throw StoreError(call: "opendir", path: directory, errno: errno) }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func syncDirectory(_ directory: String) throws(StoreError) {
        let d = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard d >= 0 else { throw StoreError(call: "open", path: directory, errno: errno) }
        defer { _ = Glibc.close(d) }
        guard fsync(d) == 0 else { throw StoreError(call: "fsync", path: directory, errno: errno) }
    }
}

extension FileIO {
    /// Replaces `path` with `bytes` atomically: a temporary file beside it (`.NAME.tmp`) is written and synced, renamed
    /// over `path`, and the directory synced — a crash leaves the old contents or the new, never a torn file.
    public func replaceAtomically(_ path: String, with bytes: [UInt8]) throws(StoreError) {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let tmp = directory + "/." + name + ".tmp"
        let file = try open(tmp, create: true)
        do {
            try truncate(file, path: tmp, to: 0)
            try write(file, path: tmp, bytes, at: 0)
            try sync(file, path: tmp)
        } catch {
            close(file)
            throw error
        }
        close(file)
        try rename(tmp, to: path)
        try syncDirectory(directory)
    }

    /// The whole file, or nil when it does not exist; at most `limit` bytes.
    public func readWhole(_ path: String, limit: Int64 = .max) throws(StoreError) -> [UInt8]? {
        let file: FileID
        do {
            file = try open(path, create: false)
        } catch where error.errno == 2 /* ENOENT */ {
            return nil
        }
        defer { close(file) }
        let size = try size(file, path: path)
        return try read(file, path: path, count: Int(min(size, limit)), at: 0)
    }
}
