import Synchronization

/// Tells any number of readers the newest durable sequence number of a store (newest only: a slow reader sees the
/// latest). Shared by the reading ring and the ledger; a reader that stops listening is forgotten at once, without
/// a trip through the store's actor.
final class SequenceBroadcaster: Sendable {
    private struct State {
        var subscribers: [Int: AsyncStream<UInt64>.Continuation] = [:]
        var next = 0
        var finished = false
    }

    private let state = Mutex(State())

    /// A new stream, starting with `current` if anything is stored yet.
    func subscribe(current: UInt64) -> AsyncStream<UInt64> {
        let (stream, continuation) = AsyncStream.makeStream(of: UInt64.self, bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { s -> Int? in
            guard !s.finished else { return nil }
            defer { s.next += 1 }
            s.subscribers[s.next] = continuation
            return s.next
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        if current > 0 { continuation.yield(current) }
        return stream
    }

    func yield(_ sequence: UInt64) {
        for c in state.withLock({ Array($0.subscribers.values) }) { c.yield(sequence) }
    }

    /// Ends every stream (the store closed).
    func finish() {
        let all = state.withLock { s -> [AsyncStream<UInt64>.Continuation] in
            s.finished = true
            defer { s.subscribers.removeAll() }
            return Array(s.subscribers.values)
        }
        for c in all { c.finish() }
    }
}
