internal import CMosquitto
import Dispatch
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An MQTT client over libmosquitto 2.0: connect (TLS, will, user name/password), publish with acknowledgement,
/// reconnect with capped exponential backoff and jitter, clean shutdown.
///
/// Threads. libmosquitto's own network thread (`mosquitto_loop_start`) does all socket I/O and calls the callbacks,
/// which only update one locked state struct. A small dedicated supervisor thread owns the connection's life cycle:
/// it calls `mosquitto_connect_async`/`mosquitto_reconnect_async` (which may block on DNS), starts the network
/// thread, joins it with `mosquitto_loop_stop` when that connection has ended, waits out the backoff and starts the
/// next one. Reconnects are therefore the wrapper's own (millisecond backoff with real jitter) rather than
/// `mosquitto_reconnect_delay_set`'s (whole seconds, no jitter); `on_disconnect` tells libmosquitto the client is
/// disconnected so that its thread ends instead of reconnecting by itself. This also survives what loop_forever treats
/// as fatal — a failed TLS handshake ends libmosquitto's thread for good; here the supervisor simply tries again.
/// Blocking calls never run on Swift's cooperative pool: `mosquitto_publish` and `mosquitto_disconnect` only queue a
/// packet (loop_start mode) and return.
///
/// Publishing. A publish waits until the client is connected and fewer than `maxInFlight` of its messages are in
/// flight, then calls `mosquitto_publish` and waits for `on_publish`: the PUBACK for QoS 1, the write to the socket
/// for QoS 0. Nothing is handed to libmosquitto while disconnected, so memory stays bounded by `maxInFlight` and by the
/// callers' own concurrency however long the broker is away. A QoS 1 message that was sent but not acknowledged when
/// the connection dropped stays in libmosquitto, which re-sends it itself (same mid, DUP set) after the next CONNACK
/// — whatever `cleanSession` says — so its publisher keeps waiting for that same mid and completes once. A QoS 0
/// message not yet written when the connection dropped is dropped by libmosquitto; its publisher publishes it again
/// after the reconnect. A publish fails only on shutdown (`isShutdown`), cancellation (`isCancellation`), invalid
/// input (`mosquitto_publish`), or an MQTT 5 PUBACK with a failure reason code.
///
/// Call `shutdown()` when done: a started client stays alive (reconnecting) until then.
public final class MQTTClient: Sendable {
    public let configuration: MQTTConfiguration
    /// "host:port".
    public let broker: String
    private let logger: Logger
    private let handle: MosquittoHandle
    private let state: Mutex<ClientState>
    private let ids = Atomic<UInt64>(0)
    private let eventStream: AsyncStream<MQTTConnectionEvent>
    private let eventContinuation: AsyncStream<MQTTConnectionEvent>.Continuation
    /// Wakes the supervisor from its backoff wait at shutdown.
    private let supervisorWake = DispatchSemaphore(value: 0)

    /// Creates and configures the libmosquitto client; nothing connects before `start()`. Throws for a configuration
    /// libmosquitto refuses, e.g. a TLS file that cannot be read (the message names it).
    public init(configuration: MQTTConfiguration, logger: Logger) throws(MQTTError) {
        let broker = "\(configuration.host):\(configuration.port)"
        var logger = logger
        logger[metadataKey: "mqtt.broker"] = "\(broker)"
        logger[metadataKey: "mqtt.client_id"] = "\(configuration.clientID)"
        self.configuration = configuration
        self.broker = broker
        self.logger = logger
        handle = try MosquittoHandle.make(configuration, broker: broker)
        state = Mutex(ClientState(broker: broker, maxInFlight: configuration.maxInFlight))
        (eventStream, eventContinuation) = AsyncStream.makeStream(of: MQTTConnectionEvent.self, bufferingPolicy: .bufferingNewest(64))
        mosquitto_user_data_set(handle.pointer, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        // No supervisor or network thread can be running: the supervisor holds a strong reference while it runs.
        mosquitto_user_data_set(handle.pointer, nil)
        mosquitto_destroy(handle.pointer)
        eventContinuation.finish()
    }

    /// Connection changes, in order. Meant for one consumer; keeps the newest 64 when nobody reads.
    public var events: AsyncStream<MQTTConnectionEvent> { eventStream }

    public var isConnected: Bool { state.withLock { $0.connected } }

    /// Why the last connection attempt or connection failed; nil while connected.
    public var lastError: MQTTError? { state.withLock { $0.lastError } }

    /// Messages in flight (handed to libmosquitto, not yet acknowledged) and publishers waiting for a slot.
    var windowSnapshot: (inFlight: Int, waiting: Int) { state.withLock { ($0.inFlight, $0.slotWaiters.count) } }

    /// Starts connecting in the background and keeps the connection up until `shutdown()`.
    public func start() throws(MQTTError) {
        switch state.withLock({ $0.start() }) {
        case .start: break
        case .alreadyStarted: return
        case .shutDown: throw .shutdown(call: "start", broker: broker)
        }
        // The supervisor thread owns a strong reference for as long as it runs.
        let retained = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let client = Unmanaged<MQTTClient>.fromOpaque(argument!).takeRetainedValue()
            client.supervise()
            return nil
        }, retained)
        guard rc == 0 else {
            Unmanaged<MQTTClient>.fromOpaque(retained).release()
            _ = state.withLock { $0.supervisorExited() }
            throw MQTTError(broker: broker, call: "pthread_create", code: MOSQ_ERR_ERRNO.rawValue,
                            message: String(cString: strerror(rc)))
        }
        pthread_detach(thread)
        logger.debug("MQTT client started")
    }

    /// Waits until connected. Throws the refusal if the broker refused the last attempt (e.g. a wrong password:
    /// `isAuthorizationFailure`) or the TLS handshake failed; waits across transient failures (broker down, network)
    /// until `timeout`, then throws `isTimeout` with the last failure in the message.
    public func waitUntilConnected(timeout: Duration) async throws(MQTTError) {
        let id = nextID()
        let result: Result<Void, MQTTError> = await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                let last = state.withLock { $0.lastError }
                let error = MQTTError(broker: broker, call: "waitUntilConnected", code: MOSQ_ERR_NO_CONN.rawValue,
                                      message: "not connected after \(timeout)" + (last.map { "; last failure: \($0.call): \($0.message) (code \($0.code))" } ?? ""),
                                      isTimeout: true)
                perform(state.withLock { $0.removeConnectWaiter(id: id, error: error) })
            }
            let result = await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, MQTTError>, Never>) in
                    perform(state.withLock { $0.addConnectWaiter(id: id, cancelled: Task.isCancelled, continuation: continuation) })
                }
            } onCancel: {
                perform(state.withLock { $0.removeConnectWaiter(id: id, error: .cancelled(call: "waitUntilConnected", broker: broker)) })
            }
            group.cancelAll()
            return result
        }
        try result.get()
    }

    /// Publishes `message`. QoS 1: returns when the broker's PUBACK arrived. QoS 0: when written to the socket.
    /// Waits while disconnected or while `maxInFlight` messages are in flight; see the type's documentation for
    /// what happens across a disconnect.
    public func publish(_ message: MQTTMessage) async throws(MQTTError) {
        try await publish(message, final: false)
    }

    private func publish(_ message: MQTTMessage, final: Bool) async throws(MQTTError) {
        guard message.payload.count <= Self.maximumPayload else {
            throw .mosquitto(MOSQ_ERR_PAYLOAD_SIZE.rawValue, call: "mosquitto_publish", broker: broker,
                             detail: "topic '\(message.topic)', \(message.payload.count) bytes")
        }
        while true {
            let id = nextID()
            switch await acquireSlot(id: id, final: final) {
            case .granted: break
            case .failed(let error): throw error
            }
            var mid: Int32 = 0
            let rc = message.payload.withUnsafeBytes { bytes in
                mosquitto_publish(handle.pointer, &mid, message.topic, Int32(bytes.count), bytes.baseAddress,
                                  Int32(message.qos.rawValue), message.retain)
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                perform(state.withLock { $0.issueFailed() })
                if rc == MOSQ_ERR_NO_CONN.rawValue {
                    // QoS 0 only (QoS 1 is always queued): the connection dropped after the slot was granted.
                    await Task.yield()
                    continue
                }
                throw .mosquitto(rc, call: "mosquitto_publish", broker: broker, detail: "topic '\(message.topic)'")
            }
            switch await acknowledgement(mid: mid, qos: message.qos, id: id) {
            case .acknowledged:
                return
            case .retry:
                logger.debug("QoS 0 message not written before the connection ended; publishing it again",
                             metadata: ["mqtt.topic": "\(message.topic)"])
                continue
            case .failed(let error):
                throw error
            }
        }
    }

    /// MQTT's limit (the remaining length is at most 268,435,455 bytes).
    static let maximumPayload = 268_435_455

    private func acquireSlot(id: UInt64, final: Bool) async -> ClientState.SlotOutcome {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ClientState.SlotOutcome, Never>) in
                // Task.isCancelled is read under the lock: a cancellation either is seen here or finds the waiter.
                perform(state.withLock {
                    $0.requestSlot(id: id, final: final, cancelled: Task.isCancelled, continuation: continuation)
                })
            }
        } onCancel: {
            perform(state.withLock { $0.cancelSlotRequest(id: id) })
        }
    }

    private func acknowledgement(mid: Int32, qos: MQTTQoS, id: UInt64) async -> ClientState.AckOutcome {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ClientState.AckOutcome, Never>) in
                perform(state.withLock {
                    $0.register(mid: mid, qos: qos, id: id, cancelled: Task.isCancelled, continuation: continuation)
                })
            }
        } onCancel: {
            perform(state.withLock { $0.cancelAcknowledgementWait(id: id) })
        }
    }

    /// Clean shutdown: publishes `final` if given and connected (e.g. a retained "offline" status) and waits for its
    /// acknowledgement up to `timeout`; then sends DISCONNECT — so the broker discards the will — waits (bounded) for
    /// the network and supervisor threads to end, and fails everything still pending with `isShutdown`.
    /// Idempotent; concurrent calls wait for the first.
    public func shutdown(publishing final: MQTTMessage? = nil, timeout: Duration = .seconds(2)) async {
        switch state.withLock({ $0.beginShutdown() }) {
        case .done:
            return
        case .wait:
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                perform(state.withLock { $0.addShutdownWaiter(continuation) })
            }
            return
        case .proceed(let connected):
            if let final {
                if connected {
                    await publishFinal(final, timeout: timeout)
                } else {
                    logger.debug("not connected at shutdown; final message not published", metadata: ["mqtt.topic": "\(final.topic)"])
                }
            }
        }
        let (effects, loopRunning) = state.withLock { $0.stop() }
        perform(effects)
        supervisorWake.signal()
        if loopRunning {
            // Queues DISCONNECT; the network thread writes it, closes the socket and ends. If the loop ended just
            // now, this only marks the client disconnected.
            _ = mosquitto_disconnect(handle.pointer)
        }
        if !(await waitForSupervisor(timeout: max(timeout, .seconds(1)))) {
            logger.warning("MQTT network thread did not end within the shutdown timeout; it ends on its own (bounded by the keep-alive)")
        }
        perform(state.withLock { $0.finishShutdown() })
        logger.debug("MQTT client shut down")
    }

    private func publishFinal(_ message: MQTTMessage, timeout: Duration) async {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { [self] in
                do throws(MQTTError) {
                    try await publish(message, final: true)
                    return true
                } catch {
                    if !error.isCancellation { logger.debug("final message not published: \(error)") }
                    return false
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let published = await group.next() ?? false
            group.cancelAll()
            if !published { logger.debug("final message not acknowledged within \(timeout)", metadata: ["mqtt.topic": "\(message.topic)"]) }
        }
    }

    /// Waits until the supervisor thread has ended, or `timeout`. Returns whether it ended.
    private func waitForSupervisor(timeout: Duration) async -> Bool {
        let id = nextID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                perform(state.withLock { $0.removeSupervisorExitWaiter(id: id) })
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                perform(state.withLock { $0.addSupervisorExitWaiter(id: id, continuation: continuation) })
            }
            group.cancelAll()
        }
        return state.withLock { !$0.supervisorRunning }
    }

    // MARK: supervisor thread

    /// The connection life cycle, on its own thread: connect, run libmosquitto's thread until that connection ends,
    /// back off, repeat — until shutdown.
    private func supervise() {
        var attempt = 0
        var hostSet = false
        var generator = SystemRandomNumberGenerator()
        let mosq = handle.pointer
        let keepAlive = MosquittoHandle.keepAliveSeconds(configuration.keepAlive)
        while state.withLock({ $0.acceptsConnections }) {
            // libmosquitto drops unwritten packets when it reconnects; hand unwritten QoS 0 messages back first.
            // Waits (microseconds) while a publisher is between its slot and its mosquitto_publish registration.
            while true {
                guard let effects = state.withLock({ $0.prepareReconnect() }) else {
                    usleep(100)
                    continue
                }
                perform(effects)
                break
            }
            let call = hostSet ? "mosquitto_reconnect_async" : "mosquitto_connect_async"
            let rc = hostSet ? mosquitto_reconnect_async(mosq)
                : mosquitto_connect_async(mosq, configuration.host, Int32(configuration.port), keepAlive)
            let savedErrno = errno
            if !hostSet && rc != MOSQ_ERR_INVAL.rawValue && rc != MOSQ_ERR_NOMEM.rawValue { hostSet = true }
            var uptime: Duration?
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                let loopRC = mosquitto_loop_start(mosq)
                if loopRC == MOSQ_ERR_SUCCESS.rawValue {
                    if state.withLock({ $0.loopStarted() }) {
                        _ = mosquitto_disconnect(mosq) // shutdown began while connecting
                    }
                    // Joins libmosquitto's thread: returns once loop_forever has returned, i.e. this connection (or
                    // attempt) is over — on_disconnect marked it disconnected, or a fatal error ended the loop.
                    _ = mosquitto_loop_stop(mosq, false)
                    let (effects, connectedFor) = state.withLock { $0.loopEnded(now: .now) }
                    perform(effects)
                    uptime = connectedFor
                } else {
                    let error = MQTTError.mosquitto(loopRC, call: "mosquitto_loop_start", broker: broker)
                    perform(state.withLock { $0.connectAttemptFailed(error, refused: false) })
                    logger.warning("\(error)")
                }
            } else {
                let tls = rc == MOSQ_ERR_TLS.rawValue
                let effects = state.withLock { s in
                    s.connectAttemptFailed(tls ? s.tlsFailure() : .mosquitto(rc, errno: savedErrno, call: call, broker: broker), refused: tls)
                }
                perform(effects)
                logger.debug("MQTT connection attempt failed", metadata: ["mqtt.error": "\(lastError.map { "\($0)" } ?? "")"])
            }
            guard state.withLock({ $0.acceptsConnections }) else { break }
            // A connection that lasted longer than the longest delay was a real one: start the backoff over.
            // Short-lived ones (e.g. a broker that drops us right after the CONNACK) keep backing off.
            if let uptime, uptime >= configuration.reconnect.maximum { attempt = 0 }
            let delay = configuration.reconnect.delay(attempt: attempt, using: &generator)
            attempt += 1
            logger.debug("MQTT reconnecting", metadata: ["mqtt.delay": "\(delay)", "mqtt.attempt": "\(attempt)"])
            let (seconds, attoseconds) = delay.components
            _ = supervisorWake.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)))
        }
        perform(state.withLock { $0.supervisorExited() })
    }

    // MARK: callbacks (libmosquitto's thread)

    func connackReceived(code: Int32) {
        let refusal = code == 0 ? nil : MQTTError.connack(code, protocolVersion: configuration.protocolVersion, broker: broker)
        perform(state.withLock { $0.connackReceived(code: code, refusal: refusal, now: .now) })
        if let refusal {
            logger.debug("MQTT broker refused the connection", metadata: ["mqtt.error": "\(refusal)"])
        } else {
            logger.debug("MQTT connected")
        }
    }

    func connectionEnded(rc: Int32, errno savedErrno: Int32) {
        let error = rc == MOSQ_ERR_SUCCESS.rawValue ? nil : MQTTError.mosquitto(rc, errno: savedErrno, call: "connection", broker: broker)
        perform(state.withLock { $0.connectionEnded(error: error) })
        logger.debug("MQTT connection ended", metadata: error.map { ["mqtt.error": "\($0)"] } ?? [:])
    }

    func acknowledged(mid: Int32, reason: Int32) {
        perform(state.withLock { $0.acknowledged(mid: mid, reason: reason) })
    }

    func libraryLogged(level: Int32, _ text: String) {
        switch level {
        case MOSQ_LOG_ERR, MOSQ_LOG_WARNING:
            state.withLock { $0.logged(problem: text) }
            logger.debug("libmosquitto: \(text)")
        case MOSQ_LOG_DEBUG:
            logger.trace("libmosquitto: \(text)")
        default:
            logger.debug("libmosquitto: \(text)")
        }
    }

    // MARK: effects

    private func perform(_ effects: ClientState.Effects) {
        guard !effects.isEmpty else { return }
        for (continuation, outcome) in effects.slotResumes { continuation.resume(returning: outcome) }
        for (continuation, outcome) in effects.ackResumes { continuation.resume(returning: outcome) }
        for (continuation, result) in effects.connectResumes { continuation.resume(returning: result) }
        for event in effects.events { eventContinuation.yield(event) }
        if effects.finishEvents { eventContinuation.finish() }
        for continuation in effects.plainResumes { continuation.resume() }
    }

    private func nextID() -> UInt64 {
        ids.wrappingAdd(1, ordering: .relaxed).newValue
    }
}
