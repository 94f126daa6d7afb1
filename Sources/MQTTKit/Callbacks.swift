internal import CMosquitto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// libmosquitto's callbacks: top-level functions matching its C typedefs. They run on libmosquitto's network thread
// (or, for on_log, on whichever thread made the call that logs). They reach their MQTTClient through the userdata
// pointer, which is an unretained reference: the client outlives every run of the network thread, because the
// supervisor thread holds a strong reference while it runs and joins the network thread before it ends. The client
// clears the userdata before mosquitto_destroy.
//
// A callback only updates the client's locked state and performs the resulting effects; the one libmosquitto call
// made here (mosquitto_disconnect in on_disconnect) happens outside the lock.

private func client(_ userdata: UnsafeMutableRawPointer?) -> MQTTClient? {
    guard let userdata else { return nil }
    return Unmanaged<MQTTClient>.fromOpaque(userdata).takeUnretainedValue()
}

func mqttOnConnect(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ code: Int32, _ flags: Int32,
                   _ properties: OpaquePointer?) {
    client(userdata)?.connackReceived(code: code)
}

func mqttOnDisconnect(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ rc: Int32,
                      _ properties: OpaquePointer?) {
    let savedErrno = errno
    guard let client = client(userdata) else { return }
    client.connectionEnded(rc: rc, errno: savedErrno)
    // Mark the client "disconnected" inside libmosquitto, so that loop_forever returns instead of running its own
    // reconnect (whole seconds, no jitter): the supervisor reconnects with the configured backoff. The socket is
    // already closed here, so nothing is sent.
    if let mosq { _ = mosquitto_disconnect(mosq) }
}

func mqttOnPublish(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ mid: Int32, _ reason: Int32,
                   _ properties: OpaquePointer?) {
    client(userdata)?.acknowledged(mid: mid, reason: reason)
}

func mqttOnLog(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ level: Int32,
               _ text: UnsafePointer<CChar>?) {
    guard let text, let client = client(userdata) else { return }
    client.libraryLogged(level: level, String(cString: text))
}
