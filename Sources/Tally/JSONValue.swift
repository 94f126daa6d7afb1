/// A JSON value as the ledger's records hold it: objects, arrays, strings, integers, booleans and null.
///
/// There are deliberately **no floating-point numbers**. Records carry decimal quantities (masses, rates) as
/// fixed-point strings (`"19220.000"`), so a record never depends on binary floating point, and its canonical form
/// (RFC 8785, `CanonicalJSON`) never needs JCS's ECMAScript number formatting — the part of JCS that independent
/// implementations most often get wrong. Integers are limited to what JCS represents exactly, ±(2^53 − 1)
/// (`JSONValue.integerRange`); `CanonicalJSON` rejects anything else, on parse and on serialization.
///
/// Swift compares and hashes `String`s by Unicode canonical equivalence, so `"é"` (U+00E9) and `"e\u{301}"` are the
/// same dictionary key and `==` here, although JSON and JCS treat them as different strings with different
/// canonical bytes. The serializer always writes the scalars a string actually holds; the parser rejects an object
/// whose keys differ only that way (see `CanonicalJSON.parse`). Compare canonical bytes, not values, when it matters.
public enum JSONValue: Sendable, Hashable {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case null

    /// The integers JCS represents exactly: an IEEE 754 double's safe integers, ±(2^53 − 1).
    public static let integerRange: ClosedRange<Int64> = -(1 << 53 - 1)...(1 << 53 - 1)

    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { o } else { nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var integerValue: Int64? { if case .integer(let i) = self { i } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }

    /// The member `key` of an object; nil for a missing member or a value that is not an object.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// Traps on a repeated key, as `Dictionary(uniqueKeysWithValues:)` does.
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(Dictionary(uniqueKeysWithValues: elements)) }
    public init(nilLiteral: ()) { self = .null }
}
