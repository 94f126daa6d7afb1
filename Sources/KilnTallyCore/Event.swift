/// Something notable that happened at the edge: a device going down or coming back, a totalizer reset,
/// the store dropping old data, the clock losing sync. Events are stored and published on `/events`.
public struct Event: Sendable, Hashable {
    public enum Severity: String, Sendable, Codable, CaseIterable { case info, warning, alarm }

    public enum Kind: String, Sendable, Codable, CaseIterable {
        case deviceDown = "device_down"
        case deviceUp = "device_up"
        /// A device answers but its heartbeat channel stopped counting: its values may be frozen.
        case heartbeatStopped = "heartbeat_stopped"
        case heartbeatResumed = "heartbeat_resumed"
        /// A bus (serial line or TCP endpoint) cannot be opened; reported once per outage, not per attempt.
        case busDown = "bus_down"
        case busUp = "bus_up"
        case totalizerReset = "totalizer_reset"
        case totalizerRollover = "totalizer_rollover"
        case imbalance
        case storeDropped = "store_dropped"
        case storeError = "store_error"
        case clockUnsynchronized = "clock_unsynchronized"
        case clockSynchronized = "clock_synchronized"
        case uplinkDown = "uplink_down"
        case uplinkUp = "uplink_up"
        case configReloaded = "config_reloaded"
        /// The tally got a new configuration (streams, weighbridges, stocks, shift calendar): it takes effect at the
        /// next shift boundary, named in the event.
        case tallyConfigChanged = "tally_config_changed"
        /// A truck left the weighbridge before a weight could be captured (never stable, over range, …).
        case weighingMissed = "weighing_missed"
        /// A weight was captured but gives no ticket (one-pass: no preset tare for the vehicle, or not heavier).
        case weighingRejected = "weighing_rejected"
        /// A second stable weight on the weighbridge without the scale returning to zero: not captured.
        case scaleNotZeroed = "scale_not_zeroed"
        /// A weighbridge indicator reported over range while a truck was on it.
        case weighbridgeOverRange = "weighbridge_over_range"
        /// An operator corrected a ticket's material.
        case ticketCorrected = "ticket_corrected"
        /// An operator voided a ticket.
        case ticketVoided = "ticket_voided"
    }

    public var kind: Kind
    public var severity: Severity
    public var time: UTCInstant
    /// The device concerned, if any.
    public var device: DeviceID?
    /// A human-readable sentence that names the device, bus and call where there is one.
    public var message: String
    /// Extra machine-readable facts (e.g. `"call": "modbus_read_registers"`, `"errno": "110"`).
    public var attributes: [String: String]

    public init(
        kind: Kind, severity: Severity, time: UTCInstant, device: DeviceID? = nil, message: String,
        attributes: [String: String] = [:]
    ) {
        self.kind = kind
        self.severity = severity
        self.time = time
        self.device = device
        self.message = message
        self.attributes = attributes
    }
}
