import KilnTallyCore

/// What a parser has seen. Every byte fed is, in the end, exactly one of: part of a decoded frame, part of a frame
/// dropped for its checksum, discarded, still pending (`ScaleStreamParser.pendingBytes`) — or, for the A12 lines, a
/// CR or LF between frames.
public struct ScaleParserCounters: Sendable, Hashable {
    /// Bytes fed.
    public var bytes: UInt64 = 0
    /// Frames decoded.
    public var frames: UInt64 = 0
    /// Complete frames dropped because their checksum (Toledo, when configured) or XOR (Yaohua) did not match.
    public var badChecksums: UInt64 = 0
    /// Framing errors, in bytes: garbage between frames and the bytes of broken frames, each byte counted once.
    public var discardedBytes: UInt64 = 0
    /// Frames whose terminator was not where the layout puts it (Toledo CR at byte 16, Yaohua ETX at byte 11), and
    /// A12 lines longer than any weight; their bytes are in `discardedBytes` as well.
    public var overlongFrames: UInt64 = 0

    public init() {}

    /// Counts since `earlier` (for per-interval reports).
    public func since(_ earlier: ScaleParserCounters) -> ScaleParserCounters {
        var d = ScaleParserCounters()
        d.bytes = bytes &- earlier.bytes
        d.frames = frames &- earlier.frames
        d.badChecksums = badChecksums &- earlier.badChecksums
        d.discardedBytes = discardedBytes &- earlier.discardedBytes
        d.overlongFrames = overlongFrames &- earlier.overlongFrames
        return d
    }
}

/// A pure, incremental parser of one indicator's byte stream: bytes in (one at a time or in any pieces), frames
/// out. It never traps on any input, keeps no heap memory (a partial frame is at most 32 bytes, held inline), and
/// resynchronises within a frame: when a byte does not fit the frame begun, the frame's first byte is discarded
/// and the bytes after it are looked at again for the start of a frame, so a frame that follows garbage — even
/// garbage that began like a frame — is decoded.
///
/// Grammar (DOMAIN.md §1.3; where the sources disagree the parser accepts both):
/// - `toledo_continuous`: STX; SWA with bit 5 set and bits 6–7 clear; SWB any 7-bit byte (bit 5 is 1 for Mettler and
///   Rice Lake, 0 for Fairbanks); SWC with bit 5 set and bit 7 clear; six weight characters and six tare characters,
///   each a digit or a leading space (Fairbanks suppresses leading zeros) — while SWB b2 (out of range) is set the
///   weight may be any printable characters (dashes), and the frame then has no weight; CR; with `checksum` one
///   more 7-bit byte, the two's complement of the low 7 bits of the sum of the 17 bytes before it.
/// - `yaohua_tf0`: STX; `+` or `-`; six digits, most significant first; the decimals `0`…`4`; two hex digits (either
///   case) of the XOR of bytes 1–8, high nibble first; ETX.
/// - `xk3190_a12`: `w`; `w` (gross), `n` (net) or `t` (tare); a number of at most 10 characters — leading spaces, an
///   optional sign, digits with at most one `.`; a unit `kg`, `t`, `g` or `lb` (either case), which ends the frame.
///   CR and LF between frames are skipped (not counted as discarded).
public struct ScaleStreamParser: Sendable {
    public let scaleProtocol: ScaleProtocol
    /// Toledo only: a checksum byte follows the CR and is checked.
    public let checksum: Bool
    public private(set) var counters = ScaleParserCounters()

    private var buffer = FrameBuffer()
    // A12 number state, reset at each frame start.
    private var sawPoint = false
    private var sawDigit = false
    private var numberLength: UInt8 = 0
    private var unitFirst: UInt8 = 0

    static let stx: UInt8 = 0x02, etx: UInt8 = 0x03, cr: UInt8 = 0x0D, lf: UInt8 = 0x0A
    /// The longest A12 number (sign, digits, point, leading spaces).
    static let a12MaxNumber: UInt8 = 10

    public init(protocol scaleProtocol: ScaleProtocol, checksum: Bool = false) {
        self.scaleProtocol = scaleProtocol
        self.checksum = checksum && scaleProtocol == .toledoContinuous
    }

    /// Bytes of a frame begun but not complete.
    public var pendingBytes: Int { buffer.count }

    /// Feeds one byte; returns the frame it completes, if any (one byte never completes more than one).
    public mutating func feed(_ byte: UInt8) -> ScaleFrame? {
        var out: ScaleFrame?
        feed(byte) { out = $0 }
        return out
    }

    /// Feeds one byte; `emit` receives the frame it completes, if any.
    public mutating func feed(_ byte: UInt8, _ emit: (ScaleFrame) -> Void) {
        counters.bytes &+= 1
        process(byte, emit)
    }

    /// Feeds bytes in order; `emit` receives each frame as it completes.
    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S, _ emit: (ScaleFrame) -> Void) {
        for b in bytes { feed(b, emit) }
    }

    /// Feeds bytes in order and returns the frames they complete.
    public mutating func feed<S: Sequence<UInt8>>(_ bytes: S) -> [ScaleFrame] {
        var frames: [ScaleFrame] = []
        feed(bytes) { frames.append($0) }
        return frames
    }

    /// Drops a partial frame (its bytes count as discarded): for a line that was closed and opened again, whose
    /// next bytes do not continue the old ones.
    public mutating func reset() {
        counters.discardedBytes &+= UInt64(buffer.count)
        buffer.removeAll()
    }

    // MARK: - The machine

    private enum Verdict { case more, complete, reject, overlong }

    private func isStart(_ b: UInt8) -> Bool {
        scaleProtocol == .xk3190A12 ? b == UInt8(ascii: "w") : b == Self.stx
    }

    private mutating func process(_ b: UInt8, _ emit: (ScaleFrame) -> Void) {
        if buffer.count == 0 {
            if isStart(b) {
                sawPoint = false
                sawDigit = false
                numberLength = 0
                unitFirst = 0
                buffer.append(b)
            } else if scaleProtocol == .xk3190A12 && (b == Self.cr || b == Self.lf) {
                // a line terminator between frames
            } else {
                counters.discardedBytes &+= 1
            }
            return
        }
        switch verdict(b) {
        case .more:
            buffer.append(b)
        case .complete:
            buffer.append(b)
            finish(emit)
        case .reject:
            resync(then: b, emit)
        case .overlong:
            counters.overlongFrames &+= 1
            resync(then: b, emit)
        }
    }

    /// Drops the frame's first byte and looks at the rest of it, then at `b`, again. Recursion is bounded: each
    /// level's frame is shorter than its caller's.
    private mutating func resync(then b: UInt8, _ emit: (ScaleFrame) -> Void) {
        let tail = buffer
        buffer.removeAll()
        counters.discardedBytes &+= 1
        var i = 1
        while i < tail.count {
            process(tail[i], emit)
            i += 1
        }
        process(b, emit)
    }

    /// Whether `b` fits at index `buffer.count` of the frame begun (updating the A12 number state when it does).
    private mutating func verdict(_ b: UInt8) -> Verdict {
        let i = buffer.count
        switch scaleProtocol {
        case .toledoContinuous:
            switch i {
            case 1: return b & 0xE0 == 0x20 ? .more : .reject
            case 2: return b < 0x80 ? .more : .reject
            case 3: return b & 0xA0 == 0x20 ? .more : .reject
            case 4...9:
                if Self.isDigit(b) { return .more }
                // Out of range: the weight may be dashes, letters or blanks, but never control bytes.
                if buffer[2] & 0x04 != 0 { return (0x20...0x7E).contains(b) ? .more : .reject }
                return b == 0x20 && (i == 4 || buffer[i - 1] == 0x20) ? .more : .reject
            case 10...15:
                if Self.isDigit(b) { return .more }
                return b == 0x20 && (i == 10 || buffer[i - 1] == 0x20) ? .more : .reject
            case 16:
                guard b == Self.cr else { return .overlong }
                return checksum ? .more : .complete
            default:
                return b < 0x80 ? .complete : .reject
            }
        case .yaohuaTF0:
            switch i {
            case 1: return b == UInt8(ascii: "+") || b == UInt8(ascii: "-") ? .more : .reject
            case 2...7: return Self.isDigit(b) ? .more : .reject
            case 8: return (UInt8(ascii: "0")...UInt8(ascii: "4")).contains(b) ? .more : .reject
            case 9, 10: return Self.hexValue(b) != nil ? .more : .reject
            default: return b == Self.etx ? .complete : .overlong
            }
        case .xk3190A12:
            if i == 1 {
                return b == UInt8(ascii: "w") || b == UInt8(ascii: "n") || b == UInt8(ascii: "t") ? .more : .reject
            }
            let lower = b | 0x20  // ASCII letters to lower case (other bytes are compared exactly below)
            if unitFirst != 0 {
                if unitFirst == UInt8(ascii: "k") && lower == UInt8(ascii: "g") { return .complete }
                if unitFirst == UInt8(ascii: "l") && lower == UInt8(ascii: "b") { return .complete }
                return .reject
            }
            if Self.isDigit(b) || b == 0x20 || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: ".") {
                guard numberLength < Self.a12MaxNumber else { return .overlong }
                switch b {
                case 0x20:
                    guard numberLength == 0 || buffer[i - 1] == 0x20 else { return .reject }
                case UInt8(ascii: "-"), UInt8(ascii: "+"):
                    guard !sawDigit, !sawPoint, numberLength == 0 || buffer[i - 1] == 0x20 else { return .reject }
                case UInt8(ascii: "."):
                    guard !sawPoint else { return .reject }
                    sawPoint = true
                default:
                    sawDigit = true
                }
                numberLength += 1
                return .more
            }
            guard sawDigit else { return .reject }
            switch b {
            case UInt8(ascii: "k"), UInt8(ascii: "K"), UInt8(ascii: "l"), UInt8(ascii: "L"):
                unitFirst = lower
                return .more
            case UInt8(ascii: "t"), UInt8(ascii: "T"), UInt8(ascii: "g"), UInt8(ascii: "G"):
                return .complete
            default:
                return .reject
            }
        }
    }

    private mutating func finish(_ emit: (ScaleFrame) -> Void) {
        let frame: ScaleFrame?
        switch scaleProtocol {
        case .toledoContinuous: frame = decodeToledo()
        case .yaohuaTF0: frame = decodeYaohua()
        case .xk3190A12: frame = decodeA12()
        }
        if let frame {
            buffer.removeAll()
            counters.frames &+= 1
            emit(frame)
            return
        }
        counters.badChecksums &+= 1
        // A Toledo "checksum" that is an STX is likely the next frame of an indicator that sends none: start there.
        let last = buffer[buffer.count - 1]
        buffer.removeAll()
        if scaleProtocol == .toledoContinuous && last == Self.stx { process(last, emit) }
    }

    // MARK: - Decoding complete frames

    private func number(_ range: Range<Int>) -> Int64? {
        var v: Int64 = 0, digits = false
        for i in range {
            let c = buffer[i]
            if c == 0x20 && !digits { continue }  // a leading blank
            guard Self.isDigit(c) else { return nil }
            v = v * 10 + Int64(c - 48)
            digits = true
        }
        return v
    }

    /// nil: bad checksum.
    private func decodeToledo() -> ScaleFrame? {
        if checksum {
            var sum: UInt32 = 0
            for i in 0..<17 { sum &+= UInt32(buffer[i]) }
            guard UInt8(truncatingIfNeeded: 0 &- sum) & 0x7F == buffer[17] else { return nil }
        }
        let status = ToledoStatus(a: buffer[1], b: buffer[2], c: buffer[3])
        func scaled(_ digits: Int64?) -> ScaleDecimal? {
            guard let digits else { return nil }
            switch status.decimalCode {
            case 0: return ScaleDecimal(mantissa: digits * 100, decimals: 0)
            case 1: return ScaleDecimal(mantissa: digits * 10, decimals: 0)
            case let code: return ScaleDecimal(mantissa: digits, decimals: Int(code) - 2)
            }
        }
        var weight = scaled(number(4..<10))
        if status.negative { weight?.mantissa.negate() }
        return ScaleFrame(
            scaleProtocol: .toledoContinuous, kind: status.net ? .net : .gross, weight: weight, unit: status.unit,
            motion: status.motion, overRange: status.outOfRange && !status.negative,
            underRange: status.outOfRange && status.negative, tare: scaled(number(10..<16)), toledoStatus: status,
            length: buffer.count)
    }

    private func decodeYaohua() -> ScaleFrame? {
        var x: UInt8 = 0
        for i in 1...8 { x ^= buffer[i] }
        guard let hi = Self.hexValue(buffer[9]), let lo = Self.hexValue(buffer[10]), hi << 4 | lo == x else { return nil }
        var weight = ScaleDecimal(mantissa: number(2..<8) ?? 0, decimals: Int(buffer[8] - 48))
        if buffer[1] == UInt8(ascii: "-") { weight.mantissa.negate() }
        return ScaleFrame(scaleProtocol: .yaohuaTF0, kind: .displayed, weight: weight, unit: nil, length: 12)
    }

    private func decodeA12() -> ScaleFrame? {
        let kind: ScaleFrame.Kind = switch buffer[1] {
        case UInt8(ascii: "n"): .net
        case UInt8(ascii: "t"): .tare
        default: .gross
        }
        var m: Int64 = 0, decimals = 0, point = false, negative = false
        var i = 2
        var unit = ScaleUnit.kilogram
        while i < buffer.count {
            let c = buffer[i]
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                m = m * 10 + Int64(c - 48)
                if point { decimals += 1 }
            case UInt8(ascii: "."): point = true
            case UInt8(ascii: "-"): negative = true
            case 0x20, UInt8(ascii: "+"): break
            default:
                switch c | 0x20 {
                case UInt8(ascii: "k"): unit = .kilogram
                case UInt8(ascii: "l"): unit = .pound
                case UInt8(ascii: "t"): unit = .tonne
                default: unit = .gram
                }
                i = buffer.count
            }
            i += 1
        }
        return ScaleFrame(scaleProtocol: .xk3190A12, kind: kind,
                          weight: ScaleDecimal(mantissa: negative ? -m : m, decimals: decimals), unit: unit,
                          length: buffer.count)
    }

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }
}

/// A partial frame, held inline (no heap): 32 bytes, more than the longest frame (Toledo with checksum, 18).
struct FrameBuffer: Sendable {
    private var storage: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private(set) var count = 0
    static let capacity = 32

    subscript(i: Int) -> UInt8 {
        precondition(i >= 0 && i < count)
        return withUnsafeBytes(of: storage) { $0[i] }
    }

    mutating func append(_ b: UInt8) {
        precondition(count < Self.capacity, "a frame candidate outgrew its buffer")
        let i = count
        withUnsafeMutableBytes(of: &storage) { $0[i] = b }
        count += 1
    }

    mutating func removeAll() { count = 0 }
}
