/// The MQTT quality of service levels kilntally uses. QoS 2 is not offered: delivery to the hub is at-least-once and
/// every payload carries an id for de-duplication.
public enum MQTTQoS: Int, Sendable {
    case atMostOnce = 0
    case atLeastOnce = 1
}

public enum MQTTProtocolVersion: String, Sendable {
    case v311 = "3.1.1"
    case v5 = "5"
}

/// One application message: what is published, and what a will is made of.
public struct MQTTMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: MQTTQoS
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: MQTTQoS = .atLeastOnce, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }

    /// A message whose payload is `string` in UTF-8.
    public init(topic: String, string: String, qos: MQTTQoS = .atLeastOnce, retain: Bool = false) {
        self.init(topic: topic, payload: Array(string.utf8), qos: qos, retain: retain)
    }
}

/// TLS to the broker. The files are PEM; `certFile` and `keyFile` (a client certificate) go together.
public struct MQTTTLS: Sendable, Hashable {
    /// The CA that signed the broker's certificate.
    public var caFile: String
    public var certFile: String?
    /// An unencrypted PEM private key for `certFile`.
    public var keyFile: String?
    /// Verify the broker's certificate chain against `caFile` and the broker's host name (or IP address) against the
    /// certificate's subject alternative names. Turn off only for a lab.
    public var verifyPeer: Bool = true

    public init(caFile: String, certFile: String? = nil, keyFile: String? = nil, verifyPeer: Bool = true) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verifyPeer = verifyPeer
    }
}

/// How long the client waits before reconnecting: `initial`, doubling with every consecutive failed attempt up to
/// `maximum`, each delay multiplied by a random factor in `1 ± jitter` (then capped at `maximum`), so that many edge
/// nodes cut off by the same hub outage do not reconnect in lock step.
public struct MQTTBackoff: Sendable, Hashable {
    public var initial: Duration = .milliseconds(500)
    public var maximum: Duration = .seconds(30)
    /// The relative spread of each delay, 0...1 (0.2 = ±20%).
    public var jitter: Double = 0.2

    public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30), jitter: Double = 0.2) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The delay before reconnect attempt `attempt` (0 for the first attempt after a loss).
    public func delay<G: RandomNumberGenerator>(attempt: Int, using generator: inout G) -> Duration {
        let initialSeconds = max(0, initial.seconds)
        let maximumSeconds = max(initialSeconds, maximum.seconds)
        // 2^attempt grows past any sane maximum by attempt 64; stop doubling there to stay finite.
        let exponential = initialSeconds * Double(sign: .plus, exponent: min(max(attempt, 0), 64), significand: 1)
        let base = min(exponential, maximumSeconds)
        let spread = min(max(jitter, 0), 1)
        let factor = spread > 0 ? Double.random(in: (1 - spread)...(1 + spread), using: &generator) : 1
        return .nanoseconds(Int64((min(base * factor, maximumSeconds) * 1e9).rounded()))
    }

    public func delay(attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &generator)
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}

public struct MQTTConfiguration: Sendable {
    public var clientID: String
    public var host: String
    public var port: Int = 1883
    /// 0 (no keep-alive) or 5 s ... 65535 s: libmosquitto 2.0 refuses 1–4 s. The broker drops the connection and
    /// publishes the will after 1.5 × this without traffic.
    public var keepAlive: Duration = .seconds(30)
    public var protocolVersion: MQTTProtocolVersion = .v311
    public var username: String?
    /// Never shown in descriptions (see the `CustomStringConvertible` conformance below).
    public var password: String?
    /// A file whose first line (without its "\n" or "\r\n") is the password, read when the client is created; an
    /// alternative to `password`, not with it. The client's creation fails, naming the file, if it cannot be read.
    public var passwordFile: String?
    public var tls: MQTTTLS?
    /// Published by the broker if the connection ends without a DISCONNECT (crash, power cut, network loss).
    public var will: MQTTMessage?
    /// MQTT 3.1.1 clean session / MQTT 5 clean start.
    public var cleanSession: Bool = true
    public var reconnect: MQTTBackoff = .init()
    /// Messages handed to libmosquitto and not yet acknowledged (QoS 1) or written (QoS 0), at most.
    public var maxInFlight: Int = 32

    public init(clientID: String, host: String, port: Int = 1883) {
        self.clientID = clientID
        self.host = host
        self.port = port
    }
}

/// What happened to the connection, in order. `connected` follows every successful CONNACK, including reconnects.
public enum MQTTConnectionEvent: Sendable {
    case connected
    /// The broker refused the connection (CONNACK with an error code, e.g. a wrong password), or the TLS handshake
    /// failed. The client keeps retrying with backoff: the broker's configuration may be fixed meanwhile.
    case connectionRefused(MQTTError)
    /// An established connection ended: `nil` after `shutdown`, otherwise why it was lost.
    case disconnected(MQTTError?)
    /// An attempt to connect failed before the broker answered: nothing listens on the port, the host cannot be
    /// reached, the connection dropped before the CONNACK (e.g. plain MQTT spoken to a TLS port). The client keeps
    /// retrying with backoff; one event per failed attempt.
    case attemptFailed(MQTTError)
}

/// The password never appears in a description, a debug description or a mirror (`dump`): a configuration that
/// ends up in a log line or an error message shows `password: <redacted>` (or `nil`).
extension MQTTConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        var fields = ["clientID: \(clientID)", "broker: \(host):\(port)", "keepAlive: \(keepAlive)",
                      "protocol: \(protocolVersion.rawValue)", "username: \(username ?? "nil")",
                      "password: \(password == nil ? "nil" : "<redacted>")", "passwordFile: \(passwordFile ?? "nil")",
                      "cleanSession: \(cleanSession)",
                      "maxInFlight: \(maxInFlight)"]
        if let tls {
            fields.append("tls: caFile \(tls.caFile), certFile \(tls.certFile ?? "nil"), keyFile \(tls.keyFile ?? "nil"), verifyPeer \(tls.verifyPeer)")
        }
        if let will { fields.append("will: \(will.topic)") }
        return "MQTTConfiguration(" + fields.joined(separator: ", ") + ")"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "clientID": clientID, "host": host, "port": port, "keepAlive": keepAlive, "protocolVersion": protocolVersion,
            "username": username as Any, "password": (password == nil ? "nil" : "<redacted>") as Any,
            "passwordFile": passwordFile as Any, "tls": tls as Any,
            "will": will as Any, "cleanSession": cleanSession, "reconnect": reconnect, "maxInFlight": maxInFlight,
        ], displayStyle: .struct)
    }
}
