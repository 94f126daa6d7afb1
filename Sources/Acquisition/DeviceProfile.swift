import KilnTallyCore
#if canImport(Glibc)
import Glibc
#endif

/// A device's register map and roles, kept as a data file (`<name>.toml`) so a plant engineer can read, copy and
/// extend it: the built-in ones ship with the package, user ones go in a directory named in `[profiles] dirs`.
///
/// A profile file has the keys of `DeviceProfile.schema` (name, description, source, verified, notes) and
/// `[[channel]]` tables with exactly the keys of a device's `[[device.channel]]`. It may leave out the role
/// parameters only the plant knows (`zero_band`, `max_rate`, `tonnes_per_unit`); a device using the profile adds
/// them with a `[[device.channel]]` of the same name.
public struct DeviceProfile: Sendable {
    public var name: String
    public var description: String
    /// Where the map comes from (manual, edition, section).
    public var source: String
    /// Whether the map was checked against the manual's register table and real hardware; false for maps taken
    /// from secondary sources or with inferred offsets. Shown by `kilntally profiles` and logged at start.
    public var verified: Bool
    public var notes: String
    /// The file it was read from.
    public var file: String
    /// The exact text of the file (part of the configuration hash: a changed profile is a changed configuration).
    public var text: String
    /// Each `[[channel]]` table as written, in file order, to be laid under a device's channels.
    var channelTables: [[String: ConfigValue]]
    /// The channels decoded on their own (roles lacking plant parameters are left without a role).
    public var channels: [ChannelConfig]
    /// Per channel name, the role parameters the plant must add.
    public var plantParameters: [ChannelID: [String]]

    /// The role a channel has in the file (also when it lacks a plant parameter and so has no decoded role yet).
    public func roleName(of channel: ChannelID) -> String? {
        guard let t = channelTables.first(where: { ChannelConfig.name(of: $0) == channel.rawValue }),
              case .string(let r)? = t["role"] else { return nil }
        return r
    }

    /// The keys of a profile file.
    public static var schema: ConfigSchema {
        var s = ConfigSchema()
        s.register(contentsOf: [
            ConfigKey("name", .string, required: true, doc: "The profile's name, as devices refer to it (`profile = \"...\"`); must equal the file name without `.toml`."),
            ConfigKey("description", .string, required: true, doc: "Make and model, in a line."),
            ConfigKey("source", .string, required: true, doc: "Where the register map comes from: manual title, edition, section."),
            ConfigKey("verified", .bool, required: true, doc: "true only when the map was checked against the manufacturer's register table; false for secondary sources or inferred offsets."),
            ConfigKey("notes", .string, default: .string(""), doc: "What a plant engineer must check or set (decimal points, word order switches, parameters to add)."),
            ConfigKey("channel", .arrayOfTables(ChannelConfig.configTable), required: true, doc: "The channels, with the keys of `[[device.channel]]`."),
        ])
        return s
    }

    /// Loads and checks one profile file; every problem is a diagnostic naming the profile file, line and key.
    public static func load(file: String) throws(ConfigErrors) -> DeviceProfile {
        let document = try ConfigLoader(schema: schema).load(file: file)
        let diagnostics = ConfigDiagnostics(document: document)
        let root = ConfigReader(document: document, diagnostics: diagnostics)
        let name = root.string("name") ?? ""
        let expected = String(file.split(separator: "/").last ?? "").replacingSuffix(".toml")
        if name != expected { root.error("name", "is '\(name)' but the file is \(expected).toml: they must match") }
        if !isPlainName(name) { root.error("name", "must be non-empty and use only A-Z a-z 0-9 _ -") }
        let tables = root.tables("channel")
        let channels = AcquisitionConfig.decodeChannels(
            tables.map { ($0, .allowed) }, device: "profile \(name)", pollInterval: .seconds(1))
        try diagnostics.finish()
        return DeviceProfile(
            name: name, description: root.string("description") ?? "", source: root.string("source") ?? "",
            verified: root.bool("verified") ?? false, notes: root.string("notes") ?? "", file: file, text: document.text,
            channelTables: tables.map(\.writtenValues), channels: channels.map(\.channel),
            plantParameters: Dictionary(uniqueKeysWithValues: channels.filter { !$0.missingParameters.isEmpty }
                .map { ($0.channel.id, $0.missingParameters) }))
    }
}

/// Where profiles are found: the user's directories first (a user profile with a built-in's name replaces it),
/// then the built-in directory.
public struct ProfileLibrary: Sendable {
    public var userDirectories: [String]
    public var builtinDirectory: String?

    public init(userDirectories: [String], builtinDirectory: String? = ProfileLibrary.locateBuiltinDirectory()) {
        self.userDirectories = userDirectories
        self.builtinDirectory = builtinDirectory
    }

    public var directories: [String] { userDirectories + (builtinDirectory.map { [$0] } ?? []) }

    /// The file of profile `name`, or nil.
    public func file(of name: String) -> String? {
        guard isPlainName(name) else { return nil }
        return directories.lazy.map { "\($0)/\(name).toml" }.first { access($0, R_OK) == 0 }
    }

    /// Loads profile `name` for the device at `dev` (once per decode, remembered in `used`); a missing profile
    /// or errors inside it are recorded in `diagnostics` (inside errors name the profile file and line).
    public func load(_ name: String, diagnostics: ConfigDiagnostics, at dev: ConfigReader,
              used: inout [String: DeviceProfile?]) -> DeviceProfile? {
        if let known = used[name] { return known }
        guard let file = file(of: name) else {
            let available = names()
            dev.error("profile", "no profile '\(name)' in " + (directories.isEmpty ? "(no profile directory found)" : directories.joined(separator: ", "))
                      + (available.isEmpty ? "" : "; available: \(available.joined(separator: ", "))"))
            used[name] = .some(nil)
            return nil
        }
        do {
            let profile = try DeviceProfile.load(file: file)
            used[name] = profile
            return profile
        } catch {
            for d in error.diagnostics { diagnostics.record(d) }
            dev.error("profile", "profile '\(name)' (\(file)) has \(error.diagnostics.count) error(s)")
            used[name] = .some(nil)
            return nil
        }
    }

    /// The names of every profile found, sorted (a user profile hides a built-in one of the same name).
    public func names() -> [String] {
        var names = Set<String>()
        for dir in directories {
            guard let d = opendir(dir) else { continue }
            defer { closedir(d) }
            while let entry = readdir(d) {
                let n = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if n.hasSuffix(".toml"), !n.hasPrefix(".") { names.insert(n.replacingSuffix(".toml")) }
            }
        }
        return names.sorted()
    }

    /// The built-in profiles' directory: `$KILNTALLY_PROFILES`, else the source tree's `profiles/` above the
    /// executable (a development build in `.build/` uses its own checkout's profiles, also on a machine where the
    /// package is installed), else the package's `/usr/share/kilntally/profiles`, else `../share/kilntally/profiles`
    /// beside the executable (a relocated install).
    public static func locateBuiltinDirectory() -> String? {
        if let env = getenv("KILNTALLY_PROFILES") { return String(cString: env) }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        var relocated: String?
        if n > 0 {
            var dir = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var first = true
            while let slash = dir.lastIndex(of: "/"), slash != dir.startIndex {
                dir = String(dir[..<slash])
                if first, isDirectory(dir + "/../share/kilntally/profiles") { relocated = dir + "/../share/kilntally/profiles" }
                first = false
                if isDirectory(dir + "/profiles"), access(dir + "/Package.swift", R_OK) == 0 { return dir + "/profiles" }
            }
        }
        if isDirectory("/usr/share/kilntally/profiles") { return "/usr/share/kilntally/profiles" }
        return relocated
    }

    private static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}

extension String {
    func replacingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
