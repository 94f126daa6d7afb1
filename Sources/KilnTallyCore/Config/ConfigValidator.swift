/// Checks a value tree against the schema, collecting every problem in one pass.
struct ConfigValidator {
    let file: String
    /// Line of each path (from `ConfigLineLocator`); nil when validating defaults, which have no lines.
    let lines: [ConfigPath: Int]?
    private(set) var diagnostics: [ConfigDiagnostic] = []

    init(file: String, lines: [ConfigPath: Int]?) {
        self.file = file
        self.lines = lines
    }

    mutating func report(_ path: ConfigPath, _ message: String) {
        let line = lines.flatMap { ConfigLineLocator.line(of: path, in: $0) }
        diagnostics.append(ConfigDiagnostic(file: file, path: path, line: line, message: message))
    }

    /// Validates the keys of a table: unknown keys, each present key's value, missing required keys.
    /// `checkRequired` is false when checking a schema default (a default table may omit required keys).
    mutating func validateTable(
        _ dict: [String: ConfigValue], _ table: ConfigTable, at path: ConfigPath, checkRequired: Bool
    ) {
        let names = table.keys.map(\.name)
        for name in dict.keys.sorted() {
            let keyPath = path.appending(name)
            guard let key = table[name] else {
                if let s = ConfigUnits.suggestion(for: name, among: names) {
                    report(keyPath, "unknown key (did you mean \"\(s)\"?)")
                } else if names.isEmpty {
                    report(keyPath, "unknown key (this table has no keys)")
                } else {
                    report(keyPath, "unknown key (valid keys: \(names.joined(separator: ", ")))")
                }
                continue
            }
            if key.isSecret {
                // Secret keys are strings: the only possible problem is the type, reported without the value.
                if case .string = dict[name]! {} else {
                    report(keyPath, "expected a string but found \(dict[name]!.kindDescription) (the value is not shown: it is a secret)")
                }
            } else {
                validate(dict[name]!, key.type, at: keyPath, checkRequired: checkRequired)
            }
        }
        for key in table.keys where dict[key.name] == nil {
            let keyPath = path.appending(key.name)
            if key.required {
                if checkRequired { report(keyPath, "required key is missing") }
            } else if let d = key.defaultValue, checkRequired {
                // A defaulted table or array of tables behaves as if written: its required keys must be there.
                switch (key.type, d) {
                case (.table, _), (.arrayOfTables, _): validate(d, key.type, at: keyPath, checkRequired: true)
                default: break
                }
            }
        }
    }

    mutating func validate(_ value: ConfigValue, _ type: ConfigType, at path: ConfigPath, checkRequired: Bool) {
        switch type {
        case .string:
            guard case .string = value else { return mismatch(path, "a string", value) }

        case .integer(let lo, let hi):
            guard case .integer(let i) = value else {
                return mismatch(path, "an integer" + ConfigValidator.range(lo, hi, String.init), value)
            }
            if let lo, i < lo { return outOfRange(path, "an integer" + ConfigValidator.range(lo, hi, String.init), value) }
            if let hi, i > hi { return outOfRange(path, "an integer" + ConfigValidator.range(lo, hi, String.init), value) }

        case .float(let lo, let hi):
            let d: Double
            switch value {
            case .float(let x): d = x
            case .integer(let i): d = Double(i)
            default: return mismatch(path, "a number" + ConfigValidator.range(lo, hi, ConfigValue.formatBound), value)
            }
            let what = "a number" + ConfigValidator.range(lo, hi, ConfigValue.formatBound)
            if let lo, !(d >= lo) { return outOfRange(path, what, value) }
            if let hi, !(d <= hi) { return outOfRange(path, what, value) }

        case .bool:
            guard case .bool = value else { return mismatch(path, "a boolean (true or false)", value) }

        case .oneOf(let allowed):
            let what = "one of " + allowed.joined(separator: ", ")
            guard case .string(let s) = value else { return mismatch(path, what, value) }
            if !allowed.contains(s) {
                var message = "expected \(what) but found \(value.foundDescription)"
                if let suggestion = ConfigUnits.suggestion(for: s, among: allowed) {
                    message += " (did you mean \"\(suggestion)\"?)"
                }
                report(path, message)
            }

        case .duration:
            validateDuration(value, min: nil, max: nil, at: path)
        case .durationRange(let lo, let hi):
            validateDuration(value, min: lo, max: hi, at: path)

        case .byteSize:
            validateByteSize(value, min: nil, max: nil, at: path)
        case .byteSizeRange(let lo, let hi):
            validateByteSize(value, min: lo, max: hi, at: path)

        case .array(let element):
            guard case .array(let items) = value else {
                return mismatch(path, "an array of " + ConfigValidator.plural(element), value)
            }
            for (i, item) in items.enumerated() {
                validate(item, element, at: path.appending(index: i), checkRequired: checkRequired)
            }

        case .table(let table):
            guard case .table(let dict) = value else {
                var what = "a table"
                if case .array(let items) = value, items.allSatisfy(ConfigValidator.isTable), !items.isEmpty {
                    what += " ([\(path.headerName)], not [[\(path.headerName)]])"
                }
                return mismatch(path, what, value)
            }
            validateTable(dict, table, at: path, checkRequired: checkRequired)

        case .arrayOfTables(let table):
            guard case .array(let items) = value else {
                var what = "an array of tables"
                if case .table = value { what += " ([[\(path.headerName)]], not [\(path.headerName)])" }
                return mismatch(path, what, value)
            }
            for (i, item) in items.enumerated() {
                let itemPath = path.appending(index: i)
                guard case .table(let dict) = item else {
                    mismatch(itemPath, "a table", item)
                    continue
                }
                validateTable(dict, table, at: itemPath, checkRequired: checkRequired)
            }
        }
    }

    private mutating func validateDuration(_ value: ConfigValue, min lo: Duration?, max hi: Duration?, at path: ConfigPath) {
        let example = "a duration such as \"250ms\", \"1.5s\", \"5m\" or \"1h30m\""
        guard case .string(let s) = value else { return mismatch(path, example, value) }
        guard let d = ConfigUnits.parseDuration(s) else { return mismatch(path, example, value) }
        if lo == nil, d <= .zero {
            return report(path, "expected a duration greater than 0 but found \(value.foundDescription)")
        }
        let what = "a duration" + ConfigValidator.range(lo, hi, ConfigUnits.formatDuration)
        if let lo, d < lo { return outOfRange(path, what, value) }
        if let hi, d > hi { return outOfRange(path, what, value) }
    }

    private mutating func validateByteSize(_ value: ConfigValue, min lo: Int64?, max hi: Int64?, at path: ConfigPath) {
        let example = "a byte size such as \"512MiB\", \"64KiB\", \"1GB\" or an integer number of bytes"
        let bytes: Int64
        switch value {
        case .integer(let i): bytes = i
        case .string(let s):
            guard let b = ConfigUnits.parseByteSize(s) else { return mismatch(path, example, value) }
            bytes = b
        default: return mismatch(path, example, value)
        }
        if lo == nil, bytes <= 0 {
            return report(path, "expected a byte size greater than 0 but found \(value.foundDescription)")
        }
        let what = "a byte size" + ConfigValidator.range(lo, hi, ConfigUnits.formatByteSize)
        if let lo, bytes < lo { return outOfRange(path, what, value) }
        if let hi, bytes > hi { return outOfRange(path, what, value) }
    }

    private mutating func mismatch(_ path: ConfigPath, _ expected: String, _ found: ConfigValue) {
        report(path, "expected \(expected) but found \(found.foundDescription)")
    }

    private mutating func outOfRange(_ path: ConfigPath, _ expected: String, _ found: ConfigValue) {
        let shown: String
        switch found {
        case .integer(let i): shown = String(i)
        case .float(let d): shown = ConfigValue.formatDouble(d)
        default: shown = found.foundDescription
        }
        report(path, "expected \(expected) but found \(shown)")
    }

    static func range<T>(_ lo: T?, _ hi: T?, _ format: (T) -> String) -> String {
        switch (lo, hi) {
        case (let l?, let h?): return " between \(format(l)) and \(format(h))"
        case (let l?, nil): return " of at least \(format(l))"
        case (nil, let h?): return " of at most \(format(h))"
        case (nil, nil): return ""
        }
    }

    static func isTable(_ v: ConfigValue) -> Bool {
        if case .table = v { return true }
        return false
    }

    /// "strings", "integers", … for "an array of …".
    static func plural(_ t: ConfigType) -> String {
        switch t {
        case .string: return "strings"
        case .integer(let lo, let hi): return "integers" + range(lo, hi, String.init)
        case .float(let lo, let hi): return "numbers" + range(lo, hi, ConfigValue.formatBound)
        case .bool: return "booleans"
        case .oneOf(let allowed): return "strings from (\(allowed.joined(separator: ", ")))"
        case .duration, .durationRange: return "durations"
        case .byteSize, .byteSizeRange: return "byte sizes"
        case .array(let inner): return "arrays of " + plural(inner)
        case .table: return "tables"
        case .arrayOfTables: return "arrays of tables"
        }
    }
}
