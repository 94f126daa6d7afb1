#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import KilnTallyCore
import Synchronization

/// A zone's UTC offsets as the system's time-zone database gives them: a TZif file (RFC 8536) under
/// `/usr/share/zoneinfo` (or `$TZDIR`), the files Debian's `tzdata` package installs and updates.
///
/// The offset at an instant is the one of the last transition at or before it. Before the first transition it is
/// time type 0's (RFC 8536 §3.2); at and after the last one it is the footer's POSIX TZ rule's, when the file has one
/// ("slim" files list transitions only until the rule takes over, "fat" ones until 2037).
///
/// Immutable once parsed; shared between threads as a `Sendable` final class.
final class ZoneInfo: Sendable {
    /// UTC seconds, strictly ascending.
    let transitions: [Int64]
    /// `offsets[i]` (seconds east of UTC) is in force from `transitions[i]`.
    let offsets: [Int32]
    /// In force before the first transition.
    let initialOffset: Int32
    /// In force from the last transition on (or at all times when there are no transitions), if the file has one.
    let rule: PosixTZRule?

    init(transitions: [Int64], offsets: [Int32], initialOffset: Int32, rule: PosixTZRule?) {
        self.transitions = transitions
        self.offsets = offsets
        self.initialOffset = initialOffset
        self.rule = rule
    }

    /// Seconds east of UTC at the whole UTC second `t`.
    func offset(atSecond t: Int64) -> Int {
        guard let last = transitions.last else { return rule?.offset(atSecond: t) ?? Int(initialOffset) }
        if t < transitions[0] { return Int(initialOffset) }
        if t >= last { return rule?.offset(atSecond: t) ?? Int(offsets[offsets.count - 1]) }
        // The last transition at or before t: transitions[lo] <= t < transitions[hi].
        var lo = 0, hi = transitions.count - 1
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2
            if transitions[mid] <= t { lo = mid } else { hi = mid }
        }
        return Int(offsets[lo])
    }

    /// Why bytes are not a usable TZif file.
    enum ParseError: Error, Equatable, CustomStringConvertible {
        case notTZif
        case truncated
        case leapSeconds
        case badTypeIndex
        case unordered
        case badFooter(String)

        var description: String {
            switch self {
            case .notTZif: "is not a TZif file"
            case .truncated: "is truncated"
            case .leapSeconds: "counts leap seconds (a right/ zone); use the zone without the right/ prefix"
            case .badTypeIndex: "has a transition to a time type it does not define"
            case .unordered: "has transitions out of order"
            case .badFooter(let s): "has a POSIX TZ footer that cannot be read: \(s)"
            }
        }
    }

    /// Parses a TZif file of any version. Version 2 and later files are read from their 64-bit block and footer.
    static func parse(_ bytes: [UInt8]) throws(ParseError) -> ZoneInfo {
        var r = ByteReader(bytes: bytes)
        let v1 = try r.header()
        guard v1.version != 0 else { return try r.block(v1, timeSize: 4, footer: false) }
        try r.skip(v1.blockSize(timeSize: 4))
        let v2 = try r.header()
        return try r.block(v2, timeSize: 8, footer: true)
    }
}

/// The counts of a TZif header (RFC 8536 §3.1).
private struct TZifHeader {
    var version: UInt8, isutcnt: Int, isstdcnt: Int, leapcnt: Int, timecnt: Int, typecnt: Int, charcnt: Int

    func blockSize(timeSize: Int) -> Int {
        timecnt * timeSize + timecnt + typecnt * 6 + charcnt + leapcnt * (timeSize + 4) + isstdcnt + isutcnt
    }
}

private struct ByteReader {
    let bytes: [UInt8]
    var at = 0

    mutating func skip(_ n: Int) throws(ZoneInfo.ParseError) {
        guard n >= 0, bytes.count - at >= n else { throw .truncated }
        at += n
    }

    mutating func u8() throws(ZoneInfo.ParseError) -> UInt8 {
        guard at < bytes.count else { throw .truncated }
        defer { at += 1 }
        return bytes[at]
    }

    mutating func be(_ size: Int) throws(ZoneInfo.ParseError) -> UInt64 {
        guard bytes.count - at >= size else { throw .truncated }
        var v: UInt64 = 0
        for i in 0..<size { v = v << 8 | UInt64(bytes[at + i]) }
        at += size
        return v
    }

    mutating func count() throws(ZoneInfo.ParseError) -> Int {
        let v = try be(4)
        guard v < 1 << 24 else { throw .truncated }  // no real zone comes near; keeps the size arithmetic small
        return Int(v)
    }

    mutating func header() throws(ZoneInfo.ParseError) -> TZifHeader {
        guard bytes.count - at >= 44, bytes[at..<at + 4].elementsEqual("TZif".utf8) else { throw .notTZif }
        at += 4
        let version = try u8()
        guard version == 0 || version >= UInt8(ascii: "2") else { throw .notTZif }
        try skip(15)
        return TZifHeader(version: version, isutcnt: try count(), isstdcnt: try count(), leapcnt: try count(),
                          timecnt: try count(), typecnt: try count(), charcnt: try count())
    }

    mutating func block(_ h: TZifHeader, timeSize: Int, footer: Bool) throws(ZoneInfo.ParseError) -> ZoneInfo {
        guard h.leapcnt == 0 else { throw .leapSeconds }
        guard h.typecnt > 0 else { throw .badTypeIndex }
        guard bytes.count - at >= h.blockSize(timeSize: timeSize) else { throw .truncated }
        var times: [Int64] = []
        times.reserveCapacity(h.timecnt)
        for _ in 0..<h.timecnt {
            let raw = try be(timeSize)
            times.append(timeSize == 4 ? Int64(Int32(truncatingIfNeeded: raw)) : Int64(bitPattern: raw))
        }
        var indices: [Int] = []
        indices.reserveCapacity(h.timecnt)
        for _ in 0..<h.timecnt { indices.append(Int(try u8())) }
        var typeOffsets: [Int32] = []
        for _ in 0..<h.typecnt {
            typeOffsets.append(Int32(bitPattern: UInt32(try be(4))))
            try skip(2)  // isdst, desigidx: the offset is all a shift calendar needs
        }
        try skip(h.charcnt + h.isstdcnt + h.isutcnt)
        guard indices.allSatisfy({ $0 < h.typecnt }) else { throw .badTypeIndex }
        guard zip(times, times.dropFirst()).allSatisfy({ $0 < $1 }) else { throw .unordered }
        var rule: PosixTZRule? = nil
        if footer {
            guard try u8() == UInt8(ascii: "\n") else { throw .badFooter("no newline before it") }
            guard let end = bytes[at...].firstIndex(of: UInt8(ascii: "\n")) else { throw .badFooter("no newline after it") }
            let text = String(decoding: bytes[at..<end], as: UTF8.self)
            at = end + 1
            if !text.isEmpty {
                guard let parsed = PosixTZRule(text) else { throw .badFooter(text) }
                rule = parsed
            }
        }
        return ZoneInfo(transitions: times, offsets: indices.map { typeOffsets[$0] }, initialOffset: typeOffsets[0],
                        rule: rule)
    }
}

/// A POSIX TZ string as TZif footers carry it (RFC 8536 §3.3, POSIX.1 with the version 3 extensions: hours up to
/// ±167 in rule times): `CET-1CEST,M3.5.0,M10.5.0/3`, `<+08>-8`, `EST5EDT,M3.2.0,M11.1.0`.
struct PosixTZRule: Sendable, Equatable {
    /// Seconds east of UTC in standard time (POSIX writes it west of UTC: `CET-1` is +3600 here).
    let standard: Int
    let daylight: Daylight?

    struct Daylight: Sendable, Equatable {
        /// Seconds east of UTC while daylight time is in force.
        var offset: Int
        /// When it starts, in local standard time, and ends, in local daylight time.
        var start: RuleDate, startTime: Int, end: RuleDate, endTime: Int
    }

    enum RuleDate: Sendable, Equatable {
        /// `Jn`: day 1...365, February 29 never counted.
        case julian(Int)
        /// `n`: day 0...365, February 29 counted.
        case zeroBased(Int)
        /// `Mm.w.d`: the w-th (5 = last) weekday d (0 = Sunday) of month m.
        case month(Int, week: Int, weekday: Int)
    }

    init(standard: Int, daylight: Daylight?) {
        self.standard = standard
        self.daylight = daylight
    }

    init?(_ text: String) {
        var p = TZStringParser(chars: Array(text.utf8))
        guard p.name(), let std = p.offset(maxHours: 24) else { return nil }
        standard = -std
        if p.atEnd { daylight = nil; return }
        guard p.name() else { return nil }
        var dst = standard + 3600
        if !p.atEnd, p.peek != UInt8(ascii: ",") {
            guard let o = p.offset(maxHours: 24) else { return nil }
            dst = -o
        }
        let rules: (RuleDate, Int, RuleDate, Int)
        if p.atEnd {
            // POSIX leaves the default rules to the implementation; the US rules are what glibc and tzcode assume.
            rules = (.month(3, week: 2, weekday: 0), 7200, .month(11, week: 1, weekday: 0), 7200)
        } else {
            guard p.eat(","), let s = p.date(), let st = p.ruleTime(), p.eat(","), let e = p.date(), let et = p.ruleTime(),
                  p.atEnd
            else { return nil }
            rules = (s, st, e, et)
        }
        daylight = Daylight(offset: dst, start: rules.0, startTime: rules.1, end: rules.2, endTime: rules.3)
    }

    /// Seconds east of UTC at the whole UTC second `t`.
    func offset(atSecond t: Int64) -> Int {
        guard let d = daylight else { return standard }
        let year = Int64(RFC3339.civilFromDays(floorDivMod(t + Int64(standard), 86_400).quotient).0)
        let start = d.start.day(in: year) * 86_400 + Int64(d.startTime) - Int64(standard)
        let end = d.end.day(in: year) * 86_400 + Int64(d.endTime) - Int64(d.offset)
        let inDaylight = start < end ? (start <= t && t < end) : !(end <= t && t < start)
        return inDaylight ? d.offset : standard
    }
}

extension PosixTZRule.RuleDate {
    /// Days since 1970-01-01 of this date in `year`.
    func day(in year: Int64) -> Int64 {
        let jan1 = LocalDate(year: year, month: 1, day: 1)!.daysSinceEpoch
        switch self {
        case .julian(let n):
            return jan1 + Int64(n - 1) + (LocalDate.daysIn(month: 2, year: year) == 29 && n >= 60 ? 1 : 0)
        case .zeroBased(let n):
            return jan1 + Int64(n)
        case .month(let m, let w, let wd):
            let first = LocalDate(year: year, month: m, day: 1)!.daysSinceEpoch
            let firstWeekday = Int(floorDivMod(first + 4, 7).remainder)  // 1970-01-01 was a Thursday (4)
            var day = 1 + (wd - firstWeekday + 7) % 7 + (w - 1) * 7
            let length = LocalDate.daysIn(month: m, year: year)
            while day > length { day -= 7 }
            return first + Int64(day - 1)
        }
    }
}

private struct TZStringParser {
    let chars: [UInt8]
    var at = 0

    var atEnd: Bool { at == chars.count }
    var peek: UInt8? { at < chars.count ? chars[at] : nil }

    mutating func eat(_ c: Character) -> Bool {
        guard let a = c.asciiValue, peek == a else { return false }
        at += 1
        return true
    }

    /// `ABC` (three or more letters) or `<+08>` (three or more of letters, digits, `+`, `-`).
    mutating func name() -> Bool {
        let begin = at
        if eat("<") {
            while let c = peek, c != UInt8(ascii: ">") { at += 1 }
            guard at - begin - 1 >= 3, eat(">") else { return false }
            return true
        }
        while let c = peek, (c | 0x20) >= UInt8(ascii: "a"), (c | 0x20) <= UInt8(ascii: "z") { at += 1 }
        return at - begin >= 3
    }

    mutating func number() -> Int? {
        let begin = at
        var v = 0
        while let c = peek, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9"), at - begin < 4 {
            v = v * 10 + Int(c - UInt8(ascii: "0"))
            at += 1
        }
        return at > begin ? v : nil
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, the sign as written.
    mutating func offset(maxHours: Int) -> Int? {
        let negative = eat("-")
        if !negative { _ = eat("+") }
        guard let h = number(), h <= maxHours else { return nil }
        var seconds = h * 3600
        if eat(":") {
            guard let m = number(), m < 60 else { return nil }
            seconds += m * 60
            if eat(":") {
                guard let s = number(), s < 60 else { return nil }
                seconds += s
            }
        }
        return negative ? -seconds : seconds
    }

    mutating func date() -> PosixTZRule.RuleDate? {
        if eat("J") {
            guard let n = number(), (1...365).contains(n) else { return nil }
            return .julian(n)
        }
        if eat("M") {
            guard let m = number(), (1...12).contains(m), eat("."), let w = number(), (1...5).contains(w), eat("."),
                  let d = number(), (0...6).contains(d)
            else { return nil }
            return .month(m, week: w, weekday: d)
        }
        guard let n = number(), (0...365).contains(n) else { return nil }
        return .zeroBased(n)
    }

    /// `/[+-]h[:mm[:ss]]` (hours up to 167, TZif version 3), 02:00 when absent.
    mutating func ruleTime() -> Int? {
        guard eat("/") else { return 7200 }
        return offset(maxHours: 167)
    }
}

/// The system's time-zone database: `$TZDIR`, else `/usr/share/zoneinfo`. Each zone is read once per process.
enum ZoneDatabase {
    static var directory: String {
        if let dir = getenv("TZDIR"), dir.pointee != 0 { return String(cString: dir) }
        return "/usr/share/zoneinfo"
    }

    private static let cache = Mutex<[String: ZoneInfo]>([:])

    /// The zone's rules; nil when the identifier is not a zone in the database.
    static func zone(_ identifier: String) -> ZoneInfo? {
        if let hit = cache.withLock({ $0[identifier] }) { return hit }
        guard isPlausible(identifier), let bytes = readFile(directory + "/" + identifier),
              let info = try? ZoneInfo.parse(bytes)
        else { return nil }
        cache.withLock { $0[identifier] = info }
        return info
    }

    /// A relative path of `[A-Za-z0-9_+-]` components: never `..`, never absolute, never a leap-second zone.
    static func isPlausible(_ identifier: String) -> Bool {
        let parts = identifier.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.isEmpty, parts.count <= 3, parts.first != "right" else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && part.count <= 64 && part.first != "." && part.first != "-"
                && part.utf8.allSatisfy { c in
                    (c | 0x20 >= UInt8(ascii: "a") && c | 0x20 <= UInt8(ascii: "z"))
                        || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                        || c == UInt8(ascii: "_") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")
                }
        }
    }

    /// Every zone in the database, for "did you mean" in configuration errors: the TZif files outside `posix/` and
    /// `right/`, less `localtime`, `posixrules` and `Factory`.
    static var knownIdentifiers: [String] {
        var out: [String] = []
        walk(directory, prefix: "", into: &out, depth: 0)
        return out.sorted()
    }

    private static func walk(_ path: String, prefix: String, into out: inout [String], depth: Int) {
        guard depth < 3, let dir = opendir(path) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard !name.hasPrefix("."), !["posix", "right", "localtime", "posixrules", "Factory"].contains(name)
            else { continue }
            let full = path + "/" + name, id = prefix + name
            var st = stat()
            guard stat(full, &st) == 0 else { continue }
            if st.st_mode & S_IFMT == S_IFDIR {
                walk(full, prefix: id + "/", into: &out, depth: depth + 1)
            } else if st.st_mode & S_IFMT == S_IFREG, isPlausible(id), hasTZifMagic(full) {
                out.append(id)
            }
        }
    }

    private static func hasTZifMagic(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        return read(fd, &magic, 4) == 4 && magic == Array("TZif".utf8)
    }

    /// The whole file, if it is a regular file of at most 1 MiB (the largest zone is a few KiB).
    private static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size <= 1 << 20 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return nil }
            got += n
        }
        return bytes
    }
}
