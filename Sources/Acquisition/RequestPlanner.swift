/// One Modbus read request of a poll plan, and the channels decoded from it.
public struct ReadRequest: Sendable, Hashable {
    public var table: RegisterTable
    public var address: Int
    public var count: Int
    /// Indices into the device's channels, in address order.
    public var channels: [Int]

    public var end: Int { address + count }

    /// A request for channel `i` alone.
    public static func single(_ i: Int, of channels: [ChannelConfig]) -> ReadRequest {
        ReadRequest(table: channels[i].table, address: channels[i].address, count: channels[i].registerCount, channels: [i])
    }
}

/// Limits of one bus (some gateways take fewer registers per request than the protocol allows).
public struct PlannerLimits: Sendable, Hashable {
    /// Registers per read, at most (protocol maximum 125).
    public var maxRegisters: Int = 125
    /// Coils or discrete inputs per read, at most (protocol maximum 2000).
    public var maxBits: Int = 2000
    /// Unused registers (or bits) a request may read between two channels to save a request.
    public var maxGap: Int = 16
    public init(maxRegisters: Int = 125, maxBits: Int = 2000, maxGap: Int = 16) {
        self.maxRegisters = maxRegisters
        self.maxBits = maxBits
        self.maxGap = maxGap
    }
}

/// Merges a device's channels into the fewest read requests: per table, channels sorted by address are joined
/// into one request while the request stays within the bus limit and no gap between them exceeds `maxGap`.
/// Greedy left to right is optimal here: each request starts at the first channel not yet covered and reaches
/// as far as the limits allow, so no plan can cover that channel and reach further with one request.
public enum RequestPlanner {
    public static func plan(_ channels: [ChannelConfig], limits: PlannerLimits, excluding excluded: Set<Int> = []) -> [ReadRequest] {
        var requests: [ReadRequest] = []
        for table in RegisterTable.allCases {
            let limit = table.isBitTable ? limits.maxBits : limits.maxRegisters
            let members = channels.indices
                .filter { channels[$0].table == table && !excluded.contains($0) }
                .sorted { (channels[$0].address, $0) < (channels[$1].address, $1) }
            var current: ReadRequest?
            for i in members {
                let start = channels[i].address
                let end = start + channels[i].registerCount
                if var r = current, start - r.end <= limits.maxGap, max(r.end, end) - r.address <= limit {
                    r.count = max(r.end, end) - r.address
                    r.channels.append(i)
                    current = r
                } else {
                    if let r = current { requests.append(r) }
                    current = ReadRequest(table: table, address: start, count: end - start, channels: [i])
                }
            }
            if let r = current { requests.append(r) }
        }
        return requests
    }

    /// Registers (or bits) read that no channel uses.
    public static func wasted(_ requests: [ReadRequest], channels: [ChannelConfig]) -> Int {
        requests.reduce(0) { total, r in
            var used = Set<Int>()
            for i in r.channels { used.formUnion(channels[i].address..<channels[i].address + channels[i].registerCount) }
            return total + r.count - used.count
        }
    }
}
