/// One problem with a configuration file: the file, the full key path, the line where the parser can tell.
public struct ConfigDiagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    /// The key path concerned; nil for problems with the file as a whole (unreadable, syntax error).
    public var path: ConfigPath?
    /// 1-based line, when known.
    public var line: Int?
    /// 1-based column, when known (syntax errors only).
    public var column: Int?
    public var message: String

    public init(file: String, path: ConfigPath? = nil, line: Int? = nil, column: Int? = nil, message: String) {
        self.file = file
        self.path = path
        self.line = line
        self.column = column
        self.message = message
    }

    /// `/etc/kilntally/kilntally.toml:12: device[2].channel[0].type: expected one of … but found "floot"`;
    /// without a line `/etc/kilntally/kilntally.toml: mqtt.host: required key is missing`; a syntax error
    /// `/etc/kilntally/kilntally.toml:3:9: TOML syntax error: …`.
    public var description: String {
        var out = file
        if let line {
            out += ":\(line)"
            if let column { out += ":\(column)" }
        }
        out += ": "
        if let path, !path.isRoot { out += "\(path): " }
        return out + message
    }

    /// Order of reports: by line (diagnostics without a line last), then path, then message.
    static func reportOrder(_ a: ConfigDiagnostic, _ b: ConfigDiagnostic) -> Bool {
        let la = a.line ?? Int.max
        let lb = b.line ?? Int.max
        if la != lb { return la < lb }
        if a.column != b.column { return (a.column ?? Int.max) < (b.column ?? Int.max) }
        let pa = a.path ?? ConfigPath()
        let pb = b.path ?? ConfigPath()
        if pa != pb { return pa < pb }
        return a.message < b.message
    }
}

/// Every problem found in one pass over a configuration file.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    /// Sorted by line (those without a line last), then path.
    public var diagnostics: [ConfigDiagnostic]

    /// Sorts the diagnostics into report order.
    public init(_ diagnostics: [ConfigDiagnostic]) {
        self.diagnostics = diagnostics.sorted(by: ConfigDiagnostic.reportOrder)
    }

    /// Sorts the diagnostics into report order.
    public init(diagnostics: [ConfigDiagnostic]) { self.init(diagnostics) }

    /// One diagnostic per line.
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
