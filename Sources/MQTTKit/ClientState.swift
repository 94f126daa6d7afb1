/// The client's whole mutable state: one struct behind one `Mutex`. Transitions are pure — they never call
/// libmosquitto and never resume a continuation; they return `Effects` that the caller performs after the lock is
/// released. Every continuation is stored in exactly one place and removed from it when its resumption is put into
/// `Effects`, so each one resumes exactly once.
struct ClientState {
    enum Phase {
        case created      // init done, start() not called
        case running      // the supervisor connects and reconnects
        case draining     // shutdown() began: publishing the final message; new publishes are refused
        case stopping     // DISCONNECT sent (or about to be), waiting for the network thread to end
        case stopped
    }

    enum SlotOutcome: Sendable {
        case granted
        case failed(MQTTError)
    }

    enum AckOutcome: Sendable {
        case acknowledged
        /// A QoS 0 message that was queued but not written when its connection ended: publish it again.
        case retry
        case failed(MQTTError)
    }

    struct SlotWaiter {
        var id: UInt64
        var continuation: CheckedContinuation<SlotOutcome, Never>
    }

    enum Pending {
        case waiting(id: UInt64, qos: MQTTQoS, continuation: CheckedContinuation<AckOutcome, Never>)
        /// The caller was cancelled; the message is still in libmosquitto and still holds its in-flight slot.
        case abandoned(qos: MQTTQoS)

        var qos: MQTTQoS {
            switch self {
            case .waiting(_, let qos, _), .abandoned(let qos): qos
            }
        }
    }

    /// Side effects of a transition, performed outside the lock in this order.
    struct Effects {
        var slotResumes: [(CheckedContinuation<SlotOutcome, Never>, SlotOutcome)] = []
        var ackResumes: [(CheckedContinuation<AckOutcome, Never>, AckOutcome)] = []
        var connectResumes: [(CheckedContinuation<Result<Void, MQTTError>, Never>, Result<Void, MQTTError>)] = []
        var plainResumes: [CheckedContinuation<Void, Never>] = []
        var events: [MQTTConnectionEvent] = []
        var finishEvents = false

        var isEmpty: Bool {
            slotResumes.isEmpty && ackResumes.isEmpty && connectResumes.isEmpty && plainResumes.isEmpty
                && events.isEmpty && !finishEvents
        }
    }

    let broker: String
    let maxInFlight: Int

    var phase: Phase = .created
    var connected = false
    var connectedSince: ContinuousClock.Instant?

    /// The broker refused the last attempt (CONNACK error or TLS handshake failure); cleared by a CONNACK success.
    var lastRefusal: MQTTError?
    /// Why the last attempt or connection failed; cleared by a CONNACK success.
    var lastError: MQTTError?
    /// The last warning or error libmosquitto logged (e.g. the OpenSSL error of a failed handshake).
    var lastLogError: String?

    // One run of libmosquitto's network thread (one connection attempt and, if it succeeds, one connection).
    var loopRunning = false
    var sessionSawConnack = false
    var sessionSawDisconnect = false
    var supervisorRunning = false

    /// Slots taken: publishers between grant and registration (`issuing`) plus `pending` entries.
    var inFlight = 0
    var issuing = 0
    var slotWaiters: [SlotWaiter] = []
    var pending: [Int32: Pending] = [:]
    /// on_publish for a mid whose publisher has not registered it yet (libmosquitto's thread can be faster than the
    /// return of mosquitto_publish). Only kept while someone is issuing; every entry is consumed by that publisher.
    var earlyAcks: [Int32: Int32] = [:]
    var connectWaiters: [UInt64: CheckedContinuation<Result<Void, MQTTError>, Never>] = [:]
    var supervisorExitWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    var shutdownWaiters: [CheckedContinuation<Void, Never>] = []

    init(broker: String, maxInFlight: Int) {
        self.broker = broker
        self.maxInFlight = maxInFlight
    }

    var acceptsConnections: Bool { phase == .running || phase == .draining }

    // MARK: publish: slots

    /// A publisher asks for an in-flight slot. `final` is shutdown's last message: it may publish while draining
    /// and goes to the head of the queue.
    mutating func requestSlot(
        id: UInt64, final: Bool, cancelled: Bool, continuation: CheckedContinuation<SlotOutcome, Never>
    ) -> Effects {
        var effects = Effects()
        if cancelled {
            effects.slotResumes.append((continuation, .failed(.cancelled(call: "publish", broker: broker))))
            return effects
        }
        switch phase {
        case .stopping, .stopped:
            effects.slotResumes.append((continuation, .failed(.shutdown(call: "publish", broker: broker))))
            return effects
        case .draining where !final:
            effects.slotResumes.append((continuation, .failed(.shutdown(call: "publish", broker: broker))))
            return effects
        case .created, .running, .draining:
            break
        }
        if final {
            slotWaiters.insert(SlotWaiter(id: id, continuation: continuation), at: 0)
        } else {
            slotWaiters.append(SlotWaiter(id: id, continuation: continuation))
        }
        grantSlots(into: &effects)
        return effects
    }

    mutating func cancelSlotRequest(id: UInt64) -> Effects {
        var effects = Effects()
        if let index = slotWaiters.firstIndex(where: { $0.id == id }) {
            let waiter = slotWaiters.remove(at: index)
            effects.slotResumes.append((waiter.continuation, .failed(.cancelled(call: "publish", broker: broker))))
        }
        return effects
    }

    /// Publishes go out only while connected and within the window.
    private mutating func grantSlots(into effects: inout Effects) {
        while connected, inFlight < maxInFlight, !slotWaiters.isEmpty {
            let waiter = slotWaiters.removeFirst()
            inFlight += 1
            issuing += 1
            effects.slotResumes.append((waiter.continuation, .granted))
        }
    }

    // MARK: publish: acknowledgements

    /// mosquitto_publish failed: the slot is given back.
    mutating func issueFailed() -> Effects {
        var effects = Effects()
        issuing -= 1
        inFlight -= 1
        grantSlots(into: &effects)
        return effects
    }

    /// mosquitto_publish returned `mid`; the publisher waits for its acknowledgement (QoS 1: PUBACK; QoS 0: written).
    mutating func register(
        mid: Int32, qos: MQTTQoS, id: UInt64, cancelled: Bool, continuation: CheckedContinuation<AckOutcome, Never>
    ) -> Effects {
        var effects = Effects()
        issuing -= 1
        if phase == .stopped {
            // shutdown finished while this publisher was calling mosquitto_publish; the message is not tracked.
            inFlight -= 1
            effects.ackResumes.append((continuation, .failed(.shutdown(call: "publish", broker: broker))))
            return effects
        }
        if let reason = earlyAcks.removeValue(forKey: mid) {
            inFlight -= 1
            effects.ackResumes.append((continuation, outcome(reason: reason)))
            grantSlots(into: &effects)
        } else {
            if let stale = pending.removeValue(forKey: mid) {
                // libmosquitto reused a mid we still track: 65535 messages went out while that one was never
                // acknowledged. Its acknowledgement can no longer be told apart; publish it again.
                inFlight -= 1
                if case .waiting(_, _, let old) = stale { effects.ackResumes.append((old, .retry)) }
            }
            if cancelled {
                pending[mid] = .abandoned(qos: qos)
                effects.ackResumes.append((continuation, .failed(.cancelled(call: "publish", broker: broker))))
            } else {
                pending[mid] = .waiting(id: id, qos: qos, continuation: continuation)
            }
        }
        if issuing == 0 { earlyAcks.removeAll() }
        return effects
    }

    mutating func cancelAcknowledgementWait(id: UInt64) -> Effects {
        var effects = Effects()
        for (mid, entry) in pending {
            if case .waiting(let entryID, let qos, let continuation) = entry, entryID == id {
                pending[mid] = .abandoned(qos: qos)
                effects.ackResumes.append((continuation, .failed(.cancelled(call: "publish", broker: broker))))
                break
            }
        }
        return effects
    }

    /// on_publish: QoS 1 PUBACK received, or QoS 0 written to the socket. `reason` is the MQTT 5 reason code (0 in 3.1.1).
    mutating func acknowledged(mid: Int32, reason: Int32) -> Effects {
        var effects = Effects()
        if let entry = pending.removeValue(forKey: mid) {
            inFlight -= 1
            if case .waiting(_, _, let continuation) = entry {
                effects.ackResumes.append((continuation, outcome(reason: reason)))
            }
            grantSlots(into: &effects)
        } else if issuing > 0 {
            earlyAcks[mid] = reason
        }
        return effects
    }

    private func outcome(reason: Int32) -> AckOutcome {
        reason >= 0x80 ? .failed(.puback(reason, broker: broker)) : .acknowledged
    }

    /// Before the supervisor reconnects (libmosquitto then drops every packet still queued for the old socket):
    /// QoS 0 messages not written yet are handed back to their publishers. Returns nil while a publisher is between
    /// its grant and its registration, whose mid is not known yet; the supervisor retries a moment later.
    /// QoS 1 messages stay: libmosquitto re-sends them itself after the CONNACK, with the same mid.
    mutating func prepareReconnect() -> Effects? {
        guard issuing == 0 else { return nil }
        var effects = Effects()
        lastLogError = nil
        for (mid, entry) in pending where entry.qos == .atMostOnce {
            pending[mid] = nil
            inFlight -= 1
            if case .waiting(_, _, let continuation) = entry { effects.ackResumes.append((continuation, .retry)) }
        }
        earlyAcks.removeAll()
        return effects
    }

    // MARK: connection

    mutating func connackReceived(code: Int32, refusal: MQTTError?, now: ContinuousClock.Instant) -> Effects {
        var effects = Effects()
        sessionSawConnack = true
        if let refusal {
            lastError = refusal
            refuse(refusal, into: &effects)
        } else {
            connected = true
            connectedSince = now
            lastRefusal = nil
            lastError = nil
            for (_, continuation) in connectWaiters { effects.connectResumes.append((continuation, .success(()))) }
            connectWaiters.removeAll()
            effects.events.append(.connected)
            grantSlots(into: &effects)
        }
        return effects
    }

    mutating func connectionEnded(error: MQTTError?) -> Effects {
        var effects = Effects()
        sessionSawDisconnect = true
        // After a CONNACK refusal libmosquitto ends the connection with MOSQ_ERR_CONN_REFUSED (3.1.1) or
        // MOSQ_ERR_PROTOCOL (5); the refusal itself says more.
        let refusedNow = sessionSawConnack && !connected && lastRefusal != nil
        if let error, !refusedNow { lastError = error }
        if connected {
            connected = false
            effects.events.append(.disconnected(error))
        } else if let error, !refusedNow {
            effects.events.append(.attemptFailed(error))
        }
        return effects
    }

    /// A connection attempt failed before libmosquitto's thread ran (connect_async returned an error).
    /// `refused`: a TLS handshake failure, reported like a CONNACK refusal.
    mutating func connectAttemptFailed(_ error: MQTTError, refused: Bool) -> Effects {
        var effects = Effects()
        lastError = error
        if refused { refuse(error, into: &effects) } else { effects.events.append(.attemptFailed(error)) }
        return effects
    }

    private mutating func refuse(_ error: MQTTError, into effects: inout Effects) {
        lastRefusal = error
        for (_, continuation) in connectWaiters { effects.connectResumes.append((continuation, .failure(error))) }
        connectWaiters.removeAll()
        effects.events.append(.connectionRefused(error))
    }

    /// The error for a failed TLS handshake: libmosquitto returns only MOSQ_ERR_TLS; OpenSSL's reason is in the log.
    func tlsFailure() -> MQTTError {
        MQTTError(broker: broker, call: "TLS handshake", code: 8 /* MOSQ_ERR_TLS */,
                  message: lastLogError ?? "the TLS handshake failed")
    }

    mutating func logged(problem: String) {
        lastLogError = problem
    }

    /// The supervisor started libmosquitto's thread. True when shutdown began meanwhile: the supervisor must then
    /// send the DISCONNECT itself, since shutdown saw no running loop to stop.
    mutating func loopStarted() -> Bool {
        loopRunning = true
        sessionSawConnack = false
        sessionSawDisconnect = false
        return phase == .stopping || phase == .stopped
    }

    /// libmosquitto's thread has ended. Returns how long this run was connected, if it was.
    mutating func loopEnded(now: ContinuousClock.Instant) -> (Effects, uptime: Duration?) {
        var effects = Effects()
        loopRunning = false
        let uptime = connectedSince.map { now - $0 }
        connectedSince = nil
        if !sessionSawConnack && !sessionSawDisconnect {
            // loop_forever returned on a fatal error without calling on_disconnect — in 2.0.11 notably a failed
            // TLS handshake (MOSQ_ERR_TLS). Only the log says why.
            let text = lastLogError ?? "libmosquitto's network loop ended before the CONNACK"
            if ["SSL", "TLS", "certificate"].contains(where: { text.contains($0) }) {
                let error = tlsFailure()
                lastError = error
                refuse(error, into: &effects)
            } else {
                let error = MQTTError(broker: broker, call: "connection", code: 7 /* MOSQ_ERR_CONN_LOST */, message: text)
                lastError = error
                effects.events.append(.attemptFailed(error))
            }
        }
        if connected {
            connected = false
            effects.events.append(.disconnected(lastError))
        }
        return (effects, uptime)
    }

    // MARK: waitUntilConnected

    mutating func addConnectWaiter(
        id: UInt64, cancelled: Bool, continuation: CheckedContinuation<Result<Void, MQTTError>, Never>
    ) -> Effects {
        var effects = Effects()
        if connected {
            effects.connectResumes.append((continuation, .success(())))
        } else if phase == .stopping || phase == .stopped || phase == .draining {
            effects.connectResumes.append((continuation, .failure(.shutdown(call: "waitUntilConnected", broker: broker))))
        } else if let lastRefusal {
            effects.connectResumes.append((continuation, .failure(lastRefusal)))
        } else if cancelled {
            effects.connectResumes.append((continuation, .failure(.cancelled(call: "waitUntilConnected", broker: broker))))
        } else {
            connectWaiters[id] = continuation
        }
        return effects
    }

    mutating func removeConnectWaiter(id: UInt64, error: MQTTError) -> Effects {
        var effects = Effects()
        if let continuation = connectWaiters.removeValue(forKey: id) {
            effects.connectResumes.append((continuation, .failure(error)))
        }
        return effects
    }

    // MARK: lifecycle

    enum StartDecision { case start, alreadyStarted, shutDown }

    mutating func start() -> StartDecision {
        switch phase {
        case .created:
            phase = .running
            supervisorRunning = true
            return .start
        case .running: return .alreadyStarted
        case .draining, .stopping, .stopped: return .shutDown
        }
    }

    mutating func supervisorExited() -> Effects {
        var effects = Effects()
        supervisorRunning = false
        effects.plainResumes.append(contentsOf: supervisorExitWaiters.values)
        supervisorExitWaiters.removeAll()
        return effects
    }

    mutating func addSupervisorExitWaiter(id: UInt64, continuation: CheckedContinuation<Void, Never>) -> Effects {
        var effects = Effects()
        if supervisorRunning {
            supervisorExitWaiters[id] = continuation
        } else {
            effects.plainResumes.append(continuation)
        }
        return effects
    }

    mutating func removeSupervisorExitWaiter(id: UInt64) -> Effects {
        var effects = Effects()
        if let continuation = supervisorExitWaiters.removeValue(forKey: id) { effects.plainResumes.append(continuation) }
        return effects
    }

    enum ShutdownDecision {
        /// This call shuts down. `connected`: whether a final message can go out now.
        case proceed(connected: Bool)
        /// Another call is shutting down; wait for it.
        case wait
        case done
    }

    mutating func beginShutdown() -> ShutdownDecision {
        switch phase {
        case .created, .running:
            phase = .draining
            return .proceed(connected: connected)
        case .draining, .stopping: return .wait
        case .stopped: return .done
        }
    }

    mutating func addShutdownWaiter(_ continuation: CheckedContinuation<Void, Never>) -> Effects {
        var effects = Effects()
        if phase == .stopped { effects.plainResumes.append(continuation) } else { shutdownWaiters.append(continuation) }
        return effects
    }

    /// After the final message: refuse everything waiting for a slot or a connection. Returns whether libmosquitto's
    /// thread is running (then the caller sends the DISCONNECT; otherwise the supervisor does, see `loopStarted`).
    mutating func stop() -> (Effects, loopRunning: Bool) {
        var effects = Effects()
        phase = .stopping
        for waiter in slotWaiters {
            effects.slotResumes.append((waiter.continuation, .failed(.shutdown(call: "publish", broker: broker))))
        }
        slotWaiters.removeAll()
        for (_, continuation) in connectWaiters {
            effects.connectResumes.append((continuation, .failure(.shutdown(call: "waitUntilConnected", broker: broker))))
        }
        connectWaiters.removeAll()
        return (effects, loopRunning)
    }

    /// The end: every publish still waiting fails with isShutdown, the event stream finishes.
    mutating func finishShutdown() -> Effects {
        var effects = Effects()
        phase = .stopped
        for (_, entry) in pending {
            if case .waiting(_, _, let continuation) = entry {
                effects.ackResumes.append((continuation, .failed(.shutdown(call: "publish", broker: broker))))
            }
        }
        pending.removeAll()
        earlyAcks.removeAll()
        inFlight = issuing // a publisher between grant and registration gives its slot back itself
        for waiter in slotWaiters {
            effects.slotResumes.append((waiter.continuation, .failed(.shutdown(call: "publish", broker: broker))))
        }
        slotWaiters.removeAll()
        if connected {
            connected = false
            effects.events.append(.disconnected(nil))
        }
        effects.plainResumes.append(contentsOf: shutdownWaiters)
        shutdownWaiters.removeAll()
        effects.finishEvents = true
        return effects
    }
}
