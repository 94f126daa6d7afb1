import Foundation
import KilnTallyCore
import Tally
import TestSupport

extension JCSPeer {
    /// rfc8785's canonical form of each JSON text, as hex, or "error <Name>" where it refuses the value.
    static func canonical(_ texts: [[UInt8]]) async throws -> [String] {
        let out = try await run("jcs", input: texts.map { Array($0.hex.utf8) })
        guard out.count == texts.count else { throw PeerError("jcs_peer answered \(out.count) lines for \(texts.count)") }
        return out
    }
}

/// Random JSON values for cross-checks, from a seed, with strings drawn from the characters JCS implementations
/// disagree on when they are wrong: controls, quotes and backslashes, U+007F, U+2028/2029, BMP characters above
/// U+E000, non-BMP characters (surrogate pairs in UTF-16), combining marks.
struct RandomJSON {
    var rng: SplitMix64

    static let palette: [Unicode.Scalar] = (0x00...0x20).map { Unicode.Scalar(UInt8($0)) } + [
        "\"", "\\", "/", "a", "Z", "0", "~", "\u{7F}", "\u{80}", "\u{E9}", "\u{301}", "\u{5D3}", "\u{5BC}", "\u{20AC}",
        "\u{2028}", "\u{2029}", "\u{D7FF}", "\u{E000}", "\u{FB01}", "\u{FB33}", "\u{FEFF}", "\u{FFFD}", "\u{FFFF}",
        "\u{10000}", "\u{1F600}", "\u{1F69B}", "\u{10FFFF}", "中", "垃",
    ]

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }

    mutating func string() -> String {
        var s = String.UnicodeScalarView()
        for _ in 0..<int(0...6) { s.append(Self.palette[int(0...(Self.palette.count - 1))]) }
        return String(s)
    }

    mutating func integer() -> Int64 {
        let edges: [Int64] = [0, -1, 1, 9, 10, JSONValue.integerRange.upperBound, JSONValue.integerRange.lowerBound]
        return int(0...2) == 0 ? edges[int(0...(edges.count - 1))] : Int64.random(in: JSONValue.integerRange, using: &rng)
    }

    mutating func value(depth: Int = 0) -> JSONValue {
        switch int(0...(depth >= 3 ? 4 : 6)) {
        case 0: return .null
        case 1: return .bool(int(0...1) == 1)
        case 2: return .integer(integer())
        case 3, 4: return .string(string())
        case 5: return .array((0..<int(0...4)).map { _ in value(depth: depth + 1) })
        default:
            var o: [String: JSONValue] = [:]
            for _ in 0..<int(0...5) { o[string()] = value(depth: depth + 1) }
            return .object(o)
        }
    }

    /// `value` as valid JSON that is as far from canonical as possible: members in random order, whitespace
    /// everywhere, characters randomly written as `\uXXXX` escapes (surrogate pairs beyond the BMP, either hex case),
    /// `\/` for a slash. Written here, independently of `CanonicalJSON`, so a parser bug cannot cancel out.
    mutating func scrambled(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        writeScrambled(value, into: &out)
        return out
    }

    private mutating func space(_ out: inout [UInt8]) {
        for _ in 0..<int(0...2) { out.append([0x20, 0x09, 0x0D, 0x0A][int(0...3)]) }
    }

    private mutating func writeScrambled(_ value: JSONValue, into out: inout [UInt8]) {
        space(&out)
        switch value {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .integer(let i): out += Array(String(i).utf8)
        case .string(let s): scrambledString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (n, e) in a.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                writeScrambled(e, into: &out)
            }
            space(&out)
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (n, key) in o.keys.shuffled(using: &rng).enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                space(&out)
                scrambledString(key, into: &out)
                space(&out)
                out.append(UInt8(ascii: ":"))
                writeScrambled(o[key]!, into: &out)
            }
            space(&out)
            out.append(UInt8(ascii: "}"))
        }
        space(&out)
    }

    private mutating func scrambledString(_ s: String, into out: inout [UInt8]) {
        func u(_ unit: UInt16, upper: Bool) -> [UInt8] {
            let h = String(unit, radix: 16, uppercase: upper)
            return Array(("\\u" + String(repeating: "0", count: 4 - h.count) + h).utf8)
        }
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            let mustEscape = scalar.value < 0x20 || scalar == "\"" || scalar == "\\"
            if mustEscape || int(0...2) == 0 {
                if scalar == "/" && int(0...1) == 0 { out += Array("\\/".utf8); continue }
                let upper = int(0...1) == 1
                for unit in String(scalar).utf16 { out += u(unit, upper: upper) }
            } else {
                out += Array(String(scalar).utf8)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
