/// What a key may hold. Each module registers its sections as a tree of these.
public indirect enum ConfigType: Sendable {
    case string
    /// A TOML integer, optionally bounded (inclusive).
    case integer(min: Int64? = nil, max: Int64? = nil)
    /// A TOML float; TOML integers are accepted too. Optionally bounded (inclusive); NaN never passes a bound.
    case float(min: Double? = nil, max: Double? = nil)
    case bool
    /// A string from a closed set.
    case oneOf([String])
    /// A string such as `"250ms"`, `"1.5s"`, `"2s"`, `"5m"`, `"1h"` or `"1h30m"` (units ns, us, ms, s, m, h, d).
    /// Must be greater than zero; use `durationRange` for other bounds.
    case duration
    /// A duration bounded inclusively; `durationRange(min: .zero)` admits `"0s"`.
    case durationRange(min: Duration? = nil, max: Duration? = nil)
    /// A string such as `"512MiB"`, `"1GiB"`, `"64KiB"`, `"1000000"`, or an integer number of bytes; also decimal
    /// `kB`/`MB`/`GB`/`TB` (and `KB`) and binary `KiB`/`MiB`/`GiB`/`TiB`. Must be greater than zero; use
    /// `byteSizeRange` for other bounds.
    case byteSize
    /// A byte size bounded inclusively; `byteSizeRange(min: 0)` admits zero.
    case byteSizeRange(min: Int64? = nil, max: Int64? = nil)
    /// A homogeneous TOML array whose every element has this type.
    case array(ConfigType)
    /// A table (`[name]`, dotted keys, or an inline table).
    case table(ConfigTable)
    /// An array of tables: `[[name]]` sections, or an inline array of inline tables.
    case arrayOfTables(ConfigTable)
}

/// One key of a table in the schema.
public struct ConfigKey: Sendable {
    /// snake_case (`[a-z][a-z0-9_]*`), checked with a precondition.
    public var name: String
    public var type: ConfigType
    /// A missing required key is a configuration error. A required key has no default.
    public var required: Bool
    /// What readers return when the key is absent; listed in the reference. For a `table` key, a default
    /// (usually `.table([:])`) makes an absent table behave as if it were written empty: its own defaults apply
    /// and its required keys are reported missing.
    public var defaultValue: ConfigValue?
    /// At least one sentence; shown in the reference and by `kilntally config keys`.
    public var doc: String
    /// A password or the like: diagnostics never show its value (only its type), so `config check` output and logs
    /// can be shared. Only for string keys.
    public var isSecret: Bool

    public init(_ name: String, _ type: ConfigType, required: Bool = false, default: ConfigValue? = nil, secret: Bool = false,
                doc: String) {
        precondition(ConfigKey.isSnakeCase(name), "config key \"\(name)\" is not snake_case ([a-z][a-z0-9_]*)")
        if secret {
            guard case .string = type else { preconditionFailure("config key \"\(name)\" is secret but not a string") }
        }
        precondition(
            doc.contains(where: { !$0.isWhitespace }), "config key \"\(name)\" has no documentation")
        precondition(!(required && `default` != nil), "config key \"\(name)\" is required and has a default")
        if let d = `default` {
            var v = ConfigValidator(file: "<default>", lines: nil)
            v.validate(d, type, at: ConfigPath().appending(name), checkRequired: false)
            precondition(
                v.diagnostics.isEmpty,
                "the default of config key \"\(name)\" does not fit its type: "
                    + v.diagnostics.map(\.message).joined(separator: "; "))
        }
        self.name = name
        self.type = type
        self.required = required
        self.defaultValue = `default`
        self.doc = doc
        isSecret = secret
    }

    static func isSnakeCase(_ s: String) -> Bool {
        guard let first = s.utf8.first, first >= 0x61, first <= 0x7A else { return false }
        return s.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }
}

/// The keys of one table, in the order the reference lists them.
public struct ConfigTable: Sendable {
    public var keys: [ConfigKey]

    public init(_ keys: [ConfigKey]) {
        var seen = Set<String>()
        for k in keys {
            precondition(seen.insert(k.name).inserted, "config key \"\(k.name)\" is declared twice in one table")
        }
        self.keys = keys
    }

    public subscript(name: String) -> ConfigKey? { keys.first { $0.name == name } }
}

/// Every section every module knows. Build one at startup, register each module's sections, hand it to the loader.
public struct ConfigSchema: Sendable {
    public private(set) var sections: [ConfigKey] = []

    public init() {}

    /// Registers a top-level key (usually a table or an array of tables). Precondition: no duplicate names.
    public mutating func register(_ section: ConfigKey) {
        precondition(
            !sections.contains { $0.name == section.name }, "config section \"\(section.name)\" is registered twice")
        sections.append(section)
    }

    /// Registers several top-level keys, e.g. `schema.register(contentsOf: ConfigSchema.acquisitionSections())`.
    public mutating func register(contentsOf sections: [ConfigKey]) {
        for s in sections { register(s) }
    }

    /// The root as a table (the sections are its keys).
    public var rootTable: ConfigTable { ConfigTable(sections) }

    /// The schema key that `path` names (the last key of the path; nil when the path ends in an index or leaves
    /// the schema).
    public func key(at path: ConfigPath) -> ConfigKey? {
        var type: ConfigType = .table(rootTable)
        var key: ConfigKey?
        for c in path.components {
            switch (c, type) {
            case (.key(let k), .table(let t)):
                guard let found = t[k] else { return nil }
                key = found
                type = found.type
            case (.index, .array(let inner)):
                key = nil
                type = inner
            case (.index, .arrayOfTables(let t)):
                key = nil
                type = .table(t)
            default:
                return nil
            }
        }
        return key
    }

    /// Markdown reference of every key (path, type, required/default, doc), for docs/CONFIG.md and
    /// `kilntally config keys`. One section per registered top-level key, with every nested key by its full path
    /// (`device[].channel[].type`).
    public func markdownReference() -> String {
        var out = "# Configuration reference\n\n"
        out += "Every key of `kilntally.toml`. Keys are snake_case; a path like `device[].channel[].type` is the\n"
        out += "`type` key of any `[[device.channel]]` table of any `[[device]]`. Durations are strings such as\n"
        out += "`\"250ms\"`, `\"1.5s\"`, `\"5m\"` or `\"1h30m\"`; byte sizes are strings such as `\"512MiB\"`, `\"1GB\"`\n"
        out += "or an integer number of bytes.\n"
        for section in sections {
            let header: String
            switch section.type {
            case .table: header = "`[\(ConfigPath.quoteKeyIfNeeded(section.name))]`"
            case .arrayOfTables: header = "`[[\(ConfigPath.quoteKeyIfNeeded(section.name))]]`"
            default: header = "`\(ConfigPath.quoteKeyIfNeeded(section.name))`"
            }
            out += "\n## \(header)\n\n\(ConfigSchema.oneLine(section.doc))\n\n"
            out += "| key | type | required / default | description |\n|---|---|---|---|\n"
            ConfigSchema.rows(section, prefix: "", into: &out)
        }
        return out
    }

    private static func rows(_ key: ConfigKey, prefix: String, into out: inout String) {
        let path = prefix + ConfigPath.quoteKeyIfNeeded(key.name)
        let requirement: String
        if key.required {
            requirement = "**required**"
        } else if let d = key.defaultValue {
            if case .table(let t) = d, t.isEmpty {
                requirement = "optional (defaults apply when absent)"
            } else {
                requirement = "default `" + d.tomlLiteral.replacingPipes() + "`"
            }
        } else {
            requirement = "optional"
        }
        let shownPath: String
        if case .arrayOfTables = key.type { shownPath = path + "[]" } else { shownPath = path }
        out += "| `\(shownPath.replacingPipes())` | \(typeName(key.type).replacingPipes()) | \(requirement) | "
        out += oneLine(key.doc).replacingPipes() + " |\n"
        switch key.type {
        case .table(let t):
            for k in t.keys { rows(k, prefix: path + ".", into: &out) }
        case .arrayOfTables(let t):
            for k in t.keys { rows(k, prefix: path + "[].", into: &out) }
        case .array(.table(let t)):
            for k in t.keys { rows(k, prefix: path + "[].", into: &out) }
        default:
            break
        }
    }

    /// A short name of a type for the reference: `integer (1 to 247)`, `one of \`a\`, \`b\``, `array of string`.
    static func typeName(_ t: ConfigType) -> String {
        switch t {
        case .string: return "string"
        case .integer(let lo, let hi): return "integer" + bounds(lo.map { String($0) }, hi.map { String($0) })
        case .float(let lo, let hi):
            return "float" + bounds(lo.map(ConfigValue.formatBound), hi.map(ConfigValue.formatBound))
        case .bool: return "boolean"
        case .oneOf(let values): return "one of " + values.map { "`\($0)`" }.joined(separator: ", ")
        case .duration: return "duration (> 0)"
        case .durationRange(let lo, let hi):
            return "duration" + bounds(lo.map(ConfigUnits.formatDuration), hi.map(ConfigUnits.formatDuration))
        case .byteSize: return "byte size (> 0)"
        case .byteSizeRange(let lo, let hi):
            return "byte size" + bounds(lo.map(ConfigUnits.formatByteSize), hi.map(ConfigUnits.formatByteSize))
        case .array(let inner): return "array of " + typeName(inner)
        case .table: return "table"
        case .arrayOfTables: return "array of tables"
        }
    }

    private static func bounds(_ lo: String?, _ hi: String?) -> String {
        switch (lo, hi) {
        case (let l?, let h?): return " (\(l) to \(h))"
        case (let l?, nil): return " (≥ \(l))"
        case (nil, let h?): return " (≤ \(h))"
        case (nil, nil): return ""
        }
    }

    private static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: \.isNewline).map { $0.trimmingSpaces() }.joined(separator: " ")
    }
}

extension StringProtocol {
    fileprivate func replacingPipes() -> String {
        var out = ""
        for ch in self {
            if ch == "|" { out += "\\|" } else { out.append(ch) }
        }
        return out
    }

    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
