/// A value from a configuration file, converted from TOMLKit's (non-Sendable) tree right after parsing.
///
/// Tables are dictionaries: TOML gives keys no meaning by order, and toml++ does not keep the file's order anyway.
/// Dates, times and date-times are kept as their TOML text (`datetime`); no schema type accepts them today.
public enum ConfigValue: Sendable, Hashable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)
    /// A TOML offset/local date-time, local date or local time, as TOML text (e.g. `2026-11-23T08:00:00Z`).
    case datetime(String)
    case array([ConfigValue])
    case table([String: ConfigValue])

    /// The value in TOML syntax (strings quoted, tables inline with sorted keys); used in messages and the reference.
    public var tomlLiteral: String {
        switch self {
        case .string(let s): return ConfigValue.quoted(s)
        case .integer(let i): return String(i)
        case .float(let d): return ConfigValue.formatDouble(d)
        case .bool(let b): return b ? "true" : "false"
        case .datetime(let s): return s
        case .array(let a): return "[" + a.map(\.tomlLiteral).joined(separator: ", ") + "]"
        case .table(let t):
            if t.isEmpty { return "{}" }
            let body = t.keys.sorted().map { ConfigPath.quoteKeyIfNeeded($0) + " = " + t[$0]!.tomlLiteral }
            return "{ " + body.joined(separator: ", ") + " }"
        }
    }

    /// A short description of the value for "but found …" messages: strings as quoted literals, others with their kind.
    var foundDescription: String {
        switch self {
        case .string(let s):
            let limit = 60
            return ConfigValue.quoted(s.count > limit ? String(s.prefix(limit)) + "…" : s)
        case .integer(let i): return "integer \(i)"
        case .float(let d): return "float \(ConfigValue.formatDouble(d))"
        case .bool(let b): return "boolean \(b)"
        case .datetime(let s): return "date-time \(s)"
        case .array: return "an array"
        case .table: return "a table"
        }
    }

    /// The kind of value without the value itself ("an integer"), for keys whose values must not be shown.
    var kindDescription: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .bool: return "a boolean"
        case .datetime: return "a date-time"
        case .array: return "an array"
        case .table: return "a table"
        }
    }

    /// A TOML basic string literal.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Integral doubles print without a fraction when it is exact (`100`, not `100.0`); others as Swift prints them.
    static func formatDouble(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d.rounded() == d, abs(d) < 1e15 { return String(Int64(d)) + ".0" }
        return String(d)
    }

    /// Like `formatDouble` but without the `.0` of integral values (for ranges in messages: "between 0 and 100").
    static func formatBound(_ d: Double) -> String {
        if d.rounded() == d, abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }
}

/// Where a value sits in a configuration file: `device[2].channel[0].type`.
public struct ConfigPath: Hashable, Sendable, Comparable, CustomStringConvertible {
    public enum Component: Hashable, Sendable {
        case key(String)
        case index(Int)
    }

    public var components: [Component]

    public init(_ components: [Component] = []) { self.components = components }

    /// A path of plain keys: `ConfigPath(keys: "mqtt", "host")`.
    public init(keys: String...) { self.components = keys.map { .key($0) } }

    public func appending(_ key: String) -> ConfigPath {
        var p = self
        p.components.append(.key(key))
        return p
    }

    public func appending(index: Int) -> ConfigPath {
        var p = self
        p.components.append(.index(index))
        return p
    }

    /// The path without its last component (the root's parent is nil).
    public var parent: ConfigPath? {
        components.isEmpty ? nil : ConfigPath(Array(components.dropLast()))
    }

    public var isRoot: Bool { components.isEmpty }

    /// The last key of the path, if the path ends in a key.
    public var lastKey: String? {
        if case .key(let k)? = components.last { return k }
        return nil
    }

    /// `device[2].channel[0].type`; keys that are not bare TOML keys are quoted: `mqtt."odd key"`. The root is "".
    public var description: String {
        var out = ""
        for c in components {
            switch c {
            case .key(let k):
                if !out.isEmpty { out += "." }
                out += ConfigPath.quoteKeyIfNeeded(k)
            case .index(let i):
                out += "[\(i)]"
            }
        }
        return out
    }

    /// The TOML header that would open this table: `device.channel` for `device[2].channel` (indices dropped).
    var headerName: String {
        components.compactMap { c -> String? in
            if case .key(let k) = c { return ConfigPath.quoteKeyIfNeeded(k) }
            return nil
        }.joined(separator: ".")
    }

    /// Orders component by component: indices numerically, keys by string, an index before a key, a prefix first.
    public static func < (a: ConfigPath, b: ConfigPath) -> Bool {
        for (x, y) in zip(a.components, b.components) where x != y {
            switch (x, y) {
            case (.index(let i), .index(let j)): return i < j
            case (.key(let k), .key(let l)): return k < l
            case (.index, .key): return true
            case (.key, .index): return false
            }
        }
        return a.components.count < b.components.count
    }

    /// Whether `key` can be written bare in TOML (`A-Za-z0-9_-`, not empty).
    static func isBareKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy { b in
            (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D
        }
    }

    static func quoteKeyIfNeeded(_ key: String) -> String {
        isBareKey(key) ? key : ConfigValue.quoted(key)
    }
}

/// Literals, so schema defaults read naturally: `default: "250ms"`, `default: 1883`, `default: [:]`.
extension ConfigValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .float(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: ConfigValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, ConfigValue)...) {
        self = .table(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
