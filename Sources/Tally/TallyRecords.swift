import KilnTallyCore

/// The ledger records the tally writes, as canonical JSON objects (sealed into the node's hash chain by the
/// engine). Decimals are fixed-point strings — masses in kg with three decimals, rates in t/h with three,
/// percentages with two — so the JCS form never meets a binary float.
public enum TallyRecords {
    public static let ticketSchema = "kilntally.ticket/1"
    public static let reportSchema = "kilntally.shift-report/1"
    public static let currentSchema = "kilntally.shift-current/1"

    /// A fixed-point decimal with `decimals` places, rounded half away from zero.
    static func decimal(_ x: Double, _ decimals: Int) -> JSONValue {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(x) * scale).rounded(.toNearestOrAwayFromZero)
        let whole = Int64(scaled / scale), fraction = Int64(scaled) - whole * Int64(scale)
        var digits = String(fraction)
        while digits.count < decimals { digits = "0" + digits }
        return .string((x < 0 && scaled != 0 ? "-" : "") + "\(whole)." + digits)
    }

    static func kg(_ m: Mass?) -> JSONValue { m.map { .string($0.kilogramsString) } ?? .null }

    static func snapshot(_ s: WeighingSnapshot) -> JSONValue {
        .object([
            "time": .string(s.time.rfc3339), "weight_kg": kg(s.weight),
            "raw": .array(s.rawWeight.map { .integer(Int64($0)) }),
            "status": .array(s.status.map { b in
                .object(["role": .string(b.role), "channel": .string(b.channel.rawValue), "value": .bool(b.value),
                         "raw": .array(b.raw.map { .integer(Int64($0)) })])
            }),
            "indicator_ticket": s.indicatorTicket.map { .string($0) } ?? .null,
            "vehicle": s.vehicle.map { .string($0) } ?? .null,
            "clock_synchronized": .bool(s.clockSynchronized),
        ])
    }

    /// A ticket revision, unsealed.
    public static func ticket(_ t: Ticket, site: String, node: String, shift: ShiftID?, configHash: String) -> [String: JSONValue] {
        [
            "schema": .string(ticketSchema), "id": .string(t.id), "site": .string(site), "node": .string(node),
            "revision": .integer(Int64(t.revision)), "status": .string(t.status.rawValue),
            "weighbridge": .string(t.weighbridge), "device": .string(t.device.rawValue),
            "material": .string(t.material), "vehicle": t.vehicle.map { .string($0) } ?? .null,
            "indicator_ticket": t.indicatorTicket.map { .string($0) } ?? .null,
            "inbound": snapshot(t.inbound), "outbound": t.outbound.map(snapshot) ?? .null,
            "gross_kg": kg(t.gross), "tare_kg": kg(t.tare), "net_kg": kg(t.net),
            "closed_at": t.closedAt.map { .string($0.rfc3339) } ?? .null,
            "shift": shift.map { .string($0.description) } ?? .null,
            "flag": .string(t.dataFlag.rawValue),
            "corrections": .array(t.corrections.map { c in
                var o: [String: JSONValue] = ["revision": .integer(Int64(c.revision)), "time": .string(c.time.rfc3339),
                                              "operator": .string(c.operatorName), "reason": .string(c.reason)]
                switch c.action {
                case .setMaterial(let from, let to):
                    o["action"] = "set_material"
                    o["from"] = .string(from)
                    o["to"] = .string(to)
                case .void:
                    o["action"] = "void"
                }
                return .object(o)
            }),
            "config_hash": .string(configHash),
        ]
    }
}

extension TallyRecords {
    /// One material's balance in a shift: with a stock, imbalance = opening + received − fed − closing (zero when
    /// everything is measured); without one, imbalance = received − fed (what the bunker must have gained or lost).
    struct Balance {
        var material: String
        var received: Mass
        var fed: Mass
        var imbalance: Mass
        var exceeded: Bool
    }

    static func balance(_ r: TallyEngine.ReportState) -> [Balance] {
        var fed: [String: Mass] = [:]
        for s in r.plan.streams { fed[s.config.material, default: .zero] += r.streams[s.config.name]?.fed ?? .zero }
        var received: [String: Mass] = [:]
        for receipt in r.receipts where receipt.counts { received[receipt.material, default: .zero] += receipt.net }
        let materials = Set(fed.keys).union(received.keys).union(r.stocks.keys).sorted()
        return materials.map { m in
            let rec = received[m] ?? .zero, f = fed[m] ?? .zero
            var imbalance = rec - f
            if let levels = r.stocks[m], let opening = levels.opening, let closing = levels.closing {
                imbalance = opening + rec - f - closing
            }
            return Balance(material: m, received: rec, fed: f, imbalance: imbalance,
                           exceeded: abs(imbalance.milligrams) > r.plan.balanceTolerance.milligrams)
        }
    }

    /// A shift report revision, unsealed: identity, per-stream figures, receipts per material, the mass balance per
    /// material (see `balance`) and the overall flag.
    static func report(_ r: TallyEngine.ReportState) -> [String: JSONValue] {
        let setup = r.plan
        let length = r.shift.length
        let lengthSeconds = length.components.seconds
        var fedByMaterial: [String: Mass] = [:]
        var streams: [JSONValue] = []
        var flags: [DataFlag] = []
        for (config, source) in setup.streams.map({ ($0.config, $0.source) }) {
            let f = r.streams[config.name] ?? StreamShiftFigures(shift: r.shift.id)
            fedByMaterial[config.material, default: .zero] += f.fed
            let flag = DataFlag.worst(f.conditions)
            flags.append(flag)
            let coverage = Double(f.covered.components.seconds) / Double(max(lengthSeconds, 1)) * 100
            let integrated = Mass(f.integratedTonnes, .tonne)
            var o: [String: JSONValue] = [
                "name": .string(config.name), "material": .string(config.material),
                "feed_point": .string(config.feedPoint.rawValue), "device": .string(config.device.rawValue),
                "fed_kg": kg(f.fed), "totalizer_start_kg": kg(f.totalizerStart), "totalizer_end_kg": kg(f.totalizerEnd),
                "integrated_kg": source.rate == nil ? .null : kg(integrated),
                "rate_min_tph": f.rateMin.map { decimal($0, 3) } ?? .null,
                "rate_avg_tph": f.rateAverage.map { decimal($0, 3) } ?? .null,
                "rate_max_tph": f.rateMax.map { decimal($0, 3) } ?? .null,
                "run_time_s": .integer(f.runTime.components.seconds),
                "coverage_pct": decimal(min(coverage, 100), 2),
                "rejected_steps": .integer(Int64(f.rejectedSteps)), "resets": .integer(Int64(f.resets)),
                "rollovers": .integer(Int64(f.rollovers)),
                "conditions": .array(f.conditions.sorted().map { .string($0.rawValue) }),
                "flag": .string(flag.rawValue),
            ]
            // Totalizer authoritative, integration a cross-check: report how far apart they are.
            if source.totalizer != nil, source.rate != nil, let integrated {
                let difference = f.fed - integrated
                o["disagreement_kg"] = kg(difference)
                let relative = f.fed.milligrams != 0 ? abs(Double(difference.milligrams) / Double(f.fed.milligrams)) : 0
                o["disagreement_exceeded"] = .bool(relative > config.disagreementTolerance && f.fed != .zero)
            }
            streams.append(.object(o))
        }
        let receipts = receiptsByMaterial(r.receipts)
        let balance: [JSONValue] = Self.balance(r).map { b in
            var o: [String: JSONValue] = ["material": .string(b.material), "received_kg": kg(b.received), "fed_kg": kg(b.fed),
                                          "imbalance_kg": kg(b.imbalance), "exceeded": .bool(b.exceeded)]
            if let levels = r.stocks[b.material] {
                o["opening_stock_kg"] = kg(levels.opening)
                o["closing_stock_kg"] = kg(levels.closing)
            }
            return .object(o)
        }
        return [
            "schema": .string(reportSchema), "id": .string("\(setup.site)/\(setup.node)/\(r.shift.id)"),
            "site": .string(setup.site), "node": .string(setup.node), "shift": .string(r.shift.id.description),
            "crew": r.shift.crew.map { .string($0) } ?? .null,
            "start_local": .string(r.shift.localStart), "end_local": .string(r.shift.localEnd),
            "start_utc": .string(r.shift.start.rfc3339), "end_utc": .string(r.shift.end.rfc3339),
            "length_s": .integer(lengthSeconds), "revision": .integer(Int64(r.revision)),
            "closed_at": .string(r.closedAt.rfc3339), "config_hash": .string(setup.configHash),
            "streams": .array(streams), "receipts": .array(receipts), "balance": .array(balance),
            "flag": .string(DataFlag.worst(flags).rawValue),
        ]
    }
}

extension TallyRecords {
    /// Receipts per material (tickets that count), in material order.
    static func receiptsByMaterial(_ receipts: [TallyEngine.Receipt]) -> [JSONValue] {
        var byMaterial: [String: (count: Int64, net: Mass)] = [:]
        for receipt in receipts where receipt.counts {
            byMaterial[receipt.material, default: (0, .zero)].count += 1
            byMaterial[receipt.material, default: (0, .zero)].net += receipt.net
        }
        return byMaterial.keys.sorted().map { m in
            .object(["material": .string(m), "tickets": .integer(byMaterial[m]!.count), "net_kg": kg(byMaterial[m]!.net)])
        }
    }

    /// The running totals of an open shift (`kilntally.shift-current/1`): coverage is of the time elapsed so far.
    static func current(shift: Shift, asOf: UTCInstant, plan: TallyEngine.ReportPlan, streams: [String: StreamShiftFigures],
                        receipts: [TallyEngine.Receipt]) -> [String: JSONValue] {
        let elapsed = max(1, min(asOf.nanosecondsSinceEpoch, shift.end.nanosecondsSinceEpoch) - shift.start.nanosecondsSinceEpoch)
        let rendered: [JSONValue] = plan.streams.map { s in
            let f = streams[s.config.name] ?? StreamShiftFigures(shift: shift.id)
            let coveredNanos = Double(f.covered.nanosecondsClamped)
            return .object([
                "name": .string(s.config.name), "material": .string(s.config.material),
                "feed_point": .string(s.config.feedPoint.rawValue), "fed_kg": kg(f.fed),
                "coverage_pct": decimal(min(coveredNanos / Double(elapsed) * 100, 100), 2),
                "flag": .string(DataFlag.worst(f.conditions).rawValue),
            ])
        }
        return [
            "schema": .string(currentSchema), "id": .string("\(plan.site)/\(plan.node)/\(shift.id)"),
            "site": .string(plan.site), "node": .string(plan.node), "shift": .string(shift.id.description),
            "crew": shift.crew.map { .string($0) } ?? .null,
            "start_local": .string(shift.localStart), "end_local": .string(shift.localEnd),
            "start_utc": .string(shift.start.rfc3339), "end_utc": .string(shift.end.rfc3339),
            "as_of": .string(asOf.rfc3339), "config_hash": .string(plan.configHash),
            "streams": .array(rendered), "receipts": .array(receiptsByMaterial(receipts)),
        ]
    }
}
