/// Maps key paths to line numbers by scanning the raw TOML text (TOMLKit only knows lines for syntax errors).
///
/// It follows `[table]` and `[[array.of.tables]]` headers (counting the elements of each array of tables, so
/// `[[device.channel]]` under the third `[[device]]` is `device[2].channel[n]`), `key = value` lines with dotted and
/// quoted keys, and looks inside values: single- and multi-line strings are skipped (so `[[x]]` or `key =` inside
/// them is never mistaken for structure), array elements get `path[i]`, and inline-table keys get their own paths.
/// A path gets the line where it is first defined; an explicit `[header]` wins over a table implied earlier by a
/// dotted key or a longer header. It runs only on text that toml++ has already accepted, but is lenient (and always
/// terminates) on anything else.
struct ConfigLineLocator {
    private let b: [UInt8]
    private var i = 0
    private var line = 1
    private var lines: [ConfigPath: Int] = [:]
    private var explicit: Set<ConfigPath> = []
    private var arrayCounts: [ConfigPath: Int] = [:]

    /// Line of every path the text defines.
    static func locate(_ text: String) -> [ConfigPath: Int] {
        var l = ConfigLineLocator(bytes: Array(text.utf8))
        l.run()
        return l.lines
    }

    /// The line of `path`, or of the nearest enclosing path that has one.
    static func line(of path: ConfigPath, in lines: [ConfigPath: Int]) -> Int? {
        var p: ConfigPath? = path
        while let q = p {
            if let l = lines[q] { return l }
            p = q.parent
        }
        return nil
    }

    private init(bytes: [UInt8]) { self.b = bytes }

    // MARK: - Bytes

    private static let newline: UInt8 = 0x0A, cr: UInt8 = 0x0D, space: UInt8 = 0x20, tab: UInt8 = 0x09
    private static let hash: UInt8 = 0x23, quote: UInt8 = 0x22, apostrophe: UInt8 = 0x27, backslash: UInt8 = 0x5C
    private static let lbracket: UInt8 = 0x5B, rbracket: UInt8 = 0x5D, lbrace: UInt8 = 0x7B, rbrace: UInt8 = 0x7D
    private static let comma: UInt8 = 0x2C, dot: UInt8 = 0x2E, equals: UInt8 = 0x3D

    private var atEnd: Bool { i >= b.count }
    private var cur: UInt8 { i < b.count ? b[i] : 0 }
    private func peek(_ k: Int) -> UInt8 { i + k < b.count ? b[i + k] : 0 }

    /// Consumes one byte, counting lines.
    private mutating func advance() {
        if i < b.count, b[i] == Self.newline { line += 1 }
        i += 1
    }

    /// Spaces, tabs, carriage returns (not newlines).
    private mutating func skipSpaces() {
        while !atEnd, cur == Self.space || cur == Self.tab || cur == Self.cr { i += 1 }
    }

    /// Spaces, newlines and comments.
    private mutating func skipTrivia() {
        while !atEnd {
            switch cur {
            case Self.space, Self.tab, Self.cr, Self.newline: advance()
            case Self.hash: while !atEnd, cur != Self.newline { i += 1 }
            default: return
            }
        }
    }

    /// Everything up to and including the next newline (trailing comments, or junk).
    private mutating func skipRestOfLine() {
        while !atEnd, cur != Self.newline { i += 1 }
        if !atEnd { advance() }
    }

    // MARK: - Recording

    private mutating func record(_ path: ConfigPath, _ line: Int, explicit isExplicit: Bool) {
        if isExplicit {
            if explicit.insert(path).inserted { lines[path] = line }
        } else if lines[path] == nil {
            lines[path] = line
        }
    }

    // MARK: - Document

    private mutating func run() {
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        var current = ConfigPath()
        while true {
            skipTrivia()
            if atEnd { return }
            let start = i
            let startLine = line
            if cur == Self.lbracket {
                let isArray = peek(1) == Self.lbracket
                i += isArray ? 2 : 1
                let keys = parseKeys()
                if !keys.isEmpty {
                    current = isArray ? openArrayTable(keys, startLine) : openTable(keys, startLine)
                }
                skipRestOfLine()
            } else {
                let keys = parseKeys()
                skipSpaces()
                if !keys.isEmpty, cur == Self.equals {
                    i += 1
                    let path = defineKeys(keys, under: current, startLine)
                    skipSpaces()
                    scanValue(path)
                }
                skipRestOfLine()
            }
            if i == start { i += 1 }
        }
    }

    /// `[a.b.c]`: each prefix resolves through arrays of tables to their last element.
    private mutating func openTable(_ keys: [String], _ line: Int) -> ConfigPath {
        var p = ConfigPath()
        for (n, k) in keys.enumerated() {
            p = p.appending(k)
            if n == keys.count - 1 {
                record(p, line, explicit: true)
            } else {
                record(p, line, explicit: false)
                if let count = arrayCounts[p] { p = p.appending(index: count - 1) }
            }
        }
        return p
    }

    /// `[[a.b]]`: a new element of the array at the resolved path.
    private mutating func openArrayTable(_ keys: [String], _ line: Int) -> ConfigPath {
        var p = ConfigPath()
        for (n, k) in keys.enumerated() {
            p = p.appending(k)
            record(p, line, explicit: false)
            if n < keys.count - 1, let count = arrayCounts[p] { p = p.appending(index: count - 1) }
        }
        let index = arrayCounts[p, default: 0]
        arrayCounts[p] = index + 1
        p = p.appending(index: index)
        record(p, line, explicit: true)
        return p
    }

    /// `a.b.c = …` under `base`: intermediate tables are implied, the last key is defined here.
    private mutating func defineKeys(_ keys: [String], under base: ConfigPath, _ line: Int) -> ConfigPath {
        var p = base
        for (n, k) in keys.enumerated() {
            p = p.appending(k)
            record(p, line, explicit: n == keys.count - 1)
        }
        return p
    }

    // MARK: - Keys

    /// A dotted key (`a."b c".'d'`), stopping before `=`, `]` or anything else that can't continue it.
    private mutating func parseKeys() -> [String] {
        var keys: [String] = []
        while true {
            skipSpaces()
            guard let k = parseSimpleKey() else { break }
            keys.append(k)
            skipSpaces()
            if cur == Self.dot { i += 1 } else { break }
        }
        return keys
    }

    private mutating func parseSimpleKey() -> String? {
        if atEnd { return nil }
        switch cur {
        case Self.quote:
            i += 1
            var out: [UInt8] = []
            while !atEnd, cur != Self.quote, cur != Self.newline {
                if cur == Self.backslash {
                    i += 1
                    out += unescape()
                } else {
                    out.append(cur)
                    i += 1
                }
            }
            if cur == Self.quote { i += 1 }
            return String(decoding: out, as: UTF8.self)
        case Self.apostrophe:
            i += 1
            let s = i
            while !atEnd, cur != Self.apostrophe, cur != Self.newline { i += 1 }
            let key = String(decoding: b[s..<i], as: UTF8.self)
            if cur == Self.apostrophe { i += 1 }
            return key
        default:
            let s = i
            while !atEnd, Self.isBareKeyByte(cur) { i += 1 }
            return i > s ? String(decoding: b[s..<i], as: UTF8.self) : nil
        }
    }

    /// Bare keys are `A-Za-z0-9_-`; non-ASCII bytes are accepted too, for parsers that allow Unicode bare keys.
    private static func isBareKeyByte(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
            || c >= 0x80
    }

    /// The escape after a backslash in a basic string (the backslash is consumed), as UTF-8.
    private mutating func unescape() -> [UInt8] {
        guard !atEnd else { return [] }
        let c = cur
        i += 1
        switch c {
        case UInt8(ascii: "b"): return [0x08]
        case UInt8(ascii: "t"): return [0x09]
        case UInt8(ascii: "n"): return [0x0A]
        case UInt8(ascii: "f"): return [0x0C]
        case UInt8(ascii: "r"): return [0x0D]
        case UInt8(ascii: "e"): return [0x1B]
        case UInt8(ascii: "u"), UInt8(ascii: "U"), UInt8(ascii: "x"):
            let count = c == UInt8(ascii: "u") ? 4 : (c == UInt8(ascii: "U") ? 8 : 2)
            var value: UInt32 = 0
            for _ in 0..<count {
                guard !atEnd, let d = Self.hexValue(cur) else { break }
                value = value * 16 + d
                i += 1
            }
            guard let scalar = Unicode.Scalar(value) else { return [] }
            return Array(String(Character(scalar)).utf8)
        default: return [c]
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30)
        case 0x41...0x46: return UInt32(c - 0x41 + 10)
        case 0x61...0x66: return UInt32(c - 0x61 + 10)
        default: return nil
        }
    }

    // MARK: - Values

    /// Skips one value, recording array elements and inline-table keys below `path`.
    private mutating func scanValue(_ path: ConfigPath) {
        switch cur {
        case Self.quote:
            if peek(1) == Self.quote, peek(2) == Self.quote {
                skipMultilineString(delimiter: Self.quote, escapes: true)
            } else {
                skipLineString(delimiter: Self.quote, escapes: true)
            }
        case Self.apostrophe:
            if peek(1) == Self.apostrophe, peek(2) == Self.apostrophe {
                skipMultilineString(delimiter: Self.apostrophe, escapes: false)
            } else {
                skipLineString(delimiter: Self.apostrophe, escapes: false)
            }
        case Self.lbracket:
            i += 1
            var index = 0
            while true {
                skipTrivia()
                if atEnd { return }
                if cur == Self.rbracket {
                    i += 1
                    return
                }
                if cur == Self.comma {
                    i += 1
                    continue
                }
                let start = i
                let element = path.appending(index: index)
                record(element, line, explicit: true)
                scanValue(element)
                index += 1
                if i == start { advance() }
            }
        case Self.lbrace:
            i += 1
            while true {
                skipTrivia()
                if atEnd { return }
                if cur == Self.rbrace {
                    i += 1
                    return
                }
                if cur == Self.comma {
                    i += 1
                    continue
                }
                let start = i
                let keyLine = line
                let keys = parseKeys()
                skipSpaces()
                if !keys.isEmpty, cur == Self.equals {
                    i += 1
                    let p = defineKeys(keys, under: path, keyLine)
                    skipTrivia()
                    scanValue(p)
                }
                if i == start { advance() }
            }
        default:
            // Numbers, booleans, dates (which may contain a space): up to a delimiter.
            while !atEnd {
                switch cur {
                case Self.comma, Self.rbracket, Self.rbrace, Self.hash, Self.newline: return
                default: i += 1
                }
            }
        }
    }

    private mutating func skipLineString(delimiter: UInt8, escapes: Bool) {
        i += 1
        while !atEnd, cur != delimiter, cur != Self.newline {
            i += (escapes && cur == Self.backslash) ? 2 : 1
        }
        if cur == delimiter { i += 1 }
    }

    private mutating func skipMultilineString(delimiter: UInt8, escapes: Bool) {
        i += 3
        while !atEnd {
            if escapes, cur == Self.backslash {
                advance()
                advance()
                continue
            }
            if cur == delimiter, peek(1) == delimiter, peek(2) == delimiter {
                i += 3
                // Up to two more delimiters belong to the content: `"""a""""` ends with `a"`.
                var extra = 0
                while extra < 2, cur == delimiter {
                    i += 1
                    extra += 1
                }
                return
            }
            advance()
        }
    }
}
