/// Line-speed emulation for the simulator's servers: how long one Modbus RTU transaction keeps a serial line busy
/// at a given baud rate, so RTU timing can be benchmarked on a pty (which moves bytes at memory speed whatever baud
/// rate it is set to).
///
/// What it models, exactly — one request and its reply on a half-duplex line (RS-485):
///
///     request characters · t3.5 silence · reply characters · t3.5 silence
///
/// - Every character takes `bitsPerCharacter` bit times: 11 by default (start, 8 data, parity or a second stop bit,
///   stop — the RTU character format the Modbus serial-line specification prescribes whatever the parity).
/// - t3.5, the silence that ends a frame, is 3.5 character times up to 19,200 baud and a fixed 1.750 ms above
///   (Modbus over Serial Line V1.02, §2.5.1.1). The first gap separates the request from the reply, the second the
///   reply from the master's next request.
/// - Frames are RTU frames: unit id + PDU + CRC. A request that came over TCP counts as the RTU frame a serial
///   gateway would send for it (MBAP header off, unit id and CRC on).
/// - Not modelled (taken as zero): the slave's processing time, gaps between characters inside a frame (up to t1.5
///   is legal), the master's own turnaround. So the result is the lower bound no poller can beat on that line.
///
/// The servers send the whole reply once request + t3.5 + reply (`replyDelay`) has passed since the request arrived:
/// the reply reaches the client all at once at the moment its last character would have, rather than trickling in
/// a character at a time (so the client's byte timeout never comes into play). The trailing t3.5 is the master's to
/// keep before its next request (kilntally's bus `pause`); `transactionTime`, the lower bound a poll cycle is
/// measured against, counts it.
public struct LineSpeed: Sendable, Hashable, CustomStringConvertible {
    public var baud: Int
    public var bitsPerCharacter: Int

    public init(baud: Int, bitsPerCharacter: Int = 11) {
        precondition(baud > 0 && bitsPerCharacter > 0, "line speed needs a positive baud rate and character size")
        self.baud = baud
        self.bitsPerCharacter = bitsPerCharacter
    }

    /// Above this baud rate t3.5 is a fixed 1.750 ms.
    public static let fixedGapAbove = 19_200
    public static let fixedGap: Duration = .microseconds(1750)

    /// One character on the wire.
    public var characterTime: Duration { Self.nanoseconds(bits: Int64(bitsPerCharacter), halves: false, baud: baud) }

    /// t3.5: the silence that ends a frame.
    public var frameGap: Duration {
        baud > Self.fixedGapAbove ? Self.fixedGap : Self.nanoseconds(bits: Int64(7 * bitsPerCharacter), halves: true, baud: baud)
    }

    /// The characters of a frame of `bytes` bytes.
    public func frameTime(bytes: Int) -> Duration {
        Self.nanoseconds(bits: Int64(bytes * bitsPerCharacter), halves: false, baud: baud)
    }

    /// Request, t3.5, reply, t3.5 — computed in one division, so it is exact to the nanosecond (rounded up).
    public func transactionTime(requestBytes: Int, replyBytes: Int) -> Duration {
        let characterBits = Int64((requestBytes + replyBytes) * bitsPerCharacter)
        if baud > Self.fixedGapAbove {
            return Self.nanoseconds(bits: characterBits, halves: false, baud: baud) + Self.fixedGap * 2
        }
        // Two gaps of 3.5 characters = 7 characters; counted in half bits to stay in integers.
        return Self.nanoseconds(bits: 2 * characterBits + 14 * Int64(bitsPerCharacter), halves: true, baud: baud)
    }

    /// When the reply's last character is on the wire, from the start of the request: request, t3.5, reply.
    public func replyDelay(requestBytes: Int, replyBytes: Int) -> Duration {
        transactionTime(requestBytes: requestBytes, replyBytes: replyBytes) - frameGap
    }

    /// Bytes of the RTU frame that carries a PDU of `pduBytes`: unit id + PDU + 2 CRC bytes.
    public static func rtuFrameBytes(pduBytes: Int) -> Int { pduBytes + 3 }

    /// ⌈bits × 10⁹ / baud⌉ ns (`halves`: `bits` counts half bits).
    private static func nanoseconds(bits: Int64, halves: Bool, baud: Int) -> Duration {
        let divisor = Int64(baud) * (halves ? 2 : 1)
        return .nanoseconds((bits * 1_000_000_000 + divisor - 1) / divisor)
    }

    public var description: String { "\(baud) baud, \(bitsPerCharacter) bits per character" }
}
