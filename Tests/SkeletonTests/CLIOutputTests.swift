import Foundation
import TestSupport
import Testing

/// What the commands print for a person at a terminal: help texts, usage errors, the status table, messages that
/// name a bus, `tail` into a pipe.
@Suite("CLI output", .serialized)
struct CLIOutputTests {
    /// Runs a built product to completion: (exit status, stdout and stderr).
    static func run(_ product: String, _ arguments: [String], in dir: TemporaryDirectory) async throws -> (status: Int32, output: String) {
        let p = try PeerProcess(name: "\(product)-\(UInt32.random(in: 0...UInt32.max))", executable: try RepoPaths.builtProduct(product),
                                arguments: arguments, logDirectory: dir.path)
        return (try await p.waitForExit(), p.log())
    }

    /// The runs of three or more spaces inside the text of a help line: not its indentation, and not the gap before
    /// the description column (26) that the argument parser pads option and subcommand names to.
    static func strayRuns(_ line: String) -> Bool {
        let chars = Array(line)
        var parts = [line]
        if chars.count > 26, line.hasPrefix("  "), chars[25] == " ", chars[26] != " " {
            // The name column, without the padding that ends it, and the description.
            var name = String(chars[..<26])
            while name.last == " " { name.removeLast() }
            parts = [name, String(chars[26...])]
        }
        return parts.contains { part in
            part.drop { $0 == " " }.contains("   ")
        }
    }

    /// The subcommands a help text lists (SUBCOMMANDS: section, names at an indent of two).
    static func subcommands(_ help: String) -> [String] {
        guard let section = help.components(separatedBy: "SUBCOMMANDS:\n").dropFirst().first else { return [] }
        return section.split(separator: "\n", omittingEmptySubsequences: false)
            .prefix { !$0.isEmpty }
            .compactMap { line -> String? in
                guard line.hasPrefix("  "), line.dropFirst(2).first?.isLetter == true else { return nil }
                return line.dropFirst(2).split(separator: " ").first.map(String.init)
            }
    }

    @Test("no help text of any command or subcommand has a stray run of spaces inside a sentence")
    func helpTexts() async throws {
        let dir = try TemporaryDirectory()
        #expect(Self.strayRuns("when it polls that bus (in turn             with its polls"))
        #expect(Self.strayRuns("otherwise probe opens the bus itself. Read-only: only            "))
        #expect(!Self.strayRuns("  --socket <socket>       The daemon's control socket. (default:"))
        #expect(!Self.strayRuns("                          devices, stores, uplink"))
        var queue: [(String, [String])] = [("kilntally", []), ("kilntallyd", [])]
        var seen = 0
        while !queue.isEmpty {
            let (product, path) = queue.removeFirst()
            let (status, help) = try await Self.run(product, path + ["--help"], in: dir)
            let name = ([product] + path).joined(separator: " ")
            #expect(status == 0, "\(name) --help: \(help)")
            seen += 1
            for line in help.split(separator: "\n").map(String.init) where Self.strayRuns(line) {
                Issue.record("\(name) --help: stray spaces in \"\(line)\"")
            }
            queue += Self.subcommands(help).map { (product, path + [$0]) }
        }
        #expect(seen > 25, "walked \(seen) help texts: the SUBCOMMANDS sections were not found")
    }

    @Test("an invalid --log-level or --parity is a usage error (64) that names the valid values")
    func usageErrors() async throws {
        let dir = try TemporaryDirectory()
        let (status, output) = try await Self.run("kilntallyd", ["--log-level", "verbose", "--config", dir.file("none.toml")], in: dir)
        #expect(status == 64, "\(output)")
        for level in ["trace", "debug", "info", "notice", "warning", "error", "critical"] {
            #expect(output.contains(level), "\(output)")
        }
        // A valid level passes; the missing file is what stops it then.
        let valid = try await Self.run("kilntallyd", ["--log-level", "debug", "--config", dir.file("none.toml")], in: dir)
        #expect(valid.status == 78, "\(valid.output)")
        for command in [["probe", "--serial", dir.file("tty")], ["simulate", "--rtu", dir.file("tty")]] {
            let (status, output) = try await Self.run("kilntally", command + ["--parity", "evn"], in: dir)
            #expect(status == 64, "\(command[0]): \(output)")
            #expect(output.contains("'none'") && output.contains("'even'") && output.contains("'odd'"), "\(command[0]): \(output)")
        }
    }
}
