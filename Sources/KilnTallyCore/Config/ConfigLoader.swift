import TOMLKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A parsed and schema-validated configuration file.
public struct ConfigDocument: Sendable {
    /// The file name used in diagnostics.
    public let file: String
    /// The raw text.
    public let text: String
    /// The whole file as a table (always `.table`).
    public let root: ConfigValue
    public let schema: ConfigSchema
    /// Line of every path the text defines.
    let lines: [ConfigPath: Int]

    /// The line where `path` is defined, or else where its nearest enclosing path is (e.g. a missing key's table
    /// header, or the key of an inline table); nil when nothing on the way up has a line (the root).
    public func line(of path: ConfigPath) -> Int? {
        ConfigLineLocator.line(of: path, in: lines)
    }

    /// FNV-1a 64-bit of the raw text (UTF-8), as 16 lowercase hex digits: identifies the configuration in use.
    public var contentHash: String { ConfigUnits.fnv1a64Hex(text.utf8) }

    /// The value at `path` as written in the file (defaults not applied), or nil.
    public func value(at path: ConfigPath) -> ConfigValue? {
        var v: ConfigValue? = root
        for c in path.components {
            switch (c, v) {
            case (.key(let k), .table(let t)?): v = t[k]
            case (.index(let n), .array(let a)?): v = a.indices.contains(n) ? a[n] : nil
            default: return nil
            }
        }
        return v
    }
}

/// Reads, parses and validates configuration files against a schema.
public struct ConfigLoader: Sendable {
    public let schema: ConfigSchema

    public init(schema: ConfigSchema) { self.schema = schema }

    /// Reads the file and loads it (see `load(text:file:)`). An unreadable file is one diagnostic naming the file
    /// and the system's error text; a file that is not UTF-8 is one diagnostic too.
    public func load(file path: String) throws(ConfigErrors) -> ConfigDocument {
        let bytes: [UInt8]
        switch ConfigLoader.readFile(path) {
        case .success(let b): bytes = b
        case .failure(let f): throw ConfigErrors([ConfigDiagnostic(file: path, message: f.message)])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.utf8.count != bytes.count || !text.utf8.elementsEqual(bytes) {
            throw ConfigErrors([ConfigDiagnostic(file: path, message: "the file is not valid UTF-8")])
        }
        return try load(text: text, file: path)
    }

    /// Parses (a syntax error is one diagnostic with line and column) and validates against the schema, collecting
    /// every error in one pass: unknown keys (with a "did you mean" for a close match), wrong types, missing
    /// required keys (at the enclosing table header's line), values out of range, strings outside a `oneOf`, bad
    /// durations and byte sizes.
    public func load(text: String, file: String) throws(ConfigErrors) -> ConfigDocument {
        let root = try ConfigLoader.parse(text, file: file)
        let lines = ConfigLineLocator.locate(text)
        var validator = ConfigValidator(file: file, lines: lines)
        guard case .table(let dict) = root else { fatalError("a TOML document is a table") }
        validator.validateTable(dict, schema.rootTable, at: ConfigPath(), checkRequired: true)
        if !validator.diagnostics.isEmpty { throw ConfigErrors(validator.diagnostics) }
        return ConfigDocument(file: file, text: text, root: root, schema: schema, lines: lines)
    }

    /// TOML text to our own Sendable tree, converted before anything else touches TOMLKit's objects.
    static func parse(_ text: String, file: String) throws(ConfigErrors) -> ConfigValue {
        // toml++ reads a C string: a NUL would silently end the document there. TOML forbids it anyway.
        if let nul = text.utf8.firstIndex(of: 0) {
            let before = text.utf8[..<nul]
            let line = before.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
            let lineStart = before.lastIndex(of: 0x0A).map { text.utf8.index(after: $0) } ?? text.utf8.startIndex
            let column = text.utf8.distance(from: lineStart, to: nul) + 1
            throw ConfigErrors([
                ConfigDiagnostic(
                    file: file, line: line, column: column, message: "TOML syntax error: NUL characters are not allowed")
            ])
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            throw ConfigErrors([
                ConfigDiagnostic(
                    file: file, line: e.source.begin.line, column: e.source.begin.column,
                    message: "TOML syntax error: \(e.description)")
            ])
        } catch {
            throw ConfigErrors([ConfigDiagnostic(file: file, message: "TOML syntax error: \(error)")])
        }
        return convert(table)
    }

    static func convert(_ table: TOMLTable) -> ConfigValue {
        var dict: [String: ConfigValue] = [:]
        for (key, value) in table { dict[key] = convert(value) }
        return .table(dict)
    }

    static func convert(_ value: any TOMLValueConvertible) -> ConfigValue {
        switch value.type {
        case .table: return value.table.map(convert) ?? .table([:])
        case .array: return .array(value.array.map { $0.map(convert) } ?? [])
        case .string: return .string(value.string ?? "")
        case .int: return .integer(Int64(value.int ?? 0))
        case .double: return .float(value.double ?? .nan)
        case .bool: return .bool(value.bool ?? false)
        case .date: return .datetime(value.date?.debugDescription ?? "")
        case .time: return .datetime(value.time?.debugDescription ?? "")
        case .dateTime: return .datetime(value.dateTime?.debugDescription ?? "")
        }
    }

    /// The whole file, or the reason it can't be read ("cannot read the file: No such file or directory").
    static func readFile(_ path: String) -> Result<[UInt8], ReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return .failure(ReadFailure(errno: errno)) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(ReadFailure(errno: errno))
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return .success(out)
    }

    struct ReadFailure: Error {
        var message: String
        init(errno code: Int32) {
            message = "cannot read the file: \(String(cString: strerror(code))) (errno \(code))"
        }
    }
}
