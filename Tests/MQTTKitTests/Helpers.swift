import Foundation
import Logging
@testable import MQTTKit
import Synchronization
import TestSupport

let testLogger: Logger = {
    var logger = Logger(label: "MQTTKitTests")
    logger.logLevel = ProcessInfo.processInfo.environment["MQTT_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    return logger
}()

/// A client configuration for tests: loopback broker, small backoffs.
func testConfiguration(port: Int, clientID: String = "kt-\(UInt32.random(in: 0...UInt32.max))") -> MQTTConfiguration {
    var c = MQTTConfiguration(clientID: clientID, host: "127.0.0.1", port: port)
    c.reconnect = MQTTBackoff(initial: .milliseconds(50), maximum: .milliseconds(500), jitter: 0.2)
    c.keepAlive = .seconds(30)
    return c
}

/// Runs `body` with a client built from `configuration` (started unless `start` is false) and always shuts it down,
/// so that no supervisor thread keeps reconnecting after the test.
func withClient<T>(
    _ configuration: MQTTConfiguration, start: Bool = true, _ body: (MQTTClient, EventRecorder) async throws -> T
) async throws -> T {
    let client = try MQTTClient(configuration: configuration, logger: testLogger)
    let recorder = EventRecorder(client)
    if start { try client.start() }
    do {
        let result = try await body(client, recorder)
        await client.shutdown(timeout: .milliseconds(500))
        return result
    } catch {
        await client.shutdown(timeout: .milliseconds(500))
        throw error
    }
}

/// Runs `body`, failing with `what` if it takes longer than `timeout` (the body is cancelled then).
func withTimeout<T: Sendable>(
    _ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()
        group.cancelAll()
        guard let first, let value = first else { throw PeerError("timed out after \(timeout): \(what)") }
        return value
    }
}

/// Consumes a client's `events` and lets tests await a condition on everything seen so far.
final class EventRecorder: Sendable {
    private struct Waiter {
        var predicate: @Sendable ([MQTTConnectionEvent], _ finished: Bool) -> Bool
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var events: [MQTTConnectionEvent] = []
        var finished = false
        var waiters: [UInt64: Waiter] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(_ client: MQTTClient) {
        let events = client.events
        let consumer = Task { [weak self] in
            for await event in events { self?.record(event) }
            self?.finish()
        }
        task.withLock { $0 = consumer }
    }

    deinit { task.withLock { $0?.cancel() } }

    var events: [MQTTConnectionEvent] { state.withLock { $0.events } }
    var isFinished: Bool { state.withLock { $0.finished } }

    private func record(_ event: MQTTConnectionEvent) {
        let ready = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.events.append(event)
            return Self.takeReady(&s)
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    private func finish() {
        let ready = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.finished = true
            return Self.takeReady(&s)
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    private static func takeReady(_ s: inout State) -> [CheckedContinuation<Bool, Never>] {
        let ready = s.waiters.filter { $0.value.predicate(s.events, s.finished) }
        for id in ready.keys { s.waiters[id] = nil }
        return ready.values.map(\.continuation)
    }

    /// Waits until `predicate` holds for the events seen so far; throws after `timeout`.
    @discardableResult
    func wait(
        _ what: String, timeout: Duration = .seconds(10), until predicate: @escaping @Sendable ([MQTTConnectionEvent]) -> Bool
    ) async throws -> [MQTTConnectionEvent] {
        try await wait(what, timeout: timeout, untilState: { events, _ in predicate(events) })
    }

    /// Waits until the client's event stream has ended.
    func waitUntilFinished(timeout: Duration = .seconds(10)) async throws {
        try await wait("the event stream to finish", timeout: timeout, untilState: { _, finished in finished })
    }

    @discardableResult
    private func wait(
        _ what: String, timeout: Duration, untilState predicate: @escaping @Sendable ([MQTTConnectionEvent], Bool) -> Bool
    ) async throws -> [MQTTConnectionEvent] {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        let satisfied = await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
                waiter?.continuation.resume(returning: false)
            }
            let result = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { s -> Bool in
                    if predicate(s.events, s.finished) { return true }
                    s.waiters[id] = Waiter(predicate: predicate, continuation: continuation)
                    return false
                }
                if now { continuation.resume(returning: true) }
            }
            group.cancelAll()
            return result
        }
        let events = self.events
        guard satisfied else { throw PeerError("timed out after \(timeout) waiting for \(what); events so far: \(events)") }
        return events
    }

    /// Waits until `count` `.connected` events have been seen.
    func waitForConnected(count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        try await wait("\(count) × connected", timeout: timeout) { $0.connectedCount >= count }
    }
}

extension Array where Element == MQTTConnectionEvent {
    var connectedCount: Int { filter { if case .connected = $0 { true } else { false } }.count }
    var disconnections: [MQTTError?] {
        compactMap { if case .disconnected(let error) = $0 { .some(error) } else { nil } }
    }
    var refusals: [MQTTError] {
        compactMap { if case .connectionRefused(let error) = $0 { error } else { nil } }
    }
    var attemptFailures: [MQTTError] {
        compactMap { if case .attemptFailed(let error) = $0 { error } else { nil } }
    }
}

/// Whether an async operation started by a test has finished, readable at any time.
final class Completion: Sendable {
    private let done = Mutex(false)
    var isDone: Bool { done.withLock { $0 } }
    func markDone() { done.withLock { $0 = true } }
}

final class Counter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

/// Starts `publish(message)` in a task that marks `completion` when it returns.
func startPublish(_ client: MQTTClient, _ message: MQTTMessage, completion: Completion) -> Task<Void, any Error> {
    Task {
        try await client.publish(message)
        completion.markDone()
    }
}

/// A deliberate negative check: `completion` must stay undone for `window`. Only for proving that something does NOT
/// happen (e.g. a publish completing without a PUBACK); never for waiting for something that will happen.
func expectStillPending(_ completion: Completion, for window: Duration) async throws -> Bool {
    try await Task.sleep(for: window)
    return !completion.isDone
}
