import Acquisition
import ArgumentParser
import KilnTallyCore
import KilnTallyDaemon
import Logging
import ModbusKit

struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read registers from a device and print every interpretation side by side (find the byte order in one look).",
        discussion: """
            With --config and --bus or --device, the read goes through the running daemon when it polls that bus (in turn \
            with its polls: a serial line has one master); otherwise probe opens the bus itself. Read-only: only \
            function codes 1-4.
            Examples:
              kilntally probe --host 10.20.0.15 --unit 3 --table holding --address 1009 --count 8
              kilntally probe --serial /dev/ttyUSB0 --baud 9600 --parity even --unit 1 --address 0 --count 4
              kilntally probe --config /etc/kilntally/kilntally.toml --bus kiln-plc --unit 3 --address 1009 --count 8
              kilntally probe --config /etc/kilntally/kilntally.toml --device msw-belt --address 1009 --count 12
            """)

    @Option(help: "Modbus TCP host.") var host: String?
    @Option(help: "Modbus TCP port.") var port: Int = 502
    @Option(help: "Serial device for Modbus RTU.") var serial: String?
    @Option(help: "RTU baud rate.") var baud: Int = 9600
    @Option(help: "RTU parity.") var parity: ParityArgument = .even
    @Option(name: .customLong("data-bits"), help: "RTU data bits.") var dataBits: Int = 8
    @Option(name: .customLong("stop-bits"), help: "RTU stop bits.") var stopBits: Int = 1
    @Option(help: "Take the connection from this configuration's --bus.") var config: String?
    @Option(help: "Bus name in --config.") var bus: String?
    @Option(help: "Device name in --config: its bus and unit id (instead of --bus and --unit).") var device: String?
    @Option(help: "Unit (slave) id.") var unit: UInt8 = 1
    @Option(help: "coil, discrete, holding or input.") var table: String = "holding"
    @Option(help: "0-based protocol address of the first register.") var address: Int = 0
    @Option(help: "Registers (or bits) to read, 1-125 (1-2000 for bits).") var count: Int = 2
    @Option(help: "Response timeout in milliseconds.") var timeout: Int = 1000
    @Option(help: "The daemon's control socket (tried first with --config).") var socket: String = DefaultPaths.socket
    @Option(help: "Stream indicators: how long to listen, in seconds.") var seconds: Double = 3

    func run() async throws {
        guard let table = RegisterTable(rawValue: table) else { throw ValidationError("--table must be coil, discrete, holding or input") }
        guard (1...(table.isBitTable ? 2000 : 125)).contains(count), (0...65535).contains(address), address + count <= 65536 else {
            throw ValidationError("--count must be 1-125 registers (1-2000 bits) within addresses 0-65535")
        }
        let transport: ModbusTransport
        var unit = self.unit
        if let config {
            let c: KilnTallyConfiguration
            do { c = try KilnTallyConfiguration.load(file: config) } catch {
                var stderr = StandardError()
                print(error.description, to: &stderr)
                throw ExitCode(KilnTallyExit.configError.rawValue)
            }
            var busName = bus
            if let device, let stream = c.acquisition.streamDevices.first(where: { $0.id.rawValue == device }),
               let line = c.acquisition.streamBuses.first(where: { $0.name == stream.bus }) {
                return try await StreamProbe.run(device: stream, bus: line, seconds: seconds, socket: socket)
            }
            if let device {
                guard let d = c.acquisition.devices.first(where: { $0.id.rawValue == device }) else {
                    throw ValidationError("--device must name a [[device]] of \(config): \(c.acquisition.devices.map(\.id.rawValue).joined(separator: ", "))")
                }
                busName = d.bus
                unit = d.unitID
            }
            guard let b = c.acquisition.buses.first(where: { $0.name == busName }) else {
                throw ValidationError("--bus (or --device) must name a [[bus]] of \(config): \(c.acquisition.buses.map(\.name).joined(separator: ", "))")
            }
            transport = b.transport
            // The daemon owns this bus? Then it reads, in turn with its polls.
            if let reply = try DaemonFirst.request(["op": "probe", "bus": b.name, "unit": Int(unit), "table": table.rawValue,
                                                    "address": address, "count": count], socket: socket, bus: b.name) {
                if reply["ok"] as? Bool == true, let result = reply["result"] as? [String: Any], let words = result["words"] as? [Int] {
                    print(ProbeReport.render(words.map { UInt16(truncatingIfNeeded: $0) }, table: table, address: address, unit: unit,
                                             endpoint: result["endpoint"] as? String ?? b.transport.endpoint))
                    return
                }
                if let refusal = reply["error"] as? String, refusal.hasPrefix("device error") {
                    var stderr = StandardError()
                    print("kilntally probe: \(refusal)", to: &stderr)
                    throw ExitCode(KilnTallyExit.checkFailed.rawValue)
                }
                // Not this daemon's bus: open it here.
            }
        } else if let serial {
            transport = .rtu(device: serial, baud: baud, parity: parity.modbus, dataBits: dataBits, stopBits: stopBits)
        } else if let host {
            transport = .tcp(host: host, port: port)
        } else {
            throw ValidationError("give --host, --serial, or --config with --bus or --device")
        }
        var logger = Logger(label: "kilntally-probe")
        logger.logLevel = .critical
        let client = try ModbusClient(name: "probe", transport: transport, timeouts: ModbusTimeouts(response: .milliseconds(Int64(timeout))), logger: logger)
        defer { client.shutdown() }
        let words: [UInt16]
        do {
            switch table {
            case .coil: words = try await client.readCoils(unit: unit, address: address, count: count).map { $0 ? 1 : 0 }
            case .discrete: words = try await client.readDiscreteInputs(unit: unit, address: address, count: count).map { $0 ? 1 : 0 }
            case .holding: words = try await client.readHoldingRegisters(unit: unit, address: address, count: count)
            case .input: words = try await client.readInputRegisters(unit: unit, address: address, count: count)
            }
        } catch {
            var stderr = StandardError()
            print("kilntally probe: \(error)", to: &stderr)
            throw ExitCode(KilnTallyExit.checkFailed.rawValue)
        }
        print(ProbeReport.render(words, table: table, address: address, unit: unit, endpoint: client.endpoint))
    }
}

/// `probe --config` asks the daemon first. No daemon at the socket (no socket file, or nobody listening on it): nil, and
/// probe opens the line itself. Any other failure to reach it — not in the socket's group, above all — ends the probe
/// with the reason (exit 69): opening the line anyway would fail with a misleading "in use by PID … (kilntallyd)" on a
/// serial line, or read beside the daemon's polls on TCP.
enum DaemonFirst {
    static func request(_ request: [String: Any], socket: String, bus: String) throws -> [String: Any]? {
        do {
            return try ControlClient.request(request, socket: socket)
        } catch where error.noDaemon {
            return nil
        } catch {
            var stderr = StandardError()
            print("kilntally probe: \(error)", to: &stderr)
            let why = "kilntally probe: not opening bus \(bus) here, the daemon may be polling it:"
            if error.connectErrno == EACCES || error.connectErrno == EPERM {
                let group = socketGroup(socket) ?? "kilntally"
                print("\(why) run as root or as a member of group \(group) (adduser YOU \(group), then log in again) to probe through the daemon",
                      to: &stderr)
            } else {
                print("\(why) give the daemon's --socket, or stop the daemon to probe the line directly", to: &stderr)
            }
            throw ExitCode(KilnTallyExit.daemonUnreachable.rawValue)
        }
    }

    /// The name of the socket file's group (the daemon's: `kilntally` when installed), nil when it cannot be told.
    static func socketGroup(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, let group = getgrgid(st.st_gid) else { return nil }
        return String(cString: group.pointee.gr_name)
    }
}

/// The side-by-side interpretations `kilntally probe` prints (pure, so it can be tested on known words).
enum ProbeReport {
    static func render(_ words: [UInt16], table: RegisterTable, address: Int, unit: UInt8, endpoint: String) -> String {
        var out = ["unit \(unit) \(table.rawValue) \(address)...\(address + words.count - 1) (\(words.count)) from \(endpoint)"]
        if table.isBitTable {
            for (i, w) in words.enumerated() { out.append("\(cell(address + i, 7))\(w)") }
            return out.joined(separator: "\n")
        }
        out.append("address  hex     uint16   int16")
        for (i, w) in words.enumerated() {
            out.append(cell(address + i, 9) + cell(hex(w), 8) + cell(w, 9) + String(Int16(bitPattern: w)))
        }
        if words.count >= 2 {
            out.append("")
            out.append("32-bit from  order  uint32        int32         float32")
            for i in 0..<(words.count - 1) {
                for order in WordOrder.allCases {
                    let regs = words[i..<i + 2]
                    out.append(cell(address + i, 13) + cell(order.rawValue, 7)
                               + cell(text(RegisterDecoder.decode(regs, as: .uint32, order: order)), 14)
                               + cell(text(RegisterDecoder.decode(regs, as: .int32, order: order)), 14)
                               + float32Text(RegisterDecoder.decode(regs, as: .float32, order: order)))
                }
            }
        }
        if words.count >= 4 {
            out.append("")
            out.append("64-bit from  order  uint64                int64                 float64")
            for i in 0..<(words.count - 3) {
                for order in WordOrder.allCases {
                    let regs = words[i..<i + 4]
                    out.append(cell(address + i, 13) + cell(order.rawValue, 7)
                               + cell(text(RegisterDecoder.decode(regs, as: .uint64, order: order)), 22)
                               + cell(text(RegisterDecoder.decode(regs, as: .int64, order: order)), 22)
                               + text(RegisterDecoder.decode(regs, as: .float64, order: order)))
                }
            }
        }
        return out.joined(separator: "\n")
    }

    static func text(_ v: ReadingValue) -> String {
        switch v {
        case .int(let x): String(x)
        case .uint(let x): String(x)
        case .double(let x): x.isFinite ? "\(x)" : "\(x)"
        case .bool(let b): String(b)
        case .string(let s): s
        case .none: "-"
        }
    }

    /// A float32 in its own shortest form (widened to Double it would print spurious digits).
    static func float32Text(_ v: ReadingValue) -> String {
        if case .double(let d) = v { return "\(Float(d))" }
        return text(v)
    }

    static func hex(_ w: UInt16) -> String {
        let h = String(w, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 4 - h.count) + h
    }

    static func cell(_ v: Any, _ width: Int) -> String {
        let s = "\(v)"
        return s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}

import Foundation
import SerialScale

/// `kilntally probe --device` of a stream indicator: its decoded frames and the parser's counters. Through the daemon
/// when it reads that line (its latest readings of the device and its counters), else by listening on the line
/// itself for `--seconds` (read only: nothing is ever sent to the indicator).
enum StreamProbe {
    static func run(device: StreamDeviceConfig, bus: StreamBusConfig, seconds: Double, socket: String) async throws {
        if let status = try DaemonFirst.request(["op": "status"], socket: socket, bus: bus.name), status["ok"] as? Bool == true,
           let streams = (status["result"] as? [String: Any])?["streams"] as? [[String: Any]],
           let mine = streams.first(where: { $0["device"] as? String == device.id.rawValue }) {
            print("\(device.id) on \(bus.name) (\(mine["endpoint"] ?? bus.device), \(device.scaleProtocol.rawValue)) through kilntallyd: \(mine["device_state"] ?? "-")")
            print("frames \(mine["frames"] ?? 0), bad checksums \(mine["bad_checksums"] ?? 0), discarded bytes \(mine["discarded_bytes"] ?? 0), overlong frames \(mine["overlong_frames"] ?? 0)")
            let reply = try ControlClient.request(["op": "readings", "after": 0, "device": device.id.rawValue, "limit": 20], socket: socket)
            for r in ((reply["result"] as? [String: Any])?["readings"] as? [[String: Any]] ?? []) {
                print("  \(r["time"] ?? "-") \(r["channel"] ?? "-") = \(r["value"] ?? "-")\(r["unit"].map { " \($0)" } ?? "") \(r["quality"] ?? "-")")
            }
            return
        }
        var logger = Logger(label: "kilntally-probe")
        logger.logLevel = .critical
        let port: SerialPort
        do {
            port = try SerialPort.open(bus.device, settings: bus.settings, name: bus.name, logger: logger)
        } catch {
            var stderr = StandardError()
            print("kilntally probe: \(error)", to: &stderr)
            throw ExitCode(KilnTallyExit.checkFailed.rawValue)
        }
        defer { port.close() }
        print("listening to \(bus.device) (\(bus.settings), \(device.scaleProtocol.rawValue)\(device.checksum ? " with checksum" : "")) for \(seconds) s")
        var parser = ScaleStreamParser(protocol: device.scaleProtocol, checksum: device.checksum)
        var buffer = [UInt8](repeating: 0, count: 512)
        let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < end {
            let n = try buffer.withUnsafeMutableBytes { try port.read(into: $0, timeout: .milliseconds(200)) }
            parser.feed(buffer[0..<n]) { frame in
                let readings = device.layout.readings(of: frame, device: device.id, time: SystemClock().now())
                print("  " + readings.map { "\($0.channel)=\(ProbeReport.text($0.value))\($0.unit.map { " \($0.rawValue)" } ?? "")" }.joined(separator: " "))
            }
            fflush(nil)  // each frame's line as it comes, also into a pipe
        }
        let c = parser.counters
        print("frames \(c.frames), bad checksums \(c.badChecksums), discarded bytes \(c.discardedBytes), overlong frames \(c.overlongFrames)")
    }
}
