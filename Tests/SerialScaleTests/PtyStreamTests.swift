import Foundation
import KilnTallyCore
import Logging
import ModbusKit
import SerialScale
import Simulator
import Synchronization
import Tally
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Reads a line with plain open(2)/read(2) on a thread of its own and parses what arrives: what any program on
/// the other end of the pty would see.
final class LineReader: Sendable {
    struct State {
        var parser: ScaleStreamParser
        var frames: [ScaleFrame] = []
        var stop = false
        var done = false
        var error: Int32 = 0
    }

    let state: Mutex<State>
    let fd: Int32

    init(path: String, protocol p: ScaleProtocol, checksum: Bool) throws {
        fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw PeerError("open \(path): errno \(errno)") }
        state = Mutex(State(parser: ScaleStreamParser(protocol: p, checksum: checksum)))
        let thread = Thread { [self] in loop() }
        thread.start()
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 512)
        while !state.withLock({ $0.stop }) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EAGAIN { continue }
            if n <= 0 {
                state.withLock { $0.error = n == 0 ? -1 : errno }
                break
            }
            state.withLock { s in s.parser.feed(buffer[0..<n]) { s.frames.append($0) } }
        }
        close(fd)
        state.withLock { $0.done = true }
    }

    var bytes: UInt64 { state.withLock { $0.parser.counters.bytes } }

    /// Stops reading once `expected` bytes have come (or after `timeout`); returns the parser and the frames.
    func finish(expecting expected: Int, timeout: Duration = .seconds(5)) async -> (ScaleStreamParser, [ScaleFrame]) {
        let deadline = ContinuousClock.now + timeout
        while bytes < UInt64(expected) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        state.withLock { $0.stop = true }
        while !state.withLock({ $0.done }) { try? await Task.sleep(for: .milliseconds(5)) }
        return state.withLock { ($0.parser, $0.frames) }
    }
}

@Suite("Stream indicators over a pty")
struct PtyStreamTests {
    static let logger = Logger(label: "serial-scale-tests")

    struct Case: Sendable, CustomTestStringConvertible {
        var scaleProtocol: ScaleProtocol
        var checksum = false
        var unit: ScaleUnit = .kilogram
        var decimals = 0
        var testDescription: String { "\(scaleProtocol.rawValue) (\(unit), \(decimals) decimals\(checksum ? ", checksum" : ""))" }
    }

    static func parameters(_ c: Case) -> ScaleStreamParameters {
        var p = ScaleStreamParameters(scaleProtocol: c.scaleProtocol)
        p.checksum = c.checksum
        p.unit = c.unit
        p.decimals = c.decimals
        p.framesPerSecond = 20
        p.garbageRate = 0.15
        p.splitRate = 0.2
        p.splitPause = .milliseconds(15)
        p.badChecksumRate = 0.05
        p.seed = 8
        // Short passes: on for 0.6 s (in motion), settling 0.2 s, stable 1.2 s, off in 0.4 s.
        (p.rampUp, p.settle, p.hold, p.rampDown) = (.milliseconds(600), .milliseconds(200), .milliseconds(1200), .milliseconds(400))
        p.trucks = [WeighbridgeModel.Truck(vehicle: "ZJ-A1", arrive: .milliseconds(300), grossKilograms: 31_480,
                                           tareKilograms: 12_260, outboundAfter: .milliseconds(3600))]
        return p
    }

    @Test("trucks streamed on one end of a socat pair and read on the other: every intact frame once, weights as the truth, tickets right",
          arguments: [
              Case(scaleProtocol: .toledoContinuous, checksum: true), Case(scaleProtocol: .yaohuaTF0, unit: .tonne, decimals: 2),
              Case(scaleProtocol: .xk3190A12, unit: .tonne, decimals: 3),
          ])
    func streamOverSocat(c: Case) async throws {
        let dir = try TemporaryDirectory()
        let pty = try await SocatPTYPair.start(in: dir)
        defer { pty.stop() }
        let p = Self.parameters(c)
        let reader = try LineReader(path: pty.a, protocol: c.scaleProtocol, checksum: c.checksum)
        let sim = try ScaleStreamSimulator(name: "wb2", parameters: p, line: pty.b, clientDevice: pty.a,
                                           keepSentFrames: true, lockDirectory: dir.path, logger: Self.logger)
        #expect(sim.clientDevice == pty.a && sim.endpoint == pty.b)
        let truth = sim.passes
        #expect(truth.map(\.kilograms) == [31_480, 12_260])
        let end = truth.last!.stable.upperBound + p.rampDown + .milliseconds(500)
        let run = Task { await sim.run() }
        // Until the simulator's own clock has passed the end (a loaded machine may start it late), at most a minute.
        let deadline = ContinuousClock.now + end + .seconds(60)
        while (sim.sentFrames.last?.elapsed ?? .zero) < end && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        // A frame being written in pieces when the run is cancelled would count as sent but arrive cut: let the
        // pieces in progress finish (more frames of an empty scale follow, which the checks expect anyway).
        try await Task.sleep(for: .seconds(1))
        run.cancel()
        await run.value
        let (parser, decoded) = await reader.finish(expecting: sim.bytesWritten)
        sim.stop()

        // Transport: every intact frame exactly once, in order; the counters are what was injected.
        let sent = sim.sentFrames
        let injected = sim.injected
        #expect(sim.bytesDropped == 0)
        #expect(parser.counters.bytes == UInt64(sim.bytesWritten))
        #expect(decoded.count == sent.count && zip(decoded, sent).allSatisfy { RandomFrames.same($0, $1.frame) })
        #expect(parser.counters.frames == UInt64(injected.frames) && injected.frames == sent.count)
        #expect(parser.counters.discardedBytes == UInt64(injected.garbageBytes) && injected.garbageBytes > 0)
        #expect(parser.counters.badChecksums == UInt64(injected.badChecksums))
        #expect(injected.splitFrames > 0 && sent.count > 60)

        // The weights follow the truth: zero before and after, the pass's exact weight while it stands still (in
        // motion before: the Toledo motion bit), and the stable weights are exactly the passes'.
        let layout = ScaleChannelLayout.builtin(for: c.scaleProtocol, unit: c.unit == .tonne ? .tonne : .kilogram)
        func kilograms(_ f: ScaleFrame) -> Double? {
            guard let w = f.weight, let v = layout.convert(w, from: f.unit) else { return nil }
            return v.doubleValue * (layout.unit == .tonne ? 1000 : 1)
        }
        let margin = Duration.milliseconds(60)
        for (i, (elapsed, frame)) in zip(decoded.indices, zip(sent.map(\.elapsed), decoded)) {
            if let pass = truth.first(where: { $0.stable.lowerBound + margin <= elapsed && elapsed + margin < $0.stable.upperBound }) {
                #expect(kilograms(frame) == Double(pass.kilograms), "frame \(i) at \(elapsed)")
                if c.scaleProtocol == .toledoContinuous { #expect(frame.motion == false) }
            } else if elapsed + margin < truth[0].start || elapsed > truth[1].stable.upperBound + p.rampDown + margin {
                #expect(kilograms(frame) == 0, "frame \(i) at \(elapsed)")
            } else if let pass = truth.first(where: { $0.start + margin <= elapsed && elapsed + margin < $0.start + p.rampUp }) {
                #expect((kilograms(frame) ?? -1) <= Double(pass.kilograms) + 160, "frame \(i) at \(elapsed)")
                if c.scaleProtocol == .toledoContinuous { #expect(frame.motion == true, "frame \(i) at \(elapsed)") }
            }
        }
        #expect(decoded.first.flatMap(kilograms) == 0 && decoded.last.flatMap(kilograms) == 0)

        // And as readings into the weighbridge tally: one ticket, gross and tare as the truck's.
        let device: DeviceID = "wb2"
        var config = WeighbridgeConfig(name: "wb2", device: device, pairing: .order, defaultMaterial: "msw")
        if !c.scaleProtocol.hasMotionBit { config.spreadCheck = .init(window: .milliseconds(500), tolerance: .zero) }
        var tally = try WeighbridgeTally(config: config, devices: [device: layout.channelRoles(zeroBand: layout.unit == .tonne ? 0.04 : 40)])
        let t0 = UTCInstant(nanosecondsSinceEpoch: 1_790_000_000_000_000_000)
        var tickets: [Ticket] = []
        for (elapsed, frame) in zip(sent.map(\.elapsed), decoded) {
            for out in tally.consume(layout.readings(of: frame, device: device, time: t0.adding(elapsed))) {
                if case .ticketClosed(let t) = out { tickets.append(t) }
            }
        }
        #expect(tickets.count == 1)
        #expect(tickets.first?.gross == Mass(kilograms: 31_480) && tickets.first?.tare == Mass(kilograms: 12_260))
        #expect(tickets.first?.net == Mass(kilograms: 19_220))
    }

    @Test("the simulator's end of the line is taken: a second opener is refused, naming the holder")
    func exclusiveLine() async throws {
        let dir = try TemporaryDirectory()
        let pty = try await SocatPTYPair.start(in: dir)
        defer { pty.stop() }
        let sim = try ScaleStreamSimulator(name: "wb2", parameters: .init(scaleProtocol: .yaohuaTF0), line: pty.b,
                                           clientDevice: pty.a, lockDirectory: dir.path, logger: Self.logger)
        do {
            _ = try SerialPort.open(pty.b, settings: .init(), name: "intruder", lockDirectory: dir.path, logger: Self.logger)
            Issue.record("a second open of \(pty.b) succeeded")
        } catch {
            #expect(error.errno == EBUSY && error.isConnectionFailure)
            #expect(error.description.contains("is in use by PID \(getpid())") && error.description.contains("this process"),
                    "\(error)")
        }
        sim.stop()
        // Let go: the line can be opened again.
        let again = try SerialPort.open(pty.b, settings: .init(baud: 19200, parity: .even, dataBits: 7), name: "next",
                                        lockDirectory: dir.path, logger: Self.logger)
        #expect(again.endpoint == "\(pty.b)@19200,7E1")
        again.close()
    }

    @Test("without a line given, the simulator makes its own pty; the slave it names carries the frames")
    func ownPTY() async throws {
        var p = ScaleStreamParameters(scaleProtocol: .toledoContinuous)
        p.framesPerSecond = 50
        let sim = try ScaleStreamSimulator(name: "wb3", parameters: p, line: nil, keepSentFrames: true, logger: Self.logger)
        #expect(sim.clientDevice.hasPrefix("/dev/pts/") && sim.endpoint == sim.clientDevice)
        let reader = try LineReader(path: sim.clientDevice, protocol: .toledoContinuous, checksum: false)
        let run = Task { await sim.run() }
        let deadline = ContinuousClock.now + .seconds(60)
        while sim.sentFrames.count < 10 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        run.cancel()
        await run.value
        let (parser, frames) = await reader.finish(expecting: sim.bytesWritten)
        sim.stop()
        #expect(frames.count == sim.sentFrames.count && frames.count >= 10)
        #expect(frames.allSatisfy { $0.weight == .zero && $0.motion == false } && parser.counters.discardedBytes == 0)
    }
}
