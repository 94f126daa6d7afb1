import KilnTallyCore

/// What drives the tally: readings in store order, and the clock ticks the daemon records (so that shifts close
/// on time even when no device answers, and a replay of the store closes them at the same instants).
public enum TallyInput: Sendable, Hashable {
    case reading(sequence: UInt64, Reading)
    case tick(sequence: UInt64, time: UTCInstant)

    public var sequence: UInt64 {
        switch self {
        case .reading(let s, _), .tick(let s, _): s
        }
    }

    public var time: UTCInstant {
        switch self {
        case .reading(_, let r): r.time
        case .tick(_, let t): t
        }
    }
}

/// A record for the ledger (sealed into the chain), or an event.
public enum TallyOutput: Sendable, Hashable {
    /// A sealed ticket or shift-report record: canonical JSON with `prev_hash` and `hash`.
    case record(kind: Kind, id: String, revision: Int, json: [UInt8])
    case event(Event)

    public enum Kind: String, Sendable, Hashable { case ticket, report }
}

/// The tally: pure and deterministic. Inputs (readings and ticks, in store order) go in; sealed ticket and
/// shift-report records and events come out. Its whole position is `State` (Codable): the checkpoint. Feeding the
/// same inputs to the same state always gives the same outputs, byte for byte — that is what makes a restart, or a
/// replay of the store, produce exactly the reports an uninterrupted run would have.
///
/// Shifts close at their end plus `grace` of input time (a reading's or a tick's time). A contribution to a shift
/// already closed (a device back after an outage across its end) produces a new revision of its report.
public struct TallyEngine: Sendable {
    public struct Setup: Sendable {
        public var site: String
        public var node: String
        public var configHash: String
        public var calendar: ShiftCalendar
        public var grace: Duration
        public var streams: [(config: StreamConfig, source: StreamSource)]
        public var weighbridges: [(config: WeighbridgeConfig, channels: WeighbridgeChannels)]
        /// Stocks closing the balance, with their channels' tonnes per unit.
        public var stocks: [(config: StockConfig, tonnesPerUnit: Double)] = []
        /// Above this absolute imbalance (the residual, or the closing discrepancy with a stock) a material's
        /// balance raises an `imbalance` alarm.
        public var balanceTolerance: Mass = Mass(kilograms: 2_000)

        public init(site: String, node: String, configHash: String, calendar: ShiftCalendar, grace: Duration,
                    streams: [(config: StreamConfig, source: StreamSource)],
                    weighbridges: [(config: WeighbridgeConfig, channels: WeighbridgeChannels)]) {
            self.site = site
            self.node = node
            self.configHash = configHash
            self.calendar = calendar
            self.grace = grace
            self.streams = streams
            self.weighbridges = weighbridges
        }
    }

    /// Everything the tally must remember across a restart.
    public struct State: Sendable, Hashable, Codable {
        /// The last input consumed (its store sequence number).
        public var lastSequence: UInt64 = 0
        /// The latest input time seen (closing never goes back when the wall clock does).
        public var latest: UTCInstant?
        /// The earliest shift not yet closed.
        public var nextToClose: Shift? {
            didSet { nextEnd = nextToClose?.end }
        }
        /// `nextToClose`'s end, kept apart so the per-input checks do not copy the whole shift.
        public private(set) var nextEnd: UTCInstant?
        public var streams: [String: StreamTally] = [:]
        public var weighbridges: [String: WeighbridgeTally] = [:]
        /// Tickets closed (or revised) per shift start, waiting for that shift's report: (material, net, receipt).
        public var receipts: [Int64: [Receipt]] = [:]
        /// The last revision of recent reports, for amendments (the last `keptReports`).
        public var reports: [Int64: ReportState] = [:]
        /// The hash of the last record sealed.
        public var chainHead: String = HashChain.genesis
        /// Per weighbridge, the readings of its indicator's poll in progress (a poll's readings are consecutive in
        /// the store; it is complete when a channel repeats or a clock tick comes).
        public var pendingPolls: [String: [Reading]] = [:]
        public var stocks: [String: StockTracker] = [:]
        /// The latest revision of recent tickets (open and closed), for corrections: the last `keptTickets`.
        public var tickets: [String: Ticket] = [:]
        public var ticketOrder: [String] = []

        public init() {}
    }

    public struct Receipt: Sendable, Hashable, Codable {
        public var ticket: String
        public var material: String
        public var net: Mass
        public var counts: Bool
    }

    public struct ReportState: Sendable, Hashable, Codable {
        public var shift: Shift
        public var revision: Int
        public var streams: [String: StreamShiftFigures]
        public var receipts: [Receipt]
        public var closedAt: UTCInstant
        /// Opening and closing stock per material that has a [[stock]].
        public var stocks: [String: StockLevels] = [:]
    }

    public struct StockLevels: Sendable, Hashable, Codable {
        public var opening: Mass?
        public var closing: Mass?
    }

    /// Reports kept in the state for later revisions (three days of three shifts).
    public static let keptReports = 9
    /// Tickets kept in the state for corrections.
    public static let keptTickets = 1_000

    /// Corrections are stored like readings (device `kilntally`, channel `correction`, the value a JSON object:
    /// `{"action": "set_material" | "void", "ticket": ID, "material": M, "operator": NAME, "reason": TEXT}`), so a
    /// replay of the store applies them at the same point. Each makes the ticket's next revision (flag S) and, if
    /// its shift is closed, the next revision of that shift's report.
    public static let correctionDevice: DeviceID = "kilntally"
    public static let correctionChannel: ChannelID = "correction"

    public let setup: Setup
    public private(set) var state: State
    /// Shifts looked up recently (not part of the state: a pure cache). Building a `Shift` formats its local times,
    /// so asking the calendar for every reading would cost more than everything else the tally does.
    private var shiftCache: [ShiftSpan] = []
    /// The calendar behind a reference, so the per-reading lookup closure does not copy its arrays.
    private let calendarBox: CalendarBox
    /// What each input is matched against, flattened out of `setup` so matching copies no configuration.
    private let streamKeys: [(device: DeviceID, name: String)]
    private let stockKeys: [(device: DeviceID, channel: ChannelID, material: String)]
    private let bridgeKeys: [(device: DeviceID, name: String)]

    final class CalendarBox: Sendable {
        let calendar: ShiftCalendar
        init(_ calendar: ShiftCalendar) { self.calendar = calendar }
    }

    public init(setup: Setup, state: State = State()) {
        self.setup = setup
        var s = state
        for (config, source) in setup.streams where s.streams[config.name] == nil {
            s.streams[config.name] = StreamTally(source: source)
        }
        for (config, channels) in setup.weighbridges where s.weighbridges[config.name] == nil {
            s.weighbridges[config.name] = WeighbridgeTally(config: config, channels: channels)
        }
        for (config, factor) in setup.stocks where s.stocks[config.material] == nil {
            s.stocks[config.material] = StockTracker(config, tonnesPerUnit: factor)
        }
        self.state = s
        calendarBox = CalendarBox(setup.calendar)
        streamKeys = setup.streams.map { ($0.config.device, $0.config.name) }
        stockKeys = setup.stocks.map { ($0.config.device, $0.config.channel, $0.config.material) }
        bridgeKeys = setup.weighbridges.map { ($0.config.device, $0.config.name) }
    }

    /// Consumes one input (ignored if its sequence number was consumed before, so a replay from an older position
    /// is harmless).
    public mutating func consume(_ input: TallyInput) -> [TallyOutput] {
        guard input.sequence > state.lastSequence else { return [] }
        state.lastSequence = input.sequence
        var out: [TallyOutput] = []
        let t = input.time
        if state.nextEnd == nil { state.nextToClose = setup.calendar.shift(containing: t) }
        if case .reading(_, let r) = input, r.device == Self.correctionDevice, r.channel == Self.correctionChannel {
            out += correct(r)
        } else if case .reading(_, let r) = input {
            let box = calendarBox
            var cache = shiftCache
            let overlapping: (UTCInstant, UTCInstant) -> [ShiftSpan] = { a, b in
                // [a, b] inside one known shift: that shift, without the calendar.
                if let s = cache.first(where: { $0.contains(a) }), s.contains(b) { return [s] }
                let found = box.calendar.shifts(overlapping: a..<UTCInstant(nanosecondsSinceEpoch: b.nanosecondsSinceEpoch + 1)).map(ShiftSpan.init)
                for s in found where !cache.contains(s) { cache.append(s) }
                if cache.count > 8 { cache.removeFirst(cache.count - 8) }
                return found
            }
            defer { shiftCache = cache }
            for key in streamKeys where key.device == r.device {
                let amendments = state.streams[key.name]!.consume(r, calendar: overlapping)
                for a in amendments { out += amend(stream: key.name, a, at: t) }
            }
            if let end = state.nextEnd {
                for key in stockKeys where key.device == r.device && key.channel == r.channel {
                    state.stocks[key.material]!.consume(r, shiftEnd: end)
                }
            }
            for key in bridgeKeys where key.device == r.device {
                if state.pendingPolls[key.name, default: []].contains(where: { $0.channel == r.channel }) {
                    out += flushPoll(key.name)
                }
                state.pendingPolls[key.name, default: []].append(r)
            }
        } else {
            for key in bridgeKeys { out += flushPoll(key.name) }
        }
        if state.latest.map({ t > $0 }) ?? true { state.latest = t }
        // Close every shift whose end plus grace has passed.
        while let end = state.nextEnd, let latest = state.latest,
              latest.nanosecondsSinceEpoch >= end.adding(setup.grace).nanosecondsSinceEpoch, let shift = state.nextToClose {
            out += close(shift, at: latest)
            state.nextToClose = setup.calendar.shift(after: shift)
        }
        return out
    }

    private mutating func flushPoll(_ weighbridge: String) -> [TallyOutput] {
        guard let poll = state.pendingPolls.removeValue(forKey: weighbridge), !poll.isEmpty else { return [] }
        return state.weighbridges[weighbridge]!.consume(poll).flatMap { ticketOutput($0) }
    }

    private mutating func correct(_ r: Reading) -> [TallyOutput] {
        func refused(_ why: String) -> [TallyOutput] {
            [.event(Event(kind: .ticketCorrected, severity: .warning, time: r.time, message: "correction refused: \(why)"))]
        }
        guard case .string(let text) = r.value, let request = try? CanonicalJSON.parse(text).objectValue,
              let action = request["action"]?.stringValue, let id = request["ticket"]?.stringValue,
              let operatorName = request["operator"]?.stringValue, let reason = request["reason"]?.stringValue else {
            return refused("not a correction object")
        }
        guard let ticket = state.tickets[id], let bridge = state.weighbridges.keys.sorted().first(where: { ticket.weighbridge == $0 }) else {
            return refused("no recent ticket \(id)")
        }
        do {
            let outputs: [WeighbridgeOutput]
            switch action {
            case "set_material":
                outputs = try state.weighbridges[bridge]!.setMaterial(ticket: ticket, material: request["material"]?.stringValue ?? "",
                                                                     operator: operatorName, reason: reason, at: r.time)
            case "void":
                outputs = try state.weighbridges[bridge]!.void(ticket: ticket, operator: operatorName, reason: reason, at: r.time)
            default:
                return refused("unknown action \(action)")
            }
            return outputs.flatMap { ticketOutput($0) }
        } catch {
            return refused("\(error)")
        }
    }

    private mutating func remember(_ t: Ticket) {
        if state.tickets.updateValue(t, forKey: t.id) == nil { state.ticketOrder.append(t.id) }
        while state.ticketOrder.count > Self.keptTickets { state.tickets.removeValue(forKey: state.ticketOrder.removeFirst()) }
    }

    private mutating func ticketOutput(_ o: WeighbridgeOutput) -> [TallyOutput] {
        switch o {
        case .ticketOpened(let t), .ticketClosed(let t), .ticketRevised(let t): remember(t)
        case .event: break
        }
        switch o {
        case .event(let e): return [.event(e)]
        case .ticketOpened(let t): return seal(ticket: t, shift: nil)
        case .ticketClosed(let t), .ticketRevised(let t):
            guard let closedAt = t.closedAt ?? (t.status == .voided ? t.corrections.last?.time : nil) else {
                return seal(ticket: t, shift: nil)
            }
            let shift = setup.calendar.shift(containing: closedAt)
            let receipt = Receipt(ticket: t.id, material: t.material, net: t.net ?? .zero, counts: t.isReceipt)
            let key = shift.start.nanosecondsSinceEpoch
            if var report = state.reports[key] {
                // The ticket's shift has closed: its report gets a new revision.
                report.receipts.removeAll { $0.ticket == t.id }
                report.receipts.append(receipt)
                state.reports[key] = report
                return seal(ticket: t, shift: shift.id) + revise(key, at: closedAt)
            }
            state.receipts[key, default: []].removeAll { $0.ticket == t.id }
            state.receipts[key, default: []].append(receipt)
            return seal(ticket: t, shift: shift.id)
        }
    }

    private mutating func close(_ shift: Shift, at time: UTCInstant) -> [TallyOutput] {
        var streams: [String: StreamShiftFigures] = [:]
        for (config, _) in setup.streams { streams[config.name] = state.streams[config.name]!.close(shift) }
        let key = shift.start.nanosecondsSinceEpoch
        var report = ReportState(shift: shift, revision: 1, streams: streams,
                                 receipts: state.receipts.removeValue(forKey: key) ?? [], closedAt: time)
        for material in state.stocks.keys.sorted() {
            let (opening, closing) = state.stocks[material]!.close()
            report.stocks[material] = StockLevels(opening: opening, closing: closing)
        }
        state.reports[key] = report
        while state.reports.count > Self.keptReports, let oldest = state.reports.keys.min() {
            state.reports.removeValue(forKey: oldest)
        }
        return seal(report: report) + imbalances(report)
    }

    private mutating func amend(stream: String, _ a: StreamTally.Amendment, at time: UTCInstant) -> [TallyOutput] {
        let key = a.shiftStart.nanosecondsSinceEpoch
        guard let report = state.reports[key] else { return [] }  // older than the reports kept: not revised
        state.reports[key]!.streams[stream, default: StreamShiftFigures(shift: report.shift.id)].fed += a.fed
        if let end = a.totalizerEnd { state.reports[key]!.streams[stream]!.totalizerEnd = end }
        return revise(key, at: time)
    }

    private mutating func revise(_ key: Int64, at time: UTCInstant) -> [TallyOutput] {
        state.reports[key]!.revision += 1
        state.reports[key]!.closedAt = time
        return seal(report: state.reports[key]!)
    }

    /// One `imbalance` alarm per material whose balance is off by more than the tolerance.
    private func imbalances(_ r: ReportState) -> [TallyOutput] {
        TallyRecords.balance(r, setup: setup).filter(\.exceeded).map { b in
            .event(Event(kind: .imbalance, severity: .alarm, time: r.closedAt,
                         message: "shift \(r.shift.id): \(b.material) is out of balance by \(b.imbalance.kilogramsString) kg (tolerance \(setup.balanceTolerance.kilogramsString) kg)",
                         attributes: ["shift": r.shift.id.description, "material": b.material, "imbalance_kg": b.imbalance.kilogramsString]))
        }
    }

    // MARK: records

    private mutating func seal(ticket t: Ticket, shift: ShiftID?) -> [TallyOutput] {
        let record = TallyRecords.ticket(t, site: setup.site, node: setup.node, shift: shift, configHash: setup.configHash)
        return seal(record, kind: .ticket, id: t.id, revision: t.revision)
    }

    private mutating func seal(report r: ReportState) -> [TallyOutput] {
        let record = TallyRecords.report(r, setup: setup)
        return seal(record, kind: .report, id: "\(setup.site)/\(setup.node)/\(r.shift.id)", revision: r.revision)
    }

    private mutating func seal(_ record: [String: JSONValue], kind: TallyOutput.Kind, id: String, revision: Int) -> [TallyOutput] {
        // Records are built from integers and strings only, so sealing cannot fail on a float; a failure here is a
        // programming error in the record builders.
        guard let sealed = try? HashChain.seal(record, after: state.chainHead),
              let bytes = try? CanonicalJSON.serialize(.object(sealed)),
              case .string(let hash)? = sealed[HashChain.hashField] else {
            preconditionFailure("a tally record could not be sealed: \(record)")
        }
        state.chainHead = hash
        return [.record(kind: kind, id: id, revision: revision, json: bytes)]
    }
}
