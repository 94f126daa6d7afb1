internal import CMosquitto

/// Every failure of the MQTT client: which broker, which call or protocol step, the libmosquitto error code
/// (`MOSQ_ERR_*`) or the broker's CONNACK/reason code, and libmosquitto's text for it.
public struct MQTTError: Error, Sendable, CustomStringConvertible {
    /// "host:port".
    public var broker: String
    /// The libmosquitto function or protocol step that failed: "mosquitto_tls_set", "mosquitto_connect_async",
    /// "CONNACK", "PUBACK", "connection", "TLS handshake", "mosquitto_publish", "publish", "waitUntilConnected", …
    public var call: String
    /// `MOSQ_ERR_*`, or the CONNACK (MQTT 3.1.1) / reason code (MQTT 5) for "CONNACK" and "PUBACK".
    public var code: Int32
    /// mosquitto_strerror / mosquitto_connack_string / mosquitto_reason_string, or the wrapper's own explanation.
    public var message: String
    /// Bad user name or password, or not authorized (CONNACK refusal, or a PUBACK reason code in MQTT 5).
    public var isAuthorizationFailure: Bool = false
    /// The client was shut down while the operation was pending.
    public var isShutdown: Bool = false
    /// The waiting task was cancelled (the operation itself may still complete inside the client).
    public var isCancellation: Bool = false
    /// `waitUntilConnected` ran out of time; `message` says what the last attempt ran into.
    public var isTimeout: Bool = false

    public init(broker: String, call: String, code: Int32, message: String, isAuthorizationFailure: Bool = false,
                isShutdown: Bool = false, isCancellation: Bool = false, isTimeout: Bool = false) {
        self.broker = broker
        self.call = call
        self.code = code
        self.message = message
        self.isAuthorizationFailure = isAuthorizationFailure
        self.isShutdown = isShutdown
        self.isCancellation = isCancellation
        self.isTimeout = isTimeout
    }

    public var description: String {
        let what: String
        switch call {
        case "CONNACK": what = "CONNACK refused the connection"
        case "PUBACK": what = "PUBACK rejected the message"
        case "connection": what = "connection lost"
        default: what = "\(call) failed"
        }
        return "MQTT broker \(broker): \(what): \(message) (code \(code))"
    }
}

extension MQTTError {
    /// A libmosquitto return code. Call right after the failing call: for `MOSQ_ERR_ERRNO` the text comes from errno.
    static func mosquitto(_ rc: Int32, call: String, broker: String, detail: String? = nil) -> MQTTError {
        var text = String(cString: mosquitto_strerror(rc))
        if let detail { text = "\(detail): \(text)" }
        return MQTTError(broker: broker, call: call, code: rc, message: text,
                         isAuthorizationFailure: rc == MOSQ_ERR_AUTH.rawValue || rc == MOSQ_ERR_ACL_DENIED.rawValue)
    }

    /// A CONNACK refusal: MQTT 3.1.1 return codes 1–5, MQTT 5 reason codes ≥ 0x80.
    static func connack(_ code: Int32, protocolVersion: MQTTProtocolVersion, broker: String) -> MQTTError {
        let text: String
        let authorization: Bool
        switch protocolVersion {
        case .v311:
            text = String(cString: mosquitto_connack_string(code))
            authorization = code == 4 || code == 5 // bad user name or password; not authorised
        case .v5:
            text = String(cString: mosquitto_reason_string(code))
            // 0x86 bad user name or password, 0x87 not authorized, 0x8A banned, 0x8C bad authentication method
            authorization = [0x86, 0x87, 0x8A, 0x8C].contains(code)
        }
        return MQTTError(broker: broker, call: "CONNACK", code: code, message: text, isAuthorizationFailure: authorization)
    }

    /// An MQTT 5 PUBACK with a failure reason code (≥ 0x80), e.g. 0x87 not authorized.
    static func puback(_ code: Int32, broker: String) -> MQTTError {
        MQTTError(broker: broker, call: "PUBACK", code: code, message: String(cString: mosquitto_reason_string(code)),
                  isAuthorizationFailure: code == 0x87)
    }

    static func shutdown(call: String, broker: String) -> MQTTError {
        MQTTError(broker: broker, call: call, code: MOSQ_ERR_NO_CONN.rawValue,
                  message: "the client was shut down before the operation completed", isShutdown: true)
    }

    static func cancelled(call: String, broker: String) -> MQTTError {
        MQTTError(broker: broker, call: call, code: MOSQ_ERR_NO_CONN.rawValue,
                  message: "the waiting task was cancelled", isCancellation: true)
    }

    static func configuration(_ text: String, call: String = "configuration", broker: String) -> MQTTError {
        MQTTError(broker: broker, call: call, code: MOSQ_ERR_INVAL.rawValue, message: text)
    }
}
