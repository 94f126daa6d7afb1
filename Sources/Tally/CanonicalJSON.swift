/// RFC 8785 JSON Canonicalization Scheme (JCS) for `JSONValue`, and a strict parser for reading records back.
///
/// The canonical form, byte for byte what any JCS implementation produces for the same value:
/// - no whitespace;
/// - object members sorted by their names' **UTF-16 code units** (RFC 8785 §3.2.3) — not by Swift's `String`
///   order (canonical equivalence, Unicode scalars) and not by UTF-8 bytes: the two differ where a name holds a
///   character outside the Basic Multilingual Plane (stored as surrogates D800–DFFF) and another holds one in
///   E000–FFFF, e.g. "😀" (D83D DE00) sorts before "ﬁ" (FB01);
/// - strings escaped exactly as ECMAScript's `JSON.stringify` does (§3.2.2.2): `\b \t \n \f \r \" \\`, the other
///   controls below U+0020 as `\u00XX` with lowercase hex, everything else — U+007F, U+2028/U+2029, non-BMP
///   characters — as literal UTF-8; no Unicode normalization;
/// - integers in plain decimal. `JSONValue` has no floating-point numbers (see there), so JCS's ECMAScript number
///   formatting (§3.2.2.3) never comes into play; integers outside ±(2^53 − 1) are rejected, as JCS
///   implementations do (I-JSON's exact range).
public enum CanonicalJSON {
    /// The canonical UTF-8 bytes of `value`; throws `.integerOutOfRange` (with the member's path) for an integer
    /// JCS cannot represent exactly.
    public static func serialize(_ value: JSONValue) throws(CanonicalJSONError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        try write(value, into: &out)
        return out
    }

    /// The canonical form as a `String` (for logs and tests; hash the bytes).
    public static func string(_ value: JSONValue) throws(CanonicalJSONError) -> String {
        String(decoding: try serialize(value), as: UTF8.self)
    }

    /// Object member names in JCS order: by UTF-16 code units.
    public static func sortedKeys(_ object: [String: JSONValue]) -> [String] { sortedMembers(object).map(\.key) }

    private static func sortedMembers(_ object: [String: JSONValue]) -> [(key: String, value: JSONValue)] {
        object.sorted { $0.key.utf16.lexicographicallyPrecedes($1.key.utf16) }
    }

    private static func write(_ value: JSONValue, into out: inout [UInt8]) throws(CanonicalJSONError) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .integer(let i):
            guard JSONValue.integerRange.contains(i) else {
                throw CanonicalJSONError(.integerOutOfRange, "integer \(i) is outside ±(2^53 − 1), which JCS cannot represent exactly")
            }
            out.append(contentsOf: String(i).utf8)
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (n, element) in a.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                do { try write(element, into: &out) } catch { throw error.inside("[\(n)]") }
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (n, member) in sortedMembers(o).enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                writeString(member.key, into: &out)
                out.append(UInt8(ascii: ":"))
                do { try write(member.value, into: &out) } catch { throw error.inside(".\(member.key)") }
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A JSON string literal as ECMAScript's JSON.stringify writes it (RFC 8785 §3.2.2.2).
    private static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            // Bytes of multi-byte UTF-8 sequences are all ≥ 0x80, so this never splits a character.
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(byte)
            case 0x08: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "b"))
            case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case 0x0C: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "f"))
            case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case 0..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Why a text is not a record `CanonicalJSON` reads, or a value it cannot canonicalize.
public struct CanonicalJSONError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// Not JSON: an unexpected character, a missing comma or colon, a bad escape, an unterminated string…
        case syntax
        /// Bytes that are not well-formed UTF-8 (including encoded surrogates and overlong forms).
        case invalidUTF8
        /// A fraction or an exponent: records carry decimals as fixed-point strings.
        case floatingPoint
        /// An integer outside ±(2^53 − 1).
        case integerOutOfRange
        /// A `\uXXXX` surrogate without its partner: not a Unicode string, so it has no canonical form.
        case loneSurrogate
        /// An object with the same member name twice — or two names Swift's `String` cannot tell apart (canonically
        /// equivalent, e.g. U+00E9 and U+0065 U+0301), which `JSONValue` cannot hold both of.
        case duplicateKey
        /// Anything but whitespace after the value.
        case trailingData
        /// Nesting deeper than `CanonicalJSON.maximumDepth`.
        case tooDeep
    }

    public var kind: Kind
    public var message: String
    /// Where: the byte offset for a parse error; nil for serialization.
    public var offset: Int?
    /// Where in the value (`$.streams[2].fed`): for serialization errors.
    public var path: String?

    init(_ kind: Kind, _ message: String, offset: Int? = nil) {
        self.kind = kind
        self.message = message
        self.offset = offset
    }

    /// The same error one level further out (`.key` or `[n]` prefixed to the path).
    func inside(_ step: String) -> CanonicalJSONError {
        var e = self
        e.path = step + (path ?? "")
        return e
    }

    public var description: String {
        if let offset { return "byte \(offset): \(message)" }
        if let path { return "$\(path): \(message)" }
        return message
    }
}
