// A client process for MQTTKit's will test: connects with a retained will on TOPIC, publishes a retained birth
// message on TOPIC, prints "connected" and then waits to be killed.
//
// usage: MQTTWillClient PORT CLIENT_ID TOPIC WILL_PAYLOAD BIRTH_PAYLOAD
import Logging
import MQTTKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func printError(_ text: String) {
    let line = Array((text + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
guard arguments.count == 6, let port = Int(arguments[1]) else {
    printError("usage: MQTTWillClient PORT CLIENT_ID TOPIC WILL_PAYLOAD BIRTH_PAYLOAD")
    exit(64)
}
let topic = arguments[3]
var configuration = MQTTConfiguration(clientID: arguments[2], host: "127.0.0.1", port: port)
configuration.keepAlive = .seconds(5)
configuration.will = MQTTMessage(topic: topic, string: arguments[4], qos: .atLeastOnce, retain: true)
configuration.reconnect = MQTTBackoff(initial: .milliseconds(50), maximum: .milliseconds(500))

do {
    let client = try MQTTClient(configuration: configuration, logger: Logger(label: "MQTTWillClient"))
    try client.start()
    try await client.waitUntilConnected(timeout: .seconds(10))
    try await client.publish(MQTTMessage(topic: topic, string: arguments[5], qos: .atLeastOnce, retain: true))
    print("connected")
    fflush(nil) // stdout is a log file here, fully buffered
    while true { try await Task.sleep(for: .seconds(3600)) }
} catch {
    printError("MQTTWillClient: \(error)")
    exit(1)
}
