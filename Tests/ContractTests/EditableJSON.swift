/// A JSON document the tests can edit and write back without changing anything they did not touch: members keep
/// their order and numbers keep their text (an integer stays an integer, `12.5` stays `12.5`), so a mutation of a
/// payload differs from the payload exactly by the mutation. (Tally's `JSONValue` has no floats; readings do.)
indirect enum EditableJSON: Equatable, Sendable {
    case object([Member])
    case array([EditableJSON])
    case string(String)
    /// The number's text as written.
    case number(String)
    case bool(Bool)
    case null

    struct Member: Equatable, Sendable {
        var key: String
        var value: EditableJSON
    }

    enum Step: Equatable, Sendable, CustomStringConvertible {
        case key(String)
        case index(Int)
        var description: String {
            switch self {
            case .key(let k): ".\(k)"
            case .index(let i): "[\(i)]"
            }
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    // MARK: reading and writing

    init(parsing bytes: [UInt8]) throws {
        var p = Parser(bytes: bytes)
        self = try p.value()
        p.skipSpace()
        guard p.i == bytes.count else { throw ParseError(description: "trailing bytes at \(p.i)") }
    }

    init(parsing text: String) throws { try self.init(parsing: Array(text.utf8)) }

    var bytes: [UInt8] {
        var out: [UInt8] = []
        write(into: &out)
        return out
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (n, m) in members.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                Self.quote(m.key, into: &out)
                out.append(UInt8(ascii: ":"))
                m.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (n, v) in items.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .string(let s): Self.quote(s, into: &out)
        case .number(let text): out.append(contentsOf: text.utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .null: out.append(contentsOf: "null".utf8)
        }
    }

    private static func quote(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    // MARK: access and edits

    subscript(_ path: Step...) -> EditableJSON? { value(at: path) }

    func value(at path: [Step]) -> EditableJSON? {
        guard let first = path.first else { return self }
        switch (self, first) {
        case (.object(let members), .key(let k)): return members.first { $0.key == k }?.value.value(at: Array(path.dropFirst()))
        case (.array(let items), .index(let i)) where items.indices.contains(i): return items[i].value(at: Array(path.dropFirst()))
        default: return nil
        }
    }

    /// The member names of the object at `path` (empty if it is not an object).
    func keys(at path: [Step]) -> [String] {
        if case .object(let members)? = value(at: path) { members.map(\.key) } else { [] }
    }

    /// A copy with the value at `path` replaced (or, for a missing member, added at the end); `nil` removes it.
    func setting(_ path: [Step], to newValue: EditableJSON?) -> EditableJSON {
        guard let first = path.first else { return newValue ?? .null }
        let rest = Array(path.dropFirst())
        switch (self, first) {
        case (.object(var members), .key(let k)):
            if let i = members.firstIndex(where: { $0.key == k }) {
                if rest.isEmpty, newValue == nil {
                    members.remove(at: i)
                } else {
                    members[i].value = members[i].value.setting(rest, to: newValue)
                }
            } else if rest.isEmpty, let newValue {
                members.append(Member(key: k, value: newValue))
            } else {
                preconditionFailure("no member \(k) to descend into")
            }
            return .object(members)
        case (.array(var items), .index(let i)):
            precondition(items.indices.contains(i), "no element \(i)")
            if rest.isEmpty, newValue == nil {
                items.remove(at: i)
            } else {
                items[i] = items[i].setting(rest, to: newValue)
            }
            return .array(items)
        default:
            preconditionFailure("cannot follow \(first) into \(self)")
        }
    }

    // MARK: parser

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        mutating func expect(_ c: UInt8) throws {
            skipSpace()
            guard i < bytes.count, bytes[i] == c else { throw ParseError(description: "expected \(Character(UnicodeScalar(c))) at \(i)") }
            i += 1
        }

        mutating func literal(_ word: String, _ value: EditableJSON) throws -> EditableJSON {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else { throw ParseError(description: "bad literal at \(i)") }
            i += w.count
            return value
        }

        mutating func value() throws -> EditableJSON {
            skipSpace()
            guard i < bytes.count else { throw ParseError(description: "unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [Member] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object([]) }
                while true {
                    skipSpace()
                    let key = try string()
                    try expect(UInt8(ascii: ":"))
                    members.append(Member(key: key, value: try value()))
                    skipSpace()
                    guard i < bytes.count else { throw ParseError(description: "unterminated object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    try expect(UInt8(ascii: "}"))
                    return .object(members)
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [EditableJSON] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array([]) }
                while true {
                    items.append(try value())
                    skipSpace()
                    guard i < bytes.count else { throw ParseError(description: "unterminated array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    try expect(UInt8(ascii: "]"))
                    return .array(items)
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            default:
                let start = i
                while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
                guard i > start else { throw ParseError(description: "unexpected byte at \(i)") }
                return .number(String(decoding: bytes[start..<i], as: UTF8.self))
            }
        }

        mutating func string() throws -> String {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw ParseError(description: "expected a string at \(i)") }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                if b == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                guard b == UInt8(ascii: "\\") else { out.append(b); continue }
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"),
                       bytes[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        let low = try hex4()
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    out.append(contentsOf: String(Character(UnicodeScalar(scalar) ?? "\u{FFFD}")).utf8)
                default: out.append(e)
                }
            }
            throw ParseError(description: "unterminated string")
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16) else {
                throw ParseError(description: "bad \\u escape at \(i)")
            }
            i += 4
            return v
        }
    }
}

extension EditableJSON: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByNilLiteral,
    ExpressibleByIntegerLiteral, ExpressibleByArrayLiteral
{
    init(stringLiteral value: String) { self = .string(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(nilLiteral: ()) { self = .null }
    init(integerLiteral value: Int) { self = .number(String(value)) }
    init(arrayLiteral elements: EditableJSON...) { self = .array(elements) }
}
