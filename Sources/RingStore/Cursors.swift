import KilnTallyCore

/// Durable named positions of readers (e.g. the uplink) in a log: one small file per cursor under `cursors/`,
/// replaced atomically (write a temp file, sync it, rename it over, sync the directory).
struct Cursors {
    let fs: any FileIO
    let directory: String

    init(fs: any FileIO, directory: String) {
        self.fs = fs
        self.directory = directory
    }

    /// Names of the cursors present; anything else a person left in the directory is ignored.
    func names() throws(StoreError) -> [String] {
        try fs.list(directory).filter { isPlainName($0) }
    }

    /// The cursor's value, nil if it does not exist.
    func read(_ name: String) throws(StoreError) -> UInt64? {
        let path = directory + "/" + name
        let file: FileID
        do {
            file = try fs.open(path, create: false)
        } catch where error.errno == 2 /* ENOENT */ {
            return nil
        }
        defer { fs.close(file) }
        let size = try fs.size(file, path: path)
        let bytes = try fs.read(file, path: path, count: Int(min(size, 64)), at: 0)
        guard let v = UInt64(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " \n")) else {
            throw StoreError(call: "read", path: path, errno: 0, detail: "cursor file is not a number")
        }
        return v
    }

    func write(_ name: String, _ seq: UInt64) throws(StoreError) {
        precondition(isPlainName(name), "cursor names are [A-Za-z0-9_-]")
        let tmp = directory + "/." + name + ".tmp"
        let file = try fs.open(tmp, create: true)
        do {
            try fs.truncate(file, path: tmp, to: 0)
            try fs.write(file, path: tmp, Array("\(seq)\n".utf8), at: 0)
            try fs.sync(file, path: tmp)
        } catch {
            fs.close(file)
            throw error
        }
        fs.close(file)
        try fs.rename(tmp, to: directory + "/" + name)
        try fs.syncDirectory(directory)
    }

    /// The highest value of any readable cursor (unreadable ones are skipped): the numbering floor.
    func highest() -> UInt64 {
        ((try? names()) ?? []).compactMap { try? read($0) }.max() ?? 0
    }

    /// The lowest value of any readable cursor, nil when there is none.
    func lowest() -> UInt64? {
        ((try? names()) ?? []).compactMap { try? read($0) }.min()
    }
}
