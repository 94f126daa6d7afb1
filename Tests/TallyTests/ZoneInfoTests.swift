import Foundation
import KilnTallyCore
@testable import Tally
import Testing
import TestSupport

/// The shift calendar's time zones come from the system's tzdata (`ZoneDatabase`, our TZif and POSIX TZ reader).
/// The oracle is Python's `zoneinfo`, an independent implementation reading the same files.
@Suite("Time zones from the system's tzdata")
struct ZoneInfoTests {
    /// `2026-03-29T01:00:00Z` and the like, as seconds.
    func seconds(_ text: String) -> Int64 { UTCInstant(rfc3339: text)!.nanosecondsSinceEpoch / 1_000_000_000 }

    @Test("every zone agrees with Python's zoneinfo, 1971 to 2200: at random instants and a second either side of each change")
    func agreesWithPythonZoneinfo() async throws {
        let zones = ZoneRules.knownIdentifiers
        #expect(zones.count > 300)
        var rng = SplitMix64(seed: 0x7A6F_6E65)
        let from = seconds("1971-01-01T00:00:00Z"), to = seconds("2200-01-01T00:00:00Z")
        var lines: [[UInt8]] = []
        var ours: [String: Int] = [:]
        for zone in zones {
            let info = try #require(ZoneDatabase.zone(zone), "\(zone) is listed but does not load")
            var instants = (0..<40).map { _ in from + Int64(rng.next() % UInt64(to - from)) }
            // Each change in the file, and each change the footer rule makes in a few years past the last one.
            for t in info.transitions where t > from && t < to { instants += [t - 1, t] }
            var t = max(info.transitions.last ?? from, from)
            var previous = info.offset(atSecond: t)
            let horizon = t + 6 * 366 * 86_400
            while t < horizon {  // hourly steps find the rule's changes; then the exact second by bisection
                let next = t + 3600
                let o = info.offset(atSecond: next)
                if o != previous {
                    var lo = t, hi = next
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2
                        if info.offset(atSecond: mid) == previous { lo = mid } else { hi = mid }
                    }
                    instants += [lo, hi]
                    previous = o
                }
                t = next
            }
            for s in instants {
                ours["\(zone) \(s)"] = info.offset(atSecond: s)
                lines.append(Array("\(zone) \(s)".utf8))
            }
        }
        let dir = try TemporaryDirectory(prefix: "zone-offsets")
        try Data(lines.map { $0 + [0x0A] }.joined()).write(to: URL(fileURLWithPath: dir.file("in")))
        _ = try await runTool(RepoPaths.venvPython, [RepoPaths.peerScript("zone_offsets.py"), dir.file("in"), dir.file("out")],
                              in: dir, name: "zone_offsets")
        let answers = try String(contentsOfFile: dir.file("out"), encoding: .utf8).split(separator: "\n")
        #expect(answers.count == lines.count)
        var mismatches: [String] = []
        for answer in answers {
            let parts = answer.split(separator: " ")
            let key = "\(parts[0]) \(parts[1])"
            if ours[key] != Int(parts[2]) { mismatches.append("\(key): ours \(ours[key].map(String.init) ?? "none"), zoneinfo \(parts[2])") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(answers.count) differ, e.g. \(mismatches.prefix(10))")
    }

    @Test("Berlin's 2026 changes, Sydney's southern summer and a fixed zone, from the files")
    func knownChanges() throws {
        let berlin = try #require(ZoneRules(identifier: "Europe/Berlin"))
        #expect(berlin.offset(atSecond: seconds("2026-03-29T00:59:59Z")) == 3600)
        #expect(berlin.offset(atSecond: seconds("2026-03-29T01:00:00Z")) == 7200)
        #expect(berlin.offset(atSecond: seconds("2026-10-25T00:59:59Z")) == 7200)
        #expect(berlin.offset(atSecond: seconds("2026-10-25T01:00:00Z")) == 3600)
        // 2150 is past every transition a file lists: the footer's rule (CET-1CEST,M3.5.0,M10.5.0/3) answers.
        #expect(berlin.offset(atSecond: seconds("2150-03-29T00:59:59Z")) == 3600)  // last Sunday of March 2150 is the 29th
        #expect(berlin.offset(atSecond: seconds("2150-03-29T01:00:00Z")) == 7200)
        let sydney = try #require(ZoneRules(identifier: "Australia/Sydney"))
        #expect(sydney.offset(atSecond: seconds("2027-01-15T00:00:00Z")) == 11 * 3600)
        #expect(sydney.offset(atSecond: seconds("2027-07-15T00:00:00Z")) == 10 * 3600)
        #expect(try #require(ZoneRules(identifier: "Asia/Shanghai")).offset(atSecond: seconds("2026-11-24T00:00:00Z")) == 8 * 3600)
        #expect(try #require(ZoneRules(identifier: "Etc/GMT-8")).offset(atSecond: seconds("2100-06-01T00:00:00Z")) == 8 * 3600)
        #expect(try #require(ZoneRules(identifier: "UTC")).offset(atSecond: 0) == 0)
    }

    @Test("POSIX TZ strings: offsets west of UTC become east, default and explicit rule times, Jn and n dates")
    func posixRules() throws {
        let cet = try #require(PosixTZRule("CET-1CEST,M3.5.0,M10.5.0/3"))
        #expect(cet.standard == 3600)
        #expect(cet.daylight == .init(offset: 7200, start: .month(3, week: 5, weekday: 0), startTime: 7200,
                                      end: .month(10, week: 5, weekday: 0), endTime: 3 * 3600))
        #expect(PosixTZRule("<+08>-8") == PosixTZRule(standard: 8 * 3600, daylight: nil))
        #expect(PosixTZRule("<-0330>3:30")?.standard == -(3 * 3600 + 1800))
        // Version 3: a rule time past 24 h (Greenland's -2 h "/-1" and Paraguay-style "/24" live in real footers).
        let greenland = try #require(PosixTZRule("<-02>2<-01>,M3.5.0/-1,M10.5.0/0"))
        #expect(greenland.daylight?.startTime == -3600)
        // Permanent daylight time written as a rule that never ends: daylight all year.
        let always = try #require(PosixTZRule("EST5EDT,0/0,J365/25"))
        for date in ["2030-01-01T05:00:00Z", "2030-07-01T00:00:00Z", "2030-12-31T23:00:00Z"] {
            #expect(always.offset(atSecond: seconds(date)) == -4 * 3600, "\(date)")
        }
        // J60 is March 1 in every year; 59 (zero-based) is February 29 in a leap year, March 1 otherwise.
        #expect(PosixTZRule.RuleDate.julian(60).day(in: 2028) == LocalDate("2028-03-01")!.daysSinceEpoch)
        #expect(PosixTZRule.RuleDate.zeroBased(59).day(in: 2028) == LocalDate("2028-02-29")!.daysSinceEpoch)
        #expect(PosixTZRule.RuleDate.zeroBased(59).day(in: 2027) == LocalDate("2027-03-01")!.daysSinceEpoch)
        // M2.5.0: the last Sunday of February 2026 is the 22nd (there is no fifth).
        #expect(PosixTZRule.RuleDate.month(2, week: 5, weekday: 0).day(in: 2026) == LocalDate("2026-02-22")!.daysSinceEpoch)
        for bad in ["", "AB", "CET", "CET-1CEST,M13.1.0,M10.5.0", "CET-1CEST,M3.5.0", "CET-1CEST,M3.5.7,M10.5.0",
                    "CET-25", "CET-1CEST,J0,J365", "<+0>-8", "CET-1CEST,M3.5.0,M10.5.0/3x"] {
            #expect(PosixTZRule(bad) == nil, "\(bad)")
        }
    }

    @Test("damaged files are refused, never half read: every prefix of a real zone, bytes that are not TZif, leap seconds")
    func damagedFiles() throws {
        let path = ZoneDatabase.directory + "/Europe/Berlin"
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let whole = try ZoneInfo.parse(bytes)
        #expect(whole.rule != nil)
        for n in 0..<bytes.count - 1 {  // the last byte is the footer's closing newline
            #expect(throws: ZoneInfo.ParseError.self, "prefix of \(n) bytes") { try ZoneInfo.parse(Array(bytes[..<n])) }
        }
        #expect(throws: ZoneInfo.ParseError.notTZif) { try ZoneInfo.parse(Array("# tzdata source text\n".utf8) + bytes) }
        // Read as a version 1 file (only the 32-bit block counts) whose first transition names a type that does not
        // exist. The header's timecnt is at bytes 32...35; the type indices follow the 4-byte transition times.
        let timecnt = Int(bytes[32]) << 24 | Int(bytes[33]) << 16 | Int(bytes[34]) << 8 | Int(bytes[35])
        var badIndex = bytes
        badIndex[4] = 0
        badIndex[44 + timecnt * 4] = 0xFF
        #expect(throws: ZoneInfo.ParseError.badTypeIndex) { try ZoneInfo.parse(badIndex) }
        let leap = try [UInt8](Data(contentsOf: URL(fileURLWithPath: ZoneDatabase.directory + "/right/Europe/Berlin")))
        #expect(throws: ZoneInfo.ParseError.leapSeconds) { try ZoneInfo.parse(leap) }
    }

    @Test("identifiers are zone names, never paths out of the database; unknown ones are nil and listed ones load")
    func identifiers() {
        for bad in ["../../etc/passwd", "/etc/passwd", "Europe/../../../etc/passwd", "right/Europe/Berlin", "",
                    "Europe//Berlin", ".hidden", "Mars/Olympus_Mons", "zone.tab", "Europe/Berlin/"] {
            #expect(ZoneRules(identifier: bad) == nil, "\(bad)")
        }
        let known = ZoneRules.knownIdentifiers
        for expected in ["Asia/Shanghai", "Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT-8"] {
            #expect(known.contains(expected), "\(expected)")
        }
        #expect(!known.contains { $0.hasPrefix("posix/") || $0.hasPrefix("right/") || $0.contains(".") || $0 == "localtime" })
        #expect(ZoneRules(identifier: "Asia/Shanghai") == ZoneRules(identifier: "Asia/Shanghai"))
    }
}
