extension CanonicalJSON {
    /// Nesting deeper than this is rejected (`.tooDeep`) rather than risking the stack; records are a few levels deep.
    public static let maximumDepth = 128

    /// Parses one JSON text (RFC 8259) strictly, for verifying stored records: whitespace around tokens is
    /// allowed, anything `JSONValue` cannot hold exactly is an error — a fraction or exponent (`.floatingPoint`),
    /// an integer outside ±(2^53 − 1), a duplicate member name, a lone `\uXXXX` surrogate, bytes that are not
    /// well-formed UTF-8, anything after the value. `-0` reads as the integer 0 (JCS writes it `0`).
    public static func parse(_ bytes: [UInt8]) throws(CanonicalJSONError) -> JSONValue {
        var parser = Parser(bytes: bytes)
        return try parser.document()
    }

    public static func parse(_ text: String) throws(CanonicalJSONError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    private struct Parser {
        let bytes: [UInt8]
        var at = 0
        var depth = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        func fail(_ kind: CanonicalJSONError.Kind, _ message: String, at offset: Int? = nil) -> CanonicalJSONError {
            CanonicalJSONError(kind, message, offset: offset ?? at)
        }

        var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

        mutating func skipWhitespace() {
            while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { at += 1 }
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(CanonicalJSONError) {
            guard peek == byte else { throw unexpected(what) }
            at += 1
        }

        func unexpected(_ expected: String) -> CanonicalJSONError {
            guard let b = peek else { return fail(.syntax, "unexpected end of input, expected \(expected)") }
            let shown = (0x21..<0x7F).contains(b) ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
            return fail(.syntax, "unexpected \(shown), expected \(expected)")
        }

        mutating func document() throws(CanonicalJSONError) -> JSONValue {
            skipWhitespace()
            let v = try value()
            skipWhitespace()
            guard at == bytes.count else { throw fail(.trailingData, "\(bytes.count - at) byte(s) after the JSON value") }
            return v
        }

        mutating func value() throws(CanonicalJSONError) -> JSONValue {
            guard let b = peek else { throw unexpected("a JSON value") }
            switch b {
            case UInt8(ascii: "{"): return try object()
            case UInt8(ascii: "["): return try array()
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .integer(try integer())
            default: throw unexpected("a JSON value")
            }
        }

        /// Steps over the opening bracket of an object or array, one level deeper.
        mutating func open() throws(CanonicalJSONError) {
            guard depth < CanonicalJSON.maximumDepth else {
                throw fail(.tooDeep, "nested deeper than \(CanonicalJSON.maximumDepth) levels")
            }
            depth += 1
            at += 1
        }

        mutating func literal(_ word: String) throws(CanonicalJSONError) {
            let start = at
            for expected in word.utf8 {
                guard peek == expected else { throw fail(.syntax, "invalid literal, expected \(word)", at: start) }
                at += 1
            }
        }

        mutating func object() throws(CanonicalJSONError) -> JSONValue {
            try open()
            defer { depth -= 1 }
            var members: [String: JSONValue] = [:]
            skipWhitespace()
            if peek == UInt8(ascii: "}") { at += 1; return .object(members) }
            while true {
                skipWhitespace()
                let keyOffset = at
                guard peek == UInt8(ascii: "\"") else { throw unexpected("a member name") }
                let key = try string()
                if let existing = members.index(forKey: key) {
                    let other = members[existing].key
                    let how = other.utf8.elementsEqual(key.utf8)
                        ? "" : " (canonically equivalent to \(debugScalars(other)), which a JSONValue cannot hold apart)"
                    throw fail(.duplicateKey, "duplicate member name \(debugScalars(key))" + how, at: keyOffset)
                }
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':'")
                skipWhitespace()
                members[key] = try value()
                skipWhitespace()
                if peek == UInt8(ascii: "}") { at += 1; return .object(members) }
                try expect(UInt8(ascii: ","), "',' or '}'")
            }
        }

        mutating func array() throws(CanonicalJSONError) -> JSONValue {
            try open()
            defer { depth -= 1 }
            var elements: [JSONValue] = []
            skipWhitespace()
            if peek == UInt8(ascii: "]") { at += 1; return .array(elements) }
            while true {
                skipWhitespace()
                elements.append(try value())
                skipWhitespace()
                if peek == UInt8(ascii: "]") { at += 1; return .array(elements) }
                try expect(UInt8(ascii: ","), "',' or ']'")
            }
        }

        /// `-? (0 | [1-9][0-9]*)`, then no fraction and no exponent, within ±(2^53 − 1).
        mutating func integer() throws(CanonicalJSONError) -> Int64 {
            let start = at
            let negative = peek == UInt8(ascii: "-")
            if negative { at += 1 }
            guard let first = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { throw unexpected("a digit") }
            var magnitude: Int64 = 0
            var tooLarge = false
            if first == UInt8(ascii: "0") {
                at += 1
                if let b = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) {
                    throw fail(.syntax, "leading zero in a number", at: start)
                }
            } else {
                while let b = peek, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) {
                    // Stop accumulating once past the range (the digits still have to be consumed for the message).
                    if !tooLarge {
                        magnitude = magnitude * 10 + Int64(b - UInt8(ascii: "0"))
                        tooLarge = magnitude > JSONValue.integerRange.upperBound
                    }
                    at += 1
                }
            }
            if let b = peek, b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
                throw fail(.floatingPoint, "floating-point number (records carry decimals as fixed-point strings)", at: start)
            }
            let text = String(decoding: bytes[start..<at], as: UTF8.self)
            guard !tooLarge else { throw fail(.integerOutOfRange, "integer \(text) is outside ±(2^53 − 1)", at: start) }
            return negative ? -magnitude : magnitude
        }

        /// A string literal: escapes decoded, surrogate pairs joined, UTF-8 validated.
        mutating func string() throws(CanonicalJSONError) -> String {
            at += 1  // "
            var utf8: [UInt8] = []
            while true {
                guard let b = peek else { throw fail(.syntax, "unterminated string") }
                switch b {
                case UInt8(ascii: "\""):
                    at += 1
                    return String(decoding: utf8, as: UTF8.self)  // validated below, so never repaired
                case UInt8(ascii: "\\"):
                    try escape(into: &utf8)
                case 0..<0x20:
                    throw fail(.syntax, "unescaped control character 0x\(String(b, radix: 16)) in a string")
                case 0x20..<0x80:
                    utf8.append(b)
                    at += 1
                default:
                    let n = try wellFormedSequenceLength()
                    utf8.append(contentsOf: bytes[at..<at + n])
                    at += n
                }
            }
        }

        mutating func escape(into utf8: inout [UInt8]) throws(CanonicalJSONError) {
            let start = at
            at += 1  // backslash
            guard let c = peek else { throw fail(.syntax, "unterminated escape") }
            at += 1
            let simple: UInt8? = switch c {
            case UInt8(ascii: "\""): 0x22
            case UInt8(ascii: "\\"): 0x5C
            case UInt8(ascii: "/"): 0x2F
            case UInt8(ascii: "b"): 0x08
            case UInt8(ascii: "f"): 0x0C
            case UInt8(ascii: "n"): 0x0A
            case UInt8(ascii: "r"): 0x0D
            case UInt8(ascii: "t"): 0x09
            default: nil
            }
            if let simple { utf8.append(simple); return }
            guard c == UInt8(ascii: "u") else { throw fail(.syntax, "invalid escape", at: start) }
            let unit = try hex4()
            let scalar: Unicode.Scalar
            switch unit {
            case 0xD800...0xDBFF:
                guard peek == UInt8(ascii: "\\"), at + 1 < bytes.count, bytes[at + 1] == UInt8(ascii: "u") else {
                    throw fail(.loneSurrogate, "high surrogate \\u\(String(unit, radix: 16)) without a low surrogate", at: start)
                }
                at += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw fail(.loneSurrogate, "high surrogate \\u\(String(unit, radix: 16)) without a low surrogate", at: start)
                }
                scalar = Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))!
            case 0xDC00...0xDFFF:
                throw fail(.loneSurrogate, "low surrogate \\u\(String(unit, radix: 16)) without a high surrogate", at: start)
            default:
                scalar = Unicode.Scalar(unit)!
            }
            utf8.append(contentsOf: UTF8.encode(scalar)!)
        }

        mutating func hex4() throws(CanonicalJSONError) -> UInt32 {
            var v: UInt32 = 0
            for _ in 0..<4 {
                guard let b = peek else { throw fail(.syntax, "unterminated \\u escape") }
                let digit: UInt8
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
                default: throw fail(.syntax, "invalid hex digit in \\u escape")
                }
                v = v << 4 | UInt32(digit)
                at += 1
            }
            return v
        }

        /// The length of the well-formed UTF-8 sequence at `at` (Unicode Table 3-7: no overlong forms, no encoded
        /// surrogates, nothing above U+10FFFF), or `.invalidUTF8`.
        func wellFormedSequenceLength() throws(CanonicalJSONError) -> Int {
            let lead = bytes[at]
            let (length, secondRange): (Int, ClosedRange<UInt8>) = switch lead {
            case 0xC2...0xDF: (2, 0x80...0xBF)
            case 0xE0: (3, 0xA0...0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (3, 0x80...0xBF)
            case 0xED: (3, 0x80...0x9F)
            case 0xF0: (4, 0x90...0xBF)
            case 0xF1...0xF3: (4, 0x80...0xBF)
            case 0xF4: (4, 0x80...0x8F)
            default: (0, 0...0)
            }
            guard length > 0, at + length <= bytes.count, secondRange.contains(bytes[at + 1]),
                  bytes[(at + 2)..<(at + length)].allSatisfy({ (0x80...0xBF).contains($0) }) else {
                throw fail(.invalidUTF8, "invalid UTF-8 sequence")
            }
            return length
        }
    }

    /// A name with its Unicode scalars spelled out, so an error can show two names that look alike.
    static func debugScalars(_ s: String) -> String {
        "\"\(s)\" (" + s.unicodeScalars.map { "U+" + String($0.value, radix: 16, uppercase: true) }.joined(separator: " ") + ")"
    }
}
