@testable import Acquisition
import KilnTallyCore
import Testing

@Suite("Heartbeat watch")
struct HeartbeatWatchTests {
    func beat(_ v: UInt64, _ q: Quality = .good) -> Reading {
        Reading(device: "wb", channel: "heartbeat", time: UTCInstant(nanosecondsSinceEpoch: 0), value: .uint(v), quality: q)
    }

    @Test("a counter that stops for stale_after makes the device stale; the next change makes it fresh again")
    func stopsAndResumes() {
        var watch = HeartbeatWatch(staleAfter: .seconds(2))
        let t0 = ContinuousClock.now
        #expect(watch.observe(beat(1), at: t0) == nil)
        #expect(watch.observe(beat(2), at: t0 + .seconds(1)) == nil)
        #expect(watch.observe(beat(2), at: t0 + .milliseconds(2_900)) == nil, "1.9 s without a change is not yet 2 s")
        #expect(watch.observe(beat(2), at: t0 + .seconds(3)) == .stopped)
        #expect(watch.isStale)
        #expect(watch.observe(beat(2), at: t0 + .seconds(10)) == nil, "one transition, not one per poll")
        // A failed read of the heartbeat says nothing about it.
        #expect(watch.observe(beat(0, .timeout), at: t0 + .seconds(11)) == nil)
        #expect(watch.isStale)
        #expect(watch.observe(beat(3), at: t0 + .seconds(12)) == .resumed)
        #expect(!watch.isStale)
    }

    @Test("stale keeps the values and marks only good readings")
    func marking() {
        var readings = [beat(5), beat(6, .timeout), beat(7, .invalid)]
        HeartbeatWatch.markStale(&readings)
        #expect(readings.map(\.quality) == [.stale, .timeout, .invalid])
        #expect(readings[0].value == .uint(5))
    }
}
