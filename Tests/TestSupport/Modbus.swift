import Foundation

/// The register map a `PymodbusServer` serves (written as JSON for Tests/peers/modbus_server.py).
/// Every table holds addresses 0..<size; reads beyond give Modbus exception 2 (illegal data address).
public struct PymodbusRegisterMap: Codable, Sendable {
    /// A 32/64-bit value that pymodbus itself encodes into registers (`convert_to_registers`).
    public struct TypedValue: Codable, Sendable {
        public enum Table: String, Codable, Sendable { case holding, input }
        public enum Kind: String, Codable, Sendable { case float32, uint32, int32, float64, uint64, int16 }
        /// ABCD: big-endian words (high word first); CDAB: low word first.
        public enum WordOrder: String, Codable, Sendable { case abcd = "ABCD", cdab = "CDAB" }
        public var table: Table
        public var address: Int
        public var type: Kind
        public var value: Double
        public var wordOrder: WordOrder

        public init(table: Table, address: Int, type: Kind, value: Double, wordOrder: WordOrder) {
            self.table = table
            self.address = address
            self.type = type
            self.value = value
            self.wordOrder = wordOrder
        }

        enum CodingKeys: String, CodingKey {
            case table, address, type, value
            case wordOrder = "word_order"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(table, forKey: .table)
            try c.encode(address, forKey: .address)
            try c.encode(type, forKey: .type)
            // Integers must reach Python as ints, not floats.
            if type == .float32 || type == .float64 {
                try c.encode(value, forKey: .value)
            } else {
                try c.encode(Int64(value), forKey: .value)
            }
            try c.encode(wordOrder, forKey: .wordOrder)
        }
    }

    public var size: Int
    public var coils: [Bool]
    public var discrete: [Bool]
    public var holding: [UInt16]
    public var input: [UInt16]
    public var typed: [TypedValue]

    public init(
        size: Int, coils: [Bool] = [], discrete: [Bool] = [], holding: [UInt16] = [], input: [UInt16] = [],
        typed: [TypedValue] = []
    ) {
        self.size = size
        self.coils = coils
        self.discrete = discrete
        self.holding = holding
        self.input = input
        self.typed = typed
    }

    func write(to path: String) throws {
        let data = try JSONEncoder().encode(self)
        try data.write(to: URL(fileURLWithPath: path))
    }
}

/// Faults the pymodbus peer injects for one unit id (see Tests/peers/modbus_server.py), counted over that unit's
/// requests from 1.
public struct PymodbusFault: Codable, Sendable {
    /// Never answers: the client times out.
    public var silent: Bool?
    /// Requests 1...N are answered with exception 6 (server device busy).
    public var busyFirst: Int?
    /// A request covering any of these addresses (any table) is answered with exception 2.
    public var illegalAddresses: [Int]?
    /// Request N+1 closes the connection without an answer (TCP; once).
    public var dropAfter: Int?
    /// Every request is answered with this exception code (e.g. 11, a gateway's "target failed to respond").
    public var exception: Int?

    public init(silent: Bool? = nil, busyFirst: Int? = nil, illegalAddresses: [Int]? = nil, dropAfter: Int? = nil,
                exception: Int? = nil) {
        self.silent = silent
        self.busyFirst = busyFirst
        self.illegalAddresses = illegalAddresses
        self.dropAfter = dropAfter
        self.exception = exception
    }

    public static let silent = PymodbusFault(silent: true)

    enum CodingKeys: String, CodingKey {
        case silent
        case busyFirst = "busy_first"
        case illegalAddresses = "illegal_addresses"
        case dropAfter = "drop_after"
        case exception
    }
}

/// One line of the pymodbus peer's request log: a request as pymodbus received it, before it was answered.
public struct PymodbusRequest: Decodable, Sendable, Hashable {
    /// Python's time.monotonic() at arrival, in seconds: compare entries of one log with each other only.
    public var t: Double
    /// The client connection it came on, numbered from 1.
    public var conn: Int
    public var unit: Int
    public var fc: Int
    public var address: Int?
    public var count: Int?
    /// What the peer did instead of answering normally: "silent", "busy", "illegal_address", "drop", "exception",
    /// "illegal_function"; nil for a normal answer.
    public var fault: String?
}

/// Tests/peers/modbus_server.py (pymodbus 3.16) as a real Modbus slave, over TCP on a free loopback port or over RTU
/// on a serial device (one end of a `SocatPTYPair`). Stopped by PID; always stopped when the value goes away.
public final class PymodbusServer: Sendable {
    public let process: PeerProcess
    /// The TCP port, for `startTCP`.
    public let port: Int
    /// The serial device, for `startRTU`.
    public let device: String?
    public let unit: UInt8
    /// The JSON-lines request log the peer writes (`--log`).
    public let requestLogPath: String

    private init(process: PeerProcess, port: Int, device: String?, unit: UInt8, requestLogPath: String) {
        self.process = process
        self.port = port
        self.device = device
        self.unit = unit
        self.requestLogPath = requestLogPath
    }

    /// The script's arguments after the transport ones; writes the map and faults files into `dir`.
    private static func commonArguments(
        in dir: TemporaryDirectory, name: String, map: PymodbusRegisterMap, units: [UInt8], delayMs: Int,
        faults: [UInt8: PymodbusFault]
    ) throws -> (arguments: [String], requestLog: String) {
        let mapPath = dir.file("\(name)-map.json")
        try map.write(to: mapPath)
        let requestLog = dir.file("\(name)-requests.jsonl")
        var arguments = units.flatMap { ["--unit", String($0)] }
            + ["--map", mapPath, "--delay-ms", String(delayMs), "--log", requestLog]
        if !faults.isEmpty {
            let faultsPath = dir.file("\(name)-faults.json")
            let byUnit = Dictionary(uniqueKeysWithValues: faults.map { (String($0.key), $0.value) })
            try JSONEncoder().encode(byUnit).write(to: URL(fileURLWithPath: faultsPath))
            arguments += ["--faults", faultsPath]
        }
        return (arguments, requestLog)
    }

    /// Starts a Modbus TCP server on 127.0.0.1; `port` nil picks a free one (retrying if another process takes it
    /// first), a given `port` restarts a server where clients expect it. `delayMs` delays every answer. `unit` and
    /// `moreUnits` are served with the same map; `faults` are injected per unit id (which need not be served).
    public static func startTCP(
        in dir: TemporaryDirectory, map: PymodbusRegisterMap, unit: UInt8 = 1, moreUnits: [UInt8] = [],
        faults: [UInt8: PymodbusFault] = [:], port: Int? = nil, delayMs: Int = 0, name: String = "pymodbus-tcp",
        rtuFraming: Bool = false
    ) async throws -> PymodbusServer {
        var (common, requestLog) = try commonArguments(
            in: dir, name: name, map: map, units: [unit] + moreUnits, delayMs: delayMs, faults: faults)
        // RTU frames (unit id, PDU, CRC) over TCP, as a serial device server carries them.
        if rtuFraming { common += ["--tcp-framer", "rtu"] }
        var lastError: Error = PeerError("pymodbus did not start")
        for attempt in 0..<3 {
            let p = try port ?? FreePort.allocate()
            let process = try PeerProcess(
                name: attempt == 0 ? name : "\(name)-\(attempt)", executable: RepoPaths.venvPython,
                arguments: [RepoPaths.peerScript("modbus_server.py"), "--tcp", String(p)] + common,
                logDirectory: dir.path)
            do {
                try await process.waitUntil("pymodbus to serve on port \(p)") {
                    process.log().contains("modbus_server: serving") && FreePort.isListening(p)
                }
                return PymodbusServer(process: process, port: p, device: nil, unit: unit, requestLogPath: requestLog)
            } catch {
                process.stop()
                lastError = error
                if port != nil { break }
            }
        }
        throw lastError
    }

    /// Starts a Modbus RTU server on `device` (8 data bits, 1 stop bit); returns once pymodbus has opened the device
    /// and logged that it is serving.
    public static func startRTU(
        in dir: TemporaryDirectory, device: String, baud: Int = 19200, parity: String = "N",
        map: PymodbusRegisterMap, unit: UInt8 = 1, moreUnits: [UInt8] = [], faults: [UInt8: PymodbusFault] = [:],
        delayMs: Int = 0, name: String = "pymodbus-rtu"
    ) async throws -> PymodbusServer {
        let (common, requestLog) = try commonArguments(
            in: dir, name: name, map: map, units: [unit] + moreUnits, delayMs: delayMs, faults: faults)
        let process = try PeerProcess(
            name: name, executable: RepoPaths.venvPython,
            arguments: [RepoPaths.peerScript("modbus_server.py"), "--rtu", device, "--baud", String(baud),
                        "--parity", parity] + common,
            logDirectory: dir.path)
        do {
            try await process.waitUntil("pymodbus to serve on \(device)") {
                process.log().contains("modbus_server: serving")
            }
        } catch {
            process.stop()
            throw error
        }
        return PymodbusServer(process: process, port: 0, device: device, unit: unit, requestLogPath: requestLog)
    }

    public func stop() { process.stop() }
    public func log() -> String { process.log() }

    /// Every request the peer has received so far, in arrival order (the peer flushes each line as it arrives; a
    /// line still being written is left out).
    public func requestLog() throws -> [PymodbusRequest] {
        let text = (try? String(contentsOfFile: requestLogPath, encoding: .utf8)) ?? ""
        let decoder = JSONDecoder()
        return try text.split(separator: "\n", omittingEmptySubsequences: true)
            .filter { $0.hasSuffix("}") }
            .map { try decoder.decode(PymodbusRequest.self, from: Data($0.utf8)) }
    }
}

/// Two connected pseudo-terminals made by socat (`DIR/a` <-> `DIR/b`), a null-modem cable for RTU tests.
public final class SocatPTYPair: Sendable {
    public let process: PeerProcess
    /// The two ends (symlinks to /dev/pts/N).
    public let a: String
    public let b: String

    private init(process: PeerProcess, a: String, b: String) {
        self.process = process
        self.a = a
        self.b = b
    }

    public static func start(in dir: TemporaryDirectory, name: String = "socat") async throws -> SocatPTYPair {
        let exe = ["/usr/bin/socat", "/bin/socat"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let exe else { throw PeerError("socat is not installed (run deploy/setup.sh)") }
        let a = dir.file("\(name)-a"), b = dir.file("\(name)-b")
        let (executable, arguments) = withEmptySignalMask(
            exe, ["-d", "-d", "pty,raw,echo=0,link=\(a)", "pty,raw,echo=0,link=\(b)"])
        let process = try PeerProcess(name: name, executable: executable, arguments: arguments, logDirectory: dir.path)
        do {
            try await process.waitUntil("socat to create \(a) and \(b)") {
                FileManager.default.fileExists(atPath: a) && FileManager.default.fileExists(atPath: b)
                    && process.log().contains("starting data transfer loop")
            }
        } catch {
            process.stop()
            throw error
        }
        return SocatPTYPair(process: process, a: a, b: b)
    }

    public func stop() { process.stop() }
}

/// The documented RTU-over-TCP recipe: socat makes a local pty (`DIR/NAME`) whose bytes go to and come from a TCP
/// endpoint (a serial device server in raw "TCP server" mode), so an RTU client can use the pty.
public final class SocatTCPBridge: Sendable {
    public let process: PeerProcess
    public let pty: String

    private init(process: PeerProcess, pty: String) {
        self.process = process
        self.pty = pty
    }

    public static func start(in dir: TemporaryDirectory, host: String = "127.0.0.1", port: Int, name: String = "socat-bridge") async throws -> SocatTCPBridge {
        let exe = ["/usr/bin/socat", "/bin/socat"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let exe else { throw PeerError("socat is not installed (run deploy/setup.sh)") }
        let pty = dir.file(name)
        let process = try PeerProcess(name: name, executable: exe,
                                      arguments: ["-d", "-d", "pty,raw,echo=0,link=\(pty)", "tcp:\(host):\(port)"],
                                      logDirectory: dir.path)
        do {
            try await process.waitUntil("socat to bridge \(pty) to \(host):\(port)") {
                FileManager.default.fileExists(atPath: pty) && process.log().contains("starting data transfer loop")
            }
        } catch {
            process.stop()
            throw error
        }
        return SocatTCPBridge(process: process, pty: pty)
    }

    public func stop() { process.stop() }
}

/// Foundation's `Process` starts children with the blocked-signal mask of the thread that spawns them, which has
/// SIGTERM blocked: such a peer never sees `PeerProcess.stop()`'s SIGTERM, so every stop waits out the grace period
/// and ends in SIGKILL. This runs `executable` through the venv's python, which clears the mask and `exec`s it —
/// same PID, so stopping by PID still works.
func withEmptySignalMask(_ executable: String, _ arguments: [String]) -> (executable: String, arguments: [String]) {
    let trampoline = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])"
    return (RepoPaths.venvPython, ["-c", trampoline, executable] + arguments)
}
