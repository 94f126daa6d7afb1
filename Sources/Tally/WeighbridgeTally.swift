import KilnTallyCore

/// What a weighbridge tally produces, in the order it happened.
public enum WeighbridgeOutput: Sendable, Hashable {
    /// A two-pass ticket's first weighing (revision 1, status open).
    case ticketOpened(Ticket)
    /// A ticket's last weighing: the ticket counts in the shift that contains `closedAt`.
    case ticketClosed(Ticket)
    /// A correction: the ticket's next revision (flag `manual`), open, closed or voided.
    case ticketRevised(Ticket)
    case event(Event)
}

/// Turns the readings of one weighbridge indicator into tickets. Pure: readings and corrections in, outputs out;
/// its whole state (open tickets, the pass in progress, the running ticket number, its configuration) is `Codable`
/// for the tally checkpoint, and a decoded copy continues exactly as the original would.
///
/// **Passes and captures.** A pass starts when a good weight reading is above the zero band (role `weight`'s
/// `zero_band`) and ends at the first good weight at or below it (a weight below zero counts as empty too).
/// A pass captures at most one weighing: at the first poll at which the weight is above `min_weight`, every status
/// bit the indicator has was read good in the same poll and says stable (`stable` true and `motion` false — either
/// polarity, or both), not over range, not under range and not in net mode (a net weight is not a truck's weight),
/// the software check holds if configured (the weights of the last `stable_window` spread by at most
/// `stable_tolerance`), and — pairing by ticket number or vehicle — the pairing register shows a value.
/// A pass that went above `min_weight` and ends without a capture gives a `weighing_missed` event naming what
/// held the capture back last. Over range while a truck is on the scale gives a `weighbridge_over_range` event and
/// flags the ticket of that pass (the one it captures, or the open ticket it captured before).
///
/// **Two trucks back to back.** The scale must return into the zero band between trucks (DOMAIN §1.4 step 5): a
/// second truck that drives on before the first has left is part of the same pass and is not captured; when it
/// gives a second stable weight (differing from the captured one by more than the zero band) a `scale_not_zeroed`
/// event says so, once per pass.
///
/// **Polls.** `consume` takes the readings of one poll of the indicator (other devices' readings are ignored).
/// Readings of several polls may come in one call: a reading of a channel already in the current poll starts the
/// next. A poll's time is its weight reading's time; a poll without a weight reading changes nothing. A weight
/// reading that is not good (or not a mass) neither starts nor ends a pass; it restarts the software check, as does
/// a clock that steps back.
public struct WeighbridgeTally: Sendable, Hashable, Codable {
    public private(set) var config: WeighbridgeConfig
    public private(set) var channels: WeighbridgeChannels
    /// The pairing in force (two-pass; `config.resolvedPairing(channels)`).
    public private(set) var pairing: WeighbridgeConfig.Pairing
    /// Tickets weighed once and waiting for their second weighing, oldest first.
    public private(set) var openTickets: [Ticket] = []
    /// The running number the next ticket's id gets.
    public private(set) var nextTicketNumber: UInt64 = 1
    private var pass: Pass?
    private var lastPollTime: UTCInstant?

    public init(config: WeighbridgeConfig, channels: WeighbridgeChannels) {
        self.config = config
        self.channels = channels
        pairing = config.resolvedPairing(channels)
    }

    /// Resolves the channels from the device's channels and roles (see `WeighbridgeConfig.resolveChannels`).
    public init(config: WeighbridgeConfig, devices: [DeviceID: [ChannelID: ChannelRole?]])
        throws(WeighbridgeConfig.Problems)
    {
        self.init(config: config, channels: try config.resolveChannels(devices: devices).get())
    }

    /// A new configuration for this weighbridge (same name): open tickets stay open and pair under the new rules;
    /// a pass in progress is forgotten when the indicator's device or weight channel changed.
    public mutating func reconfigure(config: WeighbridgeConfig, channels: WeighbridgeChannels) {
        if config.device != self.config.device || channels.weight != self.channels.weight {
            pass = nil
            lastPollTime = nil
        }
        self.config = config
        self.channels = channels
        pairing = config.resolvedPairing(channels)
    }

    public func openTicket(id: String) -> Ticket? { openTickets.first { $0.id == id } }

    /// Whether a truck is on the scale (a pass is in progress).
    public var isPassInProgress: Bool { pass != nil }

    // MARK: - Readings

    /// Feeds the readings of one poll (or several, in time order) of the weighbridge's indicator.
    public mutating func consume(_ readings: [Reading]) -> [WeighbridgeOutput] {
        var out: [WeighbridgeOutput] = []
        var poll = Poll()
        for r in readings where r.device == config.device {
            if poll[r.channel] != nil {
                step(poll, &out)
                poll.readings.removeAll(keepingCapacity: true)
            }
            poll.readings.append(r)
        }
        if !poll.isEmpty { step(poll, &out) }
        return out
    }

    /// One poll's readings: a handful, so a linear search beats hashing channel names.
    struct Poll {
        var readings: [Reading] = []
        var isEmpty: Bool { readings.isEmpty }
        subscript(channel: ChannelID) -> Reading? { readings.first { $0.channel == channel } }
    }

    private mutating func step(_ poll: Poll, _ out: inout [WeighbridgeOutput]) {
        guard let w = poll[channels.weight] else { return }
        if let last = lastPollTime, w.time < last { pass?.window.removeAll() }
        lastPollTime = w.time
        guard w.quality == .good, let weight = Self.mass(of: w) else {
            pass?.window.removeAll()
            return
        }
        let zeroBand = Mass(channels.zeroBand, w.unit ?? .kilogram) ?? .zero
        guard weight > zeroBand else { return endPass(at: w.time, &out) }
        var p = pass ?? Pass(start: w.time, peak: weight)
        p.peak = max(p.peak, weight)
        if let check = config.spreadCheck { p.observe(w.time, weight, window: check.window) }

        let status = statusBits(poll)
        if status.overRange == true && !p.overRangeSeen {
            p.overRangeSeen = true
            if let id = p.openedTicket, let i = openTickets.firstIndex(where: { $0.id == id }) {
                openTickets[i].insert(.overRange)
            }
            out.append(event(.weighbridgeOverRange, .warning, w.time,
                             "weighbridge '\(config.name)' reported over range with a truck on the scale",
                             ["weight_kg": weight.kilogramsString]))
        }
        var snapshot = WeighingSnapshot(
            time: w.time, weight: weight, rawWeight: w.raw, status: status.bits,
            indicatorTicket: text(poll, channels.ticketNumber), vehicle: text(poll, channels.vehicle),
            material: text(poll, channels.material), spread: nil, clockSynchronized: true)
        snapshot.spread = config.spreadCheck.flatMap { p.spread(at: w.time, window: $0.window) }
        snapshot.clockSynchronized = [channels.weight, channels.ticketNumber, channels.vehicle, channels.material]
            .compactMap { $0 }.map { poll[$0] }.compactMap { $0 }.allSatisfy(\.clockSynchronized)
            && status.clockSynchronized

        if let hold = self.hold(weight: weight, status: status, snapshot: snapshot) {
            if hold != .belowMinimum { p.lastHold = hold }
        } else if let captured = p.captured {
            let difference = weight > captured ? weight - captured : captured - weight
            if difference > zeroBand && !p.notZeroedReported {
                p.notZeroedReported = true
                out.append(event(.scaleNotZeroed, .warning, w.time,
                                 "weighbridge '\(config.name)': a second stable weight without the scale returning to "
                                 + "zero since the last capture; it is not captured (each truck must leave the scale)",
                                 ["weight_kg": weight.kilogramsString, "captured_kg": captured.kilogramsString]))
            }
        } else {
            p.captured = weight
            var flags: [Ticket.Flag] = []
            if p.overRangeSeen { flags.append(.overRange) }
            if !snapshot.clockSynchronized { flags.append(.clockUnsynchronized) }
            p.openedTicket = capture(snapshot, flags: flags, &out)
        }
        pass = p
    }

    private mutating func endPass(at time: UTCInstant, _ out: inout [WeighbridgeOutput]) {
        guard let p = pass else { return }
        pass = nil
        guard p.captured == nil, p.peak > config.minWeight else { return }
        let reason = p.lastHold ?? .motion
        out.append(event(.weighingMissed, .warning, time,
                         "weighbridge '\(config.name)': a truck (up to \(p.peak.kilogramsString) kg) left the scale "
                         + "without a stable weight (\(reason.explanation)); no weighing was captured",
                         ["reason": reason.rawValue, "peak_kg": p.peak.kilogramsString, "since": p.start.rfc3339]))
    }

    /// What keeps the current weight from being captured, or nil.
    private func hold(weight: Mass, status: StatusReading, snapshot: WeighingSnapshot) -> Hold? {
        if weight <= config.minWeight { return .belowMinimum }
        if !status.allGood { return .statusNotGood }
        if status.overRange == true { return .overRange }
        if status.underRange == true { return .underRange }
        if status.stable == false || status.motion == true { return .motion }
        if status.net == true { return .netMode }
        if let check = config.spreadCheck, !((snapshot.spread.map { $0 <= check.tolerance }) ?? false) {
            return .spread
        }
        switch config.mode {
        case .onePass:
            if snapshot.vehicle == nil { return .noVehicle }
        case .twoPass:
            if pairing == .ticketNumber && snapshot.indicatorTicket == nil { return .noTicketNumber }
            if pairing == .vehicleID && snapshot.vehicle == nil { return .noVehicle }
        }
        return nil
    }

    /// Makes a ticket of a captured weighing; returns the id of a ticket it opened.
    private mutating func capture(_ snapshot: WeighingSnapshot, flags: [Ticket.Flag],
                                  _ out: inout [WeighbridgeOutput]) -> String? {
        switch config.mode {
        case .onePass:
            let vehicle = snapshot.vehicle ?? ""  // a one-pass capture waits for the vehicle id (`hold`)
            guard let preset = config.presetTare(for: vehicle), snapshot.weight > preset else {
                let why = config.presetTare(for: vehicle) == nil ? "vehicle '\(vehicle)' has no preset tare"
                    : "the weight is not above the vehicle's preset tare"
                out.append(event(.weighingRejected, .warning, snapshot.time,
                                 "weighbridge '\(config.name)': \(snapshot.weight.kilogramsString) kg captured but no "
                                 + "ticket made: \(why)",
                                 ["weight_kg": snapshot.weight.kilogramsString, "vehicle": vehicle]))
                return nil
            }
            var ticket = newTicket(snapshot, status: .closed, flags: flags + [.presetTare])
            ticket.gross = snapshot.weight
            ticket.tare = preset
            ticket.net = snapshot.weight - preset
            ticket.tareSource = .preset
            ticket.direction = .received
            ticket.closedAt = snapshot.time
            out.append(.ticketClosed(ticket))
            return nil
        case .twoPass:
            let match: Int? = switch pairing {
            case .ticketNumber: openTickets.firstIndex { $0.indicatorTicket == snapshot.indicatorTicket }
            case .vehicleID: openTickets.firstIndex { $0.vehicle == snapshot.vehicle }
            case .order: openTickets.indices.first
            }
            guard let match else {
                let ticket = newTicket(snapshot, status: .open, flags: flags)
                openTickets.append(ticket)
                out.append(.ticketOpened(ticket))
                return ticket.id
            }
            var ticket = openTickets.remove(at: match)
            close(&ticket, outbound: snapshot, flags: flags)
            out.append(.ticketClosed(ticket))
            return nil
        }
    }

    private mutating func newTicket(_ snapshot: WeighingSnapshot, status: Ticket.Status, flags: [Ticket.Flag]) -> Ticket {
        defer { nextTicketNumber += 1 }
        return Ticket(
            id: "\(config.name)-\(nextTicketNumber)", weighbridge: config.name, device: config.device, revision: 1,
            status: status, material: snapshot.material ?? config.defaultMaterial,
            materialSource: snapshot.material == nil ? .configured : .channel, vehicle: snapshot.vehicle,
            indicatorTicket: snapshot.indicatorTicket, inbound: snapshot, flags: flags)
    }

    /// Closes a two-pass ticket with its second weighing: the heavier weighing is the gross, the lighter the tare.
    private func close(_ ticket: inout Ticket, outbound: WeighingSnapshot, flags: [Ticket.Flag]) {
        let inbound = ticket.inbound.weight
        ticket.revision += 1
        ticket.status = .closed
        ticket.outbound = outbound
        ticket.gross = max(inbound, outbound.weight)
        ticket.tare = min(inbound, outbound.weight)
        ticket.net = ticket.gross! - ticket.tare!
        ticket.tareSource = .weighed
        ticket.direction = inbound >= outbound.weight ? .received : .dispatched
        ticket.closedAt = outbound.time
        if ticket.materialSource == .configured, let material = outbound.material {
            ticket.material = material
            ticket.materialSource = .channel
        }
        if ticket.vehicle == nil { ticket.vehicle = outbound.vehicle }
        if ticket.indicatorTicket == nil { ticket.indicatorTicket = outbound.indicatorTicket }
        for f in flags { ticket.insert(f) }
    }

    // MARK: - Corrections

    /// Sets the material of a ticket: `ticket` is its latest revision (an open ticket of this tally, or a closed
    /// one as the ledger has it). Gives the ticket's next revision (flag `manual`) and a `ticket_corrected` event.
    /// A correction never touches a device.
    public mutating func setMaterial(ticket: Ticket, material: String, operator operatorName: String, reason: String,
                                     at time: UTCInstant) throws(TicketCorrectionError) -> [WeighbridgeOutput] {
        let material = trimmedText(material)
        if material.isEmpty { throw .missing("material") }
        var revised = try revise(ticket, .setMaterial(from: ticket.material, to: material), operatorName, reason, time)
        if material == ticket.material { throw .unchanged(ticket.id) }
        revised.material = material
        revised.materialSource = .manual
        if let i = openTickets.firstIndex(where: { $0.id == ticket.id }) { openTickets[i] = revised }
        return [.ticketRevised(revised),
                event(.ticketCorrected, .info, time,
                      "ticket \(ticket.id): material '\(ticket.material)' → '\(material)' by \(operatorName): \(reason)",
                      ["ticket": ticket.id, "operator": operatorName, "reason": reason, "material": material,
                       "previous_material": ticket.material])]
    }

    /// Voids a false ticket: `ticket` is its latest revision (see `setMaterial`). A voided open ticket no longer
    /// waits for a second weighing. Gives the voided revision (flag `manual`) and a `ticket_voided` event.
    public mutating func void(ticket: Ticket, operator operatorName: String, reason: String,
                              at time: UTCInstant) throws(TicketCorrectionError) -> [WeighbridgeOutput] {
        var revised = try revise(ticket, .void, operatorName, reason, time)
        revised.status = .voided
        openTickets.removeAll { $0.id == ticket.id }
        if pass?.openedTicket == ticket.id { pass?.openedTicket = nil }
        return [.ticketRevised(revised),
                event(.ticketVoided, .info, time, "ticket \(ticket.id) voided by \(operatorName): \(reason)",
                      ["ticket": ticket.id, "operator": operatorName, "reason": reason])]
    }

    private func revise(_ ticket: Ticket, _ action: Ticket.Correction.Action, _ operatorName: String, _ reason: String,
                        _ time: UTCInstant) throws(TicketCorrectionError) -> Ticket {
        guard ticket.weighbridge == config.name else { throw .otherWeighbridge(ticket.id) }
        if trimmedText(operatorName).isEmpty { throw .missing("operator") }
        if trimmedText(reason).isEmpty { throw .missing("reason") }
        let open = openTickets.first { $0.id == ticket.id }
        switch ticket.status {
        case .voided: throw .voided(ticket.id)
        case .open:
            guard let open else { throw .notOpen(ticket.id) }
            if open.revision != ticket.revision { throw .staleRevision(ticket.id, latest: open.revision) }
        case .closed:
            if let open { throw .staleRevision(ticket.id, latest: open.revision) }
        }
        var revised = ticket
        revised.revision += 1
        revised.insert(.manual)
        revised.corrections.append(Ticket.Correction(action: action, revision: revised.revision, time: time,
                                                     operatorName: operatorName, reason: reason))
        return revised
    }

    // MARK: - Reading values

    private struct StatusReading {
        var bits: [WeighingSnapshot.StatusBit] = []
        var allGood = true
        var clockSynchronized = true
        var stable: Bool?, motion: Bool?, overRange: Bool?, underRange: Bool?, net: Bool?
    }

    private func statusBits(_ poll: Poll) -> StatusReading {
        var s = StatusReading()
        for (role, channel) in channels.statusBits {
            guard let r = poll[channel], r.quality == .good, let value = Self.bool(r.value) else {
                s.allGood = false
                continue
            }
            s.clockSynchronized = s.clockSynchronized && r.clockSynchronized
            s.bits.append(.init(role: role.rawValue, channel: channel, value: value, raw: r.raw))
            switch role {
            case .stable: s.stable = value
            case .motion: s.motion = value
            case .overRange: s.overRange = value
            case .underRange: s.underRange = value
            default: s.net = value
            }
        }
        return s
    }

    /// A good reading's value as text (trimmed; nil when empty or not good).
    private func text(_ poll: Poll, _ channel: ChannelID?) -> String? {
        guard let channel, let r = poll[channel], r.quality == .good else { return nil }
        let s: String
        switch r.value {
        case .string(let v): s = trimmedText(v)
        case .int(let v): s = String(v)
        case .uint(let v): s = String(v)
        case .double(let d) where d.isFinite && d.rounded() == d && abs(d) < 1e15: s = String(Int64(d))
        case .double(let d): s = String(d)
        case .bool, .none: return nil
        }
        return s.isEmpty ? nil : s
    }

    static func bool(_ value: ReadingValue) -> Bool? {
        switch value {
        case .bool(let b): b
        case .int(let v): v != 0
        case .uint(let v): v != 0
        default: nil
        }
    }

    /// A weight reading as an exact mass: integers exactly, floats to the milligram; kg when the unit is absent.
    static func mass(of r: Reading) -> Mass? {
        let unit = r.unit ?? .kilogram
        guard let perUnit = Mass.milligramsPerUnit(unit) else { return nil }
        switch r.value {
        case .int(let v):
            let (mg, overflow) = v.multipliedReportingOverflow(by: perUnit)
            return overflow ? nil : Mass(milligrams: mg)
        case .uint(let v):
            guard v <= UInt64(Int64.max / perUnit) else { return nil }
            return Mass(milligrams: Int64(v) * perUnit)
        case .double(let d): return Mass(d, unit)
        default: return nil
        }
    }

    private func event(_ kind: Event.Kind, _ severity: Event.Severity, _ time: UTCInstant, _ message: String,
                       _ attributes: [String: String]) -> WeighbridgeOutput {
        .event(Event(kind: kind, severity: severity, time: time, device: config.device, message: message,
                     attributes: attributes.merging(["weighbridge": config.name]) { mine, _ in mine }))
    }
}

/// Why a correction was refused.
public enum TicketCorrectionError: Error, Sendable, Hashable {
    /// The ticket belongs to another weighbridge.
    case otherWeighbridge(String)
    /// The ticket says open but this tally has no such open ticket (it closed or was voided meanwhile).
    case notOpen(String)
    /// The ticket given is not its latest revision.
    case staleRevision(String, latest: Int)
    case voided(String)
    /// The material given is the ticket's material already.
    case unchanged(String)
    /// A required text (material, operator, reason) is empty.
    case missing(String)
}

// MARK: - The pass in progress

extension WeighbridgeTally {
    /// What kept a weight from being captured.
    enum Hold: String, Sendable, Hashable, Codable {
        case belowMinimum = "below_min_weight"
        case statusNotGood = "status_not_read"
        case motion
        case overRange = "over_range"
        case underRange = "under_range"
        case netMode = "net_mode"
        case spread = "not_stable_long_enough"
        case noTicketNumber = "no_ticket_number"
        case noVehicle = "no_vehicle_id"

        var explanation: String {
            switch self {
            case .belowMinimum: "below the minimum weight"
            case .statusNotGood: "the indicator's status bits were not read"
            case .motion: "the indicator never said stable"
            case .overRange: "over range"
            case .underRange: "under range"
            case .netMode: "the indicator was in net mode"
            case .spread: "the weight did not stay within the stable tolerance for the stable window"
            case .noTicketNumber: "no ticket number was read"
            case .noVehicle: "no vehicle id was read"
            }
        }
    }

    struct Pass: Sendable, Hashable, Codable {
        var start: UTCInstant
        var peak: Mass
        /// The weight captured in this pass.
        var captured: Mass?
        /// The ticket this pass's capture opened, while it is open.
        var openedTicket: String?
        var overRangeSeen = false
        var notZeroedReported = false
        /// What held the capture back last while the weight was above the minimum.
        var lastHold: Hold?
        /// The software check's good weights, oldest first: the last at or before the window's start, then all after.
        var window: [Sample] = []

        struct Sample: Sendable, Hashable, Codable {
            var time: UTCInstant
            var weight: Mass
        }

        init(start: UTCInstant, peak: Mass) {
            self.start = start
            self.peak = peak
        }

        mutating func observe(_ time: UTCInstant, _ weight: Mass, window length: Duration) {
            window.append(Sample(time: time, weight: weight))
            let start = time.nanosecondsSinceEpoch - nanoseconds(length)
            while window.count >= 2 && window[1].time.nanosecondsSinceEpoch <= start { window.removeFirst() }
        }

        /// Highest minus lowest weight over the window ending at `time`, or nil when the readings do not reach
        /// back to its start.
        func spread(at time: UTCInstant, window length: Duration) -> Mass? {
            guard let first = window.first,
                  first.time.nanosecondsSinceEpoch <= time.nanosecondsSinceEpoch - nanoseconds(length) else { return nil }
            let weights = window.map(\.weight)
            return weights.max()! - weights.min()!
        }
    }
}

func nanoseconds(_ d: Duration) -> Int64 {
    let (seconds, attoseconds) = d.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}
