import Foundation

/// Runs a command-line tool to completion (openssl, mosquitto_passwd, mosquitto_pub); throws with its output if it
/// cannot start or exits non-zero.
public func runTool(_ executable: String, _ arguments: [String], in dir: TemporaryDirectory, name: String) async throws -> String {
    let process = try PeerProcess(name: name, executable: executable, arguments: arguments, logDirectory: dir.path,
                                  workingDirectory: dir.path)
    let status = try await process.waitForExit(timeout: .seconds(30))
    guard status == 0 else {
        throw PeerError("\(name): \(executable) \(arguments.joined(separator: " ")) exited with \(status):\n\(process.log())")
    }
    return process.log()
}

/// A mosquitto password file with one user, made by `mosquitto_passwd -b -c`.
public enum MosquittoPasswordFile {
    public static func create(in dir: TemporaryDirectory, user: String, password: String) async throws -> String {
        let path = dir.file("passwords")
        _ = try await runTool("/usr/bin/mosquitto_passwd", ["-b", "-c", path, user, password], in: dir, name: "mosquitto_passwd")
        return path
    }
}

/// A CA and a server certificate signed by it for 127.0.0.1/localhost, made by `openssl` in the test's directory.
public struct TestCertificateAuthority: Sendable {
    public let caFile: String
    public let serverCertFile: String
    public let serverKeyFile: String
    /// The CA's private key, to sign client certificates with (`clientCertificate`).
    public let caKeyFile: String
    let directory: TemporaryDirectory
    let name: String

    /// `name` keeps several authorities in one directory apart.
    public static func make(in dir: TemporaryDirectory, name: String = "ca") async throws -> TestCertificateAuthority {
        let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let openssl else { throw PeerError("openssl is not installed") }
        let caKey = dir.file("\(name).key"), caCert = dir.file("\(name).crt")
        let serverKey = dir.file("\(name)-server.key"), serverCSR = dir.file("\(name)-server.csr")
        let serverCert = dir.file("\(name)-server.crt"), extensions = dir.file("\(name)-server.ext")
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _ = try await runTool(openssl, ["req", "-x509"] + ec + [
            "-keyout", caKey, "-out", caCert, "-days", "2", "-subj", "/CN=kilntally test CA \(name)",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ], in: dir, name: "openssl-\(name)-ca")
        _ = try await runTool(openssl, ["req"] + ec + [
            "-keyout", serverKey, "-out", serverCSR, "-subj", "/CN=127.0.0.1",
        ], in: dir, name: "openssl-\(name)-csr")
        try """
            subjectAltName=IP:127.0.0.1,DNS:localhost
            basicConstraints=CA:FALSE
            keyUsage=digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth

            """.write(toFile: extensions, atomically: true, encoding: .utf8)
        _ = try await runTool(openssl, [
            "x509", "-req", "-in", serverCSR, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
            "-out", serverCert, "-days", "2", "-extfile", extensions,
        ], in: dir, name: "openssl-\(name)-sign")
        return TestCertificateAuthority(caFile: caCert, serverCertFile: serverCert, serverKeyFile: serverKey, caKeyFile: caKey,
                                        directory: dir, name: name)
    }

    /// A client certificate signed by this CA with `commonName` as its subject's CN (mosquitto's
    /// `use_identity_as_username` makes the CN the user name). Returns the certificate and its unencrypted key.
    public func clientCertificate(commonName: String) async throws -> (certFile: String, keyFile: String) {
        let dir = directory
        let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let openssl else { throw PeerError("openssl is not installed") }
        let base = "\(name)-client-\(commonName)"
        let key = dir.file("\(base).key"), csr = dir.file("\(base).csr"), cert = dir.file("\(base).crt"), ext = dir.file("\(base).ext")
        _ = try await runTool(openssl, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                        "-keyout", key, "-out", csr, "-subj", "/CN=\(commonName)"],
                              in: dir, name: "openssl-\(base)-csr")
        try "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
            .write(toFile: ext, atomically: true, encoding: .utf8)
        _ = try await runTool(openssl, ["x509", "-req", "-in", csr, "-CA", caFile, "-CAkey", caKeyFile, "-CAcreateserial",
                                        "-out", cert, "-days", "2", "-extfile", ext],
                              in: dir, name: "openssl-\(base)-sign")
        return (cert, key)
    }

    /// mosquitto.conf lines that turn the broker's (last) listener into a TLS listener with this server certificate.
    public var listenerConfig: String {
        """
        cafile \(caFile)
        certfile \(serverCertFile)
        keyfile \(serverKeyFile)
        """
    }
}

/// Publishes one message with `mosquitto_pub` (QoS 1) and waits for it to exit.
public func mosquittoPublish(in dir: TemporaryDirectory, port: Int, topic: String, message: String, retain: Bool = false) async throws {
    var arguments = ["-h", "127.0.0.1", "-p", String(port), "-t", topic, "-m", message, "-q", "1"]
    if retain { arguments.append("-r") }
    _ = try await runTool("/usr/bin/mosquitto_pub", arguments, in: dir, name: "mosquitto_pub-\(UInt32.random(in: 0...UInt32.max))")
}

extension MosquittoBroker {
    /// SIGKILL: immediate, unlike `stop()` (mosquitto takes up to ~2 s to act on SIGTERM). Clients see the connection
    /// drop either way.
    public func kill() { process.killHard() }

    /// Waits until the broker's log contains `text` (the broker announces connections and disconnections only there).
    public func waitForLog(_ text: String, timeout: Duration = .seconds(15)) async throws {
        try await process.waitUntil("broker log to contain '\(text)'", timeout: timeout) { process.log().contains(text) }
    }

    /// How often the broker's log contains `text` so far.
    public func logCount(_ text: String) -> Int {
        process.log().components(separatedBy: text).count - 1
    }
}
