import KilnTallyCore

extension RingStore.Options {
    /// The `[store]` section this module registers with the core config loader.
    public static var configSections: [ConfigKey] {
        [
            ConfigKey("store", .table(ConfigTable([
                ConfigKey("max_bytes", .byteSizeRange(min: 1 << 20, max: nil), default: .string("512MiB"),
                          doc: "Disk space the reading ring may use. When it is full the oldest readings are dropped (whole segments), counted, and reported as an event."),
                ConfigKey("segment_bytes", .byteSizeRange(min: 64 << 10, max: 1 << 30),
                          doc: "Size at which a segment file is closed and a new one started; max_bytes / 8 (at most 16MiB) when absent. Dropping happens a segment at a time."),
                ConfigKey("sync_interval", .durationRange(min: .milliseconds(10), max: .seconds(60)), default: .string("1s"),
                          doc: "Group commit: readings become durable (one fdatasync) at least this often. A power cut loses at most the readings of one interval."),
                ConfigKey("max_pending_readings", .integer(min: 1000, max: 100_000_000), default: .integer(200_000),
                          doc: "Readings kept in memory while the disk cannot be written (full, read-only, failing); beyond that the oldest are lost, counted and reported."),
            ])), default: [:], doc: "The reading ring store under <state-dir>/readings."),
        ]
    }

    public static func decode(_ root: ConfigReader) -> RingStore.Options {
        guard let t = root.table("store") else { return .init() }
        var o = RingStore.Options(maxBytes: t.byteSize("max_bytes") ?? (512 << 20))
        if let s = t.byteSize("segment_bytes") {
            if s > o.maxBytes / 2 { t.error("segment_bytes", "must be at most half of max_bytes (dropping works in whole segments)") }
            o.segmentBytes = s
        }
        o.syncInterval = t.duration("sync_interval") ?? .seconds(1)
        o.maxPendingReadings = Int(t.int("max_pending_readings") ?? 200_000)
        return o
    }
}
