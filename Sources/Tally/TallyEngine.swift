import KilnTallyCore

/// What drives the tally: readings in store order, and the clock ticks the daemon records (so that shifts close
/// on time even when no device answers, and a replay of the store closes them at the same instants).
public enum TallyInput: Sendable, Hashable {
    case reading(sequence: UInt64, Reading)
    case tick(sequence: UInt64, time: UTCInstant)
    /// A new configuration for the tally (stored like a reading, so a replay applies it at the same point). It
    /// takes effect at the end of the shift in progress; before the first input it takes effect at once.
    indirect case configure(sequence: UInt64, time: UTCInstant, setup: TallyEngine.Setup)

    public var sequence: UInt64 {
        switch self {
        case .reading(let s, _), .tick(let s, _), .configure(let s, _, _): s
        }
    }

    public var time: UTCInstant {
        switch self {
        case .reading(_, let r): r.time
        case .tick(_, let t), .configure(_, let t, _): t
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
///
/// **Configuration changes.** A `.configure` input stages a new `Setup`; it takes effect at the end of the shift in
/// progress (the boundary): new and changed streams report from the next shift on (they start reading at once, so
/// their first shift starts from an interpolated value), removed and changed ones report until the boundary; a new
/// shift calendar governs from the boundary (see `ShiftTimeline`); weighbridges change when the first input at or
/// after the boundary arrives (open tickets of a changed weighbridge stay open), stocks when the last shift before
/// the boundary has closed. Every record names the hash of the configuration in force for it: a report the one in
/// force during its shift, a ticket the one in force when it was sealed. A second change before the boundary
/// supersedes the first. Before any input the change takes effect at once.
public struct TallyEngine: Sendable {
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
        /// The setups in force over time, oldest first: the one in force for the oldest shift not yet closed, and
        /// at most one staged for the next boundary.
        public var eras: [SetupEra] = []
        /// When a staged setup's weighbridges take over (the staged era's start), until they have.
        public var switchAt: UTCInstant?
        /// The shift calendars in force over time.
        public var timeline: ShiftTimeline?
        public var streams: [StreamSlot] = []
        public var weighbridges: [String: WeighbridgeTally] = [:]
        /// Tickets closed (or revised) per shift start, waiting for that shift's report: (material, net, receipt).
        public var receipts: [Int64: [Receipt]] = [:]
        /// The last revision of recent reports, for amendments (the last `keptReports`).
        public var reports: [Int64: ReportState] = [:]
        /// The hash of the last record sealed.
        public var chainHead: String = HashChain.genesis
        /// Per weighbridge, the readings of its indicator's poll in progress (a poll's readings are consecutive in
        /// the store; it is complete when a channel repeats or a clock tick comes).
        public var pendingPolls: [PendingPoll] = []
        public var stocks: [String: StockTracker] = [:]
        /// The latest revision of recent tickets (open and closed), for corrections: the last `keptTickets`.
        public var tickets: [String: Ticket] = [:]
        public var ticketOrder: [String] = []

        public init() {}
    }

    /// A weighbridge indicator's poll in progress.
    public struct PendingPoll: Sendable, Hashable, Codable {
        public var weighbridge: String
        public var readings: [Reading] = []
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
        /// The configuration in force during the shift, which every revision is rendered with.
        public var plan: ReportPlan
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

    public private(set) var state: State
    /// The setup in force now (for the latest input).
    public var setup: Setup { era(at: state.latest).setup }
    /// Shift lookups for the stream arithmetic, with the shifts found recently (not part of the state: a pure
    /// cache). Building a `Shift` formats its local times, so asking the calendar for every reading would cost more
    /// than everything else the tally does.
    private var spans: TimelineSpans
    /// What each input is matched against, flattened out of the state so matching copies no configuration.
    private var streamKeys: [(device: DeviceID, index: Int)] = []
    private var stockKeys: [(device: DeviceID, channel: ChannelID, material: String)] = []
    /// Per weighbridge (in `state.pendingPolls` order): its indicator device.
    private var bridgeKeys: [(device: DeviceID, name: String)] = []
    /// The grace period of the setup in force, in nanoseconds (compared for every input).
    private var graceNanoseconds: Int64 = 0

    /// The timeline's shifts as spans, answering from the few found last while instants stay inside them.
    struct TimelineSpans: ShiftSpanLookup, Sendable {
        let timeline: ShiftTimeline
        private var recent: [ShiftSpan] = []

        init(_ timeline: ShiftTimeline) { self.timeline = timeline }

        mutating func span(at t: UTCInstant) -> ShiftSpan? {
            for s in recent where s.contains(t) { return s }
            return spans(t, t).first
        }

        mutating func spans(_ a: UTCInstant, _ b: UTCInstant) -> [ShiftSpan] {
            if let s = recent.first(where: { $0.contains(a) }), s.contains(b) { return [s] }
            let found = timeline.shifts(overlapping: a..<UTCInstant(nanosecondsSinceEpoch: b.nanosecondsSinceEpoch + 1)).map(ShiftSpan.init)
            for s in found where !recent.contains(s) { recent.append(s) }
            if recent.count > 8 { recent.removeFirst(recent.count - 8) }
            return found
        }
    }

    /// An engine on `state`. `setup` applies to a fresh state only: a restored state carries the setups in force
    /// (a different configuration reaches it as a `.configure` input and takes effect at the next boundary).
    public init(setup: Setup, state: State = State()) {
        var s = state
        if s.eras.isEmpty {
            s.eras = [SetupEra(from: nil, setup: setup)]
            s.timeline = ShiftTimeline(setup.calendar)
            s.streams = setup.streams.map { StreamSlot(setup: $0, tally: StreamTally(source: $0.source)) }
            for w in setup.weighbridges where s.weighbridges[w.config.name] == nil {
                s.weighbridges[w.config.name] = WeighbridgeTally(config: w.config, channels: w.channels)
            }
            for stock in setup.stocks where s.stocks[stock.config.material] == nil {
                s.stocks[stock.config.material] = StockTracker(stock.config, tonnesPerUnit: stock.tonnesPerUnit)
            }
        }
        let timeline = s.timeline ?? ShiftTimeline(s.eras[0].setup.calendar)
        s.timeline = timeline
        self.state = s
        spans = TimelineSpans(timeline)
        rebuildKeys()
    }

    /// The era in force at `t` (the first for nil).
    private func era(at t: UTCInstant?) -> SetupEra {
        guard let t else { return state.eras[0] }
        return state.eras.last { ($0.from ?? t) <= t } ?? state.eras[0]
    }

    private var timeline: ShiftTimeline { spans.timeline }

    private mutating func setTimeline(_ t: ShiftTimeline) {
        state.timeline = t
        spans = TimelineSpans(t)
    }

    private mutating func rebuildKeys() {
        let current = era(at: state.latest).setup
        graceNanoseconds = current.grace.nanosecondsClamped
        streamKeys = state.streams.indices.map { (state.streams[$0].setup.source.device, $0) }
        stockKeys = state.stocks.keys.sorted().map { m in (state.stocks[m]!.device, state.stocks[m]!.channel, m) }
        let order = current.weighbridges.map(\.config.name)
        bridgeKeys = state.weighbridges.keys.sorted { (order.firstIndex(of: $0) ?? .max, $0) < (order.firstIndex(of: $1) ?? .max, $1) }
            .map { (state.weighbridges[$0]!.config.device, $0) }
        // The polls in progress line up with `bridgeKeys`, so matching a reading needs no hashing.
        let polls = state.pendingPolls
        state.pendingPolls = bridgeKeys.map { key in polls.first { $0.weighbridge == key.name } ?? PendingPoll(weighbridge: key.name) }
    }

    /// Consumes one input (ignored if its sequence number was consumed before, so a replay from an older position
    /// is harmless).
    public mutating func consume(_ input: TallyInput) -> [TallyOutput] {
        guard input.sequence > state.lastSequence else { return [] }
        state.lastSequence = input.sequence
        var out: [TallyOutput] = []
        let t = input.time
        if state.latest.map({ t > $0 }) ?? true { state.latest = t }
        if let at = state.switchAt, t >= at { out += switchWeighbridges(at: t) }
        switch input {
        case .configure(_, _, let new):
            out += configure(new, at: t)
            if state.nextEnd == nil { return out }
        case .reading(_, let r):
            if state.nextEnd == nil { state.nextToClose = timeline.shift(containing: t) }
            if r.device == Self.correctionDevice && r.channel == Self.correctionChannel {
                out += correct(r)
                break
            }
            for key in streamKeys where key.device == r.device {
                let amendments = state.streams[key.index].tally.consume(r, shifts: &spans)
                for a in amendments { out += amend(slot: key.index, a, at: t) }
            }
            if let end = state.nextEnd {
                for key in stockKeys where key.device == r.device && key.channel == r.channel {
                    state.stocks[key.material]!.consume(r, shiftEnd: end)
                }
            }
            for (i, key) in bridgeKeys.enumerated() where key.device == r.device {
                if state.pendingPolls[i].readings.contains(where: { $0.channel == r.channel }) { out += flushPoll(i) }
                state.pendingPolls[i].readings.append(r)
            }
        case .tick:
            if state.nextEnd == nil { state.nextToClose = timeline.shift(containing: t) }
            for i in bridgeKeys.indices { out += flushPoll(i) }
        }
        // Close every shift whose end plus grace has passed.
        while let end = state.nextEnd, let latest = state.latest,
              latest.nanosecondsSinceEpoch >= end.nanosecondsSinceEpoch + graceNanoseconds, let shift = state.nextToClose {
            out += close(shift, at: latest)
            state.nextToClose = timeline.shift(after: shift)
            retire(before: state.nextToClose!.start)
        }
        return out
    }

    /// The running totals of the shift in progress (the one the latest input falls in): per stream the mass fed
    /// so far, its coverage of the time elapsed and its flag; receipts per material. Not a ledger record — the
    /// figures change until the shift closes — so it carries no hash. Nil before the first input.
    public func currentShift() -> [String: JSONValue]? {
        guard let latest = state.latest, state.nextEnd != nil else { return nil }
        let shift = timeline.shift(containing: latest)
        let plan = era(at: shift.start).setup.plan
        var figures: [String: StreamShiftFigures] = [:]
        for slot in state.streams where slot.covers(shift.start) {
            figures[slot.name] = slot.tally.openFigures(shiftStart: shift.start) ?? StreamShiftFigures(shift: shift.id)
        }
        let receipts = state.receipts[shift.start.nanosecondsSinceEpoch] ?? []
        return TallyRecords.current(shift: shift, asOf: latest, plan: plan, streams: figures, receipts: receipts)
    }

    // MARK: configuration changes

    /// Stages `new` for the end of the shift in progress (or applies it at once before the first input).
    private mutating func configure(_ new: Setup, at time: UTCInstant) -> [TallyOutput] {
        if state.nextEnd == nil && state.eras.count == 1 {
            // Nothing accounted yet: the new setup simply replaces the first.
            guard new != state.eras[0].setup else { return [] }
            let kept = state.lastSequence, head = state.chainHead
            var fresh = TallyEngine(setup: new).state
            fresh.lastSequence = kept
            fresh.chainHead = head
            state = fresh
            setTimeline(fresh.timeline!)
            rebuildKeys()
            return [.event(Event(kind: .tallyConfigChanged, severity: .info, time: time,
                                 message: "tally configuration \(new.configHash) in force",
                                 attributes: ["config_hash": new.configHash]))]
        }
        let at = max(time, state.latest ?? time)
        guard new != state.eras.last!.setup else { return [] }  // the one in force, or the one already staged
        var timeline = self.timeline
        // A change still waiting for its boundary is superseded.
        if let last = state.eras.last, let from = last.from, from > at {
            state.eras.removeLast()
            state.streams.removeAll { $0.from == from }
            for i in state.streams.indices where state.streams[i].until == from { state.streams[i].until = nil }
            state.switchAt = nil
            timeline.change(to: state.eras.last!.setup.calendar, at: from)
        }
        guard new != state.eras.last!.setup else {
            setTimeline(timeline)
            rebuildKeys()
            return []
        }
        let boundary = timeline.shift(containing: at).end
        if new.calendar != state.eras.last!.setup.calendar { timeline.change(to: new.calendar, at: boundary) }
        setTimeline(timeline)
        state.eras.append(SetupEra(from: boundary, setup: new))
        state.switchAt = boundary
        for i in state.streams.indices where state.streams[i].until == nil && !new.streams.contains(state.streams[i].setup) {
            state.streams[i].until = boundary
        }
        for s in new.streams where !state.streams.contains(where: { $0.until == nil && $0.setup == s }) {
            state.streams.append(StreamSlot(setup: s, tally: StreamTally(source: s.source), from: boundary))
        }
        rebuildKeys()
        return [.event(Event(kind: .tallyConfigChanged, severity: .info, time: time,
                             message: "tally configuration \(new.configHash) takes effect at the shift boundary \(boundary.rfc3339)",
                             attributes: ["config_hash": new.configHash, "effective": boundary.rfc3339]))]
    }

    /// The first input at or after a staged setup's boundary: its weighbridges take over. A changed weighbridge
    /// keeps its open tickets; a removed one's open tickets can no longer close (an event names them).
    private mutating func switchWeighbridges(at time: UTCInstant) -> [TallyOutput] {
        state.switchAt = nil
        let new = era(at: state.latest).setup
        var out: [TallyOutput] = []
        for name in state.weighbridges.keys.sorted() where !new.weighbridges.contains(where: { $0.config.name == name }) {
            out += flushPoll(named: name)
            let open = state.weighbridges.removeValue(forKey: name)!.openTickets
            if !open.isEmpty {
                out.append(.event(Event(kind: .tallyConfigChanged, severity: .warning, time: time,
                                        message: "weighbridge \(name) is no longer configured; its open tickets \(open.map(\.id).joined(separator: ", ")) will not close",
                                        attributes: ["weighbridge": name])))
            }
        }
        for w in new.weighbridges {
            if var existing = state.weighbridges[w.config.name] {
                guard existing.config != w.config || existing.channels != w.channels else { continue }
                out += flushPoll(named: w.config.name)
                existing.reconfigure(config: w.config, channels: w.channels)
                state.weighbridges[w.config.name] = existing
            } else {
                state.weighbridges[w.config.name] = WeighbridgeTally(config: w.config, channels: w.channels)
            }
        }
        rebuildKeys()
        return out
    }

    /// After closing every shift before `start`: stream slots and setups that reported only on those shifts go,
    /// and a setup that takes effect at `start` brings its stocks.
    private mutating func retire(before start: UTCInstant) {
        var changed = false
        if state.streams.contains(where: { $0.until.map { $0 <= start } ?? false }) {
            state.streams.removeAll { $0.until.map { $0 <= start } ?? false }
            changed = true
        }
        while state.eras.count > 1, let from = state.eras[1].from, from <= start {
            state.eras.removeFirst()
            let stocks = state.eras[0].setup.stocks
            for material in state.stocks.keys.sorted() where !stocks.contains(where: { $0.config.material == material }) {
                state.stocks.removeValue(forKey: material)
            }
            for s in stocks {
                let tracker = state.stocks[s.config.material]
                if tracker.map({ $0.device != s.config.device || $0.channel != s.config.channel || $0.tonnesPerUnit != s.tonnesPerUnit }) ?? true {
                    state.stocks[s.config.material] = StockTracker(s.config, tonnesPerUnit: s.tonnesPerUnit)
                }
            }
            changed = true
        }
        // Keep the calendars the kept reports were closed under (a late reading may still amend them).
        if let oldest = state.reports.values.map(\.shift.start).min(), var timeline = state.timeline, !timeline.changes.isEmpty {
            timeline.forget(before: oldest)
            if timeline != state.timeline { setTimeline(timeline) }
        }
        if changed { rebuildKeys() }
    }

    // MARK: weighbridges and corrections

    /// Feeds weighbridge `index`'s poll in progress to it.
    private mutating func flushPoll(_ index: Int) -> [TallyOutput] {
        guard !state.pendingPolls[index].readings.isEmpty else { return [] }
        // Swapped out and back, so the buffer is reused poll after poll.
        var poll: [Reading] = []
        swap(&poll, &state.pendingPolls[index].readings)
        let outputs = state.weighbridges[bridgeKeys[index].name]?.consume(poll) ?? []
        poll.removeAll(keepingCapacity: true)
        swap(&poll, &state.pendingPolls[index].readings)
        return outputs.isEmpty ? [] : outputs.flatMap { ticketOutput($0) }
    }

    private mutating func flushPoll(named weighbridge: String) -> [TallyOutput] {
        bridgeKeys.firstIndex { $0.name == weighbridge }.map { flushPoll($0) } ?? []
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
            let shift = timeline.shift(containing: closedAt)
            let receipt = Receipt(ticket: t.id, material: t.material, net: t.net ?? .zero, counts: t.isReceipt)
            let key = shift.start.nanosecondsSinceEpoch
            if var report = state.reports[key] {
                // The ticket's shift has closed: its report gets a new revision.
                report.receipts.removeAll { $0.ticket == t.id }
                report.receipts.append(receipt)
                state.reports[key] = report
                // The revision is made now (a correction, or a late closing), not when the ticket closed.
                return seal(ticket: t, shift: shift.id) + revise(key, at: max(closedAt, state.latest ?? closedAt))
            }
            state.receipts[key, default: []].removeAll { $0.ticket == t.id }
            state.receipts[key, default: []].append(receipt)
            return seal(ticket: t, shift: shift.id)
        }
    }

    // MARK: shifts

    private mutating func close(_ shift: Shift, at time: UTCInstant) -> [TallyOutput] {
        var streams: [String: StreamShiftFigures] = [:]
        for i in state.streams.indices {
            let figures = state.streams[i].tally.close(shift)
            if state.streams[i].covers(shift.start) { streams[state.streams[i].name] = figures }
        }
        let key = shift.start.nanosecondsSinceEpoch
        var report = ReportState(shift: shift, revision: 1, streams: streams,
                                 receipts: state.receipts.removeValue(forKey: key) ?? [], closedAt: time,
                                 plan: era(at: shift.start).setup.plan)
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

    private mutating func amend(slot: Int, _ a: StreamTally.Amendment, at time: UTCInstant) -> [TallyOutput] {
        let key = a.shiftStart.nanosecondsSinceEpoch
        // Older than the reports kept, or a shift this slot does not report on: not revised.
        guard let report = state.reports[key], state.streams[slot].covers(a.shiftStart) else { return [] }
        let stream = state.streams[slot].name
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
        TallyRecords.balance(r).filter(\.exceeded).map { b in
            .event(Event(kind: .imbalance, severity: .alarm, time: r.closedAt,
                         message: "shift \(r.shift.id): \(b.material) is out of balance by \(b.imbalance.kilogramsString) kg (tolerance \(r.plan.balanceTolerance.kilogramsString) kg)",
                         attributes: ["shift": r.shift.id.description, "material": b.material, "imbalance_kg": b.imbalance.kilogramsString]))
        }
    }

    // MARK: records

    private mutating func seal(ticket t: Ticket, shift: ShiftID?) -> [TallyOutput] {
        let s = setup
        let record = TallyRecords.ticket(t, site: s.site, node: s.node, shift: shift, configHash: s.configHash)
        return seal(record, kind: .ticket, id: t.id, revision: t.revision)
    }

    private mutating func seal(report r: ReportState) -> [TallyOutput] {
        let record = TallyRecords.report(r)
        return seal(record, kind: .report, id: "\(r.plan.site)/\(r.plan.node)/\(r.shift.id)", revision: r.revision)
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
