import KilnTallyCore

/// One waste stream's figures within one shift, as they accumulate and as a report shows them.
public struct StreamShiftFigures: Sendable, Hashable, Codable {
    public var shift: ShiftID
    /// Mass fed: the totalizer's deltas when the stream has one (authoritative), else the integrated rate.
    public var fed: Mass = .zero
    /// The totalizer's value at the shift's start and end (interpolated at the boundary when the boundary falls
    /// between two good readings; the first/last good reading inside the shift otherwise, with flag B).
    public var totalizerStart: Mass?
    public var totalizerEnd: Mass?
    /// The rate integrated over the covered time (trapezoid), t; the cross-check when a totalizer is authoritative.
    public var integratedTonnes: Double = 0
    public var rateMin: Double?
    public var rateMax: Double?
    /// Time covered by consecutive good readings no more than `max_gap` apart.
    public var covered: Duration = .zero
    /// Time the rate was above the stream's run threshold.
    public var runTime: Duration = .zero
    /// Every condition seen (the report's flag is `DataFlag.worst` of them).
    public var conditions: Set<DataFlag> = []
    /// Totalizer steps rejected (flag T) and resets seen.
    public var rejectedSteps = 0
    public var resets = 0
    public var rollovers = 0

    public init(shift: ShiftID) { self.shift = shift }

    /// Average rate over the covered time, t/h (nil with no coverage).
    public var rateAverage: Double? {
        covered > .zero ? integratedTonnes / (Double(covered.components.seconds) + Double(covered.components.attoseconds) * 1e-18) * 3600 : nil
    }

    public mutating func noteRate(_ r: Double) {
        rateMin = min(rateMin ?? r, r)
        rateMax = max(rateMax ?? r, r)
    }
}

/// A shift's bounds only: what the per-reading arithmetic needs (a `Shift` also carries its id, crew and local
/// times as strings, which are costly to copy for every reading).
public struct ShiftSpan: Sendable, Hashable {
    public var start: UTCInstant
    public var end: UTCInstant
    public init(start: UTCInstant, end: UTCInstant) {
        self.start = start
        self.end = end
    }
    public init(_ shift: Shift) { self.init(start: shift.start, end: shift.end) }
    public func contains(_ t: UTCInstant) -> Bool { start <= t && t < end }
}

/// What a stream is fed from: a totalizer, a rate, or both (the totalizer authoritative, the integration a
/// cross-check whose disagreement is reported).
public struct StreamSource: Sendable, Hashable, Codable {
    public var device: DeviceID
    public var totalizer: ChannelID?
    public var totalizerParameters: TotalizerTracker.Parameters?
    public var rate: ChannelID?
    /// Readings further apart than this are not bridged (coverage drops, nothing is integrated over the gap).
    public var maxGap: Duration
    /// A rate above this (t/h) counts as running.
    public var runThresholdTonnesPerHour: Double

    public init(device: DeviceID, totalizer: ChannelID?, totalizerParameters: TotalizerTracker.Parameters?, rate: ChannelID?,
                maxGap: Duration, runThresholdTonnesPerHour: Double) {
        self.device = device
        self.totalizer = totalizer
        self.totalizerParameters = totalizerParameters
        self.rate = rate
        self.maxGap = maxGap
        self.runThresholdTonnesPerHour = runThresholdTonnesPerHour
    }
}

/// A stream's running tally across shifts. It takes the stream's readings in time order and credits each delta
/// and each integrated stretch to the shifts it spans (split at boundaries), keeping figures for every shift still
/// open; the engine closes shifts (`close`) once their grace period has passed. A contribution to a shift that is
/// already closed comes back as an amendment — the engine turns it into a new revision of that shift's report.
public struct StreamTally: Sendable, Hashable, Codable {
    public let source: StreamSource
    private var totalizer: TotalizerTracker?
    private var integrator: RateIntegrator
    /// Figures of shifts not yet closed, by shift start (ns), in time order.
    private var open: [OpenShift] = []

    /// A shift's figures while it is open (one or two at a time: a linear search beats hashing).
    struct OpenShift: Sendable, Hashable, Codable {
        var start: Int64
        var figures: StreamShiftFigures
    }
    /// Shifts already closed (start ns); contributions to them are amendments.
    private var closedBefore: Int64 = .min

    /// `source.maxGap` in nanoseconds (compared for every totalizer delta).
    private let maxGapNanoseconds: Int64

    public init(source: StreamSource) {
        self.source = source
        maxGapNanoseconds = source.maxGap.nanosecondsClamped
        totalizer = source.totalizerParameters.map(TotalizerTracker.init)
        integrator = RateIntegrator(maxGap: source.maxGap)
    }

    /// A contribution to a shift that had already been closed.
    public struct Amendment: Sendable, Hashable {
        /// The start of the closed shift it belongs to.
        public var shiftStart: UTCInstant
        public var fed: Mass
        public var totalizerEnd: Mass?
    }

    /// Takes one reading of this stream's device (others are ignored). `calendar(a, b)` gives the shifts that
    /// share an instant with [a, b], in order.
    public mutating func consume(_ r: Reading, calendar: (UTCInstant, UTCInstant) -> [ShiftSpan]) -> [Amendment] {
        withoutActuallyEscaping(calendar) { calendar in
            var lookup = ClosureShiftSpans(calendar)
            return consume(r, shifts: &lookup)
        }
    }

    /// As above, with a lookup that answers single instants without building arrays (the engine's hot path).
    public mutating func consume<L: ShiftSpanLookup>(_ r: Reading, shifts calendar: inout L) -> [Amendment] {
        guard r.device == source.device else { return [] }
        var amendments: [Amendment] = []
        if r.channel == source.totalizer {
            noteQuality(r, calendar: &calendar)
            if let step = totalizer?.consume(r) {
                amendments += credit(step, calendar: &calendar)
            }
        } else if r.channel == source.rate {
            if source.totalizer == nil { noteQuality(r, calendar: &calendar) }
            if r.quality == .good, let v = r.value.doubleValue, let perHour = r.unit?.toTonnes, v.isFinite {
                if let shift = calendar.span(at: r.time) { self[shift].noteRate(max(0, v * perHour)) }
            }
            if case .segment(let s)? = integrator.consume(r) {
                for shift in calendar.spans(s.from, s.to) {
                    let tonnes = s.tonnes(from: shift.start, to: shift.end)
                    let covered = s.covered(from: shift.start, to: shift.end)
                    if source.totalizer == nil {
                        if let fed = Mass(tonnes, .tonne), isClosed(shift) {
                            amendments.append(Amendment(shiftStart: shift.start, fed: fed, totalizerEnd: nil))
                        }
                        if let fed = Mass(tonnes, .tonne) { self[shift].fed += fed }
                        self[shift].covered += covered
                    }
                    self[shift].integratedTonnes += tonnes
                    let running = (s.rate0 + s.rate1) / 2 > source.runThresholdTonnesPerHour
                    if running { self[shift].runTime += covered }
                }
            }
        }
        return amendments
    }

    /// Marks conditions a reading's quality implies on the shift it falls in.
    private mutating func noteQuality<L: ShiftSpanLookup>(_ r: Reading, calendar: inout L) {
        guard r.quality != .good || !r.clockSynchronized, let shift = calendar.span(at: r.time) else { return }
        if !r.clockSynchronized { self[shift].conditions.insert(.clockUnsynchronized) }
        switch r.quality {
        case .deviceFault, .invalid: self[shift].conditions.insert(.deviceFault)
        case .timeout, .commFailure, .stale: self[shift].conditions.insert(.communicationGap)
        case .manual: self[shift].conditions.insert(.manual)
        case .good: break
        }
    }

    private mutating func credit<L: ShiftSpanLookup>(_ step: TotalizerTracker.Step, calendar: inout L) -> [Amendment] {
        switch step {
        case .baseline(let value, let t):
            if let shift = calendar.span(at: t), self[shift].totalizerStart == nil {
                self[shift].totalizerStart = value
                self[shift].conditions.insert(.communicationGap)  // the shift's start value is not interpolated
            }
            return []
        case .rejected(_, _, let t, _, _):
            if let shift = calendar.span(at: t) {
                self[shift].rejectedSteps += 1
                self[shift].conditions.insert(.rejected)
            }
            return []
        case .rebaselined(_, let delta, let from, let to, _, let current):
            if let shift = calendar.span(at: to) { self[shift].conditions.insert(.rejected) }
            return spread(delta, from: from, to: to, startValue: current - delta, calendar: &calendar)
        case .delta(let d, let from, let to, let previous, _, let kind):
            if let shift = calendar.span(at: to) {
                if kind == .reset { self[shift].resets += 1 }
                if kind == .rollover { self[shift].rollovers += 1 }
            }
            let covered = to.nanosecondsSinceEpoch - from.nanosecondsSinceEpoch <= maxGapNanoseconds
            var amendments = spread(d, from: from, to: to, startValue: previous, calendar: &calendar)
            if covered, let shift = calendar.span(at: from), shift.contains(to) {
                self[shift].covered += .nanoseconds(to.nanosecondsSinceEpoch - from.nanosecondsSinceEpoch)
            } else {
                for shift in calendar.spans(from, to) {
                    if covered {
                        let lo = max(from, shift.start), hi = min(to, shift.end)
                        if lo < hi { self[shift].covered += .nanoseconds(hi.nanosecondsSinceEpoch - lo.nanosecondsSinceEpoch) }
                    } else {
                        self[shift].conditions.insert(.communicationGap)
                    }
                }
            }
            amendments.removeAll { $0.fed == .zero && $0.totalizerEnd == nil }
            return amendments
        }
    }

    /// Credits `delta`, fed evenly over [from, to], to the shifts it spans; sets boundary values.
    private mutating func spread<L: ShiftSpanLookup>(_ delta: Mass, from: UTCInstant, to: UTCInstant, startValue: Mass,
                                                     calendar: inout L) -> [Amendment] {
        // The common case: both readings inside one open shift — the whole delta goes there, no apportioning.
        if let shift = calendar.span(at: from), shift.contains(to), shift.start != to, !isClosed(shift) {
            self[shift].fed += delta
            self[shift].totalizerEnd = startValue + delta
            return []
        }
        let spanned = calendar.spans(from, to)
        // A reading exactly at a shift's start is that shift's start value.
        if let last = spanned.last, last.start == to, !isClosed(last), self[last].totalizerStart == nil {
            self[last].totalizerStart = startValue + delta
        }
        if spanned.count == 1, let shift = spanned.first, !isClosed(shift) {
            self[shift].fed += delta
            self[shift].totalizerEnd = startValue + delta
            return []
        }
        let cuts = spanned.dropFirst().map(\.start).filter { $0 > from && $0 < to }
        let pieces = Apportion.split(delta, from: from, to: to, at: cuts)
        let marks = Apportion.cumulative(delta, from: from, to: to, at: cuts)
        var amendments: [Amendment] = []
        // Piece k goes to the k-th shift overlapping (from, to].
        let receiving = spanned.filter { $0.end > from && $0.start < to }
        for (k, shift) in receiving.enumerated() where k < pieces.count {
            let endValue: Mass? = k < marks.count ? startValue + marks[k] : nil
            if isClosed(shift) {
                amendments.append(Amendment(shiftStart: shift.start, fed: pieces[k], totalizerEnd: endValue))
                continue
            }
            self[shift].fed += pieces[k]
            // The first delta that crosses a shift's start sets its start value, interpolated at the boundary.
            if k > 0 { self[shift].totalizerStart = startValue + marks[k - 1] }
            if let endValue { self[shift].totalizerEnd = endValue } else { self[shift].totalizerEnd = startValue + delta }
        }
        return amendments
    }

    private func isClosed(_ shift: ShiftSpan) -> Bool { shift.start.nanosecondsSinceEpoch <= closedBefore }

    /// The open figures of `shift`, modified in place (created empty on first use).
    private subscript(shift: ShiftSpan) -> StreamShiftFigures {
        get { open.first { $0.start == shift.start.nanosecondsSinceEpoch }?.figures ?? StreamShiftFigures(shift: ShiftID(localDate: "", name: "")) }
        _modify {
            let key = shift.start.nanosecondsSinceEpoch
            let i = open.firstIndex { $0.start == key } ?? {
                open.append(OpenShift(start: key, figures: StreamShiftFigures(shift: ShiftID(localDate: "", name: ""))))
                return open.count - 1
            }()
            yield &open[i].figures
        }
    }

    /// The figures so far of a shift not yet closed (nil when nothing was credited to it yet).
    public func openFigures(shiftStart: UTCInstant) -> StreamShiftFigures? {
        open.first { $0.start == shiftStart.nanosecondsSinceEpoch }?.figures
    }

    /// Closes `shift`: its figures leave the open set (later contributions become amendments). A totalizer with no
    /// good reading after the shift's end yet leaves the end value an estimate (the last good value): flag B.
    public mutating func close(_ shift: Shift) -> StreamShiftFigures {
        let key = shift.start.nanosecondsSinceEpoch
        var f = open.firstIndex { $0.start == key }.map { open.remove(at: $0).figures } ?? StreamShiftFigures(shift: shift.id)
        f.shift = shift.id
        if source.totalizer != nil, (totalizer?.last?.time).map({ $0 < shift.end }) ?? true {
            f.conditions.insert(.communicationGap)
        }
        if f.covered < shift.length { f.conditions.insert(.communicationGap) }
        closedBefore = max(closedBefore, key)
        return f
    }
}

/// Answers "which shift" for the stream arithmetic: single instants (most questions) without building arrays.
public protocol ShiftSpanLookup {
    /// The shift `t` falls in.
    mutating func span(at t: UTCInstant) -> ShiftSpan?
    /// The shifts that share an instant with [a, b] (b included), in order.
    mutating func spans(_ a: UTCInstant, _ b: UTCInstant) -> [ShiftSpan]
}

/// A lookup from a closure that answers ranges.
public struct ClosureShiftSpans: ShiftSpanLookup {
    let spans: (UTCInstant, UTCInstant) -> [ShiftSpan]
    public init(_ spans: @escaping (UTCInstant, UTCInstant) -> [ShiftSpan]) { self.spans = spans }
    public func span(at t: UTCInstant) -> ShiftSpan? { spans(t, t).first }
    public func spans(_ a: UTCInstant, _ b: UTCInstant) -> [ShiftSpan] { spans(a, b) }
}

extension Duration {
    /// Whole nanoseconds, clamped to Int64 (about 292 years).
    var nanosecondsClamped: Int64 {
        let (seconds, atto) = components
        let (ns, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = ns.addingReportingOverflow(atto / 1_000_000_000)
        return overflow2 ? (ns < 0 ? .min : .max) : sum
    }
}
