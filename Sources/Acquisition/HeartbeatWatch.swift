import KilnTallyCore

/// Watches a device's `heartbeat` channel: a counter the device increments while its program runs (Flintec FT-112:
/// +1 every 100 ms). A device whose heartbeat has not changed for `staleAfter` still answers, but what it answers
/// may be frozen (a hung PLC program, a gateway serving its last cache): its readings are then marked `stale`.
///
/// Time is monotonic (`ContinuousClock`), so a wall-clock step cannot make a device stale or fresh.
struct HeartbeatWatch {
    let staleAfter: Duration
    private var last: ReadingValue?
    private var changedAt: ContinuousClock.Instant?
    private(set) var isStale = false

    init(staleAfter: Duration) { self.staleAfter = staleAfter }

    enum Transition: Equatable { case stopped, resumed }

    /// Takes the heartbeat reading of one poll. A reading that is not good says nothing about the counter (the
    /// device is down or refused the register: that is reported as such) and leaves the state as it was.
    mutating func observe(_ reading: Reading, at now: ContinuousClock.Instant) -> Transition? {
        guard reading.quality == .good else { return nil }
        if reading.value != last || changedAt == nil {
            last = reading.value
            changedAt = now
            if isStale {
                isStale = false
                return .resumed
            }
            return nil
        }
        if !isStale, let changedAt, now - changedAt >= staleAfter {
            isStale = true
            return .stopped
        }
        return nil
    }

    /// Marks a stale device's good readings `stale` (values kept: they are what the device said).
    static func markStale(_ readings: inout [Reading]) {
        for i in readings.indices where readings[i].quality == .good { readings[i].quality = .stale }
    }
}
