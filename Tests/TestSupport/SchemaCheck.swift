import Foundation

/// Tests/peers/schema_check.py, run with the project venv's Python: the MQTT contract's JSON Schemas (schemas/) and
/// AsyncAPI document (asyncapi/) checked by `jsonschema` (Draft 2020-12, formats checked) and PyYAML, code nobody here
/// wrote. If it cannot run (no venv, no package) the calling test fails; it never skips.
///
/// Every mode runs one Python process, so a test batches all its documents into one call.
public enum SchemaCheck {
    /// The AsyncAPI document of the topic tree.
    public static var asyncAPI: String { RepoPaths.root.appendingPathComponent("asyncapi/kilntally.asyncapi.yaml").path }
    /// The JSON Schema files.
    public static var schemaDirectory: String { RepoPaths.root.appendingPathComponent("schemas").path }

    /// Validates each document against its schema (`status`, `readings`, `ticket`, `shift-report`, `event`,
    /// `shift-current`, or `auto`: by the document's `schema` field). Returns, per document, `"ok"` or
    /// `"invalid <where>: <why>"`. A document must be one line of JSON (as every payload is).
    public static func validate(_ documents: [(schema: String, json: [UInt8])]) async throws -> [String] {
        for d in documents where d.json.contains(0x0A) || d.schema.contains("\t") {
            throw PeerError("schema_check: a document must be one line of JSON: \(String(decoding: d.json, as: UTF8.self))")
        }
        let lines = documents.map { Array($0.schema.utf8) + [0x09] + $0.json }
        let result = try await run("batch", input: lines)
        guard result.count == documents.count else {
            throw PeerError("schema_check batch: \(result.count) results for \(documents.count) documents")
        }
        return result
    }

    /// Per schema file: `"<file> ok optional=<pointer>,…"` (the properties that are not required), or
    /// `"<file> problem: …"` lines.
    public static func checkSchemas(in directory: String = schemaDirectory) async throws -> [String] {
        try await run("schemas", [directory])
    }

    /// Per example of every AsyncAPI message: `"<message>/<example> ok"` or `"… invalid …"`; `"problem: …"` lines
    /// for a message without an example or a schema file, or a channel without its send operation and binding.
    public static func checkExamples(asyncAPI path: String = asyncAPI) async throws -> [String] {
        try await run("examples", [path])
    }

    public struct Channel: Sendable, Hashable, CustomStringConvertible {
        /// e.g. `{prefix}/{site}/{node}/shifts/{date}/{shift}`.
        public var address: String
        public var qos: Int
        public var retain: Bool
        /// The payload's schema file, relative to the repository root.
        public var schemaFile: String
        public init(address: String, qos: Int, retain: Bool, schemaFile: String) {
            self.address = address
            self.qos = qos
            self.retain = retain
            self.schemaFile = schemaFile
        }
        public var description: String { "\(address) qos=\(qos) retain=\(retain) \(schemaFile)" }
    }

    /// The channels of the AsyncAPI document, with their send operation's MQTT binding.
    public static func channels(asyncAPI path: String = asyncAPI) async throws -> [Channel] {
        try await run("channels", [path]).map { line in
            let f = line.split(separator: "\t").map(String.init)
            guard f.count == 4, f[1].hasPrefix("qos="), let qos = Int(f[1].dropFirst(4)), f[2].hasPrefix("retain="),
                  f[3].hasPrefix("schema=") else { throw PeerError("schema_check channels: bad line \(line)") }
            return Channel(address: f[0], qos: qos, retain: f[2] == "retain=true", schemaFile: String(f[3].dropFirst(7)))
        }
    }

    /// For each concrete topic (e.g. `kilntally/plant-a/kiln1/shifts/2026-11-23/B`), the address of the AsyncAPI
    /// channel it belongs to, or `"unmatched"`.
    public static func channelAddresses(of topics: [String], asyncAPI path: String = asyncAPI) async throws -> [String] {
        let result = try await run("topics", [path], input: topics.map { Array($0.utf8) })
        guard result.count == topics.count else { throw PeerError("schema_check topics: \(result.count) for \(topics.count)") }
        return result
    }

    /// Runs `schema_check.py MODE [ARGS] [IN] OUT`; returns OUT's lines.
    static func run(_ mode: String, _ arguments: [String] = [], input: [[UInt8]]? = nil) async throws -> [String] {
        let dir = try TemporaryDirectory(prefix: "schema-check")
        var args = [RepoPaths.peerScript("schema_check.py"), mode] + arguments
        if let input {
            let path = dir.file("in")
            try Data(input.map { $0 + [0x0A] }.joined()).write(to: URL(fileURLWithPath: path))
            args.append(path)
        }
        let output = dir.file("out")
        args.append(output)
        _ = try await runTool(RepoPaths.venvPython, args, in: dir, name: "schema_check-\(mode)")
        let text = try String(contentsOfFile: output, encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }
}
