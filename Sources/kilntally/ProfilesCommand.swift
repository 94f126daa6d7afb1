import Acquisition
import ArgumentParser
import KilnTallyCore

struct Profiles: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, show or check device profiles (register maps with roles).",
        subcommands: [List.self, Show.self, Check.self])

    struct Directories: ParsableArguments {
        @Option(name: .customLong("dir"), help: "A user profile directory, searched before the built-in profiles (repeatable).")
        var dirs: [String] = ["/etc/kilntally/profiles"]

        var library: ProfileLibrary { ProfileLibrary(userDirectories: dirs) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the profiles found, with their source and whether the map is verified.")
        @OptionGroup var directories: Directories

        func run() async throws {
            let library = directories.library
            var failed = false
            for name in library.names() {
                guard let file = library.file(of: name) else { continue }
                do {
                    let p = try DeviceProfile.load(file: file)
                    print("\(name)\t\(p.verified ? "verified" : "UNVERIFIED")\t\(p.channels.count) channels\t\(p.description)")
                } catch {
                    failed = true
                    print("\(name)\tINVALID\t\(file): \(error.diagnostics.count) error(s)")
                }
            }
            print("searched: " + library.directories.joined(separator: ", "))
            if failed { throw ExitCode(KilnTallyExit.configError.rawValue) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one profile: its source, notes, channels and roles, and what the plant must add.")
        @OptionGroup var directories: Directories
        @Argument(help: "Profile name.") var name: String

        func run() async throws {
            let library = directories.library
            guard let file = library.file(of: name) else {
                var stderr = StandardError()
                print("no profile '\(name)' in \(library.directories.joined(separator: ", ")); available: \(library.names().joined(separator: ", "))", to: &stderr)
                throw ExitCode(KilnTallyExit.configError.rawValue)
            }
            let p: DeviceProfile
            do { p = try DeviceProfile.load(file: file) } catch {
                var stderr = StandardError()
                print(error.description, to: &stderr)
                throw ExitCode(KilnTallyExit.configError.rawValue)
            }
            print("\(p.name): \(p.description)")
            print("file: \(p.file)")
            print("source: \(p.source)")
            print("map: \(p.verified ? "verified against the manufacturer's table" : "UNVERIFIED: check against the device before trusting totals")")
            if !p.notes.isEmpty { print("\n" + p.notes.trimmingTrailingNewlines() + "\n") }
            for c in p.channels {
                var line = "  \(c.id.rawValue): \(c.table.rawValue) \(c.address) \(c.type.rawValue)"
                if c.type == .bit { line += " \(c.bit ?? 0)/\(c.wordBits)" }
                if c.registerCount > 1 && c.type != .bit { line += " \(c.wordOrder.rawValue)" }
                if c.scale != 1 { line += " ×\(c.scale)" }
                if let u = c.unit { line += " [\(u.rawValue)]" }
                if let role = p.roleName(of: c.id) { line += " role \(role)" }
                if let missing = p.plantParameters[c.id] { line += " — plant adds: \(missing.joined(separator: ", "))" }
                print(line)
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check profile files (every error with file, line and key); exit 78 if any is invalid.")
        @Argument(help: "Profile files (.toml).") var files: [String]

        func run() async throws {
            var stderr = StandardError()
            var bad = 0
            for file in files {
                do {
                    let p = try DeviceProfile.load(file: file)
                    print("\(file): ok (\(p.name), \(p.channels.count) channels)")
                } catch {
                    bad += 1
                    print(error.description, to: &stderr)
                }
            }
            if bad > 0 { throw ExitCode(KilnTallyExit.configError.rawValue) }
        }
    }
}

extension String {
    fileprivate func trimmingTrailingNewlines() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
