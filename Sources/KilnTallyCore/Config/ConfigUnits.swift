/// Parsing and formatting of the config file's durations and byte sizes, plus small helpers (hash, suggestions).
public enum ConfigUnits {
    static let nanosecondUnits: [(String, Int64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ]

    /// Parses `"250ms"`, `"1.5s"`, `"5m"`, `"1h30m"` (one or more number-unit pairs; units ns, us, µs, ms, s, m, h,
    /// d; fractions allowed). Nil when malformed or out of range. A bare number without a unit is rejected.
    public static func parseDuration(_ text: String) -> Duration? {
        let scalars = Array(text.unicodeScalars)
        guard !scalars.isEmpty else { return nil }
        var i = 0
        var total: Int64 = 0
        while i < scalars.count {
            guard let (whole, fraction, fractionDigits) = number(scalars, &i) else { return nil }
            var unitText = ""
            while i < scalars.count, scalars[i].properties.isAlphabetic {
                unitText.unicodeScalars.append(scalars[i])
                i += 1
            }
            guard let unit = nanosecondUnits.first(where: { $0.0 == unitText })?.1 else { return nil }
            let (w, o1) = whole.multipliedReportingOverflow(by: unit)
            guard !o1 else { return nil }
            var part = w
            if fractionDigits > 0 {
                let f = (Double(fraction) / pow10(fractionDigits) * Double(unit)).rounded()
                guard f < 9e18 else { return nil }
                let (s, o2) = part.addingReportingOverflow(Int64(f))
                guard !o2 else { return nil }
                part = s
            }
            let (t, o3) = total.addingReportingOverflow(part)
            guard !o3 else { return nil }
            total = t
        }
        return .nanoseconds(total)
    }

    /// Parses `"512MiB"`, `"1GiB"`, `"64KiB"`, `"1000000"`, `"1.5GB"`, `"4 kB"` (binary KiB/MiB/GiB/TiB, decimal
    /// kB/KB/MB/GB/TB, `B` or no unit for bytes). Nil when malformed, out of range, or not a whole number of bytes.
    public static func parseByteSize(_ text: String) -> Int64? {
        let scalars = Array(text.unicodeScalars)
        var i = 0
        guard let (whole, fraction, fractionDigits) = number(scalars, &i), fractionDigits <= 6 else { return nil }
        if i < scalars.count, scalars[i] == " " { i += 1 }
        let unitText = String(String.UnicodeScalarView(scalars[i...]))
        let units: [String: Int64] = [
            "": 1, "B": 1,
            "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
            "kB": 1_000, "KB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000, "TB": 1_000_000_000_000,
        ]
        guard let unit = units[unitText] else { return nil }
        if unitText.isEmpty, i != scalars.count || text.last == " " { return nil }
        let (w, o1) = whole.multipliedReportingOverflow(by: unit)
        guard !o1 else { return nil }
        guard fractionDigits > 0 else { return w }
        let scale = Int64(pow10(fractionDigits))
        let (f, o2) = fraction.multipliedReportingOverflow(by: unit)
        guard !o2, f % scale == 0 else { return nil }
        let (sum, o3) = w.addingReportingOverflow(f / scale)
        return o3 ? nil : sum
    }

    /// Canonical text such as `1h30m` or `250ms` that `parseDuration` reads back exactly.
    public static func formatDuration(_ d: Duration) -> String {
        let (seconds, atto) = d.components
        var ns = seconds &* 1_000_000_000 &+ atto / 1_000_000_000
        if ns == 0 { return "0s" }
        var out = ns < 0 ? "-" : ""
        ns = abs(ns)
        for (name, size) in [("h", Int64(3_600_000_000_000)), ("m", 60_000_000_000), ("s", 1_000_000_000),
            ("ms", 1_000_000), ("us", 1_000), ("ns", 1)]
        where ns >= size {
            out += "\(ns / size)\(name)"
            ns %= size
        }
        return out
    }

    /// `512MiB`, `1GB`, or plain bytes: the largest unit that divides the size exactly.
    public static func formatByteSize(_ bytes: Int64) -> String {
        if bytes == 0 { return "0" }
        for (name, size) in [("TiB", Int64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
            ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("kB", 1_000)]
        where bytes % size == 0 {
            return "\(bytes / size)\(name)"
        }
        return String(bytes)
    }

    /// FNV-1a 64-bit of the bytes, as 16 lowercase hex digits.
    public static func fnv1a64Hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The candidate closest to `word` if it is close enough to be a likely typo (case, `_`/`-`, or a small
    /// edit distance with transpositions), or nil.
    public static func suggestion(for word: String, among candidates: [String]) -> String? {
        func normalized(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" } }
        let w = normalized(word)
        if let same = candidates.first(where: { normalized($0) == w }) { return same }
        var best: (String, Int)?
        for c in candidates {
            let n = c.count
            let threshold = n <= 4 ? 1 : (n <= 8 ? 2 : 3)
            let d = editDistance(Array(w), Array(normalized(c)))
            if d <= threshold, best == nil || d < best!.1 { best = (c, d) }
        }
        return best?.0
    }

    /// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
    static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = Swift.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = Swift.min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }

    /// Digits with an optional fraction: returns (whole, fraction digits as an integer, number of fraction digits).
    private static func number(_ s: [Unicode.Scalar], _ i: inout Int) -> (Int64, Int64, Int)? {
        func digit(_ c: Unicode.Scalar) -> Int64? {
            c.value >= 0x30 && c.value <= 0x39 ? Int64(c.value - 0x30) : nil
        }
        var whole: Int64 = 0
        var count = 0
        while i < s.count, let d = digit(s[i]) {
            let (m, o1) = whole.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(d)
            guard !o1, !o2 else { return nil }
            whole = a
            count += 1
            i += 1
        }
        guard count > 0 else { return nil }
        var fraction: Int64 = 0
        var fractionDigits = 0
        if i < s.count, s[i] == "." {
            i += 1
            while i < s.count, let d = digit(s[i]) {
                if fractionDigits < 15 {
                    fraction = fraction * 10 + d
                    fractionDigits += 1
                }
                i += 1
            }
            guard fractionDigits > 0 else { return nil }
        }
        return (whole, fraction, fractionDigits)
    }

    private static func pow10(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= 10 }
        return r
    }
}
