import KilnTallyCore

/// Durable named positions of readers (e.g. the uplink) in a log: one small file per cursor under `cursors/`,
/// replaced atomically (write a temp file, sync it, rename it over, sync the directory).
///
/// File format (text, so a technician can read it): `kilntally-cursor 1\n<sequence>\n` — a magic word and the
/// format version, then the number. A bare number (the walking skeleton's format) is still read.
struct Cursors {
    static let magic = "kilntally-cursor"
    static let formatVersion = 1

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
        guard let bytes = try fs.readWhole(path, limit: 128) else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { String($0).trimmingCharacters(in: " ") }
        if lines.count == 1, let v = UInt64(lines[0]) { return v }  // the skeleton's bare number
        let head = lines.first?.split(separator: " ") ?? []
        guard head.count == 2, head[0] == Self.magic, let version = Int(head[1]) else {
            throw StoreError(call: "read", path: path, errno: 0, detail: "not a kilntally cursor file")
        }
        guard version <= Self.formatVersion else {
            throw StoreError(call: "read", path: path, errno: 0,
                             detail: "cursor format version \(version) is newer than this binary reads (\(Self.formatVersion))")
        }
        guard lines.count >= 2, let v = UInt64(lines[1]) else {
            throw StoreError(call: "read", path: path, errno: 0, detail: "cursor file has no sequence number")
        }
        return v
    }

    func write(_ name: String, _ seq: UInt64) throws(StoreError) {
        precondition(isPlainName(name), "cursor names are [A-Za-z0-9_-]")
        try fs.replaceAtomically(directory + "/" + name, with: Array("\(Self.magic) \(Self.formatVersion)\n\(seq)\n".utf8))
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
