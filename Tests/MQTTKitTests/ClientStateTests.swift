@testable import MQTTKit
import Synchronization
import Testing

/// The locked state machine on its own: the orderings libmosquitto's thread can produce, driven by hand.
@Suite("MQTTKit client state machine")
struct ClientStateTests {
    /// ClientState behind a lock, performing the resumptions its transitions return, as MQTTClient does.
    final class Box: Sendable {
        let state: Mutex<ClientState>

        init(maxInFlight: Int = 2, connected: Bool = true) {
            var s = ClientState(broker: "127.0.0.1:1883", maxInFlight: maxInFlight)
            _ = s.start()
            s.connected = connected
            state = Mutex(s)
        }

        func apply(_ transition: (inout ClientState) -> ClientState.Effects) {
            let effects = state.withLock { transition(&$0) }
            for (c, o) in effects.slotResumes { c.resume(returning: o) }
            for (c, o) in effects.ackResumes { c.resume(returning: o) }
            for (c, r) in effects.connectResumes { c.resume(returning: r) }
            for c in effects.plainResumes { c.resume() }
        }

        func slot(id: UInt64, final: Bool = false) async -> ClientState.SlotOutcome {
            await withCheckedContinuation { c in apply { $0.requestSlot(id: id, final: final, cancelled: false, continuation: c) } }
        }

        func register(mid: Int32, qos: MQTTQoS, id: UInt64) async -> ClientState.AckOutcome {
            await withCheckedContinuation { c in apply { $0.register(mid: mid, qos: qos, id: id, cancelled: false, continuation: c) } }
        }

        func waitUntil(_ condition: @escaping (ClientState) -> Bool) async {
            while !state.withLock({ condition($0) }) { await Task.yield() }
        }
    }

    @Test("on_publish before the publisher registered its mid still completes that publish, once")
    func earlyAcknowledgement() async {
        let box = Box()
        guard case .granted = await box.slot(id: 1) else { Issue.record("no slot"); return }
        box.apply { $0.acknowledged(mid: 7, reason: 0) } // libmosquitto's thread was faster
        guard case .acknowledged = await box.register(mid: 7, qos: .atLeastOnce, id: 1) else {
            Issue.record("not acknowledged")
            return
        }
        box.state.withLock { s in
            #expect(s.inFlight == 0 && s.issuing == 0 && s.pending.isEmpty && s.earlyAcks.isEmpty)
        }
        // A late duplicate on_publish for the same mid changes nothing.
        box.apply { $0.acknowledged(mid: 7, reason: 0) }
        box.state.withLock { #expect($0.inFlight == 0 && $0.earlyAcks.isEmpty) }
    }

    @Test("an unwritten QoS 0 message is handed back before the reconnect; QoS 1 stays for libmosquitto's re-send")
    func reconnectBarrier() async {
        let box = Box()
        guard case .granted = await box.slot(id: 1), case .granted = await box.slot(id: 2) else {
            Issue.record("no slots")
            return
        }
        let qos0 = Task { await box.register(mid: 1, qos: .atMostOnce, id: 1) }
        let qos1 = Task { await box.register(mid: 2, qos: .atLeastOnce, id: 2) }
        await box.waitUntil { $0.pending.count == 2 }
        box.apply { $0.connectionEnded(error: nil) }
        box.apply { $0.prepareReconnect()! }
        guard case .retry = await qos0.value else { Issue.record("QoS 0 not handed back"); return }
        box.state.withLock { #expect($0.inFlight == 1 && $0.pending[2] != nil) }
        // After the reconnect libmosquitto re-sends mid 2 and the PUBACK completes it.
        box.apply { $0.connackReceived(code: 0, refusal: nil, now: .now) }
        box.apply { $0.acknowledged(mid: 2, reason: 0) }
        guard case .acknowledged = await qos1.value else { Issue.record("QoS 1 not acknowledged"); return }
        box.state.withLock { #expect($0.inFlight == 0) }
    }

    @Test("the reconnect waits while a publisher is between its slot and its registration")
    func barrierWaitsForIssuers() async {
        let box = Box()
        guard case .granted = await box.slot(id: 1) else { Issue.record("no slot"); return }
        #expect(box.state.withLock { $0.prepareReconnect() } == nil)
        let registered = Task { await box.register(mid: 3, qos: .atLeastOnce, id: 1) }
        await box.waitUntil { $0.issuing == 0 }
        #expect(box.state.withLock { $0.prepareReconnect() } != nil)
        box.apply { $0.acknowledged(mid: 3, reason: 0) }
        _ = await registered.value
    }

    @Test("slots are granted only while connected, in order, within the window; the final message goes first")
    func window() async {
        let box = Box(maxInFlight: 1, connected: false)
        let first = Task { await box.slot(id: 1) }
        await box.waitUntil { $0.slotWaiters.count == 1 }
        let second = Task { await box.slot(id: 2) }
        await box.waitUntil { $0.slotWaiters.count == 2 }
        let final = Task { await box.slot(id: 3, final: true) }
        await box.waitUntil { $0.slotWaiters.count == 3 }
        #expect(box.state.withLock { $0.slotWaiters.map(\.id) } == [3, 1, 2])
        box.apply { $0.connackReceived(code: 0, refusal: nil, now: .now) }
        guard case .granted = await final.value else { Issue.record("final not granted"); return }
        box.state.withLock { #expect($0.inFlight == 1 && $0.slotWaiters.map(\.id) == [1, 2]) }
        box.apply { $0.issueFailed() } // gives the slot back
        guard case .granted = await first.value else { Issue.record("first not granted"); return }
        box.apply { $0.stop().0 }
        guard case .failed(let error) = await second.value else { Issue.record("second not failed"); return }
        #expect(error.isShutdown)
    }

    @Test("an MQTT 5 PUBACK with a failure reason fails the publish")
    func pubackFailure() async {
        let box = Box()
        guard case .granted = await box.slot(id: 1) else { Issue.record("no slot"); return }
        let waiting = Task { await box.register(mid: 9, qos: .atLeastOnce, id: 1) }
        await box.waitUntil { $0.pending[9] != nil }
        box.apply { $0.acknowledged(mid: 9, reason: 0x87) }
        guard case .failed(let error) = await waiting.value else { Issue.record("not failed"); return }
        #expect(error.call == "PUBACK" && error.code == 0x87 && error.isAuthorizationFailure)
    }
}
