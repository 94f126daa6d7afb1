import Foundation
import KilnTallyCore
import Tally
import TestSupport
import Testing

@Suite("Canonical JSON (RFC 8785)")
struct CanonicalJSONTests {
    /// RFC 8785 §3.2.3's sorting example: member names sorted by UTF-16 code units. "😀" (D83D DE00) comes before
    /// U+FB33 although its code point is larger — the case where UTF-16 and code-point order differ.
    static let rfcSortingInput = #"""
        {
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }
        """#
    static let rfcSortingOutput = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\","
        + "\"\u{F6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20AC}\":\"Euro Sign\",\"\u{1F600}\":\"Emoji: Grinning Face\","
        + "\"\u{FB33}\":\"Hebrew Letter Dalet With Dagesh\"}"

    /// RFC 8785 §3.2.2's example without its "numbers" member (floating point, which records never carry).
    static let rfcStringInput = #"""
        {
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }
        """#
    static let rfcStringOutput = #"{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}"#

    @Test func rfc8785SortingExample() throws {
        let value = try CanonicalJSON.parse(Self.rfcSortingInput)
        #expect(try CanonicalJSON.string(value) == Self.rfcSortingOutput)
        // The RFC's own UTF-8 dump of the Emoji and Dalet members' names: F0 9F 98 80 before EF AC B3.
        let bytes = try CanonicalJSON.serialize(value)
        let emoji = bytes.firstRange(of: [0xF0, 0x9F, 0x98, 0x80])!, dalet = bytes.firstRange(of: [0xEF, 0xAC, 0xB3])!
        #expect(emoji.lowerBound < dalet.lowerBound)
    }

    @Test func rfc8785StringExample() throws {
        #expect(try CanonicalJSON.string(CanonicalJSON.parse(Self.rfcStringInput)) == Self.rfcStringOutput)
        // The full example, numbers included, is refused: records carry decimals as strings.
        let withNumbers = Self.rfcStringInput.replacingOccurrences(
            of: "{\n", with: "{\n  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n")
        #expect(kind(of: withNumbers) == .floatingPoint)
    }

    @Test func sortsByUTF16NotBySwiftStringOrder() throws {
        // U+E000…U+FFFF (BMP) and U+1F600 (outside the BMP): Swift's String order and code-point order put the BMP
        // characters first; UTF-16 puts the surrogate D83D first. JCS wants UTF-16.
        let astral = "\u{1F600}"
        #expect("\u{E000}" < astral && "\u{FB01}" < astral, "Swift orders by scalars, else this would not tell the orders apart")
        let value: JSONValue = ["\u{FB01}": 1, astral: 2, "z": 3, "\u{E000}": 4, "\u{FFFF}": 5, "\u{D7FF}": 6]
        #expect(try CanonicalJSON.string(value)
                == "{\"z\":3,\"\u{D7FF}\":6,\"\u{1F600}\":2,\"\u{E000}\":4,\"\u{FB01}\":1,\"\u{FFFF}\":5}")
        #expect(CanonicalJSON.sortedKeys(value.objectValue!) == ["z", "\u{D7FF}", astral, "\u{E000}", "\u{FB01}", "\u{FFFF}"])
    }

    @Test("strings are escaped as ECMAScript's JSON.stringify does", arguments: [
        ("\u{8}\t\n\u{C}\r", #""\b\t\n\f\r""#),
        ("\u{0}\u{1}\u{B}\u{E}\u{1F}", #""\u0000\u0001\u000b\u000e\u001f""#),
        ("\"\\/", #""\"\\/""#),
        ("\u{7F}\u{80}\u{2028}\u{2029}", "\"\u{7F}\u{80}\u{2028}\u{2029}\""),
        ("\u{1F69B}\u{10FFFF}\u{FEFF}", "\"\u{1F69B}\u{10FFFF}\u{FEFF}\""),
        ("e\u{301}", "\"e\u{301}\""),  // no normalization: stays two scalars
    ])
    func escapes(raw: String, canonical: String) throws {
        #expect(try CanonicalJSON.string(.string(raw)) == canonical)
        #expect(Array(try CanonicalJSON.serialize(.string(raw))) == Array(canonical.utf8))
        #expect(try CanonicalJSON.parse(canonical) == .string(raw))
    }

    @Test func noUnicodeNormalization() throws {
        // "é" precomposed and decomposed are one key to Swift but two different canonical forms to JCS.
        let composed = try CanonicalJSON.serialize(["\u{E9}": 1]), decomposed = try CanonicalJSON.serialize(["e\u{301}": 1])
        #expect(composed != decomposed)
        #expect(composed == Array("{\"\u{E9}\":1}".utf8) && decomposed == [0x7B, 0x22, 0x65, 0xCC, 0x81, 0x22, 0x3A, 0x31, 0x7D])
    }

    @Test func integersAndLiterals() throws {
        // RFC 8785 Appendix B's integer-valued entries: 0, minus zero, ±(2^53 − 1).
        #expect(try CanonicalJSON.string(CanonicalJSON.parse("[0, -0, 9007199254740991, -9007199254740991, true, null]"))
                == "[0,0,9007199254740991,-9007199254740991,true,null]")
        for outside: Int64 in [1 << 53, -(1 << 53), .max, .min] {
            #expect(throws: CanonicalJSONError.self) { try CanonicalJSON.serialize(.integer(outside)) }
            #expect(kind(of: String(outside)) == .integerOutOfRange)
        }
        #expect(kind(of: "123456789012345678901234567890") == .integerOutOfRange)
    }

    @Test func serializationErrorsNameThePath() {
        let value: JSONValue = ["streams": [["fed": 1], ["fed": .integer(1 << 60)]]]
        let error = #expect(throws: CanonicalJSONError.self) { try CanonicalJSON.serialize(value) }
        #expect(error?.kind == .integerOutOfRange && error?.path == ".streams[1].fed")
        #expect(error?.description.hasPrefix("$.streams[1].fed: integer 1152921504606846976") == true)
    }

    @Test("the parser refuses what has no exact canonical form", arguments: [
        (#"{"a":1,"a":2}"#, CanonicalJSONError.Kind.duplicateKey),
        (#"{"a":{"b":1,"c":2,"b":3}}"#, .duplicateKey),
        ("{\"\u{E9}\":1,\"e\u{301}\":2}", .duplicateKey),  // distinct in JSON, one key to Swift
        ("1.0", .floatingPoint), ("1e3", .floatingPoint), ("-0.5", .floatingPoint), ("[1E+2]", .floatingPoint),
        (#""\ud83d""#, .loneSurrogate), (#""\ude00x""#, .loneSurrogate), (#""\ud83d\u0041""#, .loneSurrogate),
        (#""\ud83d\ud83d""#, .loneSurrogate),
        ("{} x", .trailingData), ("{}{}", .trailingData), ("1 2", .trailingData), ("null,", .trailingData),
        ("", .syntax), ("   ", .syntax), ("\u{FEFF}{}", .syntax), ("01", .syntax), ("-", .syntax), ("+1", .syntax),
        ("{\"a\" 1}", .syntax), ("{\"a\":1,}", .syntax), ("[1,]", .syntax), ("{a:1}", .syntax), ("'a'", .syntax),
        ("\"a\u{1}\"", .syntax), ("\"\\x\"", .syntax), ("\"\\u12G4\"", .syntax), ("\"abc", .syntax), ("tru", .syntax),
        ("nul", .syntax), ("NaN", .syntax), ("[1", .syntax),
        (String(repeating: "[", count: 129) + String(repeating: "]", count: 129), .tooDeep),
    ])
    func rejects(text: String, expected: CanonicalJSONError.Kind) {
        #expect(kind(of: text) == expected, "\(text.debugDescription)")
    }

    @Test("bytes that are not well-formed UTF-8 are refused", arguments: [
        [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80], [0xF4, 0x90, 0x80, 0x80],
        [0xE0, 0x80, 0xAF], [0xFF],
    ] as [[UInt8]])
    func rejectsInvalidUTF8(sequence: [UInt8]) {
        #expect(kind(of: [0x22] + sequence + [0x22]) == .invalidUTF8)
    }

    @Test func parserAcceptsEveryJSONSpelling() throws {
        // Whitespace, escaped slash, either hex case, escaped surrogate pairs, maximum depth.
        let text = " \t\r\n{ \"a\\/b\" : [ \"\\u00E9\\u00e9\" , \"\\uD83D\\uDE00\" ] , \"n\" : -0 } \n"
        #expect(try CanonicalJSON.parse(text) == ["a/b": ["\u{E9}\u{E9}", "\u{1F600}"], "n": 0])
        let deep = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        #expect(try CanonicalJSON.string(CanonicalJSON.parse(deep)) == deep)
    }

    /// Every serialization here, against Python's `rfc8785`: goldens, every control character, random values —
    /// each sent once in canonical form and once scrambled (shuffled members, escapes, whitespace), which this
    /// parser must read to the same canonical bytes as Python's json + rfc8785.
    @Test func crossCheckedWithPythonRFC8785() async throws {
        var values: [JSONValue] = [
            try CanonicalJSON.parse(Self.rfcSortingInput), try CanonicalJSON.parse(Self.rfcStringInput),
            .object(Dictionary(uniqueKeysWithValues: (0..<0x20).map { (String(UnicodeScalar(UInt8($0))), .integer(Int64($0))) })),
            .string(String(String.UnicodeScalarView((0..<0x80).map { UnicodeScalar(UInt8($0)) }))),
            ["\u{FB01}": 1, "\u{1F600}": 2, "\u{E000}": 3, "\u{FFFF}": 4, "\u{10000}": 5, "\u{D7FF}": 6],
            .integer(JSONValue.integerRange.upperBound), .integer(JSONValue.integerRange.lowerBound), [], [:], "",
        ]
        var random = RandomJSON(rng: SplitMix64(seed: 8785))
        for _ in 0..<400 { values.append(random.value()) }

        let canonical = try values.map { try CanonicalJSON.serialize($0) }
        let scrambled = values.map { random.scrambled($0) }
        let python = try await JCSPeer.canonical(canonical + scrambled)
        for n in values.indices {
            #expect(python[n] == canonical[n].hex, "value \(n): \(String(decoding: canonical[n], as: UTF8.self).debugDescription)")
            let reparsed = try CanonicalJSON.serialize(try CanonicalJSON.parse(scrambled[n]))
            #expect(reparsed == canonical[n], "scrambled \(n): \(String(decoding: scrambled[n], as: UTF8.self).debugDescription)")
            #expect(python[values.count + n] == canonical[n].hex, "scrambled \(n) in Python")
        }
        // Integers JCS cannot represent: rfc8785 refuses them as this serializer does.
        let outside = try await JCSPeer.canonical([Array("9007199254740992".utf8), Array("[-9007199254740992]".utf8)])
        #expect(outside == ["error IntegerDomainError", "error IntegerDomainError"])
    }

    private func kind(of text: String) -> CanonicalJSONError.Kind? { kind(of: Array(text.utf8)) }

    private func kind(of bytes: [UInt8]) -> CanonicalJSONError.Kind? {
        do {
            _ = try CanonicalJSON.parse(bytes)
            return nil
        } catch {
            return error.kind
        }
    }
}
