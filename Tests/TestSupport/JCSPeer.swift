import Foundation

/// Tests/peers/jcs_peer.py, run with the project venv's Python: RFC 8785 by the `rfc8785` package and SHA-256 by
/// `hashlib`, code nobody here wrote. If it cannot run (no venv, no package) the calling test fails; it never skips.
public enum JCSPeer {
    /// Runs `jcs_peer.py MODE IN OUT` with `lines` as IN (each followed by "\n"); returns OUT's lines.
    public static func run(_ mode: String, input lines: [[UInt8]]) async throws -> [String] {
        let dir = try TemporaryDirectory(prefix: "jcs-peer")
        let input = dir.file("in"), output = dir.file("out")
        try Data(lines.map { $0 + [0x0A] }.joined()).write(to: URL(fileURLWithPath: input))
        _ = try await runTool(RepoPaths.venvPython, [RepoPaths.peerScript("jcs_peer.py"), mode, input, output],
                              in: dir, name: "jcs_peer-\(mode)")
        let text = try String(contentsOfFile: output, encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }
}

extension Array where Element == UInt8 {
    /// Lowercase hex, two digits a byte.
    public var hex: String { map { String(format: "%02x", $0) }.joined() }
}
