internal import CSysShims
import KilnTallyCore
import Logging
import ModbusKit
import SerialScale
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a simulated stream indicator behaves: its protocol and display, its pace, the trucks on its scale, and the
/// faults injected into its line.
public struct ScaleStreamParameters: Sendable, Hashable {
    public var scaleProtocol: ScaleProtocol
    /// Toledo: append the checksum byte.
    public var checksum = false
    /// The display's unit, kg or t (Yaohua frames do not carry it: the daemon's config must say it).
    public var unit: ScaleUnit = .kilogram
    /// Digits after the display's decimal point (e.g. 2 for 20.00 t).
    public var decimals = 0
    /// Frames a second (a real indicator: 10–20 at 9600 baud).
    public var framesPerSecond = 10.0
    /// Per frame, the probability that 1–8 garbage bytes go before it (bytes that never start a frame, so a
    /// reader's `discardedBytes` can be checked against `injected.garbageBytes`).
    public var garbageRate = 0.0
    /// Per frame, the probability that it is written in 2–3 pieces with `splitPause` between them.
    public var splitRate = 0.0
    public var splitPause: Duration = .milliseconds(20)
    /// Per frame, the probability of a wrong checksum (Toledo with `checksum`) or XOR (Yaohua); no effect on
    /// protocols without one.
    public var badChecksumRate = 0.0
    public var seed: UInt64 = 1
    public var trucks: [WeighbridgeModel.Truck] = []
    public var divisionKilograms = 20
    /// A pass's phases (the model's defaults: 4 s, 1 s, 6 s, 3 s); tests shorten them.
    public var rampUp: Duration = .seconds(4)
    public var settle: Duration = .seconds(1)
    public var hold: Duration = .seconds(6)
    public var rampDown: Duration = .seconds(3)

    public init(scaleProtocol: ScaleProtocol) { self.scaleProtocol = scaleProtocol }
}

/// What an indicator streams, frame by frame: pure and seeded, so a test can replay exactly what the simulator
/// wrote. The weights follow a `WeighbridgeModel` (ramp in motion, settle, the exact weight on the division while
/// stable, back to zero).
public struct ScaleStreamScript: Sendable {
    /// Bytes written at once, then a pause.
    public struct Piece: Sendable, Hashable {
        public var bytes: [UInt8]
        public var pauseAfter: Duration
    }

    /// What was sent (counted as it is scripted).
    public struct Injected: Sendable, Hashable {
        /// Frames sent intact.
        public var frames = 0
        public var garbageBytes = 0
        /// Frames sent with a wrong checksum or XOR.
        public var badChecksums = 0
        /// Frames written in pieces.
        public var splitFrames = 0
        /// Frames the display could not show (a weight beyond six digits), not sent.
        public var unencodable = 0
    }

    public let parameters: ScaleStreamParameters
    public let model: WeighbridgeModel
    public private(set) var injected = Injected()
    private var random: SeededRandom
    private var faults: SeededRandom

    public init(_ parameters: ScaleStreamParameters) {
        self.parameters = parameters
        var model = WeighbridgeModel(trucks: [], divisionKilograms: parameters.divisionKilograms)
        model.rampUp = parameters.rampUp
        model.settle = parameters.settle
        model.hold = parameters.hold
        model.rampDown = parameters.rampDown
        model.setTrucks(parameters.trucks)
        self.model = model
        random = SeededRandom(seed: parameters.seed)
        faults = SeededRandom(seed: parameters.seed ^ 0xFA01_75EE_D5EE_D5EE)
    }

    /// The truth at `elapsed`: the weight the display shows, in kg, and whether it is stable.
    public mutating func state(at elapsed: Duration) -> WeighbridgeModel.State {
        model.state(at: elapsed, random: &random)
    }

    /// The frame for a model state, in the display's unit and decimals.
    public func frame(for state: WeighbridgeModel.State) -> ScaleFrame {
        let p = parameters
        var weight = ScaleDecimal(mantissa: Int64(state.kilograms))
        if p.unit == .tonne { weight = ScaleDecimal(mantissa: Int64(state.kilograms), decimals: 3) }
        weight = weight.with(decimals: p.decimals) ?? weight.normalized
        let kind: ScaleFrame.Kind = p.scaleProtocol == .yaohuaTF0 ? .displayed : .gross
        return ScaleFrame(scaleProtocol: p.scaleProtocol, kind: kind, weight: weight,
                          unit: p.scaleProtocol == .yaohuaTF0 ? nil : p.unit,
                          motion: p.scaleProtocol == .toledoContinuous ? !state.stable : nil,
                          overRange: p.scaleProtocol == .toledoContinuous ? false : nil,
                          underRange: p.scaleProtocol == .toledoContinuous ? false : nil,
                          tare: p.scaleProtocol == .toledoContinuous ? .zero : nil)
    }

    /// What is written for the frame at `elapsed`: the frame (the truth), whether it goes out intact, and the
    /// pieces — garbage first if any, then the frame's bytes, whole or split.
    public mutating func next(at elapsed: Duration) -> (frame: ScaleFrame, intact: Bool, pieces: [Piece]) {
        let p = parameters
        let frame = frame(for: state(at: elapsed))
        var bytes: [UInt8]
        do {
            bytes = try ScaleFrameEncoder.encode(frame, as: p.scaleProtocol, checksum: p.checksum)
        } catch {
            injected.unencodable += 1
            return (frame, false, [])
        }
        var pieces: [Piece] = []
        if p.garbageRate > 0 && faults.unit() < p.garbageRate {
            let n = 1 + Int(faults.next() % 8)
            var garbage: [UInt8] = []
            while garbage.count < n {
                let b = UInt8(truncatingIfNeeded: faults.next())
                if !Self.startsFrame(b, p.scaleProtocol) { garbage.append(b) }
            }
            injected.garbageBytes += n
            pieces.append(Piece(bytes: garbage, pauseAfter: .zero))
        }
        var intact = true
        if p.badChecksumRate > 0 && faults.unit() < p.badChecksumRate {
            switch p.scaleProtocol {
            case .toledoContinuous where p.checksum:
                var v = bytes[17]
                repeat { v = (v &+ 1) & 0x7F } while v == 0x02
                bytes[17] = v
                intact = false
            case .yaohuaTF0:
                // The XOR's low hex digit, moved to another hex digit.
                let value = (bytes[10] <= 0x39 ? bytes[10] - 0x30 : bytes[10] - 0x41 + 10)
                let other = (value + 1) & 0x0F
                bytes[10] = other < 10 ? 0x30 + other : 0x41 + other - 10
                intact = false
            default:
                break
            }
        }
        if intact { injected.frames += 1 } else { injected.badChecksums += 1 }
        if p.splitRate > 0 && faults.unit() < p.splitRate && bytes.count > 2 {
            injected.splitFrames += 1
            var cuts = [1 + Int(faults.next() % UInt64(bytes.count - 1))]
            if faults.unit() < 0.5 { cuts.append(1 + Int(faults.next() % UInt64(bytes.count - 1))) }
            cuts = Array(Set(cuts)).sorted()
            var from = 0
            for cut in cuts + [bytes.count] {
                pieces.append(Piece(bytes: Array(bytes[from..<cut]), pauseAfter: cut == bytes.count ? .zero : p.splitPause))
                from = cut
            }
        } else {
            pieces.append(Piece(bytes: bytes, pauseAfter: .zero))
        }
        return (frame, intact, pieces)
    }

    /// Bytes garbage never contains: a frame's first byte (and an A12 line end).
    static func startsFrame(_ b: UInt8, _ p: ScaleProtocol) -> Bool {
        p == .xk3190A12 ? b == UInt8(ascii: "w") || b == 0x0D || b == 0x0A : b == 0x02
    }
}

/// A pseudo-terminal the simulator makes for itself when the scenario names no line: it writes the master, the
/// daemon reads the slave (`/dev/pts/N`). The slave stays open here, set raw, so the line keeps its settings and
/// frames written while no reader is there queue (then, once full, are dropped) instead of failing.
///
/// `Sendable`: the descriptors and path never change; `closed` is atomic.
final class PseudoTerminal: Sendable {
    let master: Int32
    private let slave: Int32
    let slavePath: String
    private let closed = Atomic<Bool>(false)

    init() throws(ModbusError) {
        func failure(_ call: String) -> ModbusError {
            let e = errno
            return ModbusError(bus: "simulator", endpoint: "pty", call: call, errno: e, message: String(cString: strerror(e)))
        }
        var buffer = [CChar](repeating: 0, count: 128)
        let m = kt_open_pty(&buffer, UInt(buffer.count))
        guard m >= 0 else { throw failure("posix_openpt") }
        let path = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let s = Glibc.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard s >= 0 else {
            let error = failure("open")
            Glibc.close(m)
            throw error
        }
        var t = termios()
        tcgetattr(s, &t)
        cfmakeraw(&t)
        tcsetattr(s, TCSANOW, &t)
        _ = fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK)
        master = m
        slave = s
        slavePath = path
    }

    deinit { close() }

    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Glibc.close(master)
        Glibc.close(slave)
    }
}

/// Plays one stream indicator on a serial line: every 1/`framesPerSecond` s it writes the frame of the scale's
/// current weight (with the scripted garbage, split pieces and bad checksums), never reading a byte — as an
/// indicator in continuous mode does. The line is one end of a socat pty pair (opened exclusively, like a Modbus
/// RTU line), or a pseudo-terminal of its own whose slave the daemon reads.
///
/// Writes never wait: bytes a full line does not take (no reader on a pty) are dropped and counted, as a real
/// indicator's go unheard.
public final class ScaleStreamSimulator: Sendable {
    public let name: String
    public let parameters: ScaleStreamParameters
    /// The line written (a socat end, or the own pty's slave).
    public let endpoint: String
    /// The line the daemon reads: the pty pair's other end, or the own pty's slave.
    public let clientDevice: String
    public let settings: SerialPort.Settings
    private let output: Output
    private let state: Mutex<State>
    private let logger: Logger

    enum Output: Sendable {
        case port(SerialPort)
        case pty(PseudoTerminal)
    }

    struct State {
        var script: ScaleStreamScript
        var bytesWritten = 0
        var bytesDropped = 0
        /// The frames sent intact, with the time they were scripted for (the truth a reader is checked against).
        var sent: [(elapsed: Duration, frame: ScaleFrame)] = []
        var keepSent: Bool
    }

    /// Writes on `line` (one end of a pty pair; `clientDevice` is the other) or, when `line` is nil, on a pty of
    /// its own. `keepSentFrames` keeps every intact frame with its time (tests compare what a reader decoded).
    public init(name: String, parameters: ScaleStreamParameters, line: String?, clientDevice: String? = nil,
                settings: SerialPort.Settings = .init(), keepSentFrames: Bool = false,
                lockDirectory: String? = SerialPort.defaultLockDirectory, logger: Logger) throws(ModbusError) {
        self.name = name
        self.parameters = parameters
        self.settings = settings
        self.logger = logger
        if let line {
            output = .port(try SerialPort.open(line, settings: settings, name: "sim-\(name)", lockDirectory: lockDirectory,
                                               logger: logger))
            endpoint = line
            self.clientDevice = clientDevice ?? line
        } else {
            let pty = try PseudoTerminal()
            output = .pty(pty)
            endpoint = pty.slavePath
            self.clientDevice = pty.slavePath
        }
        state = Mutex(State(script: ScaleStreamScript(parameters), keepSent: keepSentFrames))
    }

    /// The passes over the scale, as laid out (the truth tickets are checked against).
    public var passes: [WeighbridgeModel.Pass] { state.withLock { $0.script.model.passes } }
    /// What was scripted so far.
    public var injected: ScaleStreamScript.Injected { state.withLock { $0.script.injected } }
    /// Bytes the line took, and bytes it did not (dropped).
    public var bytesWritten: Int { state.withLock { $0.bytesWritten } }
    public var bytesDropped: Int { state.withLock { $0.bytesDropped } }
    /// With `keepSentFrames`: every intact frame sent, in order, with its scripted time.
    public var sentFrames: [(elapsed: Duration, frame: ScaleFrame)] { state.withLock { $0.sent } }

    /// Streams until the task is cancelled.
    public func run() async {
        let period = Duration.seconds(1 / max(0.01, parameters.framesPerSecond))
        var next = ContinuousClock.now
        // The script's time starts at the first frame, not at the call: a task scheduled late on a loaded machine
        // must not begin its stream in the middle of the first truck.
        var start: ContinuousClock.Instant?
        while !Task.isCancelled {
            do { try await Task.sleep(until: next, clock: .continuous) } catch { break }
            let now = ContinuousClock.now
            if start == nil { start = now }
            let elapsed = now - start!
            let pieces = state.withLock { s in
                let r = s.script.next(at: elapsed)
                if r.intact && s.keepSent { s.sent.append((elapsed, r.frame)) }
                return r.pieces
            }
            for (k, piece) in pieces.enumerated() {
                write(piece.bytes)
                if piece.pauseAfter > .zero {
                    do {
                        try await Task.sleep(for: piece.pauseAfter)
                    } catch {
                        // Stopped inside a split frame: finish it, so what counts as sent arrives whole.
                        for rest in pieces[(k + 1)...] { write(rest.bytes) }
                        return
                    }
                }
            }
            next += period
            // Late (a long pause, a slow machine): skip the slots already gone rather than burst.
            let after = ContinuousClock.now
            while next < after { next += period }
        }
    }

    private func write(_ bytes: [UInt8]) {
        let written: Int
        switch output {
        case .port(let port):
            do {
                written = try bytes.withUnsafeBytes { (b) throws(ModbusError) -> Int in try port.write(b) }
            } catch {
                logger.warning("\(name): writing \(endpoint) failed: \(error)")
                written = 0
            }
        case .pty(let pty):
            let n = bytes.withUnsafeBytes { Glibc.write(pty.master, $0.baseAddress, $0.count) }
            written = max(0, n)
        }
        state.withLock {
            $0.bytesWritten += written
            $0.bytesDropped += bytes.count - written
        }
    }

    /// Lets go of the line.
    public func stop() {
        switch output {
        case .port(let port): port.close()
        case .pty(let pty): pty.close()
        }
    }
}
