import KilnTallyCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An in-memory `FileIO` that knows what would survive a power cut, for crash-safety tests.
///
/// File data written since a file's last `sync` is not durable; neither is a directory entry created, renamed or
/// removed since its directory's last `syncDirectory`. `powerCut(seed:)` rebuilds every file as "everything
/// synced, plus a random prefix of the later operations, the last write torn at a 512-byte boundary", and likewise
/// for directory operations — exactly the states a real disk can come back in. A store whose promises hold here
/// cannot be hiding a missing fsync, which a `kill -9` test cannot catch (the page cache survives it).
/// Faults can be injected per call (`failNext`), and `diskFull` makes writes fail with ENOSPC.
public final class SimulatedFileSystem: FileIO {
    enum FileOp { case write(offset: Int64, bytes: [UInt8]); case truncate(Int64) }
    enum DirOp { case link(String, Int); case unlink(String); case rename(String, String, Int) }

    struct Inode {
        var current: [UInt8] = []
        var durable: [UInt8] = []
        var pending: [FileOp] = []
    }

    struct State {
        var inodes: [Int: Inode] = [:]
        var nextInode = 1
        var entries: [String: Int] = [:]          // path -> inode, as the running system sees it
        var durableEntries: [String: Int] = [:]   // what a power cut keeps for sure
        var pendingDirOps: [String: [DirOp]] = [:]
        var directories: Set<String> = ["/"]
        var open: [Int32: (inode: Int, path: String)] = [:]
        var nextFD: Int32 = 3
        var faults: [(call: String, errno: Int32, skip: Int)] = []
        var diskFull = false
        /// Every operation in order, e.g. "write /s/seg 0+44", "sync /s/seg", "syncdir /s": tests assert orderings.
        var journal: [String] = []
    }

    private let state = Mutex(State())

    public init() {}

    /// A call named `call` (e.g. "fdatasync", "pwrite", "rename") fails with `errno`: the next one, or the one
    /// after `skipping` more.
    public func failNext(_ call: String, errno: Int32, skipping: Int = 0) {
        state.withLock { $0.faults.append((call, errno, skipping)) }
    }

    /// The process dies (SIGKILL) but the machine keeps running: open files are closed, and everything written
    /// stays in the "page cache" — still not durable until synced, so a later `powerCut` can lose it.
    public func crashProcess() { state.withLock { $0.open = [:]; $0.journal.append("process crash") } }
    public func setDiskFull(_ full: Bool) { state.withLock { $0.diskFull = full } }
    public var journal: [String] { state.withLock { $0.journal } }
    public func clearJournal() { state.withLock { $0.journal.removeAll() } }

    /// The bytes of `path` as the running system sees them (nil if absent).
    public func contents(of path: String) -> [UInt8]? {
        state.withLock { s in s.entries[path].map { s.inodes[$0]!.current } }
    }

    /// Replaces the contents of `path` (durably), for corruption tests.
    public func overwrite(_ path: String, with bytes: [UInt8]) {
        state.withLock { s in
            guard let ino = s.entries[path] else { return }
            s.inodes[ino]!.current = bytes
            s.inodes[ino]!.durable = bytes
            s.inodes[ino]!.pending = []
        }
    }

    private static func dirname(_ path: String) -> String {
        guard let i = path.lastIndex(of: "/") else { return "." }
        return i == path.startIndex ? "/" : String(path[..<i])
    }

    private func check(_ s: inout State, _ call: String, _ path: String) throws(StoreError) {
        if let i = s.faults.firstIndex(where: { $0.call == call }) {
            if s.faults[i].skip > 0 {
                s.faults[i].skip -= 1
                return
            }
            let f = s.faults.remove(at: i)
            s.journal.append("fail \(call) \(path)")
            throw StoreError(call: call, path: path, errno: f.errno)
        }
    }

    public func open(_ path: String, create: Bool) throws(StoreError) -> FileID {
        try state.withLock { s throws(StoreError) -> FileID in
            try check(&s, "open", path)
            guard s.directories.contains(Self.dirname(path)) else { throw StoreError(call: "open", path: path, errno: ENOENT) }
            let ino: Int
            if let existing = s.entries[path] {
                ino = existing
            } else {
                guard create else { throw StoreError(call: "open", path: path, errno: ENOENT) }
                ino = s.nextInode
                s.nextInode += 1
                s.inodes[ino] = Inode()
                s.entries[path] = ino
                s.pendingDirOps[Self.dirname(path), default: []].append(.link(path, ino))
                s.journal.append("create \(path)")
            }
            let fd = s.nextFD
            s.nextFD += 1
            s.open[fd] = (ino, path)
            return FileID(raw: fd)
        }
    }

    public func close(_ file: FileID) { _ = state.withLock { $0.open.removeValue(forKey: file.raw) } }

    private func inode(_ s: State, _ file: FileID, _ call: String, _ path: String) throws(StoreError) -> Int {
        guard let o = s.open[file.raw] else { throw StoreError(call: call, path: path, errno: EBADF) }
        return o.inode
    }

    public func size(_ file: FileID, path: String) throws(StoreError) -> Int64 {
        try state.withLock { s throws(StoreError) -> Int64 in
            Int64(s.inodes[try inode(s, file, "fstat", path)]!.current.count)
        }
    }

    public func read(_ file: FileID, path: String, count: Int, at offset: Int64) throws(StoreError) -> [UInt8] {
        try state.withLock { s throws(StoreError) -> [UInt8] in
            try check(&s, "pread", path)
            let data = s.inodes[try inode(s, file, "pread", path)]!.current
            guard offset >= 0, Int(offset) + count <= data.count else {
                throw StoreError(call: "pread", path: path, errno: 0, detail: "unexpected end of file at \(data.count)")
            }
            return Array(data[Int(offset)..<Int(offset) + count])
        }
    }

    public func write(_ file: FileID, path: String, _ bytes: [UInt8], at offset: Int64) throws(StoreError) {
        try state.withLock { s throws(StoreError) in
            try check(&s, "pwrite", path)
            if s.diskFull { throw StoreError(call: "pwrite", path: path, errno: ENOSPC) }
            let ino = try inode(s, file, "pwrite", path)
            Self.apply(.write(offset: offset, bytes: bytes), to: &s.inodes[ino]!.current)
            s.inodes[ino]!.pending.append(.write(offset: offset, bytes: bytes))
            s.journal.append("write \(path) \(offset)+\(bytes.count)")
        }
    }

    public func sync(_ file: FileID, path: String) throws(StoreError) {
        try state.withLock { s throws(StoreError) in
            try check(&s, "fdatasync", path)
            let ino = try inode(s, file, "fdatasync", path)
            s.inodes[ino]!.durable = s.inodes[ino]!.current
            s.inodes[ino]!.pending = []
            s.journal.append("sync \(path)")
        }
    }

    public func truncate(_ file: FileID, path: String, to size: Int64) throws(StoreError) {
        try state.withLock { s throws(StoreError) in
            try check(&s, "ftruncate", path)
            let ino = try inode(s, file, "ftruncate", path)
            Self.apply(.truncate(size), to: &s.inodes[ino]!.current)
            s.inodes[ino]!.pending.append(.truncate(size))
            s.journal.append("truncate \(path) \(size)")
        }
    }

    public func rename(_ from: String, to: String) throws(StoreError) {
        try state.withLock { s throws(StoreError) in
            try check(&s, "rename", from)
            guard let ino = s.entries.removeValue(forKey: from) else { throw StoreError(call: "rename", path: from, errno: ENOENT) }
            s.entries[to] = ino
            s.pendingDirOps[Self.dirname(to), default: []].append(.rename(from, to, ino))
            s.journal.append("rename \(from) \(to)")
        }
    }

    public func remove(_ path: String) throws(StoreError) {
        try state.withLock { s throws(StoreError) in
            try check(&s, "unlink", path)
            guard s.entries.removeValue(forKey: path) != nil else { return }
            s.pendingDirOps[Self.dirname(path), default: []].append(.unlink(path))
            s.journal.append("unlink \(path)")
        }
    }

    public func makeDirectories(_ path: String) throws(StoreError) {
        state.withLock { s in
            var current = ""
            for part in path.split(separator: "/") {
                current += "/" + part
                s.directories.insert(current)
            }
        }
    }

    public func list(_ directory: String) throws(StoreError) -> [String] {
        try state.withLock { s throws(StoreError) -> [String] in
            guard s.directories.contains(directory) else { throw StoreError(call: "opendir", path: directory, errno: ENOENT) }
            return s.entries.keys.filter { Self.dirname($0) == directory }.map { String($0.dropFirst(directory.count + 1)) }
        }
    }

    public func syncDirectory(_ directory: String) throws(StoreError) {
        try state.withLock { s throws(StoreError) in
            try check(&s, "fsync", directory)
            for op in s.pendingDirOps.removeValue(forKey: directory) ?? [] { Self.apply(op, to: &s.durableEntries) }
            s.journal.append("syncdir \(directory)")
        }
    }

    private static func apply(_ op: FileOp, to data: inout [UInt8]) {
        switch op {
        case .write(let offset, let bytes):
            let end = Int(offset) + bytes.count
            if data.count < end { data.append(contentsOf: repeatElement(0, count: end - data.count)) }
            data.replaceSubrange(Int(offset)..<end, with: bytes)
        case .truncate(let size):
            if data.count > Int(size) { data.removeSubrange(Int(size)...) } else {
                data.append(contentsOf: repeatElement(0, count: Int(size) - data.count))
            }
        }
    }

    private static func apply(_ op: DirOp, to entries: inout [String: Int]) {
        switch op {
        case .link(let path, let ino): entries[path] = ino
        case .unlink(let path): entries.removeValue(forKey: path)
        case .rename(let from, let to, let ino):
            entries.removeValue(forKey: from)
            entries[to] = ino
        }
    }

    /// Loses power: every open file is closed, and each file and directory comes back as its synced state plus a
    /// random prefix of its later operations, the last write of that prefix torn at a 512-byte boundary.
    /// Returns a description of what was kept, for failure messages.
    @discardableResult
    public func powerCut(seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed)
        return state.withLock { s in
            var report: [String] = []
            // Directories: a prefix of the unsynced entry changes reached the disk.
            var entries = s.durableEntries
            for (dir, ops) in s.pendingDirOps.sorted(by: { $0.key < $1.key }) {
                let keep = Int(rng.next() % UInt64(ops.count + 1))
                for op in ops.prefix(keep) { Self.apply(op, to: &entries) }
                report.append("\(dir): \(keep)/\(ops.count) entry changes kept")
            }
            // Files: synced bytes plus a prefix of later operations, the last write torn.
            var inodes: [Int: Inode] = [:]
            for (path, ino) in entries.sorted(by: { $0.key < $1.key }) where inodes[ino] == nil {
                let node = s.inodes[ino]!
                var data = node.durable
                let keep = Int(rng.next() % UInt64(node.pending.count + 1))
                for (i, op) in node.pending.prefix(keep).enumerated() {
                    if i == keep - 1, case .write(let offset, let bytes) = op {
                        // Torn: only the part up to some 512-byte boundary of the file reached the disk.
                        let end = offset + Int64(bytes.count)
                        let firstBoundary = (offset / 512 + 1) * 512
                        var cuts: [Int64] = [offset]
                        var b = firstBoundary
                        while b < end { cuts.append(b); b += 512 }
                        cuts.append(end)
                        let cut = cuts[Int(rng.next() % UInt64(cuts.count))]
                        Self.apply(.write(offset: offset, bytes: Array(bytes.prefix(Int(cut - offset)))), to: &data)
                    } else {
                        Self.apply(op, to: &data)
                    }
                }
                inodes[ino] = Inode(current: data, durable: data, pending: [])
                report.append("\(path): \(node.durable.count) synced bytes + \(keep)/\(node.pending.count) later ops -> \(data.count) bytes")
            }
            s.inodes = inodes
            s.entries = entries
            s.durableEntries = entries
            s.pendingDirOps = [:]
            s.open = [:]
            s.faults = []
            s.diskFull = false
            s.journal.append("power cut")
            return report.joined(separator: "\n")
        }
    }
}
