import KilnTallyCore

/// A deterministic reading for index `i` (used as its sequence number): a test can check that any stored
/// reading is exactly the one written under that number. Covers every value kind, units, qualities, raw words.
public func sampleReading(_ i: UInt64) -> Reading {
    let kinds: [ReadingValue] = [.uint(1_234_567 + i), .double(Double(i) * 0.001 + 30), .int(-Int64(i)), .bool(i % 2 == 0)]
    return Reading(device: DeviceID("dev\(i % 3)"), channel: ChannelID("ch\(i % 4)"),
                   time: UTCInstant(nanosecondsSinceEpoch: 1_790_000_000_000_000_000 + Int64(i) * 100_000_000),
                   value: kinds[Int(i % 4)], unit: i % 4 == 0 ? .kilogram : (i % 4 == 1 ? .tonnePerHour : nil),
                   quality: i % 17 == 0 ? .commFailure : .good, clockSynchronized: i % 5 != 0,
                   raw: i % 4 == 3 ? [] : [UInt16(truncatingIfNeeded: i), UInt16(truncatingIfNeeded: i >> 16)])
}
