/// Collects the semantic errors that only a module can see while decoding a loaded document (e.g. "bus 'x' is not
/// defined"), so one `config check` reports all of them together. Not thread-safe: decode on one task.
public final class ConfigDiagnostics {
    public let document: ConfigDocument
    /// Everything recorded so far, in recording order (`finish()` sorts).
    public var all: [ConfigDiagnostic] = []

    public init(document: ConfigDocument) { self.document = document }

    public func record(_ diagnostic: ConfigDiagnostic) { all.append(diagnostic) }

    /// Records a problem at `path` (with the line of the path or of its nearest enclosing path).
    public func error(at path: ConfigPath, _ message: String) {
        all.append(ConfigDiagnostic(file: document.file, path: path, line: document.line(of: path), message: message))
    }

    /// Throws every recorded diagnostic, sorted by line then path, if there is any.
    public func finish() throws(ConfigErrors) {
        if !all.isEmpty { throw ConfigErrors(all) }
    }
}

/// Typed access to one table of a loaded document, during decoding.
///
/// Readers return the value written in the file, or the schema default when the key is absent, or nil. The document
/// has been validated, so types and ranges hold. Asking for a key that is not in this table's schema, or with a
/// reader that does not fit the key's type (e.g. `int` for a string key), is a programmer error (precondition).
public struct ConfigReader {
    public let document: ConfigDocument
    public let diagnostics: ConfigDiagnostics
    /// Where this table is: the root is the empty path, `tables("device")[2]` is `device[2]`.
    public let path: ConfigPath
    /// The schema of this table.
    public let schema: ConfigTable
    /// The keys as written (empty for a table that is absent and defaulted).
    let values: [String: ConfigValue]

    /// A reader of the root table.
    public init(document: ConfigDocument, diagnostics: ConfigDiagnostics) {
        guard case .table(let dict) = document.root else { preconditionFailure("a config root is a table") }
        self.init(document: document, diagnostics: diagnostics, path: ConfigPath(), schema: document.schema.rootTable,
                  values: dict)
    }

    init(document: ConfigDocument, diagnostics: ConfigDiagnostics, path: ConfigPath, schema: ConfigTable,
         values: [String: ConfigValue]) {
        self.document = document
        self.diagnostics = diagnostics
        self.path = path
        self.schema = schema
        self.values = values
    }

    /// The keys as written in this table (no defaults), e.g. to lay a device's channel over its profile's.
    public var writtenValues: [String: ConfigValue] { values }

    /// This table with `base` underneath: keys written here win, the others come from `base` (which must follow
    /// the same schema, e.g. a profile's channel validated against it). Errors still report at this table's path.
    public func overlaying(_ base: [String: ConfigValue]) -> ConfigReader {
        ConfigReader(document: document, diagnostics: diagnostics, path: path, schema: schema,
                     values: base.merging(values) { _, mine in mine })
    }

    /// A reader of `values` (a table that follows `schema`, e.g. taken from another document) whose errors report
    /// at this table's `key` (or at this table when nil), in this document.
    public func reading(_ values: [String: ConfigValue], schema: ConfigTable, reportingAt key: String?) -> ConfigReader {
        ConfigReader(document: document, diagnostics: diagnostics, path: key.map { path.appending($0) } ?? path,
                     schema: schema, values: values)
    }

    /// The keys written in this table, sorted.
    public var presentKeys: [String] { values.keys.sorted() }

    /// Whether the key is written in the file (a default does not count).
    public func has(_ key: String) -> Bool {
        _ = schemaKey(key)
        return values[key] != nil
    }

    /// The path of a key of this table.
    public func path(of key: String) -> ConfigPath { path.appending(key) }

    /// The value as written, or the default, without conversion.
    public func value(_ key: String) -> ConfigValue? {
        let k = schemaKey(key)
        return values[key] ?? k.defaultValue
    }

    /// A string or `oneOf` key; also the text of a duration or byte size as written (nil for integer bytes).
    public func string(_ key: String) -> String? {
        guard case .string(let s)? = typed(key, "string", { t in
            switch t {
            case .string, .oneOf, .duration, .durationRange, .byteSize, .byteSizeRange: return true
            default: return false
            }
        }) else { return nil }
        return s
    }

    /// A `oneOf` (or string) key as an enum whose raw values are the allowed strings.
    public func value<T: RawRepresentable>(_ key: String, as type: T.Type) -> T? where T.RawValue == String {
        string(key).flatMap(T.init(rawValue:))
    }

    public func int(_ key: String) -> Int64? {
        guard case .integer(let i)? = typed(key, "int", { t in
            if case .integer = t { return true }
            return false
        }) else { return nil }
        return i
    }

    public func double(_ key: String) -> Double? {
        switch typed(key, "double", { t in
            if case .float = t { return true }
            return false
        }) {
        case .float(let d)?: return d
        case .integer(let i)?: return Double(i)
        default: return nil
        }
    }

    public func bool(_ key: String) -> Bool? {
        guard case .bool(let b)? = typed(key, "bool", { t in
            if case .bool = t { return true }
            return false
        }) else { return nil }
        return b
    }

    public func duration(_ key: String) -> Duration? {
        guard case .string(let s)? = typed(key, "duration", { t in
            switch t {
            case .duration, .durationRange: return true
            default: return false
            }
        }) else { return nil }
        return ConfigUnits.parseDuration(s)
    }

    /// Bytes.
    public func byteSize(_ key: String) -> Int64? {
        switch typed(key, "byteSize", { t in
            switch t {
            case .byteSize, .byteSizeRange: return true
            default: return false
            }
        }) {
        case .integer(let i)?: return i
        case .string(let s)?: return ConfigUnits.parseByteSize(s)
        default: return nil
        }
    }

    /// An array of strings (or of `oneOf` strings).
    public func strings(_ key: String) -> [String]? {
        guard case .array(let items)? = typed(key, "strings", { t in
            switch t {
            case .array(.string), .array(.oneOf): return true
            default: return false
            }
        }) else { return nil }
        return items.compactMap { if case .string(let s) = $0 { return s } else { return nil } }
    }

    /// An array of integers.
    public func ints(_ key: String) -> [Int64]? {
        guard case .array(let items)? = typed(key, "ints", { t in
            if case .array(.integer) = t { return true }
            return false
        }) else { return nil }
        return items.compactMap { if case .integer(let i) = $0 { return i } else { return nil } }
    }

    /// The table if present, or its default (usually `.table([:])`, so its keys' defaults apply); nil otherwise.
    public func table(_ key: String) -> ConfigReader? {
        let k = schemaKey(key)
        guard case .table(let sub) = k.type else {
            preconditionFailure("config key \(path.appending(key)) is read as a table but is not one")
        }
        guard case .table(let dict)? = values[key] ?? k.defaultValue else { return nil }
        return ConfigReader(document: document, diagnostics: diagnostics, path: path.appending(key), schema: sub,
                            values: dict)
    }

    /// The tables of an array of tables (written, or the default, or none); each reader's path is `key[i]`.
    public func tables(_ key: String) -> [ConfigReader] {
        let k = schemaKey(key)
        let sub: ConfigTable
        switch k.type {
        case .arrayOfTables(let t), .array(.table(let t)): sub = t
        default: preconditionFailure("config key \(path.appending(key)) is read as tables but is not an array of tables")
        }
        guard case .array(let items)? = values[key] ?? k.defaultValue else { return [] }
        return items.enumerated().compactMap { n, item in
            guard case .table(let dict) = item else { return nil }
            return ConfigReader(document: document, diagnostics: diagnostics, path: path.appending(key).appending(index: n),
                                schema: sub, values: dict)
        }
    }

    /// Records a semantic error at this table (`key == nil`) or at one of its keys, with its line.
    public func error(_ key: String?, _ message: String) {
        let p = key.map { path.appending($0) } ?? path
        diagnostics.error(at: p, message)
    }

    /// The line of a key of this table (or of this table when `key == nil`), falling back to the enclosing table's.
    public func line(of key: String?) -> Int? {
        document.line(of: key.map { path.appending($0) } ?? path)
    }

    // MARK: - Private

    private func schemaKey(_ key: String) -> ConfigKey {
        guard let k = schema[key] else {
            preconditionFailure("config key \(path.appending(key)) is not in the schema")
        }
        return k
    }

    private func typed(_ key: String, _ reader: String, _ fits: (ConfigType) -> Bool) -> ConfigValue? {
        let k = schemaKey(key)
        precondition(
            fits(k.type),
            "config key \(path.appending(key)) is \(ConfigSchema.typeName(k.type)) and cannot be read with \(reader)()")
        return values[key] ?? k.defaultValue
    }
}
