/// The ledger's tamper-evident hash chain, one per node.
///
/// Every chained record (tickets and shift reports, their revisions and corrections) is a JSON object carrying
/// - `prev_hash`: the `hash` of the previous chained record in this node's ledger, or `HashChain.genesis` (64 zeros)
///   for the first one;
/// - `hash`: `hex(SHA-256(JCS(record without its "hash" member)))` — lowercase hex of SHA-256 over the RFC 8785
///   canonical form (`CanonicalJSON`) of the record with every other member, `prev_hash` included.
///
/// So a hub can verify the chain with any JCS library and any SHA-256, and changing, removing, inserting or reordering
/// any record before the newest is detected. What a chain alone cannot show: that records were cut off at its end
/// (the newest hash is the evidence — compare it with the hub's copy) or that records older than the retention
/// period were removed (the first remaining record then links to a hash no longer in the ledger).
///
/// Records that are not chained (events, for instance) may sit between chained ones; see `ChainVerifier` for how
/// the two are told apart.
public enum HashChain {
    /// The `prev_hash` of a node's first chained record: 64 zeros (no SHA-256 value the chain could collide with in
    /// practice, and obviously not one).
    public static let genesis = String(repeating: "0", count: 64)
    public static let hashField = "hash"
    public static let previousField = "prev_hash"

    /// The hash of `record`: SHA-256 over the canonical form of its members other than `hash`.
    public static func hash(of record: [String: JSONValue]) throws(CanonicalJSONError) -> String {
        var content = record
        content[hashField] = nil
        return SHA256.hash(try CanonicalJSON.serialize(.object(content))).hex
    }

    /// `record` chained after the record whose hash is `previous`: with `prev_hash` and `hash` added.
    /// The record must not carry either member yet (sealing twice is a bug), and `previous` must be a hash.
    public static func seal(_ record: [String: JSONValue], after previous: String) throws(SealError) -> [String: JSONValue] {
        guard record[hashField] == nil, record[previousField] == nil else { throw .alreadySealed }
        guard isHash(previous) else { throw .notAHash(previous) }
        var sealed = record
        sealed[previousField] = .string(previous)
        do {
            sealed[hashField] = .string(try hash(of: sealed))
        } catch {
            throw .notCanonicalizable(error)
        }
        return sealed
    }

    public enum SealError: Error, Hashable, Sendable, CustomStringConvertible {
        case alreadySealed
        case notAHash(String)
        case notCanonicalizable(CanonicalJSONError)

        public var description: String {
            switch self {
            case .alreadySealed: "the record already carries \(HashChain.hashField) or \(HashChain.previousField)"
            case .notAHash(let s): "previous hash \"\(s)\" is not 64 lowercase hex digits"
            case .notCanonicalizable(let e): "the record has no canonical form: \(e)"
            }
        }
    }

    /// Whether `s` is 64 lowercase hexadecimal digits, the form `hash` and `prev_hash` take.
    public static func isHash(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Verifies a whole sequence of stored records (their JSON bytes, in ledger order) from the genesis hash:
    /// nil when the chain is intact, else the first record that does not match (its position in `records`) and why.
    public static func firstMismatch(in records: some Sequence<[UInt8]>) -> (index: Int, fault: ChainFault)? {
        var verifier = ChainVerifier()
        for (n, bytes) in records.enumerated() {
            if case .fault(let fault) = verifier.check(bytes) { return (n, fault) }
        }
        return nil
    }
}

/// Why a stored record breaks the chain.
public enum ChainFault: Error, Hashable, Sendable, CustomStringConvertible {
    /// The bytes are not a JSON object `CanonicalJSON` reads (so the record has no canonical form to hash).
    case notCanonicalParsable(CanonicalJSONError)
    /// Valid JSON, but not an object (every ledger record is one).
    case notAnObject
    /// A chained record (by its schema or its `prev_hash`) without a `hash` member.
    case missingHash
    /// `hash` or `prev_hash` missing (where required) or not 64 lowercase hex digits.
    case malformedField(String)
    /// The content does not hash to the stored `hash`: the record was changed after it was sealed.
    case wrongHash(stored: String, computed: String)
    /// The record is intact but does not follow the previous chained record: one was removed, inserted or moved.
    case brokenLink(expected: String, found: String)

    /// A stable name for scripts: `wrong_hash`, `broken_link`, `missing_hash`, `malformed_field`, `not_an_object`,
    /// `not_canonical_parsable`.
    public var code: String {
        switch self {
        case .notCanonicalParsable: "not_canonical_parsable"
        case .notAnObject: "not_an_object"
        case .missingHash: "missing_hash"
        case .malformedField: "malformed_field"
        case .wrongHash: "wrong_hash"
        case .brokenLink: "broken_link"
        }
    }

    public var description: String {
        switch self {
        case .notCanonicalParsable(let e): "not canonical-parsable JSON: \(e)"
        case .notAnObject: "not a JSON object"
        case .missingHash: "chained record without a \"\(HashChain.hashField)\" member"
        case .malformedField(let f): "\"\(f)\" is missing or not 64 lowercase hex digits"
        case .wrongHash(let stored, let computed): "wrong hash: stored \(stored), content hashes to \(computed)"
        case .brokenLink(let expected, let found):
            "broken link: prev_hash \(found), but the previous chained record's hash is \(expected)"
        }
    }
}

/// Checks stored records one at a time, in ledger order, holding only the previous chained record's hash — so a
/// ledger of years is verified in constant memory.
///
/// **Which records are chained.** A record is chained when it has a `hash` or a `prev_hash` member, or when its
/// `schema` is one of the chained kinds (`chainedSchemas`: tickets and shift reports, any version). Deciding by the
/// schema too, not only by the presence of `hash`, matters for the newest record: if it were enough to strip `hash`
/// and `prev_hash` to make a record unchained, its content could be changed without any later record to show it.
/// Every other record (events, …) is unchained and only has to be a JSON object.
///
/// After a fault the verifier carries on from the faulty record's stored hash (when it has one), so a single changed
/// record is reported once rather than breaking every link after it; `firstFault` is what to show.
public struct ChainVerifier: Sendable {
    /// How the first chained record must link.
    public enum Start: Sendable, Hashable {
        /// To `HashChain.genesis`: the ledger holds the node's chain from its beginning.
        case genesis
        /// To whatever its `prev_hash` says: the records before it are gone (retention), so there is nothing to
        /// compare with. The hash it links to is reported as `anchor`.
        case anyAnchor
    }

    public enum Outcome: Sendable, Hashable {
        case chained(hash: String)
        case unchained
        case fault(ChainFault)
    }

    /// `schema` prefixes of the records that must be chained.
    public static let chainedSchemas = ["kilntally.ticket/", "kilntally.shift-report/"]

    public let chainedSchemas: [String]
    /// The hash the next chained record must carry as `prev_hash` (nil: the first one, started with `.anyAnchor`).
    public private(set) var head: String?
    /// The `prev_hash` of the first chained record when started with `.anyAnchor`.
    public private(set) var anchor: String?
    public private(set) var chained = 0
    public private(set) var unchained = 0
    public private(set) var faults = 0

    public init(start: Start = .genesis, chainedSchemas: [String] = ChainVerifier.chainedSchemas) {
        head = start == .genesis ? HashChain.genesis : nil
        self.chainedSchemas = chainedSchemas
    }

    /// Checks the next stored record (its JSON bytes).
    public mutating func check(_ bytes: [UInt8]) -> Outcome {
        check(parsed: Result { () throws(CanonicalJSONError) in try CanonicalJSON.parse(bytes) })
    }

    /// Checks the next stored record, parsed by the caller (who wants more of it, e.g. its id, without parsing twice).
    public mutating func check(parsed: Result<JSONValue, CanonicalJSONError>) -> Outcome {
        switch parsed {
        case .failure(let error): return fault(.notCanonicalParsable(error), storedHash: nil)
        case .success(let value):
            guard let record = value.objectValue else { return fault(.notAnObject, storedHash: nil) }
            return check(record)
        }
    }

    /// Checks the next record, already parsed.
    public mutating func check(_ record: [String: JSONValue]) -> Outcome {
        guard isChained(record) else {
            unchained += 1
            return .unchained
        }
        guard let storedValue = record[HashChain.hashField] else { return fault(.missingHash, storedHash: nil) }
        guard let stored = storedValue.stringValue, HashChain.isHash(stored) else {
            return fault(.malformedField(HashChain.hashField), storedHash: nil)
        }
        guard let previous = record[HashChain.previousField]?.stringValue, HashChain.isHash(previous) else {
            return fault(.malformedField(HashChain.previousField), storedHash: stored)
        }
        let computed: String
        do {
            computed = try HashChain.hash(of: record)
        } catch {
            return fault(.notCanonicalParsable(error), storedHash: stored)
        }
        guard computed == stored else { return fault(.wrongHash(stored: stored, computed: computed), storedHash: stored) }
        if let head {
            guard previous == head else { return fault(.brokenLink(expected: head, found: previous), storedHash: stored) }
        } else {
            anchor = previous
        }
        chained += 1
        head = stored
        return .chained(hash: stored)
    }

    /// Whether `record` belongs to the chain (see the type's documentation).
    public func isChained(_ record: [String: JSONValue]) -> Bool {
        if record[HashChain.hashField] != nil || record[HashChain.previousField] != nil { return true }
        guard let schema = record["schema"]?.stringValue else { return false }
        return chainedSchemas.contains { schema.hasPrefix($0) }
    }

    private mutating func fault(_ fault: ChainFault, storedHash: String?) -> Outcome {
        faults += 1
        if let storedHash { head = storedHash }
        return .fault(fault)
    }
}
