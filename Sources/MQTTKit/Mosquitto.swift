internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// mosquitto_lib_init, once per process. Swift initializes globals lazily and thread-safely (swift_once), so the
/// first client to be created runs it exactly once, whichever thread it is on. It is never cleaned up: other clients
/// may exist until the process ends.
private let libraryInitialization: Int32 = mosquitto_lib_init()

/// The `struct mosquitto *` of one client.
///
/// `@unchecked Sendable`, because the pointer is shared between Swift tasks, the supervisor thread and libmosquitto's
/// network thread. That is safe for the calls made through it, given how `MQTTClient` uses them:
/// - `mosquitto_publish` and `mosquitto_disconnect` run on any thread while the network thread (loop_start) runs:
///   libmosquitto 2.0 (built with threading, as Debian's is) guards the state they touch — message queues, packet
///   queue, mid counter, client state — with its own mutexes, which is what makes loop_start's threading model work.
/// - connect/reconnect, `mosquitto_loop_start` and `mosquitto_loop_stop` run only on the supervisor thread, one after
///   the other, never concurrently with each other.
/// - options are set in `make` before the pointer is shared; `mosquitto_destroy` runs in `MQTTClient.deinit`, when
///   no thread can hold the client (the supervisor thread keeps it alive while it runs, and it joins the network
///   thread before it ends).
struct MosquittoHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    /// Creates and configures a client; frees it on every failure path.
    static func make(_ c: MQTTConfiguration, broker: String) throws(MQTTError) -> MosquittoHandle {
        guard libraryInitialization == MOSQ_ERR_SUCCESS.rawValue else {
            throw .mosquitto(libraryInitialization, call: "mosquitto_lib_init", broker: broker)
        }
        try validate(c, broker: broker)

        guard let mosq = mosquitto_new(c.clientID.isEmpty ? nil : c.clientID, c.cleanSession, nil) else {
            let code = errno
            throw MQTTError(broker: broker, call: "mosquitto_new", code: code == ENOMEM ? MOSQ_ERR_NOMEM.rawValue : MOSQ_ERR_INVAL.rawValue,
                            message: code == EINVAL ? "a client id is required when cleanSession is false" : String(cString: strerror(code)))
        }
        var configured = false
        defer { if !configured { mosquitto_destroy(mosq) } }

        func check(_ rc: Int32, _ call: String, _ detail: String? = nil) throws(MQTTError) {
            if rc != MOSQ_ERR_SUCCESS.rawValue { throw .mosquitto(rc, call: call, broker: broker, detail: detail) }
        }

        // Callbacks first, so that the log callback sees what the calls below report.
        mosquitto_log_callback_set(mosq, mqttOnLog)
        mosquitto_connect_v5_callback_set(mosq, mqttOnConnect)
        mosquitto_disconnect_v5_callback_set(mosq, mqttOnDisconnect)
        mosquitto_publish_v5_callback_set(mosq, mqttOnPublish)

        let version = c.protocolVersion == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
        try check(mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, version), "mosquitto_int_option", "protocol version")
        try check(mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1), "mosquitto_int_option", "TCP_NODELAY")
        if let username = c.username {
            let password = try c.passwordFile.map { path throws(MQTTError) in try readPasswordFile(path, broker: broker) } ?? c.password
            try check(mosquitto_username_pw_set(mosq, username, password), "mosquitto_username_pw_set")
        }
        if let tls = c.tls {
            for (what, path) in [("CA file", tls.caFile), ("certificate file", tls.certFile), ("key file", tls.keyFile)] {
                guard let path else { continue }
                if access(path, R_OK) != 0 {
                    let reason = String(cString: strerror(errno))
                    throw MQTTError(broker: broker, call: "mosquitto_tls_set", code: MOSQ_ERR_INVAL.rawValue,
                                    message: "TLS \(what) '\(path)' cannot be read: \(reason)")
                }
            }
            try check(mosquitto_tls_set(mosq, tls.caFile, nil, tls.certFile, tls.keyFile, nil), "mosquitto_tls_set",
                      "CA file '\(tls.caFile)'" + (tls.certFile.map { ", certificate '\($0)', key '\(tls.keyFile ?? "")'" } ?? ""))
            // cert_reqs 1 = SSL_VERIFY_PEER: verify the chain; tls_insecure false: verify the host name too.
            try check(mosquitto_tls_opts_set(mosq, tls.verifyPeer ? 1 : 0, nil, nil), "mosquitto_tls_opts_set")
            try check(mosquitto_tls_insecure_set(mosq, !tls.verifyPeer), "mosquitto_tls_insecure_set")
        }
        if let will = c.will {
            let rc = will.payload.withUnsafeBytes { bytes in
                mosquitto_will_set(mosq, will.topic, Int32(bytes.count), bytes.baseAddress, Int32(will.qos.rawValue), will.retain)
            }
            try check(rc, "mosquitto_will_set", "will topic '\(will.topic)'")
        }
        try check(mosquitto_max_inflight_messages_set(mosq, UInt32(c.maxInFlight)), "mosquitto_max_inflight_messages_set")
        // The supervisor drives reconnects (see MQTTClient). libmosquitto's own reconnect in loop_forever is only a
        // fallback for loop exits that bypass on_disconnect; keep it short so that shutdown stays bounded.
        try check(mosquitto_reconnect_delay_set(mosq, 1, 1, false), "mosquitto_reconnect_delay_set")
        configured = true
        return MosquittoHandle(pointer: mosq)
    }

    private static func validate(_ c: MQTTConfiguration, broker: String) throws(MQTTError) {
        if c.host.isEmpty { throw .configuration("the broker host is empty", broker: broker) }
        if !(1...65535).contains(c.port) { throw .configuration("port \(c.port) is not in 1...65535", broker: broker) }
        let keepAlive = c.keepAlive.seconds
        if keepAlive != 0 && !(5...65535).contains(keepAlive) {
            throw .configuration("keepAlive \(c.keepAlive) must be 0 or 5 s ... 65535 s (libmosquitto refuses shorter ones)", broker: broker)
        }
        if !(1...65535).contains(c.maxInFlight) {
            throw .configuration("maxInFlight \(c.maxInFlight) is not in 1...65535", broker: broker)
        }
        if c.reconnect.initial <= .zero || c.reconnect.maximum < c.reconnect.initial {
            throw .configuration("reconnect backoff needs 0 < initial <= maximum (got \(c.reconnect.initial), \(c.reconnect.maximum))", broker: broker)
        }
        if !(0...1).contains(c.reconnect.jitter) {
            throw .configuration("reconnect jitter \(c.reconnect.jitter) is not in 0...1", broker: broker)
        }
        if (c.password != nil || c.passwordFile != nil) && c.username == nil {
            throw .configuration("a password needs a username", broker: broker)
        }
        if c.password != nil && c.passwordFile != nil {
            throw .configuration("give either a password or a password file, not both", broker: broker)
        }
        if let tls = c.tls, (tls.certFile == nil) != (tls.keyFile == nil) {
            throw .configuration("TLS certFile and keyFile go together", call: "mosquitto_tls_set", broker: broker)
        }
        if let will = c.will, will.topic.isEmpty || will.topic.contains("+") || will.topic.contains("#") {
            throw .configuration("will topic '\(will.topic)' must be a non-empty topic without wildcards", call: "mosquitto_will_set", broker: broker)
        }
    }

    /// The first line of `path` without its line end. Errors name the file, never what is in it.
    static func readPasswordFile(_ path: String, broker: String) throws(MQTTError) -> String {
        func failure(_ why: String) -> MQTTError {
            MQTTError(broker: broker, call: "password file", code: MOSQ_ERR_INVAL.rawValue, message: "password file '\(path)' \(why)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw failure("cannot be read: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        // The first line is all that is needed; a password file is small.
        while !bytes.contains(UInt8(ascii: "\n")) && bytes.count < 65536 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("cannot be read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        var line = bytes.prefix { $0 != UInt8(ascii: "\n") }
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        guard let password = String(validating: line, as: UTF8.self) else { throw failure("does not start with a line of UTF-8 text") }
        if password.isEmpty { throw failure("has an empty first line (the password)") }
        // libmosquitto sends at most 65535 bytes (MQTT's string length).
        if line.count > 65535 { throw failure("has a first line longer than 65535 bytes") }
        return password
    }

    /// Keep-alive in whole seconds, as libmosquitto takes it.
    static func keepAliveSeconds(_ d: Duration) -> Int32 {
        Int32(d.seconds.rounded(.up))
    }
}

extension MQTTError {
    /// A libmosquitto return code with errno saved right after the call (for MOSQ_ERR_ERRNO).
    static func mosquitto(_ rc: Int32, errno savedErrno: Int32, call: String, broker: String) -> MQTTError {
        if rc == MOSQ_ERR_ERRNO.rawValue {
            return MQTTError(broker: broker, call: call, code: rc, message: String(cString: strerror(savedErrno)))
        }
        return .mosquitto(rc, call: call, broker: broker)
    }
}
